//! How many requests may be in flight at once: enough to carry the configured rate at the latency
//! measured, no more.
//!
//! Little's law: the requests in flight are the throughput times the time each takes. To pass
//! `rate` requests per second when each takes `latency`, about `rate × latency` must be in flight;
//! with fewer, the quota goes unused (8 in flight at 150 ms cannot pass more than 53 a second).
//! So the limit follows a moving average of the round trips measured, with a quarter of headroom
//! and one more for jitter, and the rate the gate lets through now (lower after 11004s): it grows
//! when CCPayment is far away, and shrinks again when the latency falls or 11004s come.
//! `limits.concurrency` caps it. The quotas, not this limit, keep the rate: the limit only makes
//! sure the rate can be reached.
//!
//! The arithmetic is pure ([`target`]); [`InFlight`] holds the average behind a mutex. Latency is
//! measured on the client's clock, so the simulation (on paused time) replays exactly.

use std::sync::{Mutex, PoisonError};

/// The fewest requests allowed in flight.
pub const MIN_IN_FLIGHT: usize = 2;
/// The limit before any latency was measured (at most the cap).
pub const INITIAL_IN_FLIGHT: usize = 8;
/// Headroom over `rate × latency`.
const HEADROOM: f64 = 1.25;
/// Weight of the newest round trip in the moving average.
const ALPHA: f64 = 0.2;

/// The in-flight limit for `rate` requests per second at `latency_ms` per request, within
/// [`MIN_IN_FLIGHT`] and `cap`.
pub fn target(rate: f64, latency_ms: f64, cap: usize) -> usize {
    let wanted = (rate.max(0.0) * latency_ms.max(0.0) / 1000.0 * HEADROOM).ceil() + 1.0;
    let wanted = if wanted.is_finite() { wanted as usize } else { cap };
    wanted.clamp(MIN_IN_FLIGHT.min(cap.max(1)), cap.max(1))
}

/// The measured latency and the limit it gives.
#[derive(Debug)]
pub struct InFlight {
    cap: usize,
    rate: f64,
    /// Moving average of round trips, in milliseconds; `None` before the first.
    latency_ms: Mutex<Option<f64>>,
    /// The highest limit given so far.
    peak: std::sync::atomic::AtomicUsize,
}

impl InFlight {
    /// A limit for `rate` requests per second, at most `cap` in flight.
    pub fn new(rate: u32, cap: u32) -> InFlight {
        InFlight {
            cap: (cap as usize).max(1),
            rate: f64::from(rate.max(1)),
            latency_ms: Mutex::new(None),
            peak: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// One request took `elapsed_ms` from leaving to its reply.
    pub fn observe(&self, elapsed_ms: i64) {
        let sample = elapsed_ms.max(0) as f64;
        let mut avg = self.latency_ms.lock().unwrap_or_else(PoisonError::into_inner);
        *avg = Some(match *avg {
            None => sample,
            Some(prev) => prev + ALPHA * (sample - prev),
        });
    }

    /// The moving average of round trips, in milliseconds, once one was measured.
    pub fn latency_ms(&self) -> Option<f64> {
        *self.latency_ms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cap (`limits.concurrency`).
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// How many requests may be in flight now; `allowed_rate` is the gate's rate after 11004s,
    /// when lower than the configured one.
    pub fn limit(&self, allowed_rate: Option<f64>) -> usize {
        let rate = allowed_rate.map_or(self.rate, |r| r.min(self.rate));
        let limit = match self.latency_ms() {
            None => INITIAL_IN_FLIGHT.min(self.cap),
            Some(latency) => target(rate, latency, self.cap),
        };
        self.peak.fetch_max(limit, std::sync::atomic::Ordering::Relaxed);
        limit
    }

    /// The highest limit given so far.
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_carries_the_rate_at_the_latency() {
        // 100/s at 150 ms: 15 in flight, 25 % headroom, one for jitter.
        assert_eq!(target(100.0, 150.0, 64), 20);
        assert_eq!(target(100.0, 300.0, 64), 39);
        // 100/s at 500 ms fits the default cap of 64.
        assert_eq!(target(100.0, 500.0, 64), 64);
        // Loopback: the floor.
        assert_eq!(target(100.0, 1.0, 64), MIN_IN_FLIGHT);
        // The cap holds, and a cap below the floor wins.
        assert_eq!(target(1000.0, 1000.0, 32), 32);
        assert_eq!(target(100.0, 150.0, 1), 1);
    }

    #[test]
    fn it_follows_the_measured_latency_up_and_down_and_the_gate_s_rate() {
        let f = InFlight::new(100, 64);
        assert_eq!(f.limit(None), INITIAL_IN_FLIGHT);
        f.observe(300);
        assert_eq!(f.limit(None), 39);
        for _ in 0..40 {
            f.observe(10);
        }
        assert!(f.limit(None) <= 3, "{}", f.limit(None));
        for _ in 0..40 {
            f.observe(150);
        }
        assert_eq!(f.limit(None), 20);
        // After 11004s the gate lets 40/s through: fewer in flight.
        assert_eq!(f.limit(Some(40.0)), 9);
        // A gate rate above the configured one changes nothing.
        assert_eq!(f.limit(Some(500.0)), 20);
        assert_eq!(InFlight::new(100, 4).limit(None), 4);
    }
}
