//! The world's side of persistence: [`World::snapshot`] takes the durable state, and
//! [`World::restore`] checks a snapshot and rebuilds the indexes from it. The file format and
//! the file itself are `persist.rs`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;

use super::limits::DayCounters;
use super::rng::SplitMix64;
use super::{Payout, World};
use crate::api::types::RecordStatus;
use crate::sandbox::persist::{DaySnapshot, DebitSnapshot, PayoutSnapshot, RngSnapshot, SNAPSHOT_VERSION, Snapshot};

impl World {
    /// Counts the changes that must reach the state file (commits, settlements, balance
    /// changes); it only ever grows.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The durable state: balances, payouts, create attempts, the record-id sequence, the
    /// PRNG and the daily counters. Not the rate-limit bucket, forced errors, held orderIds,
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
    /// time or an unsettled one with a final status. The world is unchanged then.
    pub fn restore(&mut self, snapshot: Snapshot) -> Result<(), String> {
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(format!(
                "version {} is not version {SNAPSHOT_VERSION}",
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
        // The sequence continues after the highest one in use, whatever next_seq says.
        let mut next_seq = snapshot.next_seq;
        for (idx, p) in snapshot.payouts.into_iter().enumerate() {
            let record_id = p.ledger.record_id.clone();
            let mut debits = Vec::with_capacity(p.debits.len());
            for d in &p.debits {
                debits.push((d.coin_id, decimal(&d.amount, &format_args!("a debit of {record_id}"))?));
            }
            if by_order.contains_key(&p.ledger.order_id) {
                // Only a world that pays a reused orderId again (R3) can have written this.
                if !self.readings.no_order_uniqueness {
                    return Err(format!("orderId {:?} has two payouts", p.ledger.order_id));
                }
                repeats.entry(p.ledger.order_id.clone()).or_default().push(idx);
            } else {
                by_order.insert(p.ledger.order_id.clone(), idx);
            }
            if by_record.insert(record_id.clone(), idx).is_some() {
                return Err(format!("recordId {record_id:?} is used twice"));
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
            if let Some(seq) = record_id.get(14..).and_then(|s| s.parse::<u64>().ok()) {
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
        self.balances = balances;
        self.payouts = payouts;
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
