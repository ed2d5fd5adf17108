//! Settlement and the ledger: payouts settle at their due time to `Success` (with a transaction
//! hash) or `Failed` (refunding everything they debited), the steps of batch withdrawals run at
//! theirs (interleaved in time order), and [`World::ledger`] shows every payout and create
//! attempt as they stand.

use sha2::{Digest, Sha256};

use super::World;
use crate::api::types::RecordStatus;
use crate::rules::address::AddressFamily;
use crate::sandbox::{Ledger, LedgerPayout};

/// The reason a failed payout carries.
pub const FAILURE_REASON: &str = "the network rejected the transfer";

impl World {
    /// Settles every payout due at or before `now_ms`, and runs every batch step due by then,
    /// each at its own time and all in time order (a settlement first when they are due at the
    /// same millisecond, so its refund is there for the step); returns how many payouts settled.
    pub fn settle_due(&mut self, now_ms: i64) -> usize {
        let mut settled = 0;
        loop {
            let payout_due = self.due.first().map(|&(due, _)| due).filter(|&due| due <= now_ms);
            let batch_due = self.next_batch_due_ms().filter(|&due| due <= now_ms);
            let settle_first = match (payout_due, batch_due) {
                (None, None) => break,
                (Some(p), Some(b)) => p <= b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if settle_first {
                if let Some((_, idx)) = self.due.pop_first() {
                    self.settle(idx);
                    settled += 1;
                }
            } else {
                self.run_due_batch_step(now_ms);
            }
        }
        settled
    }

    fn settle(&mut self, idx: usize) {
        self.generation += 1;
        let shared_tx = self.shared_tx_key(idx);
        let payout = &mut self.payouts[idx];
        let at_ms = payout.due_ms;
        let is_task = payout.ledger.is_batch_task();
        payout.ledger.settled_ms = Some(at_ms);
        if payout.will_fail {
            payout.ledger.status = RecordStatus::Failed;
            payout.ledger.reason = FAILURE_REASON.to_owned();
            // A failed payout gives back everything it took, fee included (native fee too).
            let refunds = payout.debits.clone();
            for (coin_id, amount) in refunds {
                let balance = self.balances.entry(coin_id).or_default();
                *balance += amount;
            }
        } else {
            payout.ledger.status = RecordStatus::Success;
            payout.ledger.tx_id = match &shared_tx {
                // A batch in `Batch` mode pays its tasks in one transaction.
                Some(key) => tx_hash(key, &payout.ledger.chain),
                None => tx_id_for(&payout.ledger),
            };
        }
        if is_task {
            self.task_settled(idx, at_ms);
        } else {
            self.enqueue_final_webhook(idx);
        }
    }

    /// When the next unsettled payout, or the next step of a batch, is due.
    pub fn next_due_ms(&self) -> Option<i64> {
        let payout = self.due.first().map(|&(due, _)| due);
        match (payout, self.next_batch_due_ms()) {
            (Some(p), Some(b)) => Some(p.min(b)),
            (p, b) => p.or(b),
        }
    }

    /// The ledger as it stands (call [`World::settle_due`] first for an up-to-date view).
    pub fn ledger(&self) -> Ledger {
        Ledger {
            payouts: self.payouts.iter().map(|p| p.ledger.clone()).collect(),
            attempts: self.attempts.clone(),
        }
    }
}

/// The transaction hash of a settled payout: SHA-256 of the record id, `0x`-prefixed on EVM
/// chains, upper-case on XRP (as XRPL writes hashes), empty for Cwallet transfers.
fn tx_id_for(l: &LedgerPayout) -> String {
    if l.withdraw_type == "Cwallet" {
        return String::new();
    }
    tx_hash(&l.record_id, &l.chain)
}

/// A transaction hash made from `key`, written as `chain` writes hashes.
fn tx_hash(key: &str, chain: &str) -> String {
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    match AddressFamily::for_chain(chain) {
        AddressFamily::Evm => format!("0x{hash}"),
        AddressFamily::Xrp => hash.to_uppercase(),
        _ => hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sandbox::DEMO_FAILING_ADDRESS;
    use crate::sandbox::world::testkit::*;

    #[test]
    fn settlement_succeeds_with_a_tx_id_or_fails_with_a_full_refund() {
        let mut w = world();
        assert_eq!(create(&mut w, net("ok-1", 1280, "POLYGON", EVM_ADDR, "5")).0, 10000);
        assert_eq!(
            create(&mut w, net("fail-1", 1280, "TRX", DEMO_FAILING_ADDRESS, "7")).0,
            10000
        );
        let mut xrp = net("xrp-1", 1462, "XRP", XRP_ADDR, "3");
        xrp["memo"] = "42".into();
        assert_eq!(create(&mut w, xrp).0, 10000);
        assert_eq!(create(&mut w, net("btc-1", 1157, "BTC", BTC_ADDR, "0.001")).0, 10000);
        assert_eq!(bal(&w, "USDT"), "999988");
        assert_eq!(w.next_due_ms(), Some(T0 + 2000));
        // Not yet due.
        assert_eq!(w.settle_due(T0 + 1999), 0);
        assert_eq!(w.settle_due(T0 + 2000), 4);
        assert_eq!(w.next_due_ms(), None);
        let ledger = w.ledger();
        let ok = ledger.payouts_for("ok-1")[0];
        assert_eq!(ok.status, RecordStatus::Success);
        assert!(ok.tx_id.starts_with("0x") && ok.tx_id.len() == 66, "{}", ok.tx_id);
        assert_eq!(ok.settled_ms, Some(T0 + 2000));
        let failed = ledger.payouts_for("fail-1")[0];
        assert_eq!(failed.status, RecordStatus::Failed);
        assert_eq!(failed.reason, FAILURE_REASON);
        assert_eq!(failed.tx_id, "");
        let xrp = ledger.payouts_for("xrp-1")[0];
        assert_eq!(xrp.tx_id, xrp.tx_id.to_uppercase());
        assert_eq!(ledger.payouts_for("btc-1")[0].tx_id.len(), 64);
        // The failed TRX payout gave back its 7 USDT; the POLYGON one keeps its 5 USDT and fee.
        assert_eq!(bal(&w, "USDT"), "999995");
        assert_eq!(bal(&w, "MATIC"), "4999.9786186");
    }

    #[test]
    fn a_failed_native_fee_payout_refunds_the_native_fee_too() {
        let mut w = world_with(|c| c.fail_rate = 1.0);
        assert_eq!(create(&mut w, net("order-1", 1280, "POLYGON", EVM_ADDR, "5")).0, 10000);
        assert_eq!(bal(&w, "MATIC"), "4999.9786186");
        w.settle_due(T0 + 10_000);
        assert_eq!(w.ledger().payouts[0].status, RecordStatus::Failed);
        assert_eq!(bal(&w, "USDT"), "1000000");
        assert_eq!(bal(&w, "MATIC"), "5000");
    }

    #[test]
    fn fail_rate_is_seeded_and_roughly_right() {
        let outcome = |seed| {
            let mut w = world_with(|c| {
                c.fail_rate = 0.3;
                c.seed = seed;
            });
            for i in 0..200 {
                let (code, _) = create(&mut w, net(&format!("order-{i}"), 1280, "TRX", TRX_ADDR, "2"));
                assert_eq!(code, 10000);
            }
            w.settle_due(T0 + 10_000);
            w.ledger()
                .payouts
                .iter()
                .map(|p| p.status == RecordStatus::Failed)
                .collect::<Vec<_>>()
        };
        let a = outcome(7);
        assert_eq!(a, outcome(7));
        assert_ne!(a, outcome(8));
        let failed = a.iter().filter(|f| **f).count();
        assert!((30..=90).contains(&failed), "{failed}");
    }
}
