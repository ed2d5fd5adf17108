//! The request counters behind [`SandboxStats`] (`GET /sandbox/stats`): one per endpoint and
//! result code, and two per second (accepted, answered 11004) for the last day, so they cost the
//! same memory after a million requests as after ten.

use std::collections::{BTreeMap, VecDeque};

use super::World;
use crate::sandbox::{PerSecond, RequestCount, SandboxStats};

/// The per-second request counters keep this many seconds (a day).
const STATS_SECONDS: usize = 24 * 60 * 60;

/// The counters behind [`SandboxStats`]: one per (endpoint, result code), two per second.
#[derive(Debug, Clone, Default)]
pub(super) struct RequestCounters {
    by_result: BTreeMap<(&'static str, i64), u64>,
    /// The Unix second of `seconds[0]`; set when the first second is counted.
    start_sec: Option<i64>,
    /// (accepted, answered 11004) per second, the last [`STATS_SECONDS`] at most.
    seconds: VecDeque<(u64, u64)>,
}

impl RequestCounters {
    /// Starts the per-second series at `now_ms`, if it has not started yet.
    pub(super) fn start(&mut self, now_ms: i64) {
        self.start_sec.get_or_insert(now_ms.div_euclid(1000));
    }

    pub(super) fn count(&mut self, endpoint: &'static str, code: i64, now_ms: i64) {
        *self.by_result.entry((endpoint, code)).or_default() += 1;
        let slot = self.second(now_ms.div_euclid(1000));
        if code == 11004 {
            slot.1 += 1;
        } else {
            slot.0 += 1;
        }
    }

    /// The counters of Unix second `sec`, dropping the oldest seconds past [`STATS_SECONDS`].
    /// A second before the start (a clock that stepped back) counts in the first one.
    fn second(&mut self, sec: i64) -> &mut (u64, u64) {
        let mut start = *self.start_sec.get_or_insert(sec);
        let window = STATS_SECONDS as i64;
        if sec - start >= window {
            let drop = usize::try_from(sec - start - window + 1).unwrap_or(usize::MAX);
            self.seconds.drain(..drop.min(self.seconds.len()));
            start = sec - window + 1;
            self.start_sec = Some(start);
        }
        let index = usize::try_from(sec - start).unwrap_or(0);
        if self.seconds.len() <= index {
            self.seconds.resize(index + 1, (0, 0));
        }
        &mut self.seconds[index]
    }

    pub(super) fn stats(&self) -> SandboxStats {
        SandboxStats {
            requests: self
                .by_result
                .iter()
                .map(|(&(endpoint, code), &count)| RequestCount {
                    endpoint: endpoint.to_owned(),
                    code,
                    count,
                })
                .collect(),
            per_second: PerSecond {
                start_sec: self.start_sec.unwrap_or(0),
                accepted: self.seconds.iter().map(|s| s.0).collect(),
                rate_limited: self.seconds.iter().map(|s| s.1).collect(),
            },
            // The HTTP server adds what only it sees.
            connections: 0,
        }
    }
}

impl World {
    /// Starts the per-second request series at `now_ms` (the server calls it when it starts;
    /// without it the series starts at the first request).
    pub fn start_stats(&mut self, now_ms: i64) {
        self.requests.start(now_ms);
    }

    /// Every authenticated request so far, by endpoint and result, and per second.
    pub fn stats(&self) -> SandboxStats {
        self.requests.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::types::method;
    use crate::sandbox::world::Route;
    use crate::sandbox::world::testkit::*;
    use crate::sandbox::{RateLimit, STATS_NO_REPLY, STATS_SUCCESS};

    #[test]
    fn stats_count_requests_by_endpoint_and_result_and_per_second() {
        let mut w = world_with(|c| {
            c.rate_limit = Some(RateLimit {
                per_second: 1.0,
                burst: 2,
            });
            c.faults.drop_before_commit = 1.0;
        });
        let start = T0 - T0 % 1000 - 2000;
        w.start_stats(start + 999);
        let list = Route::V2(method::GET_COIN_LIST);
        // Second 2: two accepted, one answered 11004; one create dropped by a fault.
        assert_eq!(w.handle(list, b"{}", T0).code, 10000);
        assert_eq!(create_at(&mut w, "st-1", T0), 0);
        assert_eq!(w.handle(list, b"{}", T0).code, 11004);
        // Second 3: one accepted (one token refilled), one answered 11004.
        assert_eq!(w.handle(list, b"{}", T0 + 1000).code, 10000);
        assert_eq!(w.handle(list, b"{}", T0 + 1000).code, 11004);

        let stats = w.stats();
        let counts: Vec<(&str, i64, u64)> = stats
            .requests
            .iter()
            .map(|r| (r.endpoint.as_str(), r.code, r.count))
            .collect();
        assert_eq!(
            counts,
            [
                (method::APPLY_APP_WITHDRAW_TO_NETWORK, STATS_NO_REPLY, 1),
                (method::GET_COIN_LIST, STATS_SUCCESS, 2),
                (method::GET_COIN_LIST, 11004, 2),
            ]
        );
        assert_eq!(
            (
                stats.total(),
                stats.with_code(11004),
                stats.to_endpoint(method::GET_COIN_LIST)
            ),
            (5, 2, 4)
        );
        assert_eq!(stats.per_second.start_sec, start / 1000);
        assert_eq!(stats.per_second.accepted, [0, 0, 2, 1]);
        assert_eq!(stats.per_second.rate_limited, [0, 0, 1, 1]);

        // Two days later only the last day of seconds is kept, ending with this one.
        let later = T0 + 2 * 86_400_000;
        w.handle(list, b"{}", later);
        let series = w.stats().per_second;
        assert_eq!(series.accepted.len(), STATS_SECONDS);
        assert_eq!(series.start_sec + STATS_SECONDS as i64 - 1, later / 1000);
        assert_eq!(
            series.accepted.iter().sum::<u64>() + series.rate_limited.iter().sum::<u64>(),
            1
        );
    }
}
