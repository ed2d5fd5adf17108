//! The invariants a run must end in, checked against the world's ledger (the ground truth) with
//! the store opened again from disk and the reports read back from their files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::RunReport;
use super::scenario::Scenario;
use crate::api::types::RecordStatus;
use crate::model::ApiGeneration;
use crate::model::record::{BatchState, OrderRecord};
use crate::model::state::StateKind;
use crate::report::ReportPaths;
use crate::sandbox::world::World;
use crate::sandbox::{AttemptOutcome, LedgerPayout};
use crate::store::Store;

/// The parts of a `<batch>.result.json` row the checks read.
#[derive(Debug, Deserialize)]
struct ResultFile {
    rows: Vec<ResultRow>,
}

#[derive(Debug, Deserialize)]
struct ResultRow {
    line: u64,
    order_id: Option<String>,
    status: String,
    record_id: Option<String>,
    amount_sent: Option<String>,
}

/// Every invariant, each broken one a line in `report.violations`; fills in the figures.
pub fn all(scenario: &Scenario, dir: &Path, world: &Arc<Mutex<World>>, report: &mut RunReport) {
    let (ledger, stats) = {
        let world = world.lock().unwrap_or_else(PoisonError::into_inner);
        (world.ledger(), world.stats())
    };
    report.payouts = ledger.payouts.len();
    report.faults = ledger
        .attempts
        .iter()
        .filter(|a| matches!(a.outcome, AttemptOutcome::Fault { .. }))
        .count();
    report.requests = stats.requests.iter().map(|r| r.count).sum();
    report.rate_limited = stats.with_code(11004);
    report.daily_limited = stats.with_code(11009);
    let violations = &mut report.violations;

    let accepted: BTreeMap<&str, &super::scenario::Row> =
        scenario.accepted().map(|r| (r.order_id.as_str(), r)).collect();
    let refused: BTreeSet<&str> = scenario
        .batches
        .iter()
        .flat_map(|b| b.rows.iter())
        .filter(|r| r.refused)
        .map(|r| r.order_id.as_str())
        .collect();

    // The ledger alone: one payout per orderId at most, and only for accepted rows. A batch
    // withdrawal's task is ccpayout's order by its remark (its orderId is CCPayment's own).
    let mut payouts: BTreeMap<&str, Vec<&LedgerPayout>> = BTreeMap::new();
    for p in &ledger.payouts {
        payouts.entry(p.merchant_ref()).or_default().push(p);
    }
    for (id, ps) in &payouts {
        if ps.len() > 1 {
            violations.push(format!("{id} was paid {} times", ps.len()));
        }
        if !accepted.contains_key(id) {
            violations.push(format!("{id} was paid but is not an accepted row"));
        }
    }
    for attempt in &ledger.attempts {
        if refused.contains(attempt.order_id.as_str()) && !accepted.contains_key(attempt.order_id.as_str()) {
            violations.push(format!("{} was refused by validation but sent", attempt.order_id));
        }
    }

    // The store, opened again from disk.
    let store = match Store::open(&dir.join("state")) {
        Ok(store) => store,
        Err(e) => {
            violations.push(format!("the store does not open after the run: {e}"));
            return;
        }
    };
    if let Err(e) = store.verify_audit() {
        violations.push(format!("the audit chain does not verify: {e}"));
    }
    let batches = match store.batches() {
        Ok(b) => b,
        Err(e) => {
            violations.push(format!("the batches cannot be read: {e}"));
            return;
        }
    };
    let mut seen: BTreeMap<String, OrderRecord> = BTreeMap::new();
    for batch in &batches {
        if batch.state != BatchState::Done {
            violations.push(format!("batch {} is {:?}, not done", batch.name, batch.state));
        }
        match store.batch_orders(&batch.batch_id) {
            Ok(orders) => {
                for order in orders {
                    if seen.insert(order.order_id.to_string(), order.clone()).is_some() {
                        violations.push(format!("{} is stored twice", order.order_id));
                    }
                }
            }
            Err(e) => violations.push(format!("the orders of {} cannot be read: {e}", batch.name)),
        }
        check_report(dir, &batch.name, &payouts, scenario.generation, violations);
    }

    // Every accepted row is stored, final, and agrees with the ledger.
    for (id, row) in &accepted {
        let Some(order) = seen.get(*id) else {
            violations.push(format!("{id} was accepted but is not in the store"));
            continue;
        };
        let sent = crate::rules::amount::Amount::parse(&row.amount).map(|a| a.canonical());
        if sent.as_deref().ok() != Some(order.call.amount()) {
            violations.push(format!(
                "{id} sends {} for the row's {}",
                order.call.amount(),
                row.amount
            ));
        }
        let kind = order.kind();
        if !kind.is_final() {
            violations.push(format!("{id} ended {kind}, not final"));
            continue;
        }
        let found = payouts.get(*id).and_then(|ps| ps.first());
        let problem = match (kind, found) {
            (StateKind::Success, Some(p)) if p.status == RecordStatus::Success => None,
            (StateKind::Failed, Some(p)) if p.status == RecordStatus::Failed => None,
            (StateKind::Rejected | StateKind::Cancelled, None) => None,
            (StateKind::Success | StateKind::Failed, None) => Some("the ledger has no payout".to_owned()),
            (_, Some(p)) => Some(format!("the ledger's payout {} is {}", p.record_id, p.status.as_str())),
            (_, None) => Some("there is no payout".to_owned()),
        };
        if let Some(problem) = problem {
            violations.push(format!("{id} ended {kind}, but {problem}"));
        }
        if let (Some(p), Some(record)) = (found, &order.record_id)
            && record != &p.record_id
        {
            violations.push(format!("{id} stored record {record}, the ledger paid {}", p.record_id));
        }
    }
    for id in seen.keys() {
        if !accepted.contains_key(id.as_str()) {
            violations.push(format!("{id} is stored but was never an accepted row"));
        }
    }
    let outcome = outcome(&ledger.payouts, &seen, report.requests);
    report.digest = hex::encode(&Sha256::digest(outcome.as_bytes())[..8]);
    // Beside the state of a run that is kept: two replays of a seed must write the same file.
    let _ = std::fs::write(dir.join("outcome.txt"), outcome);
}

/// Each row of a batch's result report agrees with the ledger.
/// On v1 a record id comes only from the withdraw's own reply (bills name CCPayment's order id
/// instead), so a v1 payout whose reply was lost is reported without one; on v2 every paid row
/// has its record id.
fn check_report(
    dir: &Path,
    batch_name: &str,
    payouts: &BTreeMap<&str, Vec<&LedgerPayout>>,
    generation: ApiGeneration,
    violations: &mut Vec<String>,
) {
    let path = ReportPaths::new(&dir.join("reports"), batch_name).result_json;
    let file: ResultFile = match std::fs::read(&path).map(|bytes| serde_json::from_slice(&bytes)) {
        Ok(Ok(file)) => file,
        Ok(Err(e)) => return violations.push(format!("{} is not a result report: {e}", path.display())),
        Err(e) => return violations.push(format!("no report {}: {e}", path.display())),
    };
    for row in &file.rows {
        let Some(id) = row.order_id.as_deref().filter(|id| !id.is_empty()) else {
            continue;
        };
        let found = payouts.get(id).and_then(|ps| ps.first());
        let same_record = |p: &LedgerPayout| match row.record_id.as_deref().filter(|r| !r.is_empty()) {
            Some(record) => record == p.record_id,
            None => generation == ApiGeneration::V1,
        };
        let agrees = match (row.status.as_str(), found) {
            ("success", Some(p)) => p.status == RecordStatus::Success && same_record(p),
            ("failed", Some(p)) => p.status == RecordStatus::Failed && same_record(p),
            ("rejected" | "refused" | "duplicate" | "cancelled", None) => true,
            _ => false,
        };
        if !agrees {
            violations.push(format!(
                "report {batch_name} line {}: {id} is {} but the ledger {}",
                row.line,
                row.status,
                match found {
                    Some(p) => format!("has payout {} {}", p.record_id, p.status.as_str()),
                    None => "has no payout".to_owned(),
                }
            ));
        }
        if let (Some(p), Some(amount)) = (found, row.amount_sent.as_ref().filter(|a| !a.is_empty()))
            && amount != &p.amount
        {
            violations.push(format!(
                "report {batch_name} line {}: amount {amount}, the ledger paid {}",
                row.line, p.amount
            ));
        }
    }
}

/// How the run ended, one line per payout and per order: the ledger, every order's state,
/// attempts, checks and final time, and the requests made.
fn outcome(payouts: &[LedgerPayout], orders: &BTreeMap<String, OrderRecord>, requests: u64) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for p in payouts {
        let _ = writeln!(
            text,
            "payout {} {} {} {} {}",
            p.order_id,
            p.record_id,
            p.amount,
            p.status.as_str(),
            p.created_ms
        );
    }
    for (id, order) in orders {
        let _ = writeln!(
            text,
            "order {id} {} attempts={} checks={} final_ms={}",
            order.kind(),
            order.attempts,
            order.checks,
            order.final_ms.unwrap_or(0)
        );
    }
    let _ = writeln!(text, "requests {requests}");
    text
}
