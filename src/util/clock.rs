//! Wall-clock time behind a trait, so the signing timestamp, the sandbox's settle delays, rate
//! limits and daily caps can run on virtual time in tests.
//!
//! Only the binary's edges read the real clock ([`SystemClock`]); everything else receives a
//! [`SharedClock`]. [`ManualClock`] is a clock that moves only when told to.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Whole seconds since the Unix epoch: the 10-digit `Timestamp` header CCPayment expects.
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// A clock shared between tasks.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            // A clock set before 1970 is broken; report it as negative time rather than panic.
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that only moves when [`ManualClock::advance`] or [`ManualClock::set_ms`] is called.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    /// A manual clock starting at `start_ms`.
    pub fn new(start_ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now_ms: AtomicI64::new(start_ms),
        })
    }

    /// A manual clock starting at the current real time, so signatures made with it are accepted
    /// by a server on the real clock until it is advanced.
    pub fn starting_now() -> Arc<ManualClock> {
        ManualClock::new(SystemClock.now_ms())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to an absolute time.
    pub fn set_ms(&self, ms: i64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// A clock that reads another clock shifted by a fixed offset: a machine whose clock is wrong.
#[derive(Debug)]
pub struct OffsetClock {
    inner: SharedClock,
    offset_ms: i64,
}

impl OffsetClock {
    /// `inner` shifted by `offset_ms` (negative: behind).
    pub fn new(inner: SharedClock, offset_ms: i64) -> Arc<OffsetClock> {
        Arc::new(OffsetClock { inner, offset_ms })
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        self.inner.now_ms().saturating_add(self.offset_ms)
    }
}

/// Wall-clock time that follows tokio's clock from a starting instant: under
/// `tokio::time::pause()` it moves exactly as far as tokio's virtual time does, so a loop that
/// reads the wall clock and sleeps on tokio timers can be tested across days in milliseconds.
#[derive(Debug)]
pub struct TokioClock {
    start_ms: i64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start_ms` now and moving with tokio's time. Call it inside a runtime.
    pub fn new(start_ms: i64) -> Arc<TokioClock> {
        Arc::new(TokioClock {
            start_ms,
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.start_ms.saturating_add(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_677_152_720_500);
        assert_eq!(clock.now_secs(), 1_677_152_720);
        clock.advance(Duration::from_millis(600));
        assert_eq!(clock.now_ms(), 1_677_152_721_100);
        assert_eq!(clock.now_secs(), 1_677_152_721);
    }

    #[test]
    fn offset_clock_is_shifted() {
        let base = ManualClock::new(1_000_000);
        let skewed = OffsetClock::new(base.clone(), -600_000);
        assert_eq!(skewed.now_ms(), 400_000);
        base.advance(Duration::from_secs(1));
        assert_eq!(skewed.now_ms(), 401_000);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_virtual_time() {
        let clock = TokioClock::new(1_000);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now_ms(), 1_000 + 3_600_000);
    }

    #[test]
    fn system_clock_gives_ten_digit_seconds() {
        assert_eq!(SystemClock.now_secs().to_string().len(), 10);
    }
}
