//! Seeded faults and forced errors: what the operator (or a test) makes the world do instead of
//! answering normally. [`World::set_faults`] sets the fault probabilities and
//! [`World::force_error`] queues error codes for an endpoint; the pipeline draws a fault per
//! eligible request and applies it (see `respond` in `pipeline.rs`).

use super::World;
use crate::sandbox::Faults;

/// One seeded fault; [`Faults`] holds the probability of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    DropBeforeCommit,
    Http5xx,
    Internal11002,
    DropAfterCommit,
    Slow,
}

impl Fault {
    /// The name the attempt log and [`Faults`] use.
    pub(super) fn name(self) -> &'static str {
        match self {
            Fault::DropBeforeCommit => "drop_before_commit",
            Fault::Http5xx => "http_5xx",
            Fault::Internal11002 => "internal_11002",
            Fault::DropAfterCommit => "drop_after_commit",
            Fault::Slow => "slow",
        }
    }
}

/// An error queued for one endpoint by [`World::force_error`].
#[derive(Debug, Clone)]
pub(super) struct ForcedError {
    pub(super) code: i64,
    pub(super) msg: String,
    /// How many more requests get it; the entry goes when this reaches zero.
    pub(super) remaining: u32,
}

impl World {
    /// Replaces the fault probabilities.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// The next `times` requests to `endpoint_name` (v2 method name, `v1/withdraw` or
    /// `v1/bill/info`) that pass authentication and limits answer this code, committing nothing.
    pub fn force_error(&mut self, endpoint_name: &str, code: i64, msg: &str, times: u32) {
        if times == 0 {
            self.forced.remove(endpoint_name);
            return;
        }
        self.forced.insert(
            endpoint_name.to_owned(),
            ForcedError {
                code,
                msg: msg.to_owned(),
                remaining: times,
            },
        );
    }

    /// One uniform draw picks at most one fault. No draw at all when every probability is
    /// zero, so turning faults off does not shift the PRNG stream of `fail_rate`.
    pub(super) fn draw_fault(&mut self) -> Option<Fault> {
        let f = &self.faults;
        let table = [
            (f.drop_before_commit, Fault::DropBeforeCommit),
            (f.http_5xx, Fault::Http5xx),
            (f.internal_11002, Fault::Internal11002),
            (f.drop_after_commit, Fault::DropAfterCommit),
            (f.slow, Fault::Slow),
        ];
        if table.iter().all(|(p, _)| *p <= 0.0) {
            return None;
        }
        let u = self.rng.next_f64();
        let mut acc = 0.0;
        for (p, fault) in table {
            acc += p.max(0.0);
            if u < acc {
                return Some(fault);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use crate::api::types::method;
    use crate::sandbox::AttemptOutcome;
    use crate::sandbox::world::testkit::*;
    use crate::sandbox::world::{Route, Transport};

    #[test]
    fn faults_commit_or_not_as_named() {
        let cases = [
            ("drop_before_commit", Transport::Drop, 0, false),
            ("http_5xx", Transport::BadGateway, 0, false),
            ("internal_11002", Transport::Reply, 11002, false),
            ("drop_after_commit", Transport::Drop, 10000, true),
        ];
        for (name, transport, code, commits) in cases {
            let mut faults = Faults::default();
            match name {
                "drop_before_commit" => faults.drop_before_commit = 1.0,
                "http_5xx" => faults.http_5xx = 1.0,
                "internal_11002" => faults.internal_11002 = 1.0,
                _ => faults.drop_after_commit = 1.0,
            }
            let mut w = world_with(|c| c.faults = faults);
            let handled = w.handle(
                Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK),
                net("f-1", 1280, "TRX", TRX_ADDR, "5").to_string().as_bytes(),
                T0,
            );
            assert_eq!((handled.transport, handled.code), (transport, code), "{name}");
            let ledger = w.ledger();
            assert_eq!(ledger.payouts.len(), usize::from(commits), "{name}");
            let last = ledger.attempts.last().expect("attempt");
            assert_eq!(last.outcome, AttemptOutcome::Fault { fault: name.into() });
            assert_eq!(last.order_id, "f-1");
            // Reads are untouched unless on_reads.
            let read = w.handle(Route::V2(method::GET_COIN_LIST), b"{}", T0);
            assert_eq!(read.code, 10000, "{name}");
        }
        let mut w = world_with(|c| {
            c.faults = Faults {
                http_5xx: 1.0,
                on_reads: true,
                ..Faults::default()
            }
        });
        let read = w.handle(Route::V2(method::GET_COIN_LIST), b"{}", T0);
        assert_eq!(read.transport, Transport::BadGateway);
        assert!(w.ledger().attempts.is_empty(), "reads are not create attempts");
    }

    #[test]
    fn slow_reply_makes_duplicates_repeated_submit_until_released() {
        let mut w = world_with(|c| {
            c.faults = Faults {
                slow: 1.0,
                slow_delay_ms: 500,
                ..Faults::default()
            }
        });
        let handled = w.handle(
            Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK),
            net("slow-1", 1280, "TRX", TRX_ADDR, "5").to_string().as_bytes(),
            T0,
        );
        assert_eq!(handled.code, 10000);
        assert_eq!(handled.transport, Transport::Slow(Duration::from_millis(500)));
        assert_eq!(handled.in_flight.as_deref(), Some("slow-1"));
        w.set_faults(Faults::default());
        assert_eq!(create(&mut w, net("slow-1", 1280, "TRX", TRX_ADDR, "5")).0, 11007);
        w.release_in_flight("slow-1");
        assert_eq!(create(&mut w, net("slow-1", 1280, "TRX", TRX_ADDR, "5")).0, 11011);
        let attempts = w.ledger().attempts;
        assert!(matches!(attempts[0].outcome, AttemptOutcome::Created { .. }));
        assert_eq!(attempts[1].outcome, AttemptOutcome::Fault { fault: "slow".into() });
    }

    #[test]
    fn forced_errors_answer_then_expire() {
        let mut w = world();
        w.force_error(method::APPLY_APP_WITHDRAW_TO_NETWORK, 11002, "Internal", 2);
        assert_eq!(create_at(&mut w, "forced-1", T0), 11002);
        assert_eq!(create_at(&mut w, "forced-1", T0), 11002);
        assert_eq!(create_at(&mut w, "forced-1", T0), 10000);
        assert_eq!(w.ledger().attempts_for("forced-1").len(), 3);
        w.force_error("v1/bill/info", 10001, "something broke", 1);
        let (code, reply) = call(
            &mut w,
            "v1/bill/info",
            &serde_json::json!({"merchant_order_ids": []}),
            T0,
        );
        assert_eq!((code, reply["msg"].as_str()), (10001, Some("something broke")));
    }
}
