//! Settlement and the ledger: payouts settle at their due time to `Success` (with a transaction
//! hash) or `Failed` (refunding everything they debited), and [`World::ledger`] shows every
//! payout and create attempt as they stand.

use sha2::{Digest, Sha256};

use super::World;
use crate::api::types::RecordStatus;
use crate::rules::address::AddressFamily;
use crate::sandbox::{Ledger, LedgerPayout};

/// The reason a failed payout carries.
pub const FAILURE_REASON: &str = "the network rejected the transfer";

impl World {
    /// Settles every payout due at or before `now_ms`; returns how many settled.
    pub fn settle_due(&mut self, now_ms: i64) -> usize {
        let mut settled = 0;
        while let Some(&(due, idx)) = self.due.first() {
            if due > now_ms {
                break;
            }
            self.due.pop_first();
            self.settle(idx);
            settled += 1;
        }
        settled
    }

    fn settle(&mut self, idx: usize) {
        self.generation += 1;
        let payout = &mut self.payouts[idx];
        payout.ledger.settled_ms = Some(payout.due_ms);
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
            payout.ledger.tx_id = tx_id_for(&payout.ledger);
        }
        self.enqueue_final_webhook(idx);
    }

    /// When the next unsettled payout is due.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.due.first().map(|&(due, _)| due)
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
    let hash = hex::encode(Sha256::digest(l.record_id.as_bytes()));
    match AddressFamily::for_chain(&l.chain) {
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
