//! The world's side of persistence: [`World::snapshot`] takes the durable state, and
//! [`World::restore`] checks a snapshot and rebuilds the indexes from it. The file format and
//! the file itself are `persist.rs`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;

use super::batches::{Batch, BatchStatus, Mode, Task, TaskState};
use super::limits::DayCounters;
use super::rng::SplitMix64;
use super::{Payout, World};
use crate::api::types::RecordStatus;
use crate::sandbox::RepeatedBatch;
use crate::sandbox::persist::{
    BatchSnapshot, DaySnapshot, DebitSnapshot, OLDEST_SNAPSHOT_VERSION, PayoutSnapshot, RngSnapshot, SNAPSHOT_VERSION,
    Snapshot, TaskSnapshot,
};

impl World {
    /// Counts the changes that must reach the state file (commits, settlements, balance
    /// changes); it only ever grows.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The durable state: balances, payouts, batch withdrawals, create attempts, the record-id
    /// sequence, the PRNG and the daily counters. Not the rate-limit bucket, forced errors, held orderIds,
    /// the webhook outbox, faults or chain statuses: those belong to one run.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            next_seq: self.next_seq,
            fee_quotes: self.fee_quotes,
            rng: RngSnapshot {
                seed: self.seed,
                state: self.rng.0,
            },
            day: DaySnapshot {
                day: self.day.day,
                requests: self.day.requests,
                creates: self.day.creates,
            },
            balances: self
                .balances
                .iter()
                .map(|(&coin_id, &amount)| (coin_id, amount.to_string()))
                .collect(),
            payouts: self
                .payouts
                .iter()
                .map(|p| PayoutSnapshot {
                    ledger: p.ledger.clone(),
                    from_address: p.from_address.clone(),
                    contract: p.contract.clone(),
                    ccp_order_id: p.ccp_order_id.clone(),
                    debits: p
                        .debits
                        .iter()
                        .map(|&(coin_id, amount)| DebitSnapshot {
                            coin_id,
                            amount: amount.to_string(),
                        })
                        .collect(),
                    due_ms: p.due_ms,
                    will_fail: p.will_fail,
                    webhook_url: p.webhook_url.clone(),
                })
                .collect(),
            attempts: self.attempts.clone(),
            batches: self.batches.iter().map(|b| self.batch_snapshot(b)).collect(),
        }
    }

    fn batch_snapshot(&self, b: &Batch) -> BatchSnapshot {
        BatchSnapshot {
            batch_order_id: b.batch_order_id.clone(),
            bill_id: b.bill_id.clone(),
            coin_id: b.coin_id,
            chain: b.chain.clone(),
            product_name: b.product_name.clone(),
            mode: b.mode.as_str().to_owned(),
            notify_url: b.notify_url.clone(),
            status: b.status.as_str().to_owned(),
            created_ms: b.created_ms,
            updated_ms: b.updated_ms,
            delay_ms: b.delay_ms,
            review_until_ms: b.review_until_ms,
            start_ms: b.start_ms,
            next_event_ms: b.next_event_ms,
            exec_seq: b.exec_seq,
            fee_charged: b.fee_charged,
            tasks: b
                .tasks
                .iter()
                .map(|t| {
                    let (state, record_id) = match t.state {
                        TaskState::Waiting => ("waiting", String::new()),
                        TaskState::Canceled => ("canceled", String::new()),
                        TaskState::Executed(p) => ("executed", self.payouts[p].ledger.record_id.clone()),
                    };
                    TaskSnapshot {
                        seq: t.seq,
                        address: t.address.clone(),
                        memo: t.memo.clone(),
                        amount: t.amount.clone(),
                        remark: t.remark.clone(),
                        created_ms: t.created_ms,
                        updated_ms: t.updated_ms,
                        state: state.to_owned(),
                        record_id,
                    }
                })
                .collect(),
        }
    }

    /// Replaces the durable state with a snapshot and rebuilds the indexes (by orderId, by
    /// recordId, the unsettled payouts by due time). The snapshot's balances replace the demo
    /// balances and the configured overrides. The PRNG continues from the snapshot when it was
    /// seeded like this world, else it keeps this world's seed. Nothing else changes.
    ///
    /// # Errors
    ///
    /// The snapshot is not a state this sandbox could have written: another version, an amount
    /// that is not a decimal, an orderId twice (unless this world takes `no-order-uniqueness`),
    /// a recordId twice, a final payout without a settled
    /// time or an unsettled one with a final status, a batchOrderId twice (unless this world
    /// takes `batch-id-reuse`), a batch or task in a state this build does not know, or a task
    /// whose payout is missing. The world is unchanged then.
    pub fn restore(&mut self, snapshot: Snapshot) -> Result<(), String> {
        if !(OLDEST_SNAPSHOT_VERSION..=SNAPSHOT_VERSION).contains(&snapshot.version) {
            return Err(format!(
                "version {} is not one of versions {OLDEST_SNAPSHOT_VERSION} to {SNAPSHOT_VERSION}",
                snapshot.version
            ));
        }
        let decimal = |s: &str, what: &dyn std::fmt::Display| {
            Decimal::from_str_exact(s).map_err(|e| format!("{what}: {s:?} is not a decimal: {e}"))
        };
        let mut balances = BTreeMap::new();
        for (coin_id, amount) in &snapshot.balances {
            balances.insert(*coin_id, decimal(amount, &format_args!("balance of coin {coin_id}"))?);
        }
        let mut payouts = Vec::with_capacity(snapshot.payouts.len());
        let mut by_order = HashMap::with_capacity(snapshot.payouts.len());
        let mut repeats: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_record = HashMap::with_capacity(snapshot.payouts.len());
        let mut due = BTreeSet::new();
        // Every recordId, batch tasks' included (which the record reads do not index).
        let mut all_records: HashMap<String, usize> = HashMap::with_capacity(snapshot.payouts.len());
        // The sequence continues after the highest one in use, whatever next_seq says.
        let mut next_seq = snapshot.next_seq;
        let seq_of = |id: &str| id.get(14..).and_then(|s| s.parse::<u64>().ok());
        for (idx, p) in snapshot.payouts.into_iter().enumerate() {
            let record_id = p.ledger.record_id.clone();
            let mut debits = Vec::with_capacity(p.debits.len());
            for d in &p.debits {
                debits.push((d.coin_id, decimal(&d.amount, &format_args!("a debit of {record_id}"))?));
            }
            if all_records.insert(record_id.clone(), idx).is_some() {
                return Err(format!("recordId {record_id:?} is used twice"));
            }
            if p.ledger.is_batch_task() {
                // Read through its batch only.
            } else if by_order.contains_key(&p.ledger.order_id) {
                // Only a world that pays a reused orderId again (R3) can have written this.
                if !self.readings.no_order_uniqueness {
                    return Err(format!("orderId {:?} has two payouts", p.ledger.order_id));
                }
                repeats.entry(p.ledger.order_id.clone()).or_default().push(idx);
            } else {
                by_order.insert(p.ledger.order_id.clone(), idx);
            }
            if !p.ledger.is_batch_task() {
                by_record.insert(record_id.clone(), idx);
            }
            match (&p.ledger.status, p.ledger.settled_ms) {
                (RecordStatus::Processing, None) => {
                    due.insert((p.due_ms, idx));
                }
                (RecordStatus::Success | RecordStatus::Failed, Some(_)) => {}
                (status, settled) => {
                    return Err(format!(
                        "payout {record_id}: status {} with settled time {settled:?}",
                        status.as_str()
                    ));
                }
            }
            if let Some(seq) = seq_of(&record_id) {
                next_seq = next_seq.max(seq.saturating_add(1));
            }
            payouts.push(Payout {
                ledger: p.ledger,
                from_address: p.from_address,
                contract: p.contract,
                ccp_order_id: p.ccp_order_id,
                debits,
                due_ms: p.due_ms,
                will_fail: p.will_fail,
                webhook_url: p.webhook_url,
            });
        }
        let mut batches = Vec::with_capacity(snapshot.batches.len());
        let mut batch_ids: HashMap<String, Vec<usize>> = HashMap::new();
        let mut batch_due = BTreeSet::new();
        let mut task_payouts = HashMap::new();
        for (b, snap) in snapshot.batches.into_iter().enumerate() {
            let name = snap.batch_order_id.clone();
            let ids = batch_ids.entry(name.clone()).or_default();
            if !ids.is_empty() && self.readings.repeated_batch != RepeatedBatch::Reuse {
                // Only a world that makes a second batch under a used id can have written this.
                return Err(format!("batchOrderId {name:?} has two batches"));
            }
            ids.push(b);
            if let Some(seq) = seq_of(&snap.bill_id) {
                next_seq = next_seq.max(seq.saturating_add(1));
            }
            if let Some(at) = snap.next_event_ms {
                batch_due.insert((at, b));
            }
            let mut tasks = Vec::with_capacity(snap.tasks.len());
            for (t, task) in snap.tasks.into_iter().enumerate() {
                let state = match (task.state.as_str(), task.record_id.as_str()) {
                    ("waiting", "") => TaskState::Waiting,
                    ("canceled", "") => TaskState::Canceled,
                    ("executed", record_id) => {
                        let p = all_records
                            .get(record_id)
                            .copied()
                            .filter(|&p| payouts[p].ledger.batch_order_id == name)
                            .ok_or_else(|| format!("batch {name:?}: seq {} has no payout {record_id:?}", task.seq))?;
                        task_payouts.insert(p, (b, t));
                        TaskState::Executed(p)
                    }
                    (state, _) => return Err(format!("batch {name:?}: seq {}: unknown state {state:?}", task.seq)),
                };
                tasks.push(Task {
                    seq: task.seq,
                    address: task.address,
                    memo: task.memo,
                    amount: task.amount,
                    remark: task.remark,
                    created_ms: task.created_ms,
                    updated_ms: task.updated_ms,
                    state,
                });
            }
            batches.push(Batch {
                mode: Mode::parse(&snap.mode).ok_or_else(|| format!("batch {name:?}: unknown mode {:?}", snap.mode))?,
                status: BatchStatus::parse(&snap.status)
                    .ok_or_else(|| format!("batch {name:?}: unknown status {:?}", snap.status))?,
                batch_order_id: snap.batch_order_id,
                bill_id: snap.bill_id,
                coin_id: snap.coin_id,
                chain: snap.chain,
                product_name: snap.product_name,
                notify_url: snap.notify_url,
                created_ms: snap.created_ms,
                updated_ms: snap.updated_ms,
                delay_ms: snap.delay_ms,
                review_until_ms: snap.review_until_ms,
                start_ms: snap.start_ms,
                next_event_ms: snap.next_event_ms,
                exec_seq: snap.exec_seq,
                fee_charged: snap.fee_charged,
                tasks,
            });
        }
        if let Some((p, ledger)) = payouts
            .iter()
            .enumerate()
            .map(|(p, payout)| (p, &payout.ledger))
            .find(|(p, ledger)| ledger.is_batch_task() && !task_payouts.contains_key(p))
        {
            return Err(format!(
                "payout {} (index {p}) of batch {:?} belongs to no task",
                ledger.record_id, ledger.batch_order_id
            ));
        }
        self.balances = balances;
        self.payouts = payouts;
        self.batches = batches;
        self.batch_ids = batch_ids;
        self.batch_due = batch_due;
        self.task_payouts = task_payouts;
        self.by_order = by_order;
        self.repeats = repeats;
        self.by_record = by_record;
        self.due = due;
        self.attempts = snapshot.attempts;
        self.next_seq = next_seq;
        self.fee_quotes = snapshot.fee_quotes;
        if snapshot.rng.seed == self.seed {
            self.rng = SplitMix64(snapshot.rng.state);
        }
        self.day = DayCounters {
            day: snapshot.day.day,
            requests: snapshot.day.requests,
            creates: snapshot.day.creates,
        };
        self.generation += 1;
        Ok(())
    }
}
