//! From a checked batch to the records the engine works on: one [`OrderRecord`] per accepted
//! row in its first state, and a [`BatchRecord`] that remembers the plan, the refused rows and
//! whether approval is needed.
//!
//! The two are computed apart so a big batch is never held as records: [`batch_record`] counts
//! the orders without building them, and [`orders`] builds them one at a time for the store to
//! write in chunks. Both decide each row's fate through the same function, so the record's
//! `orders` is the number of records [`orders`] yields.
//!
//! Every initial state is reached through the state machine (`Release`, then `Hold` for rows
//! on a chain in maintenance), so there is no second way into a state. Pure: no I/O.

use std::collections::BTreeMap;
use std::path::Path;

use crate::batch::bundles::{Grouper, Place};
use crate::batch::plan::Verdict;
use crate::batch::preflight::Prepared;
use crate::batch::request::{has_call, withdraw_call};
use crate::batch::validate::{Row, payload_digest};
use crate::model::ApiGeneration;
use crate::model::bundle::{BundleRecord, TaskRef, bundle_id};
use crate::model::record::{
    Approval, BatchRecord, BatchState, InputRow, OrderRecord, RecipientPart, RecipientReview, RefusedRow, RetryOf,
    ReviewKind,
};
use crate::model::state::{Event, OrderState, transition};

/// How long a row held at intake (chain in maintenance, coin suspended) waits before its first
/// send is tried; CCPayment's answer then decides (14004 defers it again with backoff).
pub const HOLD_RECHECK_MS: i64 = 60_000;

/// What intake makes of a validated row, given its plan verdict.
enum Fate<'a> {
    /// An order; `hold` is why its first send waits, if it does; `review`, whether it waits
    /// for the recipient review.
    Order {
        hold: Option<&'a str>,
        review: Option<ReviewKind>,
    },
    /// Refused by the plan (remote checks, policy, fees).
    Refused(&'a [String]),
    /// Already in an earlier batch with the same payload.
    Duplicate(&'a str),
    /// The row lacks what its API generation needs (validation refuses such rows already).
    NoCall,
}

fn fate<'a>(row: &Row, verdict: &'a Verdict, generation: ApiGeneration) -> Fate<'a> {
    match verdict {
        Verdict::Refused { reasons } => Fate::Refused(reasons),
        Verdict::Duplicate { earlier_batch } => Fate::Duplicate(earlier_batch),
        _ if !has_call(row, generation) => Fate::NoCall,
        Verdict::Payable => Fate::Order {
            hold: None,
            review: None,
        },
        Verdict::Held { reason } => Fate::Order {
            hold: Some(reason),
            review: None,
        },
        Verdict::Review { review, .. } => Fate::Order {
            hold: None,
            review: Some(*review),
        },
    }
}

/// Whether a validated row with this plan verdict becomes an order (the rows the diff to last
/// time compares).
pub fn becomes_order(row: &Row, verdict: &Verdict, generation: ApiGeneration) -> bool {
    matches!(fate(row, verdict, generation), Fate::Order { .. })
}

/// An accepted row's index among the validated rows, and its fate's details.
struct Accepted<'a> {
    index: usize,
    row: &'a Row,
    hold: Option<&'a str>,
    review: Option<ReviewKind>,
}

/// The accepted rows with their holds, in file order: the rows that become orders.
fn accepted(prepared: &Prepared, generation: ApiGeneration) -> impl Iterator<Item = Accepted<'_>> {
    // Plan rows are built one per validated row, in the same order.
    prepared
        .validated
        .rows
        .iter()
        .zip(prepared.report.plan.rows.verdicts())
        .enumerate()
        .filter_map(move |(index, (row, verdict))| match fate(row, verdict, generation) {
            Fate::Order { hold, review } => Some(Accepted {
                index,
                row,
                hold,
                review,
            }),
            _ => None,
        })
}

/// The batch record for a prepared batch: counts, refused rows and approval, without building
/// any order.
pub fn batch_record(prepared: &Prepared, source: &Path, generation: ApiGeneration, now_ms: i64) -> BatchRecord {
    let report = &prepared.report;
    let plan = &report.plan;
    let v = &prepared.validated;
    let needs_approval = !plan.approval_reasons.is_empty();

    let mut orders = 0u64;
    let mut retries = 0u64;
    let mut refused: Vec<RefusedRow> = Vec::new();
    for (row, verdict) in v.rows.iter().zip(plan.rows.verdicts()) {
        let line = u64::from(row.line);
        let order_id = || Some(v.order_id(row).to_owned());
        match fate(row, verdict, generation) {
            Fate::Order { .. } => {
                orders += 1;
                retries += u64::from(!v.original_order_id(row).is_empty());
            }
            Fate::Refused(reasons) => refused.push(RefusedRow {
                line,
                order_id: order_id(),
                problems: reasons.to_vec(),
                duplicate_of_batch: None,
            }),
            Fate::Duplicate(earlier_batch) => refused.push(RefusedRow {
                line,
                order_id: order_id(),
                problems: vec![format!("already in batch {earlier_batch}")],
                duplicate_of_batch: Some(earlier_batch.to_owned()),
            }),
            Fate::NoCall => refused.push(RefusedRow {
                line,
                order_id: order_id(),
                problems: vec!["the row lacks the coin or chain its API version needs".into()],
                duplicate_of_batch: None,
            }),
        }
    }

    // Rows refused by validation, one entry per line with every problem.
    let mut by_line: BTreeMap<u64, RefusedRow> = BTreeMap::new();
    for p in v.problems.iter().filter(|p| p.line.is_some()) {
        let line = p.line.unwrap_or(0);
        let entry = by_line.entry(line).or_insert_with(|| RefusedRow {
            line,
            order_id: p.order_id.clone(),
            problems: Vec::new(),
            duplicate_of_batch: None,
        });
        entry.problems.push(match &p.field {
            Some(field) => format!("{field}: {}", p.message),
            None => p.message.clone(),
        });
    }
    for d in &v.duplicates {
        by_line.entry(d.line).or_insert_with(|| RefusedRow {
            line: d.line,
            order_id: Some(d.order_id.clone()),
            problems: vec![format!("already in batch {}", d.earlier_batch)],
            duplicate_of_batch: Some(d.earlier_batch.clone()),
        });
    }
    // Plan-level refusals (remote checks, policy, fees) are already in `refused`; validation's
    // problems for those lines were none, so the two sets do not overlap.
    refused.extend(by_line.into_values());
    refused.sort_by_key(|r| r.line);

    let stem = source
        .file_stem()
        .map_or_else(|| "batch".to_owned(), |s| s.to_string_lossy().into_owned());
    BatchRecord {
        batch_id: report.sha256.clone().into(),
        name: format!("{stem}-{}", &report.sha256[..12.min(report.sha256.len())]),
        source: source.display().to_string(),
        format: report.format.clone(),
        api: generation,
        plan_digest: plan.digest.clone(),
        created_ms: now_ms,
        updated_ms: now_ms,
        rows: plan.counts.rows,
        orders: u32::try_from(orders).unwrap_or(u32::MAX),
        refused,
        approval: if needs_approval {
            Approval::required(plan.approval_reasons.clone(), plan.approvals_needed)
        } else {
            Approval::NotNeeded
        },
        state: BatchState::Open,
        signer: report.signer.clone(),
        maker_may_approve: plan.maker_may_approve,
        recipients: plan.review.as_ref().map(|review| RecipientPart {
            digest: review.digest.clone(),
            orders: u32::try_from(review.rows).unwrap_or(u32::MAX),
            approval: Approval::required(
                vec![format!(
                    "{} row(s) to new destinations and {} to changed payee destinations wait for the recipient review",
                    review.new, review.changed
                )],
                review.approvals_needed,
            ),
        }),
        bundles: plan.bundles.as_ref().map(|b| b.settings),
        // Which batches the retried orders were in is the store's to say (see `retries`).
        retry_of: (retries > 0).then(|| RetryOf {
            orders: u32::try_from(retries).unwrap_or(u32::MAX),
            batches: Vec::new(),
        }),
    }
}

/// The accepted rows that retry an order, as (order_id, original_order_id), in file order: what
/// the store links when the batch is taken in.
pub fn retries(prepared: &Prepared, generation: ApiGeneration) -> Vec<(String, String)> {
    let v = &prepared.validated;
    accepted(prepared, generation)
        .filter(|a| !v.original_order_id(a.row).is_empty())
        .map(|a| (v.order_id(a.row).to_owned(), v.original_order_id(a.row).to_owned()))
        .collect()
}

/// The (part, seq) an accepted row takes in batch mode, from the grouper (called once per
/// accepted row, in file order); `None` in single mode or for a row kept on a single create.
fn place_of(prepared: &Prepared, grouper: &mut Grouper, accepted: &Accepted<'_>) -> Option<(u32, u32)> {
    prepared.report.plan.bundles.as_ref()?;
    let verdict = prepared.report.plan.rows.verdict(accepted.index)?;
    match grouper.place(accepted.row, &prepared.validated, &prepared.catalogue, verdict) {
        Place::Task { part, seq } => Some((part, seq)),
        Place::Single(_) => None,
    }
}

/// The `batchOrderId` of a part the grouper opened.
fn id_of(prepared: &Prepared, grouper: &Grouper, part: u32) -> Option<String> {
    let p = grouper.parts().get(usize::try_from(part).ok()?.checked_sub(1)?)?;
    Some(bundle_id(&prepared.report.sha256, &p.coin, &p.chain, part))
}

/// The bundles of a prepared batch in batch mode (none otherwise): each with its orders in
/// seq order, waiting to be applied.
pub fn bundles(prepared: &Prepared, generation: ApiGeneration, now_ms: i64) -> Vec<BundleRecord> {
    let Some(plan) = prepared.report.plan.bundles.as_ref() else {
        return Vec::new();
    };
    let mut grouper = Grouper::default();
    let mut orders: Vec<Vec<String>> = vec![Vec::new(); plan.parts.len()];
    for accepted in accepted(prepared, generation) {
        if let Some((part, _)) = place_of(prepared, &mut grouper, &accepted)
            && let Some(list) = orders.get_mut(part as usize - 1)
        {
            list.push(prepared.validated.order_id(accepted.row).to_owned());
        }
    }
    grouper
        .parts()
        .iter()
        .zip(orders)
        .map(|(part, orders)| {
            BundleRecord::new(
                prepared.report.sha256.clone().into(),
                part.part,
                part.coin_id,
                &part.coin,
                &part.chain,
                plan.settings,
                orders,
                now_ms,
            )
        })
        .collect()
}

/// The order records of a prepared batch, built one at a time in file order (`seq` from 0):
/// exactly `batch_record(..).orders` of them.
pub fn orders(prepared: &Prepared, generation: ApiGeneration, now_ms: i64) -> impl Iterator<Item = OrderRecord> + '_ {
    let needs_approval = !prepared.report.plan.approval_reasons.is_empty();
    let mut grouper = Grouper::default();
    accepted(prepared, generation)
        .enumerate()
        .filter_map(move |(seq, accepted)| {
            let seq = u32::try_from(seq).unwrap_or(u32::MAX);
            let task = place_of(prepared, &mut grouper, &accepted).and_then(|(part, seq)| {
                Some(TaskRef {
                    bundle: id_of(prepared, &grouper, part)?,
                    seq,
                    ccp_order_id: None,
                })
            });
            let mut order = order(prepared, &accepted, seq, needs_approval, generation, now_ms)?;
            order.task = task;
            Some(order)
        })
}

/// The records for a prepared batch, all at once: for small batches and tests. Ingest streams
/// [`orders`] into the store instead.
pub fn build(
    prepared: &Prepared,
    source: &Path,
    generation: ApiGeneration,
    now_ms: i64,
) -> (BatchRecord, Vec<OrderRecord>) {
    (
        batch_record(prepared, source, generation, now_ms),
        orders(prepared, generation, now_ms).collect(),
    )
}

fn order(
    prepared: &Prepared,
    accepted: &Accepted<'_>,
    seq: u32,
    needs_approval: bool,
    generation: ApiGeneration,
    now_ms: i64,
) -> Option<OrderRecord> {
    let (row, hold) = (accepted.row, accepted.hold);
    let v = &prepared.validated;
    let cat = &prepared.catalogue;
    // `accepted` passes only rows that have a call.
    let call = withdraw_call(row, v, cat, generation)?;
    // A row held for the recipient review waits for its own approval whatever the batch's.
    let needs_approval = needs_approval || accepted.review.is_some();
    // Release through the state machine; these transitions cannot fail from Planned.
    let (mut state, attempts) =
        transition(&OrderState::Planned, 0, &Event::Release { needs_approval }).unwrap_or((OrderState::Planned, 0));
    if let (Some(reason), OrderState::Queued) = (hold, &state) {
        let until_ms = now_ms + HOLD_RECHECK_MS;
        let event = Event::Hold {
            until_ms,
            reason: reason.to_owned(),
        };
        state = transition(&state, attempts, &event).map_or(state, |(s, _)| s);
    }
    let order_id = v.order_id(row).to_owned();
    Some(OrderRecord {
        order_id: order_id.clone().into(),
        batch_id: prepared.report.sha256.clone().into(),
        seq,
        line: u64::from(row.line),
        input: InputRow {
            order_id,
            recipient: v.recipient(row).to_owned(),
            coin: row.coin.map(|c| cat.coin(c).symbol.clone()).unwrap_or_default(),
            chain: row.chain.map(|c| cat.chain_name(c).to_owned()).unwrap_or_default(),
            amount: row.amount.canonical(),
            memo: v.memo(row).to_owned(),
            merchant_pays_fee: if row.merchant_pays_fee {
                "true".into()
            } else {
                "false".into()
            },
            reference: v.reference(row).to_owned(),
            token_id: v.token_id(row).to_owned(),
            payee: v.payee(row).to_owned(),
            original_order_id: v.original_order_id(row).to_owned(),
        },
        call,
        payload_digest: hex::encode(payload_digest(row, v, cat)),
        state,
        attempts,
        record_id: None,
        tx_id: None,
        fee: None,
        error: None,
        created_ms: now_ms,
        updated_ms: now_ms,
        first_sent_ms: None,
        last_sent_ms: None,
        final_ms: None,
        next_check_ms: None,
        checks: 0,
        absent: None,
        review: accepted.review.map(|kind| RecipientReview {
            kind,
            previous: prepared.report.plan.rows.previous_destination(accepted.index).cloned(),
        }),
        task: None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use rust_decimal::Decimal;

    use super::*;
    use crate::batch::catalogue::tests::sample;
    use crate::batch::plan::{self, FeeQuote, PlanSettings, PreflightAnswers};
    use crate::batch::preflight::CheckReport;
    use crate::batch::validate::{NoKnownOrders, validate_csv};
    use crate::model::state::StateKind;
    use crate::rules::policy::{ApprovalRule, Policy};

    const TRON: &str = "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K";
    const EVM: &str = "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d";

    /// A prepared batch over the sample catalogue: POLYGON in maintenance when `polygon` says so.
    fn prepared(text: &str, polygon: &str, approval: ApprovalRule) -> Prepared {
        let catalogue = Arc::new(sample(polygon));
        let validated = Arc::new(validate_csv(&catalogue, ApiGeneration::V2, false, text, &NoKnownOrders));
        let answers = PreflightAnswers {
            fees: HashMap::from([
                (
                    (1280, "TRX".to_owned()),
                    FeeQuote {
                        coin_id: 1280,
                        symbol: "USDT".into(),
                        amount: Decimal::ONE,
                    },
                ),
                (
                    (1280, "POLYGON".to_owned()),
                    FeeQuote {
                        coin_id: 1280,
                        symbol: "USDT".into(),
                        amount: Decimal::ONE,
                    },
                ),
            ]),
            balances: HashMap::from([(1280, Decimal::from(1_000_000))]),
            ..PreflightAnswers::default()
        };
        let policy = Policy {
            approval,
            ..Policy::default()
        };
        let nothing_today = |_: &str| Decimal::ZERO;
        let settings = PlanSettings {
            policy: &policy,
            balance_margin: Decimal::ZERO,
            rate_per_second: 10,
            paid_today: &nothing_today,
            deny: &crate::rules::deny::DenyLists::default(),
            recipients: None,
            bundles: None,
        };
        let plan = plan::build(&validated, &catalogue, &answers, &settings);
        let report = CheckReport {
            file: "batch.csv".into(),
            format: "CSV".into(),
            size_bytes: text.len() as u64,
            sha256: "ab".repeat(32),
            preflight_requests: 0,
            signer: None,
            plan,
            diff: None,
            no_diff: None,
        };
        Prepared {
            report,
            validated,
            catalogue,
            chains: Vec::new(),
        }
    }

    #[test]
    fn accepted_rows_become_queued_orders_held_rows_deferred_and_the_rest_refused() {
        let text = format!(
            "order_id,recipient,coin,chain,amount\nok-0001,{TRON},USDT,TRX,5\nheld-0001,{EVM},USDT,POLYGON,5\nbad-0001,{TRON},USDT,TRX,-5\n"
        );
        let p = prepared(&text, "Maintenance", ApprovalRule::Never);
        let (batch, orders) = build(&p, Path::new("/in/payroll.csv"), ApiGeneration::V2, 1_000);
        assert_eq!(batch.name, format!("payroll-{}", &"ab".repeat(6)));
        assert_eq!((batch.rows, batch.orders), (3, 2));
        assert_eq!(batch.approval, Approval::NotNeeded);

        assert_eq!(orders[0].order_id, "ok-0001");
        assert_eq!(orders[0].kind(), StateKind::Queued);
        assert_eq!((orders[0].seq, orders[0].line, orders[0].attempts), (0, 2, 0));
        assert_eq!(
            orders[1].kind(),
            StateKind::Deferred,
            "a row on a chain in maintenance waits"
        );
        assert_eq!(orders[1].due_ms(), 1_000 + HOLD_RECHECK_MS);

        assert_eq!(batch.refused.len(), 1);
        assert_eq!(batch.refused[0].line, 4);
        assert!(
            batch.refused[0].problems[0].starts_with("amount: "),
            "{:?}",
            batch.refused[0]
        );
    }

    #[test]
    fn a_batch_that_needs_approval_starts_with_every_order_awaiting_it() {
        let text =
            format!("order_id,recipient,coin,chain,amount\nap-0001,{TRON},USDT,TRX,5\nap-0002,{TRON},USDT,TRX,6\n");
        let p = prepared(&text, "Normal", ApprovalRule::Always);
        let (batch, orders) = build(&p, Path::new("a.csv"), ApiGeneration::V2, 0);
        assert!(matches!(batch.approval, Approval::Required { .. }));
        assert!(orders.iter().all(|o| o.kind() == StateKind::AwaitingApproval));
        // The call each order sends is fixed at intake, amount in canonical form.
        assert_eq!(orders[1].call.amount(), "6");
        assert_eq!(orders[1].call.order_id(), "ap-0002");
    }

    #[test]
    fn the_batch_record_counts_exactly_the_orders_that_are_streamed() {
        // Payable, held, refused by validation, refused by the plan (the fee eats the amount),
        // payable again: the orders skip the refused rows and number the rest from 0.
        let text = format!(
            "order_id,recipient,coin,chain,amount\nok-0001,{TRON},USDT,TRX,5\nheld-0001,{EVM},USDT,POLYGON,5\nbad-0001,{TRON},USDT,TRX,-5\nfee-0001,{TRON},USDT,TRX,1\nok-0002,{TRON},USDT,TRX,7\n"
        );
        let p = prepared(&text, "Maintenance", ApprovalRule::Never);
        assert_eq!(p.report.plan.rows.len(), p.validated.rows.len());
        let batch = batch_record(&p, Path::new("mix.csv"), ApiGeneration::V2, 5);
        let streamed: Vec<OrderRecord> = orders(&p, ApiGeneration::V2, 5).collect();
        assert_eq!(batch.orders as usize, streamed.len());
        let ids: Vec<&str> = streamed.iter().map(|o| o.order_id.as_str()).collect();
        assert_eq!(ids, ["ok-0001", "held-0001", "ok-0002"]);
        assert!(streamed.iter().enumerate().all(|(i, o)| o.seq as usize == i));
        assert!(streamed.iter().all(|o| o.batch_id == batch.batch_id));
        let refused: Vec<(u64, bool)> = batch
            .refused
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.problems.iter().any(|m| m.contains("does not cover the network fee")),
                )
            })
            .collect();
        assert_eq!(refused, [(4, false), (5, true)]);
        // All at once, the same records.
        assert_eq!(build(&p, Path::new("mix.csv"), ApiGeneration::V2, 5), (batch, streamed));
    }

    #[test]
    fn the_plan_rows_are_built_in_full_on_demand() {
        let text = format!(
            "order_id,recipient,coin,chain,amount,merchant_pays_fee\nrow-0001,{TRON},USDT,TRX,5,false\nrow-0002,{EVM},USDT,POLYGON,5,true\n"
        );
        let p = prepared(&text, "Normal", ApprovalRule::Never);
        let rows = &p.report.plan.rows;
        let all: Vec<_> = rows.iter().collect();
        assert_eq!(all.len(), 2);
        assert_eq!(rows.get(1).as_ref(), Some(&all[1]));
        assert_eq!(rows.get(2), None);
        let first = &all[0];
        assert_eq!(
            (
                first.line,
                first.order_id.as_str(),
                first.coin.as_str(),
                first.chain.as_str()
            ),
            (2, "row-0001", "USDT", "TRX")
        );
        // The receiver pays the fee of 1 USDT out of 5; on the second row the merchant does.
        assert_eq!(
            (
                first.fee.as_deref(),
                first.fee_coin.as_deref(),
                first.receiver_gets.as_deref()
            ),
            (Some("1"), Some("USDT"), Some("4"))
        );
        assert_eq!(all[1].receiver_gets.as_deref(), Some("5"));
        assert_eq!(rows.verdict(0), Some(&Verdict::Payable));
        // JSON: the list of full rows.
        let json = serde_json::to_value(rows).unwrap();
        assert_eq!(json, serde_json::to_value(&all).unwrap());
        assert_eq!(json[1]["order_id"], "row-0002");
        assert_eq!(json[1]["verdict"], "payable");
    }
}
