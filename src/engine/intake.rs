//! From a checked batch to the records the engine works on: one [`OrderRecord`] per accepted
//! row in its first state, and a [`BatchRecord`] that remembers the plan, the refused rows and
//! whether approval is needed.
//!
//! Every initial state is reached through the state machine (`Release`, then `Hold` for rows
//! on a chain in maintenance), so there is no second way into a state. Pure: no I/O.

use std::collections::BTreeMap;
use std::path::Path;

use super::record::{Approval, BatchRecord, BatchState, InputRow, OrderRecord, RefusedRow};
use super::state::{Event, OrderState, transition};
use crate::batch::plan::Verdict;
use crate::batch::preflight::Prepared;
use crate::batch::request::withdraw_call;
use crate::batch::validate::payload_digest;
use crate::config::ApiGeneration;

/// How long a row held at intake (chain in maintenance, coin suspended) waits before its first
/// send is tried; CCPayment's answer then decides (14004 defers it again with backoff).
pub const HOLD_RECHECK_MS: i64 = 60_000;

/// The records for a prepared batch.
pub fn build(
    prepared: &Prepared,
    source: &Path,
    generation: ApiGeneration,
    now_ms: i64,
) -> (BatchRecord, Vec<OrderRecord>) {
    let report = &prepared.report;
    let plan = &report.plan;
    let v = &prepared.validated;
    let cat = &prepared.catalogue;
    let needs_approval = !plan.approval_reasons.is_empty();

    let mut orders = Vec::with_capacity(v.rows.len());
    let mut refused: Vec<RefusedRow> = Vec::new();
    // Plan rows are built one per validated row, in the same order.
    for (row, row_plan) in v.rows.iter().zip(&plan.rows) {
        let line = u64::from(row.line);
        let order_id = v.order_id(row).to_owned();
        let (state, hold) = match &row_plan.verdict {
            Verdict::Payable => (OrderState::Planned, None),
            Verdict::Held { reason } => (OrderState::Planned, Some(reason.clone())),
            Verdict::Refused { reasons } => {
                refused.push(RefusedRow {
                    line,
                    order_id: Some(order_id),
                    problems: reasons.clone(),
                    duplicate_of_batch: None,
                });
                continue;
            }
            Verdict::Duplicate { earlier_batch } => {
                refused.push(RefusedRow {
                    line,
                    order_id: Some(order_id),
                    problems: vec![format!("already in batch {earlier_batch}")],
                    duplicate_of_batch: Some(earlier_batch.clone()),
                });
                continue;
            }
        };
        let Some(call) = withdraw_call(row, v, cat, generation) else {
            refused.push(RefusedRow {
                line,
                order_id: Some(order_id),
                problems: vec!["the row lacks the coin or chain its API version needs".into()],
                duplicate_of_batch: None,
            });
            continue;
        };
        // Release through the state machine; these transitions cannot fail from Planned.
        let (mut state, attempts) =
            transition(&state, 0, &Event::Release { needs_approval }).unwrap_or((OrderState::Planned, 0));
        if let (Some(reason), OrderState::Queued) = (hold, &state) {
            let until_ms = now_ms + HOLD_RECHECK_MS;
            state = transition(&state, attempts, &Event::Hold { until_ms, reason }).map_or(state, |(s, _)| s);
        }
        let coin = row.coin.map(|c| cat.coin(c).symbol.clone()).unwrap_or_default();
        let chain = row.chain.map(|c| cat.chain_name(c).to_owned()).unwrap_or_default();
        orders.push(OrderRecord {
            order_id: order_id.clone(),
            batch_id: report.sha256.clone(),
            seq: u32::try_from(orders.len()).unwrap_or(u32::MAX),
            line,
            input: InputRow {
                order_id,
                recipient: v.recipient(row).to_owned(),
                coin,
                chain,
                amount: row.amount.canonical(),
                memo: v.memo(row).to_owned(),
                merchant_pays_fee: if row.merchant_pays_fee {
                    "true".into()
                } else {
                    "false".into()
                },
                reference: v.reference(row).to_owned(),
                token_id: v.token_id(row).to_owned(),
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
        });
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
    let batch = BatchRecord {
        batch_id: report.sha256.clone(),
        name: format!("{stem}-{}", &report.sha256[..12.min(report.sha256.len())]),
        source: source.display().to_string(),
        format: report.format.clone(),
        api: match generation {
            ApiGeneration::V2 => "v2".into(),
            ApiGeneration::V1 => "v1".into(),
        },
        plan_digest: plan.digest.clone(),
        created_ms: now_ms,
        updated_ms: now_ms,
        rows: plan.counts.rows,
        orders: u32::try_from(orders.len()).unwrap_or(u32::MAX),
        refused,
        approval: if needs_approval {
            Approval::Required {
                reasons: plan.approval_reasons.clone(),
            }
        } else {
            Approval::NotNeeded
        },
        state: BatchState::Open,
    };
    (batch, orders)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use rust_decimal::Decimal;

    use super::*;
    use crate::batch::plan::{self, FeeQuote, PlanSettings, PreflightAnswers};
    use crate::batch::preflight::CheckReport;
    use crate::batch::validate::{NoKnownOrders, validate_csv};
    use crate::catalogue::tests::sample;
    use crate::engine::state::StateKind;
    use crate::policy::{ApprovalRule, Policy};

    const TRON: &str = "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K";
    const EVM: &str = "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d";

    /// A prepared batch over the sample catalogue: POLYGON in maintenance when `polygon` says so.
    fn prepared(text: &str, polygon: &str, approval: ApprovalRule) -> Prepared {
        let catalogue = Arc::new(sample(polygon));
        let validated = validate_csv(&catalogue, ApiGeneration::V2, false, text, &NoKnownOrders);
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
        };
        let plan = plan::build(&validated, &catalogue, &answers, &settings);
        let report = CheckReport {
            file: "batch.csv".into(),
            format: "CSV".into(),
            size_bytes: text.len() as u64,
            sha256: "ab".repeat(32),
            preflight_requests: 0,
            plan,
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
}
