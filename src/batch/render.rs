//! The plan as text for a terminal: the rows (for small batches), the problems, the totals per
//! coin, the cost in API requests, approval, the digest and the verdict. Pure: returns a string.

use std::fmt::Write;

use super::diff::BatchDiff;
use super::plan::{Plan, Verdict};
use super::preflight::CheckReport;

/// Batches with more rows than this print no row table (the JSON output has every row).
pub const MAX_TABLE_ROWS: usize = 200;

/// Renders a check report.
pub fn check_report(report: &CheckReport) -> String {
    let mut out = String::new();
    let plan = &report.plan;
    let _ = writeln!(out, "ccpayout check: {}", report.file);
    let _ = writeln!(
        out,
        "  {} file, {} bytes, {} rows, sha256 {}",
        report.format, report.size_bytes, plan.counts.rows, report.sha256
    );
    rows_table(&mut out, plan);
    problems(&mut out, report);
    controls(&mut out, report);
    coins_table(&mut out, plan);
    diff_section(&mut out, report);
    summary(&mut out, report);
    out
}

/// Rows the diff section lists per kind (the JSON carries up to `diff::MAX_LISTED`).
const DIFF_LINES: usize = 20;

/// The diff to last time, in full: what changed since the previous batch of the series, the
/// amounts and destinations an approver should look at marked `!`.
fn diff_section(out: &mut String, report: &CheckReport) {
    let _ = writeln!(out);
    let Some(diff) = &report.diff else {
        if let Some(why) = &report.no_diff {
            let _ = writeln!(out, "no diff: {why}");
        }
        return;
    };
    let _ = writeln!(out, "{}", compared_with(diff));
    if diff.previous.is_none() {
        return;
    }
    let c = &diff.counts;
    let _ = writeln!(
        out,
        "  rows: {} then, {} now: {} added, {} removed, {} matched ({} unchanged)",
        c.previous_rows, c.rows, c.added, c.removed, c.matched, c.unchanged
    );
    let more = |out: &mut String, listed: usize, all: u64| {
        if (listed as u64) < all {
            let _ = writeln!(
                out,
                "    … and {} more (--json lists up to {})",
                all - listed as u64,
                diff.listed_max
            );
        }
    };
    if c.added > 0 {
        let _ = writeln!(out, "  added ({}):", c.added);
        for r in diff.added.iter().take(DIFF_LINES) {
            let _ = writeln!(
                out,
                "    line {} {}: {}, {} {}",
                r.line, r.order_id, r.key, r.amount, r.coin
            );
        }
        more(out, diff.added.len().min(DIFF_LINES), c.added);
    }
    if c.removed > 0 {
        let _ = writeln!(out, "  removed ({}):", c.removed);
        for r in diff.removed.iter().take(DIFF_LINES) {
            let _ = writeln!(
                out,
                "    was line {} {}: {}, {} {}",
                r.previous_line, r.previous_order_id, r.key, r.amount, r.coin
            );
        }
        more(out, diff.removed.len().min(DIFF_LINES), c.removed);
    }
    if c.amount_changed > 0 {
        let _ = writeln!(
            out,
            "! amounts changed by more than {}% ({}):",
            diff.warn_percent, c.amount_changed
        );
        for r in diff.amount_changed.iter().take(DIFF_LINES) {
            let _ = writeln!(
                out,
                "    line {} {} (was {}): {}, {} → {} {}{}",
                r.line,
                r.order_id,
                r.previous_order_id,
                r.key,
                r.old,
                r.new,
                r.coin,
                r.percent.as_ref().map(|p| format!(" ({p}%)")).unwrap_or_default()
            );
        }
        more(out, diff.amount_changed.len().min(DIFF_LINES), c.amount_changed);
    }
    if c.amount_changed_within > 0 {
        let _ = writeln!(
            out,
            "  amounts changed by {}% or less: {}",
            diff.warn_percent, c.amount_changed_within
        );
    }
    if c.destination_changed > 0 {
        let _ = writeln!(out, "! destinations changed ({}):", c.destination_changed);
        for r in diff.destination_changed.iter().take(DIFF_LINES) {
            let _ = writeln!(
                out,
                "    line {} {} (was {}): payee {}, {} → {}",
                r.line, r.order_id, r.previous_order_id, r.payee, r.old, r.new
            );
        }
        more(
            out,
            diff.destination_changed.len().min(DIFF_LINES),
            c.destination_changed,
        );
    }
    let _ = writeln!(out, "  totals per coin, then → now:");
    for t in &diff.totals {
        let _ = writeln!(
            out,
            "    {} {} → {} ({}; {} → {} rows)",
            t.coin, t.previous, t.now, t.delta, t.previous_rows, t.rows
        );
    }
}

/// `Compared with NAME (DATE)`, or that there is no earlier batch of the series.
fn compared_with(diff: &BatchDiff) -> String {
    match &diff.previous {
        Some(previous) => format!("Compared with {} ({})", previous.name, previous.created),
        None if diff.series.is_empty() => "Compared with: no earlier batch of this series".to_owned(),
        None => format!("Compared with: no earlier batch of the series {:?}", diff.series),
    }
}

/// The diff in a few lines, for a notice ("batch waits for approval") or a log: what it was
/// compared with, the counts, the totals per coin then → now, and the first changes an approver
/// should look at.
pub fn diff(diff: &BatchDiff) -> String {
    const SHOWN: usize = 3;
    let mut out = String::new();
    if diff.previous.is_none() {
        let _ = writeln!(out, "{}", compared_with(diff));
        return out;
    }
    let c = &diff.counts;
    let _ = writeln!(
        out,
        "{}: {} added, {} removed, {} amount(s) changed by more than {}%, {} destination(s) changed",
        compared_with(diff),
        c.added,
        c.removed,
        c.amount_changed,
        diff.warn_percent,
        c.destination_changed
    );
    let totals: Vec<String> = diff
        .totals
        .iter()
        .map(|t| format!("{} {} → {} ({})", t.coin, t.previous, t.now, t.delta))
        .collect();
    if !totals.is_empty() {
        let _ = writeln!(out, "  totals: {}", totals.join(", "));
    }
    for r in diff.amount_changed.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "  ! line {} {}: {}, {} → {} {}",
            r.line, r.order_id, r.key, r.old, r.new, r.coin
        );
    }
    for r in diff.destination_changed.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "  ! line {} {}: payee {} now {} (was {})",
            r.line, r.order_id, r.payee, r.new, r.old
        );
    }
    let unshown = (c.amount_changed + c.destination_changed)
        .saturating_sub((diff.amount_changed.len().min(SHOWN) + diff.destination_changed.len().min(SHOWN)) as u64);
    if unshown > 0 {
        let _ = writeln!(out, "  … and {unshown} more change(s)");
    }
    out
}

/// What the controls found: the signer, deny-list hits, and the rows held for the recipient
/// review with each destination beside the payee's old one.
fn controls(out: &mut String, report: &CheckReport) {
    let plan = &report.plan;
    if let Some(signer) = &report.signer {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "signed by: {} ({} {}){}",
            signer.principal,
            signer.key_type,
            signer.fingerprint,
            if plan.maker_may_approve {
                ""
            } else {
                "; the signer may not approve this batch"
            }
        );
    }
    if !plan.deny_list_hits.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "deny-list hits ({}), refused:", plan.deny_list_hits.len());
        for hit in &plan.deny_list_hits {
            let _ = writeln!(
                out,
                "  line {} {}: {} is on {} line {}",
                hit.line, hit.order_id, hit.recipient, hit.list, hit.list_line
            );
        }
    }
    if let Some(review) = &plan.review {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "recipient review: {} row(s) wait for their own approval ({} new destination(s), {} changed payee destination(s)); the rest of the batch proceeds",
            review.rows, review.new, review.changed
        );
        for (shown, row) in plan
            .rows
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Review { .. }))
            .enumerate()
        {
            if shown == MAX_TABLE_ROWS {
                let _ = writeln!(out, "  … use --json for every row");
                break;
            }
            let was = match &row.previous_destination {
                Some(previous) => format!("was {previous} (payee {})", row.payee),
                None => "new".to_owned(),
            };
            let memo = if row.memo.is_empty() {
                String::new()
            } else {
                format!(" memo {}", row.memo)
            };
            let _ = writeln!(
                out,
                "  line {} {}: {} {} to {} {}{memo}  [{was}]",
                row.line, row.order_id, row.amount, row.coin, row.chain, row.recipient
            );
        }
        let _ = writeln!(
            out,
            "recipient review digest: {} ({} approval(s) needed)",
            review.digest, review.approvals_needed
        );
    }
}

fn rows_table(out: &mut String, plan: &Plan) {
    if plan.rows.is_empty() {
        return;
    }
    let _ = writeln!(out);
    if plan.rows.len() > MAX_TABLE_ROWS {
        let _ = writeln!(
            out,
            "rows: {} accepted rows; use --json for each row's verdict",
            plan.rows.len()
        );
        return;
    }
    let header = [
        "line",
        "order_id",
        "coin",
        "chain",
        "recipient",
        "amount",
        "fee",
        "receives",
        "verdict",
    ];
    let cells: Vec<[String; 9]> = plan
        .rows
        .iter()
        .map(|r| {
            let fee = match (&r.fee, &r.fee_coin) {
                (Some(fee), Some(coin)) => format!("{fee} {coin}"),
                _ => "-".to_owned(),
            };
            let verdict = match &r.verdict {
                Verdict::Held { reason } => format!("held: {reason}"),
                Verdict::Refused { .. } => "refused (see problems)".to_owned(),
                other => other.label().to_owned(),
            };
            [
                r.line.to_string(),
                r.order_id,
                r.coin,
                r.chain,
                shorten(&r.recipient, 44),
                r.amount,
                fee,
                r.receiver_gets.unwrap_or_else(|| "-".to_owned()),
                verdict,
            ]
        })
        .collect();
    table(out, &header, &cells, &[0, 5, 7]);
}

fn problems(out: &mut String, report: &CheckReport) {
    let plan = &report.plan;
    if plan.problems.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "problems ({}):", plan.problems.len());
    for p in &plan.problems {
        let _ = writeln!(out, "  {}", p.render(&report.file));
    }
}

fn coins_table(out: &mut String, plan: &Plan) {
    if plan.coins.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "per coin:");
    let header = [
        "coin",
        "rows",
        "amount",
        "fees",
        "receivers get",
        "balance",
        "needed",
        "after",
        "enough",
    ];
    let cells: Vec<[String; 9]> = plan
        .coins
        .iter()
        .map(|c| {
            [
                c.coin.clone(),
                c.rows.to_string(),
                c.amount.clone(),
                c.fees.clone(),
                c.receivers_get.clone(),
                c.balance_before.clone(),
                if c.needed == c.needed_with_margin {
                    c.needed.clone()
                } else {
                    format!("{} ({} with margin)", c.needed, c.needed_with_margin)
                },
                c.balance_after.clone(),
                if c.sufficient {
                    "yes".to_owned()
                } else {
                    "NO".to_owned()
                },
            ]
        })
        .collect();
    table(out, &header, &cells, &[1, 2, 3, 4, 5, 6, 7]);
}

/// The grouping into CCPayment batch withdrawals (`withdraw_mode = "batch"`).
fn bundles(out: &mut String, b: &crate::batch::bundles::BundlePlan) {
    let _ = writeln!(
        out,
        "batch withdrawals ({} execution, confirmed with a {} s delay): {} in {}",
        b.execution,
        b.confirm_delay_secs,
        count(b.bundled_rows, "row", "rows"),
        count(b.parts.len() as u64, "batch", "batches"),
    );
    for p in &b.parts {
        let _ = writeln!(
            out,
            "  #{:<3} {:<6} {:<10} {:>3} task(s){}",
            p.part,
            p.coin,
            p.chain,
            p.tasks,
            if p.review {
                "  (waits for the recipient review)"
            } else {
                ""
            }
        );
    }
    let singles = [
        (b.single_cwallet, "Cwallet transfers"),
        (
            b.single_recipient_pays_fee,
            "recipient pays the fee (a task cannot say so)",
        ),
        (b.single_long_memo, "memo longer than a task's 16 characters"),
    ];
    for (n, why) in singles {
        if n > 0 {
            let _ = writeln!(out, "  single creates: {} — {why}", count(n, "row", "rows"));
        }
    }
}

fn summary(out: &mut String, report: &CheckReport) {
    let plan = &report.plan;
    let r = &plan.requests;
    let _ = writeln!(out);
    if let Some(b) = &plan.bundles {
        bundles(out, b);
        let _ = writeln!(
            out,
            "submission: {} single withdrawals + about {} status queries + about {} batch-withdrawal requests = {} API requests, about {} at {} requests/s",
            r.withdrawals,
            r.status_queries,
            r.batch_requests,
            r.total,
            duration(r.seconds),
            r.rate_per_second
        );
    } else {
        let _ = writeln!(
            out,
            "submission: {} withdrawals + about {} status queries = {} API requests, about {} at {} requests/s",
            r.withdrawals,
            r.status_queries,
            r.total,
            duration(r.seconds),
            r.rate_per_second
        );
    }
    let checks = &plan.remote_checks;
    if checks.performed {
        let _ = writeln!(
            out,
            "recipients: {} and {} confirmed with CCPayment",
            count(checks.addresses_checked, "address", "addresses"),
            count(checks.cwallet_users_checked, "Cwallet ID", "Cwallet IDs")
        );
        if let Some(note) = &checks.note {
            let _ = writeln!(out, "recipients: {note}");
        }
    } else if let Some(why) = &checks.skipped_because {
        let _ = writeln!(out, "recipients: not confirmed with CCPayment ({why})");
    }
    if plan.approval_reasons.is_empty() {
        let _ = writeln!(out, "approval: not required");
    } else {
        let _ = writeln!(
            out,
            "approval: required, {} approver(s) ({})",
            plan.approvals_needed,
            plan.approval_reasons.join("; ")
        );
    }
    for blocker in &plan.blockers {
        let _ = writeln!(out, "blocked: {blocker}");
    }
    let _ = writeln!(out, "plan digest: {}", plan.digest);
    let c = &plan.counts;
    if plan.payable {
        let _ = writeln!(out, "verdict: payable, all {} rows", c.payable);
    } else {
        let _ = writeln!(
            out,
            "verdict: NOT payable as it is: {} payable, {} held, {} for recipient review, {} refused, {} duplicate of {} rows{}",
            c.payable,
            c.held,
            c.review,
            c.refused,
            c.duplicate,
            c.rows,
            if plan.blockers.is_empty() {
                ""
            } else {
                "; see blocked above"
            }
        );
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{} s", seconds.ceil())
    } else if seconds < 5400.0 {
        format!("{} min", (seconds / 60.0).ceil())
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let head: String = s.chars().take(max - 1).collect();
    format!("{head}…")
}

/// A plain table: columns padded to their widest cell, numbers right-aligned.
fn table<const N: usize>(out: &mut String, header: &[&str; N], rows: &[[String; N]], right: &[usize]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut text = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            text.push_str(if i == 0 { " " } else { "  " });
            if right.contains(&i) {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if i + 1 < N {
                    text.push_str(&" ".repeat(pad));
                }
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(out, header.to_vec());
    for row in rows {
        line(out, row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_summary_is_a_few_lines_with_the_first_warnings() {
        use crate::batch::diff::{self, BatchDiff, ChosenBy, DiffRow, PreviousBatch};
        let ids: Vec<String> = (0..5).map(|i| format!("emp-{i}")).collect();
        let row = |i: usize, amount: i64| DiffRow {
            line: i as u64 + 2,
            order_id: &ids[i],
            payee: &ids[i],
            coin: "USDT",
            chain: "TRX",
            recipient: "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K",
            memo: "",
            amount: rust_decimal::Decimal::from(amount),
        };
        let mut previous = diff::Previous::default();
        for i in 0..5 {
            previous.push(i as u32, &row(i, 10));
        }
        let compared = diff::compare(previous, (0..5).map(|i| row(i, 20)), rust_decimal::Decimal::from(20));
        let batch = PreviousBatch {
            batch_id: "ab".repeat(32),
            name: "payroll-abababababab".into(),
            source: "payroll-2026-11.csv".into(),
            created_ms: 0,
            created: "1970-01-01T00:00:00.000Z".into(),
        };
        let text = diff(&compared.finish("payroll".into(), ChosenBy::Series, batch, &[]));
        assert_eq!(
            text,
            "Compared with payroll-abababababab (1970-01-01T00:00:00.000Z): 0 added, 0 removed, 5 amount(s) changed by more than 20%, 0 destination(s) changed\n\
             \x20 totals: USDT 50 → 100 (+50)\n\
             \x20 ! line 2 emp-0: payee emp-0, 10 → 20 USDT\n\
             \x20 ! line 3 emp-1: payee emp-1, 10 → 20 USDT\n\
             \x20 ! line 4 emp-2: payee emp-2, 10 → 20 USDT\n\
             \x20 … and 2 more change(s)\n"
        );
        let none = BatchDiff::no_previous("payroll".into(), ChosenBy::Series, rust_decimal::Decimal::from(20));
        assert_eq!(
            diff(&none),
            "Compared with: no earlier batch of the series \"payroll\"\n"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(2.2), "3 s");
        assert_eq!(duration(600.0), "10 min");
        assert_eq!(duration(36_000.0), "10.0 h");
    }

    #[test]
    fn tables_align_and_right_align_numbers() {
        let mut out = String::new();
        table(
            &mut out,
            &["a", "n"],
            &[["xx".to_owned(), "1".to_owned()], ["y".to_owned(), "100".to_owned()]],
            &[1],
        );
        assert_eq!(out, "  a     n\n  xx    1\n  y   100\n");
    }
}
