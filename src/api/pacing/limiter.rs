//! Client-side request quotas: governor behind our own [`Limiter`] type, and the engine's set of
//! [`Limiters`]: one quota shared by every request, an extra cap on reads, and an optional daily
//! request budget.
//!
//! CCPayment limits requests per IP over all endpoints (and so does the sandbox's
//! `--rate-limit`/`--burst` token bucket): a status query costs as much as a withdrawal create.
//! So `limits.rate_per_second` and `burst` are the budget for **all** requests: every call,
//! create or read, takes a permit from the [`Limiters::shared`] quota. `limits.read_rate_per_second`
//! is only an extra cap on reads ([`Limiters::read`]): a read takes a read permit and then a
//! shared one, so a flood of status queries or lookups can never take the whole budget from
//! withdrawals, and never adds to it either.
//!
//! # Order and fairness
//!
//! - A read takes its read permit *before* it queues for the shared quota, so a read held back by
//!   the read cap holds no shared permit and no place in the shared queue meanwhile.
//! - [`Limiter::acquire`] serves its waiters in arrival order (a fair tokio mutex decides whose
//!   turn it is; only the holder sleeps on governor's wait), so no sender is overtaken for ever.
//! - Each kind of call queues in arrival order for its turn, and only the head of each kind's
//!   queue waits at the shared quota. Under contention the shared permits therefore alternate
//!   between the kinds: the read at the head of its queue waits for at most one create however
//!   many creates are queued (they are most of the traffic, so plain arrival order could keep a
//!   read waiting for a whole round of senders), and a run of reads cannot hold creates back
//!   either.
//!
//! This is the steady pace the operator configured. It never changes while it runs (a governor
//! quota cannot), so the API's own signals (11004 too fast, 11009 daily cap) are handled by the
//! pause gate in [`super::gate`], which sits in front of these limiters and, like the shared
//! quota, counts every kind of call.
//!
//! The limiter is generic over governor's clock. The one it runs on is [`TokioTime`], governor's
//! clock read from tokio's, so a runtime with paused time (the tests of the engine, the
//! deterministic simulation) moves the quotas exactly as it moves every sleep; unit tests here
//! also drive it with [`governor::clock::FakeRelativeClock`]. Waiting uses `tokio::time::sleep`. Apart from that sleep this module does no I/O and reads no
//! clock of its own: the daily budget is told the time by its caller, and reads the crate's
//! injected [`SharedClock`] when it is given one (see [`Limiters::acquire`]).

use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};

pub use super::gate::DayClock;
use super::gate::utc;
use crate::util::clock::SharedClock;

/// Requests per second and burst for one quota.
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

/// governor's clock on tokio's time: the time since the clock was made, read from
/// `tokio::time::Instant`. Outside a runtime with paused time that is the monotonic clock; inside
/// one, it moves only when tokio's time does, so quotas, gates and sleeps all keep one time.
#[derive(Debug, Clone, Copy)]
pub struct TokioTime {
    start: tokio::time::Instant,
}

impl Default for TokioTime {
    fn default() -> Self {
        TokioTime {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioTime {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// The shortest sleep between two tries in [`Limiter::acquire`]. A zero wait can come back when
/// the permit became free between governor's decision and our reading of its clock; retrying at
/// once would be right, but a floor keeps a misbehaving clock from turning the loop into a spin.
const MIN_RETRY_SLEEP: Duration = Duration::from_millis(1);

type Governor<C> = governor::RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A client-side rate limiter over one governor direct (not keyed) limiter, generic over
/// governor's clock so tests use [`governor::clock::FakeRelativeClock`].
pub struct Limiter<C: Clock = TokioTime> {
    inner: Governor<C>,
    quota: Quota,
    /// Whose turn it is in [`Limiter::acquire`]. Tokio's mutex is fair (first come, first
    /// served), and only the holder waits on governor, so waiters get permits in arrival order.
    turn: tokio::sync::Mutex<()>,
}

impl<C: Clock> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl Limiter<TokioTime> {
    /// A limiter on tokio's clock.
    pub fn new(quota: Quota) -> Self {
        Limiter::with_clock(quota, TokioTime::default())
    }
}

impl<C: Clock> Limiter<C> {
    /// A limiter on the given governor clock.
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        Limiter {
            inner: governor::RateLimiter::direct_with_clock(quota.to_governor(), clock),
            quota,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes a permit now, or says how long until one is available (no waiting).
    ///
    /// This does not queue: it may take a permit ahead of senders waiting in
    /// [`Limiter::acquire`]. The engine only uses `acquire`; tests and simulations use this.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        match self.inner.check() {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.inner.clock().now())),
        }
    }

    /// Waits until a permit is taken, in arrival order with the other callers of `acquire`.
    ///
    /// The caller at the head of the queue loops try, sleep for the wait governor names, try
    /// again: governor's clock may not be tokio's, so one sleep is never assumed to be enough.
    /// The sleep is tokio's, so it follows paused time in tests. Dropping the future gives up
    /// the place in the queue.
    pub async fn acquire(&self) {
        let _turn = self.turn.lock().await;
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

/// What kind of call a request is: every kind takes a shared permit, reads a read permit too.
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

/// Requests of the configured burst that the shared quota holds back, as long as a burst of one
/// is left. CCPayment's bucket counts a request when it arrives, and network jitter can bring two
/// requests that left a full spacing apart closer together. With the configured rate and burst
/// equal to the API's, a sender pool at full rate keeps both buckets empty, and every such
/// squeeze would be answered 11004 (and cost a pause and a rate cut in the gate). One request of
/// slack in the API's bucket absorbs jitter up to about one spacing (20 ms at 50/s, 100 ms at
/// 10/s): the gate's simulations show 0 refusals with 20 ms of jitter at 50/s, against 11004
/// within seconds and about 90% of the rate without it. The cost is one request less in the
/// first burst after a quiet spell; the sustained rate is unchanged.
pub const BURST_RESERVE: u32 = 1;

/// The engine's limiters: one quota for every request to CCPayment, an extra cap on reads, and
/// an optional client-side daily request budget that stops before the API's daily cap.
pub struct Limiters<C: Clock = TokioTime> {
    /// Every request, creates and reads alike: `limits.rate_per_second` and `burst`.
    pub shared: Limiter<C>,
    /// The extra cap on reads (record queries, lookups): `limits.read_rate_per_second`.
    pub read: Limiter<C>,
    /// Each kind's queue for its turn at the shared quota: creates, then reads.
    queues: [tokio::sync::Mutex<()>; 2],
    budget: Option<DailyBudget>,
    /// The crate clock, if given: the budget is charged at the later of its time and the caller's.
    wall_clock: Option<SharedClock>,
}

impl<C: Clock> std::fmt::Debug for Limiters<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("shared", &self.shared)
            .field("read", &self.read)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Limiters<TokioTime> {
    /// Limiters on tokio's clock. `shared` paces every request, `read` caps reads
    /// further; `daily_budget` is the most requests of any kind the client sends per API day
    /// (`None` leaves the daily cap to the API's 11009), counted by the days of `wall_clock`.
    /// The engine's limiters, on tokio's clock, with the shared burst already spent (see
    /// [`Limiters::spend_burst`]).
    pub fn new(shared: Quota, read: Quota, daily_budget: Option<u64>, wall_clock: SharedClock) -> Self {
        let limiters =
            Limiters::with_clock(shared, read, daily_budget, TokioTime::default()).with_wall_clock(wall_clock);
        limiters.spend_burst();
        limiters
    }
}

impl<C: Clock + Clone> Limiters<C> {
    /// Limiters on the given governor clock (tests pass a `FakeRelativeClock`). The shared
    /// quota's burst is `shared.burst` less [`BURST_RESERVE`], and at least one.
    pub fn with_clock(shared: Quota, read: Quota, daily_budget: Option<u64>, clock: C) -> Self {
        let shared = Quota {
            burst: shared.burst.saturating_sub(BURST_RESERVE).max(1),
            ..shared
        };
        Limiters {
            shared: Limiter::with_clock(shared, clock.clone()),
            read: Limiter::with_clock(read, clock),
            queues: [tokio::sync::Mutex::new(()), tokio::sync::Mutex::new(())],
            budget: daily_budget.map(|limit| DailyBudget {
                limit,
                used: Mutex::new((i64::MIN, 0)),
            }),
            wall_clock: None,
        }
    }
}

impl<C: Clock> Limiters<C> {
    /// Takes the shared quota's burst, so sending starts at the steady rate: whoever used the API
    /// just before (the preflight of this batch, a run that just stopped) may have drained its
    /// bucket, and an opening burst on top of that is answered 11004. At most `burst` permits
    /// are taken: at a high rate the clock refills the quota as fast as a loop could drain it.
    pub fn spend_burst(&self) {
        for _ in 0..self.shared.quota().burst.max(1) {
            if self.shared.try_acquire().is_err() {
                break;
            }
        }
    }

    /// Charges the daily budget by the days of `clock` as well as by the callers' times (see
    /// [`Limiters::acquire`]).
    pub fn with_wall_clock(mut self, clock: SharedClock) -> Self {
        self.wall_clock = Some(clock);
        self
    }

    /// Waits for the permits of a call of this kind: a read permit (reads only), then a shared
    /// one; see "Order and fairness" in the module documentation. Returns
    /// `Err(BudgetExhausted)` without waiting when the daily budget for the current day is used
    /// up (the engine then pauses as on 11009).
    ///
    /// `now_ms` is the time as the caller read it. With a wall clock the budget is charged at
    /// the later of it and the clock's time: a caller may have read the time before the gate
    /// held it across a daily reset (the engine's status queries and lookups do), and charging
    /// such a request to the day that ended would refuse it although the new day's budget is
    /// full.
    ///
    /// The budget is charged before the wait for the pace permits, so a refusal never costs a
    /// permit and concurrent senders cannot overshoot the budget while they wait. The cost: a
    /// request that waits across the day boundary is counted on the day it was charged, so the
    /// budget should sit a little below the API's cap (it is meant to stop before it anyway).
    pub async fn acquire(&self, kind: CallKind, now_ms: i64, day: &DayClock) -> Result<(), BudgetExhausted> {
        if let Some(budget) = &self.budget {
            let now_ms = self
                .wall_clock
                .as_ref()
                .map_or(now_ms, |clock| now_ms.max(clock.now_ms()));
            budget.charge(now_ms, day)?;
        }
        let _queue = match kind {
            CallKind::Withdraw => self.queues[0].lock().await,
            CallKind::Read => {
                let queue = self.queues[1].lock().await;
                self.read.acquire().await;
                queue
            }
        };
        self.shared.acquire().await;
        Ok(())
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

    fn quota(per_second: u32, burst: u32) -> Quota {
        Quota { per_second, burst }
    }

    #[tokio::test(start_paused = true)]
    async fn every_call_takes_a_shared_permit_and_reads_a_read_permit_too() {
        let clock = FakeRelativeClock::default();
        let limiters = Arc::new(Limiters::with_clock(quota(10, 11), quota(1, 1), None, clock.clone()));
        // The shared burst is the configured 11 less the reserve of one.
        assert_eq!(limiters.shared.quota(), quota(10, 10));
        assert_eq!(limiters.acquire(CallKind::Read, 0, &DAY).await, Ok(()));
        // The second read waits for the read cap (governor's clock stands still) ...
        let read = {
            let limiters = Arc::clone(&limiters);
            tokio::spawn(async move { limiters.acquire(CallKind::Read, 0, &DAY).await })
        };
        tokio::task::yield_now().await;
        assert!(!read.is_finished());
        // ... without holding a shared permit: the other nine of the burst go to creates.
        // (At once: a minute of tokio's virtual time is plenty, governor's clock stands still.)
        let at_once = Duration::from_secs(60);
        for _ in 0..9 {
            let create = tokio::time::timeout(at_once, limiters.acquire(CallKind::Withdraw, 0, &DAY));
            assert_eq!(create.await, Ok(Ok(())));
        }
        assert!(!read.is_finished());
        // The first read took a shared permit too: the burst of ten is spent, for both kinds.
        assert_eq!(limiters.shared.try_acquire(), Err(Duration::from_millis(100)));
        // A second later the read cap lets the waiting read go, and it takes one of the ten
        // shared permits that came back meanwhile.
        clock.advance(Duration::from_secs(1));
        assert_eq!(read.await.expect("read task"), Ok(()));
        for _ in 0..9 {
            assert_eq!(limiters.shared.try_acquire(), Ok(()));
        }
        assert_eq!(limiters.shared.try_acquire(), Err(Duration::from_millis(100)));
        assert_eq!(limiters.budget_state(), None);
    }

    #[test]
    fn the_shared_burst_keeps_one_request_in_reserve_while_it_can() {
        let clock = FakeRelativeClock::default();
        for (configured, shared) in [(10, 9), (2, 1), (1, 1), (0, 1)] {
            let limiters = Limiters::with_clock(quota(50, configured), quota(50, configured), None, clock.clone());
            assert_eq!(limiters.shared.quota(), quota(50, shared), "burst {configured}");
            // The read cap is not a budget the API counts: it keeps the configured burst.
            assert_eq!(limiters.read.quota(), quota(50, configured));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_serves_waiters_in_arrival_order() {
        let clock = FakeRelativeClock::default();
        let limiter = Arc::new(Limiter::with_clock(quota(1, 1), clock.clone()));
        assert_eq!(limiter.try_acquire(), Ok(()));
        let spawn = || {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire().await })
        };
        // The first waiter is told to come back in a second (tokio time) ...
        let first = spawn();
        tokio::task::yield_now().await;
        // ... but governor's clock gets there before tokio's does. A newcomer finds the permit
        // free; it must still not take it from the sender that has waited longer.
        clock.advance(Duration::from_secs(1));
        let second = spawn();
        tokio::task::yield_now().await;
        assert!(!second.is_finished() && !first.is_finished());
        tokio::time::sleep(Duration::from_millis(1_001)).await;
        assert!(first.is_finished(), "the first waiter took the permit");
        assert!(!second.is_finished());
        clock.advance(Duration::from_secs(1));
        second.await.expect("second waiter");
    }

    /// What `senders` tasks of each kind, each asking for permits in a loop, get in 10 s: the
    /// time (governor's clock) of every permit, by kind. A driver task moves governor's fake
    /// clock a millisecond for every millisecond of tokio's paused time, so the limiters' sleeps
    /// and governor's arithmetic see the same virtual time.
    async fn hammer(
        limiters: Limiters<FakeRelativeClock>,
        clock: FakeRelativeClock,
        senders: [usize; 2],
    ) -> [Vec<Duration>; 2] {
        let limiters = Arc::new(limiters);
        let permits = Arc::new(Mutex::new([Vec::new(), Vec::new()]));
        let mut tasks = tokio::task::JoinSet::new();
        {
            let clock = clock.clone();
            tasks.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    clock.advance(Duration::from_millis(1));
                }
            });
        }
        for (index, kind) in [CallKind::Withdraw, CallKind::Read].into_iter().enumerate() {
            for _ in 0..senders[index] {
                let (limiters, permits, clock) = (Arc::clone(&limiters), Arc::clone(&permits), clock.clone());
                tasks.spawn(async move {
                    loop {
                        limiters.acquire(kind, 0, &DAY).await.expect("no budget");
                        let at = Duration::from(clock.now());
                        permits.lock().expect("permits")[index].push(at);
                    }
                });
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        tasks.abort_all();
        let permits = permits.lock().expect("permits").clone();
        permits.map(|times| times.into_iter().filter(|t| *t <= Duration::from_secs(10)).collect())
    }

    /// The most permits of any kind in any window of `window` (from one permit on).
    fn busiest_window(permits: &[Vec<Duration>; 2], window: Duration) -> usize {
        let mut all: Vec<Duration> = permits.iter().flatten().copied().collect();
        all.sort();
        (0..all.len())
            .map(|i| all[i..].iter().take_while(|t| **t < all[i] + window).count())
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn creates_and_reads_together_never_exceed_the_shared_rate() {
        // Eight senders of creates and one of reads, all asking as fast as they can for 10 s of
        // virtual time. The read cap is as generous as the shared quota.
        let clock = FakeRelativeClock::default();
        let limiters = Limiters::with_clock(quota(50, 10), quota(50, 10), None, clock.clone());
        let [creates, reads] = hammer(limiters, clock, [8, 1]).await;
        let total = creates.len() + reads.len();
        println!(
            "8 create senders, 1 read sender: {} creates, {} reads",
            creates.len(),
            reads.len()
        );
        // The shared quota's bound (rate x 10 s + burst), and nearly all of it used.
        assert!(total <= 50 * 10 + 10, "{total} permits");
        assert!(total >= 50 * 10, "{total} permits");
        let busiest = busiest_window(&[creates.clone(), reads.clone()], Duration::from_secs(1));
        assert!(busiest <= 50 + 10, "{busiest} permits in one second");
        // Reads still get through while creates saturate the quota: the kinds take turns, so
        // the lone read sender gets about half, not a ninth.
        assert!(reads.len() >= 200, "{} reads of {total}", reads.len());
    }

    #[tokio::test(start_paused = true)]
    async fn reads_cannot_starve_creates() {
        let clock = FakeRelativeClock::default();
        let limiters = Limiters::with_clock(quota(50, 10), quota(1_000, 100), None, clock.clone());
        let [creates, reads] = hammer(limiters, clock, [1, 8]).await;
        println!(
            "1 create sender, 8 read senders: {} creates, {} reads",
            creates.len(),
            reads.len()
        );
        assert!(creates.len() + reads.len() <= 510);
        assert!(
            creates.len() >= 200,
            "{} creates of {}",
            creates.len(),
            creates.len() + reads.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reads_held_by_the_read_cap_leave_the_shared_quota_to_creates() {
        let clock = FakeRelativeClock::default();
        let limiters = Limiters::with_clock(quota(50, 10), quota(5, 1), None, clock.clone());
        let [creates, reads] = hammer(limiters, clock, [4, 4]).await;
        println!(
            "4 create senders, 4 read senders, reads capped at 5/s: {} creates, {} reads",
            creates.len(),
            reads.len()
        );
        let total = creates.len() + reads.len();
        assert!(total <= 510, "{total} permits");
        assert!(reads.len() <= 5 * 10 + 1, "{} reads", reads.len());
        // A read waiting for its read permit holds no shared one: creates get the rest.
        assert!(total >= 500, "{total} permits");
        let busiest = busiest_window(&[creates, reads], Duration::from_secs(1));
        assert!(busiest <= 60, "{busiest} permits in one second");
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

    #[test]
    fn a_spent_burst_leaves_only_the_steady_rate() {
        let clock = FakeRelativeClock::default();
        let quota = Quota {
            per_second: 50,
            burst: 10,
        };
        let limiters = Limiters::with_clock(quota, quota, None, clock.clone());
        assert!(limiters.shared.try_acquire().is_ok(), "a fresh quota has its burst");
        limiters.spend_burst();
        assert!(
            limiters.shared.try_acquire().is_err(),
            "nothing left after spending the burst"
        );
        clock.advance(Duration::from_millis(20));
        assert!(
            limiters.shared.try_acquire().is_ok(),
            "one permit per 1/rate after that"
        );
        assert!(limiters.shared.try_acquire().is_err());
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

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_read_the_time_before_the_reset_is_charged_to_the_new_day() {
        let governor_clock = FakeRelativeClock::default();
        let wall = crate::util::clock::ManualClock::new(25_000);
        let limiters = Limiters::with_clock(quota(100, 100), quota(100, 100), Some(2), governor_clock)
            .with_wall_clock(wall.clone());
        assert_eq!(limiters.acquire(CallKind::Withdraw, 25_000, &DAY).await, Ok(()));
        assert_eq!(limiters.acquire(CallKind::Withdraw, 25_000, &DAY).await, Ok(()));
        assert_eq!(
            limiters.acquire(CallKind::Read, 25_000, &DAY).await,
            Err(BudgetExhausted { resets_at_ms: 30_000 })
        );
        // A status query read the time at 29 000 and then waited at the gate for the reset at
        // 30 000: it is charged to the new day, whose budget is full.
        wall.set_ms(30_000);
        assert_eq!(limiters.acquire(CallKind::Read, 29_000, &DAY).await, Ok(()));
        assert_eq!(limiters.budget_state(), Some((3, 1)));
        // A caller's time later than the clock's still counts (the clock is never behind it).
        assert_eq!(limiters.acquire(CallKind::Read, 40_000, &DAY).await, Ok(()));
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
        let limiters = Arc::new(Limiters::new(
            quota,
            quota,
            Some(10),
            crate::util::clock::ManualClock::new(0),
        ));
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
