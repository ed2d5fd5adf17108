//! Client-side request quotas: governor behind our own [`Limiter`] type, and the engine's set of
//! [`Limiters`] (withdrawal creates, read calls, and an optional daily request budget).
//!
//! This is the steady pace the operator configured. It never changes while it runs (a governor
//! quota cannot), so the API's own signals (11004 too fast, 11009 daily cap) are handled by the
//! pause gate in [`super::gate`], which sits in front of these limiters.
//!
//! The limiter is generic over governor's clock so tests drive it with
//! [`governor::clock::FakeRelativeClock`]: governor measures time with its own clock, not tokio's,
//! so tokio's paused time alone would not move it. Waiting uses `tokio::time::sleep`, which does
//! follow tokio's paused time. Apart from that sleep this module does no I/O and reads no
//! wall clock: the daily budget is told the time by its caller.

use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};

pub use super::gate::DayClock;
use super::gate::utc;

/// Requests per second and burst for one kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Sustained requests per second. Zero is read as one: configuration validation rejects zero,
    /// and a limiter that can never grant a permit would stall the engine silently.
    pub per_second: u32,
    /// How many requests may go out back to back after an idle period. Zero is read as one.
    pub burst: u32,
}

impl Quota {
    /// The equivalent governor quota, with zeros raised to one.
    fn to_governor(self) -> governor::Quota {
        let per_second = NonZeroU32::new(self.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        governor::Quota::per_second(per_second).allow_burst(burst)
    }
}

/// The shortest sleep between two tries in [`Limiter::acquire`]. A zero wait can come back when
/// the permit became free between governor's decision and our reading of its clock; retrying at
/// once would be right, but a floor keeps a misbehaving clock from turning the loop into a spin.
const MIN_RETRY_SLEEP: Duration = Duration::from_millis(1);

type Governor<C> = governor::RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A client-side rate limiter over one governor direct (not keyed) limiter, generic over
/// governor's clock so tests use [`governor::clock::FakeRelativeClock`].
pub struct Limiter<C: Clock = DefaultClock> {
    inner: Governor<C>,
    quota: Quota,
}

impl<C: Clock> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl Limiter<DefaultClock> {
    /// A limiter on the real monotonic clock.
    pub fn new(quota: Quota) -> Self {
        Limiter::with_clock(quota, DefaultClock::default())
    }
}

impl<C: Clock> Limiter<C> {
    /// A limiter on the given governor clock.
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Limiter {
            inner: governor::RateLimiter::direct_with_clock(quota.to_governor(), clock),
            quota,
        }
    }

    /// Takes a permit now, or says how long until one is available (no waiting).
    pub fn try_acquire(&self) -> Result<(), Duration> {
        match self.inner.check() {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.inner.clock().now())),
        }
    }

    /// Waits until a permit is taken.
    ///
    /// Loops try, sleep for the wait governor names, try again: another sender may take the
    /// permit we were waiting for, and governor's clock may not be tokio's, so one sleep is never
    /// assumed to be enough. The sleep is tokio's, so it follows paused time in tests.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire() {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait.max(MIN_RETRY_SLEEP)).await,
            }
        }
    }

    /// The quota this limiter was built with.
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

/// Which budget a call is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A withdrawal create (`applyAppWithdrawToNetwork`, `applyAppWithdrawToCwallet`, v1 withdraw).
    Withdraw,
    /// Everything else: record queries, preflight look-ups.
    Read,
}

/// The client-side daily request budget is used up for the current day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client-side daily request budget is used up until {}", utc(*.resets_at_ms))]
pub struct BudgetExhausted {
    /// When the next day starts and the budget is full again, in Unix milliseconds.
    pub resets_at_ms: i64,
}

/// Requests counted against the client-side daily budget.
#[derive(Debug)]
struct DailyBudget {
    limit: u64,
    /// (day index, requests used that day). Guarded by a std mutex: it is held only for a few
    /// arithmetic steps and never across an await.
    used: Mutex<(i64, u64)>,
}

impl DailyBudget {
    fn lock(&self) -> MutexGuard<'_, (i64, u64)> {
        // The guarded value is two integers that are always consistent, so a panic elsewhere
        // while holding the lock cannot have left it half-updated: recover rather than cascade.
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Charges one request to today's budget, or refuses when it is used up.
    fn charge(&self, now_ms: i64, day: &DayClock) -> Result<(), BudgetExhausted> {
        let today = day.day_index(now_ms);
        let mut used = self.lock();
        // A new day starts a fresh count. A clock that steps back into an earlier day keeps the
        // later day's count: the API's cap is never the looser of the two.
        if today > used.0 {
            *used = (today, 0);
        }
        if used.1 >= self.limit {
            return Err(BudgetExhausted {
                resets_at_ms: day.next_reset_ms(now_ms.max(day.day_start_ms(used.0))),
            });
        }
        used.1 += 1;
        Ok(())
    }
}

/// The engine's limiters: withdrawal creates and read calls (record queries, preflight) have
/// separate budgets, plus an optional client-side daily request budget that stops before the
/// API's daily cap.
pub struct Limiters<C: Clock = DefaultClock> {
    /// The pace of withdrawal creates.
    pub withdraw: Limiter<C>,
    /// The pace of record queries and preflight calls.
    pub read: Limiter<C>,
    budget: Option<DailyBudget>,
}

impl<C: Clock> std::fmt::Debug for Limiters<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("withdraw", &self.withdraw)
            .field("read", &self.read)
            .field("budget", &self.budget)
            .finish()
    }
}

impl Limiters<DefaultClock> {
    /// Limiters on the real monotonic clock. `daily_budget` is the most requests of any kind the
    /// client sends per API day; `None` leaves the daily cap to the API's 11009.
    pub fn new(withdraw: Quota, read: Quota, daily_budget: Option<u64>) -> Self {
        Limiters::with_clock(withdraw, read, daily_budget, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiters<C> {
    /// Limiters on the given governor clock (tests pass a `FakeRelativeClock`).
    pub fn with_clock(withdraw: Quota, read: Quota, daily_budget: Option<u64>, clock: C) -> Self {
        Limiters {
            withdraw: Limiter::with_clock(withdraw, clock.clone()),
            read: Limiter::with_clock(read, clock),
            budget: daily_budget.map(|limit| DailyBudget {
                limit,
                used: Mutex::new((i64::MIN, 0)),
            }),
        }
    }
}

impl<C: Clock> Limiters<C> {
    /// Waits for the kind's permit. Returns `Err(BudgetExhausted)` without waiting when the daily
    /// budget for the current day is used up (the engine then pauses as on 11009).
    ///
    /// The budget is charged before the wait for the pace permit, so a refusal never costs a
    /// permit and concurrent senders cannot overshoot the budget while they wait. The cost: a
    /// request that waits across the day boundary is counted on the day it was charged, so the
    /// budget should sit a little below the API's cap (it is meant to stop before it anyway).
    pub async fn acquire(&self, kind: CallKind, now_ms: i64, day: &DayClock) -> Result<(), BudgetExhausted> {
        if let Some(budget) = &self.budget {
            budget.charge(now_ms, day)?;
        }
        self.limiter(kind).acquire().await;
        Ok(())
    }

    /// The limiter for a kind of call.
    pub fn limiter(&self, kind: CallKind) -> &Limiter<C> {
        match kind {
            CallKind::Withdraw => &self.withdraw,
            CallKind::Read => &self.read,
        }
    }

    /// Restores the budget's counter from what the caller persisted: (day index, requests used
    /// that day). Does nothing when no budget is configured.
    pub fn restore_budget(&self, day_index: i64, used: u64) {
        if let Some(budget) = &self.budget {
            *budget.lock() = (day_index, used);
        }
    }

    /// The budget's counter to persist: (day index, requests used that day); `None` without a
    /// budget. Before the first request the day index is `i64::MIN`.
    pub fn budget_state(&self) -> Option<(i64, u64)> {
        self.budget.as_ref().map(|budget| *budget.lock())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use governor::clock::FakeRelativeClock;

    use super::*;

    const DAY: DayClock = DayClock {
        reset_offset_ms: 0,
        day_length_ms: 10_000,
    };

    fn limiter(per_second: u32, burst: u32) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Limiter::with_clock(Quota { per_second, burst }, clock.clone()), clock)
    }

    #[test]
    fn a_burst_is_granted_then_refused_with_the_right_wait() {
        let (limiter, _clock) = limiter(10, 3);
        for _ in 0..3 {
            assert_eq!(limiter.try_acquire(), Ok(()));
        }
        // 10 per second: the next permit is one tenth of a second away.
        assert_eq!(limiter.try_acquire(), Err(Duration::from_millis(100)));
        assert_eq!(
            limiter.quota(),
            Quota {
                per_second: 10,
                burst: 3
            }
        );
    }

    #[test]
    fn permits_refill_as_the_clock_advances() {
        let (limiter, clock) = limiter(10, 3);
        for _ in 0..3 {
            assert_eq!(limiter.try_acquire(), Ok(()));
        }
        clock.advance(Duration::from_millis(40));
        assert_eq!(limiter.try_acquire(), Err(Duration::from_millis(60)));
        clock.advance(Duration::from_millis(60));
        assert_eq!(limiter.try_acquire(), Ok(()));
        assert!(limiter.try_acquire().is_err());
        // A long idle period refills the burst, and no more than the burst.
        clock.advance(Duration::from_secs(10));
        for _ in 0..3 {
            assert_eq!(limiter.try_acquire(), Ok(()));
        }
        assert!(limiter.try_acquire().is_err());
    }

    #[test]
    fn zero_quotas_are_read_as_one() {
        let (limiter, clock) = limiter(0, 0);
        assert_eq!(limiter.try_acquire(), Ok(()));
        assert_eq!(limiter.try_acquire(), Err(Duration::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.try_acquire(), Ok(()));
    }

    #[test]
    fn withdraw_and_read_budgets_do_not_interfere() {
        let clock = FakeRelativeClock::default();
        let limiters = Limiters::with_clock(
            Quota {
                per_second: 2,
                burst: 2,
            },
            Quota {
                per_second: 5,
                burst: 5,
            },
            None,
            clock,
        );
        assert_eq!(limiters.withdraw.try_acquire(), Ok(()));
        assert_eq!(limiters.withdraw.try_acquire(), Ok(()));
        assert_eq!(limiters.withdraw.try_acquire(), Err(Duration::from_millis(500)));
        // Reads still have their whole burst after withdrawals ran dry ...
        for _ in 0..5 {
            assert_eq!(limiters.limiter(CallKind::Read).try_acquire(), Ok(()));
        }
        assert_eq!(limiters.read.try_acquire(), Err(Duration::from_millis(200)));
        // ... and draining reads did not move the withdrawal wait.
        assert_eq!(limiters.withdraw.try_acquire(), Err(Duration::from_millis(500)));
        assert_eq!(limiters.budget_state(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_daily_budget_refuses_without_waiting_and_resets_at_the_next_day() {
        let clock = FakeRelativeClock::default();
        let generous = Quota {
            per_second: 1000,
            burst: 1000,
        };
        let limiters = Limiters::with_clock(generous, generous, Some(3), clock);
        let start = 25_000; // inside day 2 of the 10-second test days
        let started = tokio::time::Instant::now();
        assert_eq!(limiters.acquire(CallKind::Withdraw, start, &DAY).await, Ok(()));
        assert_eq!(limiters.acquire(CallKind::Read, start + 1, &DAY).await, Ok(()));
        assert_eq!(limiters.acquire(CallKind::Read, start + 2, &DAY).await, Ok(()));
        assert_eq!(limiters.budget_state(), Some((2, 3)));
        // Reads and withdrawals share the budget: the fourth request of either kind is refused.
        for kind in [CallKind::Withdraw, CallKind::Read] {
            assert_eq!(
                limiters.acquire(kind, start + 3, &DAY).await,
                Err(BudgetExhausted { resets_at_ms: 30_000 })
            );
        }
        assert!(limiters.acquire(CallKind::Read, 29_999, &DAY).await.is_err());
        // The refusals neither waited nor counted.
        assert_eq!(tokio::time::Instant::now(), started);
        assert_eq!(limiters.budget_state(), Some((2, 3)));
        assert_eq!(
            BudgetExhausted { resets_at_ms: 30_000 }.to_string(),
            "the client-side daily request budget is used up until 1970-01-01T00:00:30.000Z"
        );
        // The next day starts with a full budget.
        assert_eq!(limiters.acquire(CallKind::Withdraw, 30_000, &DAY).await, Ok(()));
        assert_eq!(limiters.budget_state(), Some((3, 1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_restored_budget_continues_the_persisted_count() {
        let clock = FakeRelativeClock::default();
        let quota = Quota {
            per_second: 100,
            burst: 100,
        };
        let limiters = Limiters::with_clock(quota, quota, Some(5), clock);
        let day = DayClock {
            reset_offset_ms: 3_000,
            day_length_ms: 10_000,
        };
        // Day 4 runs from 43 000 to 53 000 with the 3-second offset.
        limiters.restore_budget(4, 4);
        assert_eq!(limiters.acquire(CallKind::Withdraw, 50_000, &day).await, Ok(()));
        assert_eq!(
            limiters.acquire(CallKind::Withdraw, 50_001, &day).await,
            Err(BudgetExhausted { resets_at_ms: 53_000 })
        );
        // A count restored from an earlier day no longer applies today.
        limiters.restore_budget(3, 5);
        assert_eq!(limiters.acquire(CallKind::Withdraw, 50_002, &day).await, Ok(()));
        assert_eq!(limiters.budget_state(), Some((4, 1)));
    }

    #[test]
    fn a_clock_stepping_back_a_day_does_not_refill_the_budget() {
        let budget = DailyBudget {
            limit: 1,
            used: Mutex::new((i64::MIN, 0)),
        };
        assert_eq!(budget.charge(25_000, &DAY), Ok(()));
        // The wall clock jumps back into day 1: still refused, until day 2 is over.
        assert_eq!(
            budget.charge(15_000, &DAY),
            Err(BudgetExhausted { resets_at_ms: 30_000 })
        );
    }

    #[tokio::test]
    async fn limiters_on_the_real_clock_can_be_shared_between_tasks() {
        let quota = Quota {
            per_second: 10,
            burst: 2,
        };
        let limiters = Arc::new(Limiters::new(quota, quota, Some(10)));
        let task = {
            let limiters = Arc::clone(&limiters);
            // The burst is there at once, so this test does not depend on real time passing.
            tokio::spawn(async move { limiters.acquire(CallKind::Withdraw, 0, &DayClock::UTC_MIDNIGHT).await })
        };
        assert_eq!(task.await.expect("task"), Ok(()));
        assert_eq!(limiters.budget_state(), Some((0, 1)));
        assert_eq!(limiters.read.quota(), quota);
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_on_tokio_time_until_governor_grants_a_permit() {
        let clock = FakeRelativeClock::default();
        let limiter = Arc::new(Limiter::with_clock(
            Quota {
                per_second: 1,
                burst: 1,
            },
            clock.clone(),
        ));
        assert_eq!(limiter.try_acquire(), Ok(()));
        let started = tokio::time::Instant::now();
        let waiter = {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                limiter.acquire().await;
                tokio::time::Instant::now()
            })
        };
        // Let the waiter make its first try while governor's clock still reads zero.
        tokio::task::yield_now().await;
        // The waiter is told to come back in 1 s (tokio time). Governor's clock lags behind: at
        // 1.2 s it has only moved 0.5 s, so the waiter's first retry (at 1.0 s) was refused and it
        // went back to sleep for the remaining 0.5 s rather than giving up or spinning.
        clock.advance(Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(!waiter.is_finished());
        clock.advance(Duration::from_millis(500));
        let granted_at = waiter.await.expect("waiter task");
        assert_eq!(granted_at - started, Duration::from_millis(1_500));
        assert!(limiter.try_acquire().is_err(), "the waiter took the permit");
    }
}
