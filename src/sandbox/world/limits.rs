//! The limits a request must pass before it costs anything: the token-bucket rate limit (11004)
//! on the injected clock, and the daily request and create caps (11009) with their day counters.

use super::World;

/// The token bucket of [`RateLimit`](crate::sandbox::RateLimit); it starts full at the first signed request.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    tokens: f64,
    last_ms: i64,
}

/// The current day's counts for the daily caps. They are persisted, so a restart does not
/// reset the caps.
#[derive(Debug, Clone, Default)]
pub(super) struct DayCounters {
    /// The day index: whole day lengths since the epoch, shifted by the reset offset.
    pub(super) day: i64,
    pub(super) requests: u64,
    pub(super) creates: u64,
}

impl World {
    /// Takes one token from the bucket; `false` when it is empty.
    pub(super) fn take_token(&mut self, now_ms: i64) -> bool {
        let Some(limit) = self.rate_limit else {
            return true;
        };
        let burst = f64::from(limit.burst);
        let bucket = self.bucket.get_or_insert(Bucket {
            tokens: burst,
            last_ms: now_ms,
        });
        // A clock that steps backwards refills nothing rather than draining the bucket.
        let elapsed_ms = (now_ms - bucket.last_ms).max(0);
        bucket.tokens = (bucket.tokens + elapsed_ms as f64 / 1000.0 * limit.per_second).min(burst);
        bucket.last_ms = bucket.last_ms.max(now_ms);
        // The epsilon absorbs float error in the refill (10/s over 100 ms must give one token).
        if bucket.tokens >= 1.0 - 1e-9 {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    /// Starts a new set of daily counters when the day index changes.
    pub(super) fn roll_day(&mut self, now_ms: i64) {
        let day = (now_ms - self.reset_offset_ms).div_euclid(self.day_length_ms);
        if day != self.day.day {
            self.day = DayCounters {
                day,
                requests: 0,
                creates: 0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::api::types::method;
    use crate::sandbox::world::Route;
    use crate::sandbox::world::testkit::*;
    use crate::sandbox::{AttemptOutcome, RateLimit};

    #[test]
    fn rate_limit_bucket_refills_on_the_clock() {
        let mut w = world_with(|c| {
            c.rate_limit = Some(RateLimit {
                per_second: 10.0,
                burst: 3,
            })
        });
        let list = Route::V2(method::GET_COIN_LIST);
        let codes: Vec<i64> = (0..5).map(|_| w.handle(list, b"{}", T0).code).collect();
        assert_eq!(codes, [10000, 10000, 10000, 11004, 11004]);
        // 100 ms refills one token at 10/s.
        assert_eq!(w.handle(list, b"{}", T0 + 100).code, 10000);
        assert_eq!(w.handle(list, b"{}", T0 + 100).code, 11004);
        // A long pause refills only up to the burst.
        let codes: Vec<i64> = (0..4).map(|_| w.handle(list, b"{}", T0 + 60_000).code).collect();
        assert_eq!(codes, [10000, 10000, 10000, 11004]);
        // A rate-limited create is recorded as an attempt.
        let body = net("rl-1", 1280, "TRX", TRX_ADDR, "5").to_string();
        let handled = w.handle(
            Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK),
            body.as_bytes(),
            T0 + 60_000,
        );
        assert_eq!(handled.code, 11004);
        assert_eq!(
            w.ledger().attempts_for("rl-1")[0].outcome,
            AttemptOutcome::Refused { code: 11004 }
        );
    }

    #[test]
    fn daily_caps_reset_at_the_day_boundary() {
        let day_ms = 10_000;
        let mut w = world_with(|c| {
            c.daily_create_limit = Some(2);
            c.daily_request_limit = Some(4);
            c.day_length = Duration::from_millis(10_000);
            c.daily_reset_offset = Duration::from_millis(3_000);
        });
        // The day containing T0 starts at the last multiple of the day length plus the offset.
        let day_start = (T0 - 3000).div_euclid(day_ms) * day_ms + 3000;
        let t = day_start + 1;
        let codes: Vec<i64> = (0..3).map(|i| create_at(&mut w, &format!("cap-{i}"), t)).collect();
        assert_eq!(codes, [10000, 10000, 11009]);
        let list = Route::V2(method::GET_COIN_LIST);
        assert_eq!(w.handle(list, b"{}", t).code, 10000);
        assert_eq!(w.handle(list, b"{}", t).code, 10000);
        // Four accepted requests: the request cap is reached too.
        assert_eq!(w.handle(list, b"{}", t).code, 11009);
        assert_eq!(w.handle(list, b"{}", day_start + day_ms - 1).code, 11009);
        // The next day starts exactly at the boundary.
        assert_eq!(create_at(&mut w, "cap-9", day_start + day_ms), 10000);
        assert_eq!(
            w.ledger().attempts_for("cap-2")[0].outcome,
            AttemptOutcome::Refused { code: 11009 }
        );
    }
}
