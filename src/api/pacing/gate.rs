//! The pause gate: whether any request may be sent to CCPayment right now.
//!
//! The gate sits in front of the configured quotas in [`super::limiter`] and holds every sender,
//! whatever kind of call it makes (CCPayment limits per IP), for three reasons:
//!
//! - **Rate limited (11004).** The API's real limit is unknown and may be lower than the
//!   configured rate (other programs may share the IP). Each 11004 closes the gate for a
//!   jittered, capped, growing pause and lowers the rate the gate lets through; successes raise
//!   it again. See "Finding the API's limit" below.
//! - **Daily limit (11009)** or the client-side daily budget: the gate closes until the next
//!   daily reset ([`DayClock::next_reset_ms`]). This pause is part of [`PersistedPause`], which
//!   the engine stores so that a restart does not hammer the API before the reset. At the reset
//!   instant the gate is open again. An 11009 that comes within a short grace after a reset
//!   ([`RESET_GRACE_MS`], at most 1% of the day) may belong to the day that just ended: a
//!   request sent before the reset and answered after it, or CCPayment's clock a little behind
//!   ours. Pausing a whole day for it would miss the new day entirely, so such an 11009 pauses
//!   only [`RESET_RETRY_MS`] and sending tries again; an 11009 after the grace is the new day's
//!   cap and pauses until the next reset.
//! - **Kill switch** (operator `pause`): closed until resumed; also persisted.
//!
//! # Finding the API's limit
//!
//! A governor quota cannot change while it runs, so the adaptive part lives here, as an AIMD loop
//! (additive increase, multiplicative decrease: the way TCP finds a link's capacity without being
//! told it). While it is active the gate enforces a minimum spacing between sends, `1 / rate`.
//!
//! - **Pause.** Each 11004 raises `level` by one and closes the gate for
//!   `Backoff { base: 1 s, cap: 60 s }.delay(level, jitter)`, at least 250 ms, so an API that
//!   keeps refusing gets ever longer rests and concurrent senders do not return in lockstep.
//!   `successes_to_step_down` consecutive successes (default 20) lower the level by one.
//! - **Multiplicative decrease.** The rate drops to a fraction of the rate that was refused:
//!   0.9 at level 1, 0.6 at level 2, 0.5 from level 3 on. A single 11004 near the limit costs
//!   10%; refusals in quick succession mean the limit is far below and cut deep, so a start at
//!   50/s against a real 10/s converges in three or four refusals rather than a dozen.
//! - **Additive increase.** Each success raises the rate: quickly (1% of the remaining gap)
//!   while it is below the *knee*, the rate a single level-1 cut would have left, then by a small
//!   probe step (0.01% of the refused rate, growing with every 300 successes). Above the real
//!   limit the API's bucket drains only slowly at first, so the next 11004 comes late and the
//!   loop spends most of its time just below the limit. When the rate reaches the configured
//!   rate the spacing disappears and only the governor quota paces requests.
//!
//! The spacing counts every request, as CCPayment does (per IP, over all endpoints) and as the
//! shared quota behind the gate does: creates and reads alike pass [`Gate::wait_open`], which
//! records one send each, and each answer is reported once, as a success or an 11004. So status
//! queries are part of the rate the loop finds, and nothing is counted twice. The configured
//! rate it climbs back to is `limits.rate_per_second`, the shared quota's rate.
//!
//! The constants were tuned with the simulations in this module's tests: a sender pool with an
//! endless backlog of creates, one status query per 20 creates, against a token-bucket API that
//! counts both, from one sender with instant replies up to 16 senders with 100 ms replies and
//! up to 20 ms of jitter on the way to the API. Against a real limit of 30/s with the configured
//! rate at 50/s, over one minute, the gate achieves 94–97% of 30/s with 0.5–0.7% of requests
//! answered 11004 when the API allows bursts of 10 (the sandbox's default), about 100% with
//! bursts of 30, and 88–95% with bursts of only 2–5; over ten minutes, 92% or more for every
//! burst from 2 up, with at most 0.3% answered 11004. With the API's limit equal to the
//! configured rate (50/s, burst 10 on both sides) the gate never acts: no 11004, 100% of the
//! rate, also with jitter, thanks to the shared quota's reserve of one request of the burst
//! ([`super::limiter::BURST_RESERVE`]).
//!
//! 11004 replies that arrive while the gate is already paused for an earlier 11004 are echoes of
//! the same overload (requests in flight when the first refusal came) and change nothing;
//! otherwise many concurrent senders would cut the rate many times for one event. The pause is
//! at least 250 ms, longer than a normal round trip, which is what makes this rule sound.
//!
//! The spacing is scheduled like a GCRA with a millisecond of tolerance, so rounding to whole
//! milliseconds neither drifts nor bursts, and an idle sender earns no burst.
//!
//! # Counting pauses
//!
//! For the daemon's metrics the gate counts the pauses that *began* ([`PauseCounts`]): an
//! 11004 that closes the gate (not its echoes), and a daily-limit pause (an 11009 or the client
//! budget) that starts while no daily pause is in force (not a late reply that re-confirms or
//! extends one). A pause restored from [`PersistedPause`] at start did not begin in this
//! process and is not counted. Whether the gate is closed now is [`Gate::snapshot`]'s reason.
//!
//! [`GateState`] is pure: every method takes the time (and, where random, a number in `[0, 1)`)
//! as an argument, and it does no I/O. [`Gate`] is the small async wrapper the engine's senders
//! share; it reads the crate clock and sleeps on tokio time.

use std::pin::pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use super::backoff::{Backoff, Jitter};
use crate::util::clock::SharedClock;

/// The daily cap's day boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DayClock {
    /// The daily reset time as milliseconds after 00:00 UTC (0: midnight UTC).
    pub reset_offset_ms: i64,
    /// The length of a day: 86 400 000 normally; shortened in tests.
    pub day_length_ms: i64,
}

impl Default for DayClock {
    fn default() -> Self {
        DayClock::UTC_MIDNIGHT
    }
}

impl DayClock {
    /// Days that start at midnight UTC.
    pub const UTC_MIDNIGHT: DayClock = DayClock {
        reset_offset_ms: 0,
        day_length_ms: 86_400_000,
    };

    /// A non-positive day length would divide by zero; one millisecond is the nonsense value
    /// that at least keeps the arithmetic defined (configuration validation rejects it).
    fn length(&self) -> i64 {
        self.day_length_ms.max(1)
    }

    /// Which day `now_ms` falls in: `floor((now - offset) / length)`.
    pub fn day_index(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.reset_offset_ms).div_euclid(self.length())
    }

    /// When day `day_index` starts, in Unix milliseconds.
    pub fn day_start_ms(&self, day_index: i64) -> i64 {
        day_index
            .saturating_mul(self.length())
            .saturating_add(self.reset_offset_ms)
    }

    /// The start of the next day: the first reset strictly after `now_ms`.
    pub fn next_reset_ms(&self, now_ms: i64) -> i64 {
        self.day_start_ms(self.day_index(now_ms).saturating_add(1))
    }
}

/// The part of the gate that must survive a restart. The engine stores it whenever
/// [`GateState::on_daily_limit`] or [`GateState::set_kill_switch`] returns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub struct PersistedPause {
    /// Closed until this time (Unix ms) because the daily request limit was reached.
    pub daily_until_ms: Option<i64>,
    /// The operator paused submission.
    pub kill_switch: bool,
    /// Why, in words: the operator's note or the API's message.
    pub reason: Option<String>,
}

impl PersistedPause {
    /// This pause with the operator's kill switch turned on (with the operator's note) or off
    /// (the note goes with it). The one rule for the kill switch, live in the gate and offline
    /// on the stored value alike.
    pub fn with_kill_switch(mut self, on: bool, reason: Option<String>) -> PersistedPause {
        self.kill_switch = on;
        self.reason = if on { reason } else { None };
        self
    }
}

/// How many pauses began since the gate was created (see "Counting pauses" in the module
/// documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PauseCounts {
    /// Pauses after an 11004 (rate limited).
    pub rate_limit: u64,
    /// Pauses until the daily reset (11009, or the client's daily budget used up).
    pub daily_limit: u64,
}

/// The pause after an 11004, by level: 1 s, 2 s, 4 s … up to a minute, full jitter.
const PAUSE_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(60),
};

/// The shortest pause after an 11004: full jitter can draw nearly zero, and a pause that short
/// would not give the API's bucket time to refill at all.
const MIN_PAUSE_MS: i64 = 250;

/// The level stops rising here; the pause has long since reached its cap.
const MAX_LEVEL: u32 = 32;

/// An 11009 this soon after a daily reset (or within 1% of the day, if that is shorter) may be a
/// reply to a request of the day that just ended, or CCPayment's clock may be a little behind
/// ours: long enough for a reply in flight across the reset and for clocks kept by NTP.
pub const RESET_GRACE_MS: i64 = 30_000;

/// How long an 11009 within the grace after a reset pauses: short enough that sending resumes
/// within a second of CCPayment's own reset.
pub const RESET_RETRY_MS: i64 = 500;

/// The default number of consecutive successes that lower the level by one.
pub const DEFAULT_SUCCESSES_TO_STEP_DOWN: u32 = 20;

/// After a first 11004 the allowed rate drops to this fraction of the rate that was refused.
const DECREASE: f64 = 0.9;

/// The deepest cut, reached from level 3 on: an API that keeps refusing is far below our rate.
const DEEPEST_DECREASE: f64 = 0.5;

/// The fraction of the refused rate kept after an 11004 at `level`: 0.9, 0.6, then 0.5. The
/// deeper cuts at higher levels make a start far above the real limit (say 50/s against 10/s)
/// converge in a few 11004s, and few 11004s means few pauses, which are what costs throughput.
fn cut_factor(level: u32) -> f64 {
    let level = f64::from(level.max(1));
    (1.0 - (1.0 - DECREASE) * level * level).max(DEEPEST_DECREASE)
}

/// Below the knee (the rate a level-1 cut would have left), each success closes this fraction
/// of the remaining gap: a deep cut is mostly undone within a few hundred requests.
const FAST_APPROACH: f64 = 0.01;

/// From the knee on, each success raises the allowed rate by this fraction of the refused rate.
/// Small, because the knee is usually just below the real limit and every request sent above the
/// limit drains the API's bucket towards the next 11004.
const PROBE_STEP: f64 = 1e-4;

/// The probe step grows by one `PROBE_STEP` every this many successes, so a limit that was lifted
/// is regained in a minute or two rather than never.
const PROBE_DOUBLING: f64 = 300.0;

/// The GCRA tolerance of the spacing, in microseconds: absorbs rounding to whole milliseconds.
const SPACING_TOLERANCE_US: i64 = 1_000;

/// The adaptive part, present only while the gate is slower than the configured rate.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Throttle {
    /// Requests per second the gate currently lets through.
    rate: f64,
    /// The rate at the last 11004: known to be too fast.
    refused_rate: f64,
    /// Climb quickly up to here, then probe slowly: the rate a single 11004 would have cut to.
    knee: f64,
    /// Successes since the last cut: the probe step grows with them.
    probe_successes: u32,
    /// The earliest time of the next send, in microseconds (the GCRA's theoretical arrival time).
    next_send_us: i64,
}

/// The gate's state. Pure: every method takes the time, and randomness as a number in `[0, 1)`.
#[derive(Debug, Clone)]
pub struct GateState {
    persisted: PersistedPause,
    /// The configured rate, as the time between two requests.
    base_spacing: Duration,
    level: u32,
    /// Consecutive successes since the last 11004 or the last step down of the level.
    streak: u32,
    successes_to_step_down: u32,
    /// End of the pause after the last 11004 (Unix ms); `i64::MIN` when there was none.
    backoff_until_ms: i64,
    throttle: Option<Throttle>,
    pauses: PauseCounts,
}

impl GateState {
    /// A gate restored from what the engine persisted. `base_spacing` is the time between two
    /// requests at the configured rate (1 / rate); zero means "no configured rate", and the
    /// adaptive spacing then starts from a nominal 1 000 requests per second.
    pub fn new(restored: PersistedPause, base_spacing: Duration) -> Self {
        GateState {
            persisted: restored,
            base_spacing,
            level: 0,
            streak: 0,
            successes_to_step_down: DEFAULT_SUCCESSES_TO_STEP_DOWN,
            backoff_until_ms: i64::MIN,
            throttle: None,
            pauses: PauseCounts::default(),
        }
    }

    /// Sets how many consecutive successes lower the level by one (default 20; 0 is read as 1).
    pub fn with_successes_to_step_down(mut self, successes: u32) -> Self {
        self.successes_to_step_down = successes.max(1);
        self
    }

    /// The configured rate in requests per second.
    fn configured_rate(&self) -> f64 {
        let secs = self.base_spacing.as_secs_f64();
        if secs > 0.0 { 1.0 / secs } else { 1_000.0 }
    }

    /// `None`: send now. `Some(until_ms)`: hold until then, the earliest time sending may resume
    /// (`i64::MAX` for the kill switch, which only the operator lifts).
    pub fn hold_until(&self, now_ms: i64) -> Option<i64> {
        if self.persisted.kill_switch {
            return Some(i64::MAX);
        }
        // Every active hold must pass, so the gate opens at the latest of them.
        let spacing_until = self
            .throttle
            .map(|t| ceil_div(t.next_send_us.saturating_sub(SPACING_TOLERANCE_US), 1_000));
        [
            self.persisted.daily_until_ms,
            Some(self.backoff_until_ms),
            spacing_until,
        ]
        .into_iter()
        .flatten()
        .filter(|&until| until > now_ms)
        .max()
    }

    /// Records that a request is being sent now, for the spacing.
    pub fn on_send(&mut self, now_ms: i64) {
        if let Some(t) = &mut self.throttle {
            let now_us = now_ms.saturating_mul(1_000);
            // GCRA: the next slot follows the previous slot, not the actual send, unless the
            // sender was idle for longer than the tolerance (then it follows the send: an idle
            // gap earns no burst).
            t.next_send_us = t
                .next_send_us
                .max(now_us.saturating_sub(SPACING_TOLERANCE_US))
                .saturating_add(spacing_us(t.rate));
        }
    }

    /// A request went through: the level steps down after a run of successes and the allowed rate
    /// climbs by one probe step.
    pub fn on_success(&mut self, _now_ms: i64) {
        self.streak = self.streak.saturating_add(1);
        if self.streak >= self.successes_to_step_down && self.level > 0 {
            self.level -= 1;
            self.streak = 0;
        }
        let configured = self.configured_rate();
        if let Some(t) = &mut self.throttle {
            t.probe_successes = t.probe_successes.saturating_add(1);
            let growth = 1.0 + f64::from(t.probe_successes) / PROBE_DOUBLING;
            let probe = t.refused_rate * PROBE_STEP * growth;
            let approach = (t.knee - t.rate) * FAST_APPROACH;
            t.rate += probe.max(approach);
            if t.rate >= configured {
                // Back at the configured rate: the governor quota alone paces requests again.
                self.throttle = None;
            }
        }
    }

    /// CCPayment answered 11004: pause every sender and lower the allowed rate.
    ///
    /// `unit` is a random number in `[0, 1)` for the pause's jitter.
    pub fn on_rate_limited(&mut self, now_ms: i64, unit: f64) {
        if now_ms < self.backoff_until_ms {
            // An echo of the refusal that closed the gate: that request was sent before the
            // pause began, so it says nothing new about the rate.
            return;
        }
        self.pauses.rate_limit = self.pauses.rate_limit.saturating_add(1);
        self.level = (self.level + 1).min(MAX_LEVEL);
        self.streak = 0;
        let pause_ms = duration_ms(PAUSE_BACKOFF.delay(self.level, unit)).max(MIN_PAUSE_MS);
        self.backoff_until_ms = now_ms.saturating_add(pause_ms);

        let refused = self.throttle.map_or_else(|| self.configured_rate(), |t| t.rate);
        let cut = refused * cut_factor(self.level);
        self.throttle = Some(Throttle {
            rate: cut,
            refused_rate: refused,
            knee: refused * DECREASE,
            probe_successes: 0,
            // The first send after the pause may go at once.
            next_send_us: self.backoff_until_ms.saturating_mul(1_000),
        });
    }

    /// 11009 or the client budget is used up: pause until the next reset, or only for
    /// [`RESET_RETRY_MS`] within the grace after a reset (see the module documentation). Returns
    /// the state to persist.
    pub fn on_daily_limit(&mut self, now_ms: i64, day: &DayClock, reason: &str) -> PersistedPause {
        let next_reset = day.next_reset_ms(now_ms);
        let since_reset = now_ms.saturating_sub(day.day_start_ms(day.day_index(now_ms)));
        let until = if since_reset < RESET_GRACE_MS.min(day.length() / 100) {
            now_ms.saturating_add(RESET_RETRY_MS).min(next_reset)
        } else {
            next_reset
        };
        if self.persisted.daily_until_ms.is_none_or(|u| u <= now_ms) {
            self.pauses.daily_limit = self.pauses.daily_limit.saturating_add(1);
        }
        // Never shorten a pause already recorded (a reply from the previous day arriving late
        // must not reopen the gate early).
        self.persisted.daily_until_ms = Some(self.persisted.daily_until_ms.map_or(until, |u| u.max(until)));
        // The operator's note explains a kill switch better than the API's message would.
        if !self.persisted.kill_switch {
            self.persisted.reason = Some(reason.to_owned());
        }
        self.persisted()
    }

    /// Turns the operator's kill switch on or off. Returns the state to persist.
    ///
    /// `reason` replaces the stored reason either way (`None` clears it).
    pub fn set_kill_switch(&mut self, on: bool, reason: Option<String>) -> PersistedPause {
        self.persisted = std::mem::take(&mut self.persisted).with_kill_switch(on, reason);
        self.persisted()
    }

    /// The state to persist.
    pub fn persisted(&self) -> PersistedPause {
        self.persisted.clone()
    }

    /// Whether a pause holds the gate now (the kill switch, the daily limit, an 11004 backoff):
    /// [`GateState::reason`] without building its words.
    pub fn is_paused(&self, now_ms: i64) -> bool {
        self.persisted.kill_switch
            || self.persisted.daily_until_ms.is_some_and(|u| u > now_ms)
            || self.backoff_until_ms > now_ms
    }

    /// Why the gate is closed, for status output; `None` when it is open.
    ///
    /// The adaptive spacing after an 11004 is not a reason: the gate is open then, only slower
    /// (see [`GateState::allowed_rate`]). Callers use `None` to mean "sending may go on", and
    /// the spacing only ever clears through successful sends.
    pub fn reason(&self, now_ms: i64) -> Option<String> {
        let note = |text: &str| match &self.persisted.reason {
            Some(reason) => format!("{text}: {reason}"),
            None => text.to_owned(),
        };
        if self.persisted.kill_switch {
            return Some(note("paused by the operator"));
        }
        if let Some(until) = self.persisted.daily_until_ms.filter(|&u| u > now_ms) {
            return Some(note(&format!(
                "daily request limit reached, paused until {}",
                utc(until)
            )));
        }
        (self.backoff_until_ms > now_ms).then(|| {
            format!(
                "rate limited by CCPayment (11004), backing off until {}",
                utc(self.backoff_until_ms)
            )
        })
    }

    /// How many recent 11004s set the length of the next pause (0: none recently).
    pub fn level(&self) -> u32 {
        self.level
    }

    /// The rate the gate currently lets through, in requests per second; `None` when only the
    /// configured quota applies.
    pub fn allowed_rate(&self) -> Option<f64> {
        self.throttle.map(|t| t.rate)
    }

    /// How many pauses began since this state was created.
    pub fn pause_counts(&self) -> PauseCounts {
        self.pauses
    }
}

/// Microseconds between two sends at `rate` requests per second.
fn spacing_us(rate: f64) -> i64 {
    // The rate never drops below a request per hour: cuts are multiplicative and a refusal at
    // one per hour is not something CCPayment does.
    (1e6 / rate.max(1.0 / 3600.0)).ceil() as i64
}

fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 { q } else { q + 1 }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// UTC RFC 3339 with milliseconds, for messages.
pub(crate) fn utc(ms: i64) -> String {
    crate::util::time::rfc3339_ms(ms)
}

/// The longest single sleep in [`Gate::wait_open`]: a waiter re-reads the crate clock at least
/// this often, so a clock that is moved by hand (tests) or a reset that arrives is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The async face of the gate, shared by the engine's senders.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<GateState>,
    /// Wakes waiters when the operator changes the kill switch.
    changed: Notify,
    clock: SharedClock,
    jitter: Mutex<Jitter>,
}

impl Gate {
    /// A gate over `state`, reading time from `clock`; `seed` seeds the pause jitter.
    pub fn new(state: GateState, clock: SharedClock, seed: u64) -> Self {
        Gate {
            state: Mutex::new(state),
            changed: Notify::new(),
            clock,
            jitter: Mutex::new(Jitter::new(seed)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // Every GateState method leaves it consistent before it could panic, so a poisoned lock
        // still guards a usable state; refusing to send for ever would be worse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until a request may be sent, then records the send (for the spacing) and returns.
    ///
    /// The lock is never held across an await: each round reads the state, then sleeps until the
    /// hold ends (at most a second at a time) or until the kill switch changes.
    pub async fn wait_open(&self) {
        loop {
            // Register for a wake-up before reading the state, so a change between the read and
            // the sleep is not missed.
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let now_ms = self.clock.now_ms();
            let hold_until = {
                let mut state = self.lock();
                match state.hold_until(now_ms) {
                    None => {
                        state.on_send(now_ms);
                        return;
                    }
                    Some(until) => until,
                }
            };
            let wait_ms = u64::try_from(hold_until.saturating_sub(now_ms)).unwrap_or(0).max(1);
            let wait = Duration::from_millis(wait_ms).min(MAX_SLEEP);
            // Biased: the same order every time, so a run on paused time replays exactly.
            tokio::select! {
                biased;
                () = &mut changed => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// When the gate opens again: `None` when it is open now, `i64::MAX` for the kill switch.
    /// For a loop that sleeps while the gate is closed, so that it can wake when the gate opens
    /// (at a daily reset, say) rather than at its next poll.
    pub fn hold_until(&self) -> Option<i64> {
        let now_ms = self.clock.now_ms();
        self.lock().hold_until(now_ms)
    }

    /// A request went through.
    pub fn on_success(&self) {
        let now_ms = self.clock.now_ms();
        self.lock().on_success(now_ms);
    }

    /// CCPayment answered 11004.
    pub fn on_rate_limited(&self) {
        let unit = self.jitter.lock().unwrap_or_else(PoisonError::into_inner).next_unit();
        let now_ms = self.clock.now_ms();
        self.lock().on_rate_limited(now_ms, unit);
    }

    /// CCPayment answered 11009, or the client budget is used up. Returns the state to persist.
    pub fn on_daily_limit(&self, day: &DayClock, reason: &str) -> PersistedPause {
        let now_ms = self.clock.now_ms();
        self.lock().on_daily_limit(now_ms, day, reason)
    }

    /// Turns the kill switch on or off and wakes the waiters. Returns the state to persist.
    pub fn set_kill_switch(&self, on: bool, reason: Option<String>) -> PersistedPause {
        let persisted = self.lock().set_kill_switch(on, reason);
        self.changed.notify_waiters();
        persisted
    }

    /// Whether a pause (the kill switch, the daily limit, an 11004 backoff) holds the gate now;
    /// the spacing of a reduced rate is not a pause.
    pub fn is_paused(&self) -> bool {
        let now_ms = self.clock.now_ms();
        self.lock().is_paused(now_ms)
    }

    /// The state to persist.
    pub fn persisted(&self) -> PersistedPause {
        self.lock().persisted()
    }

    /// The state to persist and why the gate is closed now (`None`: open).
    pub fn snapshot(&self) -> (PersistedPause, Option<String>) {
        let now_ms = self.clock.now_ms();
        let state = self.lock();
        (state.persisted(), state.reason(now_ms))
    }

    /// The rate the gate lets through after recent 11004s, in requests per second; `None` when
    /// only the configured quota applies. For status output.
    pub fn allowed_rate(&self) -> Option<f64> {
        self.lock().allowed_rate()
    }

    /// How many rate-limit and daily-limit pauses began since the gate was created. For
    /// metrics; [`Gate::snapshot`] says whether a pause is in force now.
    pub fn pause_counts(&self) -> PauseCounts {
        self.lock().pause_counts()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use governor::clock::FakeRelativeClock;

    use super::super::limiter::{CallKind, Limiter, Limiters, Quota};
    use super::*;
    use crate::util::clock::{Clock, ManualClock};

    /// 50 requests per second configured.
    const BASE_SPACING: Duration = Duration::from_millis(20);

    /// Ten-second days that reset three seconds after each multiple of ten seconds.
    const SHORT_DAY: DayClock = DayClock {
        reset_offset_ms: 3_000,
        day_length_ms: 10_000,
    };

    fn open_gate() -> GateState {
        GateState::new(PersistedPause::default(), BASE_SPACING)
    }

    #[test]
    fn day_clock_counts_days_from_the_reset_offset() {
        assert_eq!(SHORT_DAY.day_index(3_000), 0);
        assert_eq!(SHORT_DAY.day_index(12_999), 0);
        assert_eq!(SHORT_DAY.day_index(13_000), 1);
        // Before the first reset after the epoch: day -1, not day 0 (floor, not truncation).
        assert_eq!(SHORT_DAY.day_index(2_999), -1);
        assert_eq!(SHORT_DAY.next_reset_ms(2_999), 3_000);
        // The next reset is strictly after now, even exactly at a reset.
        assert_eq!(SHORT_DAY.next_reset_ms(13_000), 23_000);
        assert_eq!(SHORT_DAY.next_reset_ms(17_500), 23_000);
        assert_eq!(SHORT_DAY.day_start_ms(1), 13_000);
        let real = DayClock::default();
        assert_eq!(real.next_reset_ms(1_777_593_600_000 - 1), 1_777_593_600_000);
        assert_eq!(real.next_reset_ms(1_777_593_600_000), 1_777_593_600_000 + 86_400_000);
        // Nonsense lengths and extreme times neither panic nor overflow.
        let broken = DayClock {
            reset_offset_ms: 0,
            day_length_ms: 0,
        };
        assert_eq!(broken.next_reset_ms(5), 6);
        assert_eq!(real.next_reset_ms(i64::MAX), i64::MAX);
        assert!(real.day_index(i64::MIN) < 0);
    }

    #[test]
    fn an_open_gate_lets_requests_through_at_once() {
        let mut gate = open_gate();
        for now_ms in [0, 0, 1, 1, 2] {
            assert_eq!(gate.hold_until(now_ms), None);
            gate.on_send(now_ms);
            gate.on_success(now_ms);
        }
        assert_eq!(gate.level(), 0);
        assert_eq!(gate.allowed_rate(), None);
        assert_eq!(gate.reason(2), None);
    }

    #[test]
    fn an_11004_closes_the_gate_for_a_jittered_capped_growing_pause() {
        let mut gate = open_gate();
        let mut now_ms = 1_000_000;
        let mut previous_pause = 0;
        for level in 1..=10u32 {
            // The largest draw: the pause is (nearly) the backoff ceiling of this level.
            gate.on_rate_limited(now_ms, 0.999_999);
            assert_eq!(gate.level(), level);
            let until = gate.hold_until(now_ms).expect("closed after an 11004");
            let pause = until - now_ms;
            let ceiling = duration_ms(PAUSE_BACKOFF.ceiling(level));
            assert!(pause <= ceiling && pause >= ceiling - 1, "level {level}: {pause} ms");
            assert!(pause >= previous_pause, "pauses grow");
            assert!(pause <= 60_000, "pauses are capped");
            previous_pause = pause;
            now_ms = until;
        }
        assert_eq!(previous_pause, 60_000 - 1);

        // Full jitter: the same level gives different pauses for different draws, never below
        // the 250 ms floor.
        let pause_for = |unit: f64| {
            let mut gate = open_gate();
            gate.on_rate_limited(0, unit);
            gate.hold_until(0).expect("closed")
        };
        assert_eq!(pause_for(0.0), MIN_PAUSE_MS);
        assert_eq!(pause_for(0.1), MIN_PAUSE_MS);
        assert_eq!(pause_for(0.5), 500);
        assert_eq!(pause_for(0.9), 900);
    }

    #[test]
    fn an_11004_cuts_the_rate_and_the_cut_deepens_with_the_level() {
        let mut gate = open_gate();
        gate.on_rate_limited(0, 0.5);
        // 50/s configured: the first cut leaves 45/s.
        let rate = gate.allowed_rate().expect("throttled");
        assert!((rate - 45.0).abs() < 1e-9, "{rate}");
        // A second refusal right after the pause, before any success: level 2, cut to 60%.
        gate.on_rate_limited(500, 0.5);
        let rate = gate.allowed_rate().expect("throttled");
        assert!((rate - 27.0).abs() < 1e-9, "{rate}");
        gate.on_rate_limited(2_000, 0.5);
        let rate = gate.allowed_rate().expect("throttled");
        assert!((rate - 13.5).abs() < 1e-9, "{rate}");
        assert_eq!(
            gate.reason(2_100).as_deref(),
            Some("rate limited by CCPayment (11004), backing off until 1970-01-01T00:00:04.000Z")
        );
        // After the pause the gate is open again, only slower: no reason to report.
        assert_eq!(gate.reason(4_000), None);
        assert_eq!(gate.hold_until(4_000), None);
    }

    #[test]
    fn echoes_of_an_11004_during_its_pause_change_nothing() {
        let mut gate = open_gate();
        gate.on_rate_limited(0, 0.5);
        let (until, rate) = (gate.hold_until(0), gate.allowed_rate());
        // Replies to requests that were already in flight.
        for now_ms in [1, 10, 200, 499] {
            gate.on_rate_limited(now_ms, 0.999);
        }
        assert_eq!(gate.level(), 1);
        assert_eq!(gate.hold_until(0), until);
        assert_eq!(gate.allowed_rate(), rate);
        // After the pause a refusal is news again.
        gate.on_rate_limited(500, 0.5);
        assert_eq!(gate.level(), 2);
    }

    #[test]
    fn successes_step_the_level_down_and_the_spacing_disappears() {
        let mut gate = open_gate();
        gate.on_rate_limited(0, 0.5);
        let mut now_ms = gate.hold_until(0).expect("paused");
        // At 45/s the gate spaces sends 22.2 ms apart. Each send goes at its slot rounded to a
        // whole millisecond within the 1 ms tolerance, so the rounding never accumulates: the
        // tenth send is 200 ms after the first (9 x 22.2), not 9 x 23 = 207.
        let mut sends = Vec::new();
        while sends.len() < 10 {
            match gate.hold_until(now_ms) {
                Some(until) => now_ms = until,
                None => {
                    gate.on_send(now_ms);
                    sends.push(now_ms);
                }
            }
        }
        assert!(
            sends.windows(2).all(|pair| (21..=23).contains(&(pair[1] - pair[0]))),
            "{sends:?}"
        );
        assert_eq!(sends[9] - sends[0], 200, "{sends:?}");

        // 20 consecutive successes lower the level by one; an 11004 restarts the count.
        for _ in 0..19 {
            gate.on_success(now_ms);
        }
        assert_eq!(gate.level(), 1);
        gate.on_success(now_ms);
        assert_eq!(gate.level(), 0);

        // The rate climbs back to the configured 50/s and the spacing goes away.
        let mut successes = 20;
        while gate.allowed_rate().is_some() {
            gate.on_send(now_ms);
            gate.on_success(now_ms);
            successes += 1;
            assert!(successes < 1_000, "the spacing never disappeared");
        }
        gate.on_send(now_ms);
        assert_eq!(gate.hold_until(now_ms), None);
        assert_eq!(gate.reason(now_ms), None);
    }

    #[test]
    fn the_step_down_count_is_configurable() {
        let mut gate = open_gate().with_successes_to_step_down(5);
        gate.on_rate_limited(0, 0.5);
        gate.on_rate_limited(1_000, 0.5);
        assert_eq!(gate.level(), 2);
        for _ in 0..5 {
            gate.on_success(3_000);
        }
        assert_eq!(gate.level(), 1);
        for _ in 0..5 {
            gate.on_success(3_000);
        }
        assert_eq!(gate.level(), 0);
    }

    /// The API's side of a rate limit: a token bucket like the sandbox's.
    struct ApiBucket {
        per_second: f64,
        burst: f64,
        tokens: f64,
        last_ms: i64,
    }

    impl ApiBucket {
        fn new(per_second: f64, burst: u32) -> Self {
            ApiBucket {
                per_second,
                burst: f64::from(burst),
                tokens: f64::from(burst),
                last_ms: 0,
            }
        }

        fn take(&mut self, now_ms: i64) -> bool {
            let elapsed = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
            self.last_ms = self.last_ms.max(now_ms);
            if self.tokens >= 1.0 - 1e-9 {
                self.tokens = (self.tokens - 1.0).max(0.0);
                true
            } else {
                false
            }
        }
    }

    #[derive(Debug, Default)]
    struct Figures {
        sent: u64,
        accepted: u64,
        refused: u64,
        /// Accepted creates and accepted reads.
        creates: u64,
        reads: u64,
        /// The longest a due read waited to be sent, in milliseconds.
        longest_read_wait_ms: i64,
    }

    impl Figures {
        /// Accepted requests of both kinds per second: what the API's limit is measured in.
        fn rate(&self, seconds: i64) -> f64 {
            self.accepted as f64 / seconds as f64
        }

        fn refused_share(&self) -> f64 {
            self.refused as f64 / self.sent as f64
        }

        fn describe(&self, seconds: i64, api_rate: f64) -> String {
            format!(
                "{:.1}/s = {:.1}% of the API's limit ({:.1} creates/s + {:.1} reads/s), 11004 on {:.2}% ({} of {}), reads waited up to {} ms",
                self.rate(seconds),
                self.rate(seconds) / api_rate * 100.0,
                self.creates as f64 / seconds as f64,
                self.reads as f64 / seconds as f64,
                self.refused_share() * 100.0,
                self.refused,
                self.sent,
                self.longest_read_wait_ms,
            )
        }
    }

    /// One status query per this many created orders, as the engine's tracking does.
    const CREATES_PER_READ: u64 = 20;

    /// How the simulated client paces its two kinds of call.
    enum Pacing {
        /// The engine's limiters: every call takes a shared permit, reads a read permit first.
        /// `read_permit_held`: the read at the head of its queue has its read permit and waits
        /// for a shared one.
        Shared {
            limiters: Limiters<FakeRelativeClock>,
            read_permit_held: bool,
        },
        /// The former design, for comparison: creates and reads each on a quota of their own.
        Separate {
            create: Limiter<FakeRelativeClock>,
            read: Limiter<FakeRelativeClock>,
        },
    }

    impl Pacing {
        fn shared(configured: Quota, clock: &FakeRelativeClock) -> Pacing {
            Pacing::Shared {
                limiters: Limiters::with_clock(configured, configured, None, clock.clone()),
                read_permit_held: false,
            }
        }

        fn separate(configured: Quota, clock: &FakeRelativeClock) -> Pacing {
            Pacing::Separate {
                create: Limiter::with_clock(configured, clock.clone()),
                read: Limiter::with_clock(configured, clock.clone()),
            }
        }

        /// Takes the permits for one call of `kind` now, or says how long until it may try again.
        fn try_take(&mut self, kind: CallKind) -> Result<(), Duration> {
            match self {
                Pacing::Shared {
                    limiters,
                    read_permit_held,
                } => {
                    if kind == CallKind::Read && !*read_permit_held {
                        limiters.read.try_acquire()?;
                        *read_permit_held = true;
                    }
                    limiters.shared.try_acquire()?;
                    if kind == CallKind::Read {
                        *read_permit_held = false;
                    }
                    Ok(())
                }
                Pacing::Separate { create, read } => match kind {
                    CallKind::Withdraw => create.try_acquire(),
                    CallKind::Read => read.try_acquire(),
                },
            }
        }
    }

    /// The client side of a simulation.
    #[derive(Debug, Clone, Copy)]
    struct Senders {
        /// Creates in flight at most.
        in_flight: usize,
        /// Each request is answered this long after it was sent.
        latency_ms: i64,
        /// Each request reaches the API's bucket a random `[0, jitter_ms)` after it was sent, so
        /// two requests sent a spacing apart may arrive closer together.
        jitter_ms: i64,
    }

    const fn senders(in_flight: usize, latency_ms: i64, jitter_ms: i64) -> Senders {
        Senders {
            in_flight,
            latency_ms,
            jitter_ms,
        }
    }

    /// A sender pool with an endless backlog of creates, in virtual milliseconds (see
    /// [`Senders`]). Every 20th accepted create
    /// makes a status query due (a refused one is due again), which does not take a create's
    /// slot. The API's bucket counts both kinds. A request goes out when the gate is open and
    /// the pacing (on a fake governor clock kept at the same time) grants its permits; when both
    /// kinds are waiting they take turns, as in [`Limiters::acquire`].
    fn simulate(
        api: &mut ApiBucket,
        configured: Quota,
        pacing: fn(Quota, &FakeRelativeClock) -> Pacing,
        seconds: i64,
        seed: u64,
        senders: Senders,
    ) -> Figures {
        let Senders {
            in_flight,
            latency_ms,
            jitter_ms,
        } = senders;
        let governor_clock = FakeRelativeClock::default();
        let mut pacing = pacing(configured, &governor_clock);
        let mut gate = GateState::new(
            PersistedPause::default(),
            Duration::from_secs(1) / configured.per_second,
        );
        let mut jitter = Jitter::new(seed);
        let mut arrival = Jitter::new(seed.wrapping_add(1_000));
        let mut figures = Figures::default();
        // Replies not yet received: (arrival time, kind, accepted).
        let mut replies: VecDeque<(i64, CallKind, bool)> = VecDeque::new();
        let mut creates_in_flight = 0;
        // Status queries that are due, by the time they became due.
        let mut reads_due: VecDeque<i64> = VecDeque::new();
        let mut last_sent = CallKind::Read;
        let (mut now_ms, mut governor_ms) = (0, 0);
        while now_ms < seconds * 1000 {
            while let Some(&(at, kind, accepted)) = replies.front().filter(|reply| reply.0 <= now_ms) {
                replies.pop_front();
                if kind == CallKind::Withdraw {
                    creates_in_flight -= 1;
                }
                if accepted {
                    figures.accepted += 1;
                    gate.on_success(at);
                    if kind == CallKind::Read {
                        figures.reads += 1;
                    } else {
                        figures.creates += 1;
                        if figures.creates.is_multiple_of(CREATES_PER_READ) {
                            reads_due.push_back(at);
                        }
                    }
                } else {
                    figures.refused += 1;
                    gate.on_rate_limited(at, jitter.next_unit());
                    if kind == CallKind::Read {
                        reads_due.push_back(at);
                    }
                }
            }
            // The next moment anything can change: a reply arrives or the blocker clears.
            let next_reply = replies.front().map_or(i64::MAX, |reply| reply.0);
            let turns = match last_sent {
                CallKind::Withdraw => [CallKind::Read, CallKind::Withdraw],
                CallKind::Read => [CallKind::Withdraw, CallKind::Read],
            };
            let waiting: Vec<CallKind> = turns
                .into_iter()
                .filter(|kind| match kind {
                    CallKind::Withdraw => creates_in_flight < in_flight,
                    CallKind::Read => !reads_due.is_empty(),
                })
                .collect();
            if waiting.is_empty() {
                now_ms = next_reply;
                continue;
            }
            if let Some(until) = gate.hold_until(now_ms) {
                now_ms = until.min(next_reply);
                continue;
            }
            governor_clock.advance(Duration::from_millis((now_ms - governor_ms) as u64));
            governor_ms = now_ms;
            let mut retry_in = Duration::MAX;
            let Some(kind) = waiting.into_iter().find(|&kind| match pacing.try_take(kind) {
                Ok(()) => true,
                Err(wait) => {
                    retry_in = retry_in.min(wait);
                    false
                }
            }) else {
                let wait_ms = i64::try_from(retry_in.as_micros().div_ceil(1000)).expect("short wait");
                now_ms = (now_ms + wait_ms.max(1)).min(next_reply);
                continue;
            };
            match kind {
                CallKind::Withdraw => creates_in_flight += 1,
                CallKind::Read => {
                    let due = reads_due.pop_front().expect("a read was waiting");
                    figures.longest_read_wait_ms = figures.longest_read_wait_ms.max(now_ms - due);
                }
            }
            last_sent = kind;
            gate.on_send(now_ms);
            figures.sent += 1;
            let arrives_ms = now_ms + (arrival.next_unit() * jitter_ms as f64) as i64;
            replies.push_back((now_ms + latency_ms, kind, api.take(arrives_ms)));
        }
        figures
    }

    #[test]
    fn the_gate_finds_an_api_limit_below_the_configured_rate() {
        // The product's bar: an unknown lower API limit is used at >= 90% with 11004 on < 1% of
        // requests, creates and status queries together. The API allows 30/s (with the sandbox's
        // default burst of 10, and with a burst of a whole second); the configured quota is 50/s
        // with a burst of 10 (the API's) or 50 (larger than the API's).
        for (configured_burst, api_burst) in [(10, 10), (50, 10), (50, 30)] {
            let configured = Quota {
                per_second: 50,
                burst: configured_burst,
            };
            for seed in 1..=5 {
                let mut api = ApiBucket::new(30.0, api_burst);
                let figures = simulate(&mut api, configured, Pacing::shared, 60, seed, senders(1, 0, 0));
                println!(
                    "API 30/s burst {api_burst}, configured 50/s burst {configured_burst}, seed {seed}: {}",
                    figures.describe(60, 30.0)
                );
                let case = format!("API burst {api_burst}, configured burst {configured_burst}, seed {seed}");
                assert!(figures.rate(60) >= 0.9 * 30.0, "{case}: {figures:?}");
                assert!(figures.refused_share() < 0.01, "{case}: {figures:?}");
                assert!(
                    figures.reads + 2 >= figures.creates / CREATES_PER_READ,
                    "{case}: {figures:?}"
                );
            }
        }
    }

    #[test]
    fn concurrent_senders_with_slow_replies_find_the_limit_too() {
        // 16 creates in flight, replies after 100 ms: refusals arrive late and in clusters.
        let configured = Quota {
            per_second: 50,
            burst: 10,
        };
        for senders in [senders(16, 100, 0), senders(4, 20, 0), senders(16, 100, 20)] {
            for seed in 1..=3 {
                let mut api = ApiBucket::new(30.0, 10);
                let figures = simulate(&mut api, configured, Pacing::shared, 60, seed, senders);
                println!(
                    "API 30/s burst 10, {senders:?}, seed {seed}: {}",
                    figures.describe(60, 30.0)
                );
                assert!(figures.rate(60) >= 0.9 * 30.0, "seed {seed}: {figures:?}");
                assert!(figures.refused_share() < 0.01, "seed {seed}: {figures:?}");
            }
        }
    }

    #[test]
    fn an_api_limit_equal_to_the_configured_rate_is_used_in_full_without_11004() {
        // The product's bar: with the API's limit equal to the configured rate (50/s, burst 10
        // on both sides), >= 98% of it with no 11004, status queries included.
        let configured = Quota {
            per_second: 50,
            burst: 10,
        };
        for senders in [senders(1, 0, 0), senders(4, 20, 3), senders(16, 100, 20)] {
            let mut api = ApiBucket::new(50.0, 10);
            let figures = simulate(&mut api, configured, Pacing::shared, 60, 1, senders);
            println!("API 50/s burst 10, {senders:?}: {}", figures.describe(60, 50.0));
            assert_eq!(figures.refused, 0, "{figures:?}");
            assert!(figures.rate(60) >= 0.98 * 50.0, "{figures:?}");
            // Every status query that came due was answered but for the last one or two.
            assert!(figures.reads + 2 >= figures.creates / CREATES_PER_READ, "{figures:?}");
            // Status queries are not starved by the creates that saturate the quota.
            assert!(figures.longest_read_wait_ms <= 100, "{figures:?}");
        }
    }

    #[test]
    fn pacing_reads_apart_from_creates_overshoots_a_limit_that_counts_both() {
        // The former design, kept in the simulation to show what the shared quota fixes: creates
        // at the configured 50/s and status queries on a quota of their own add up to more than
        // the API's 50/s, and the API answers 11004.
        let configured = Quota {
            per_second: 50,
            burst: 10,
        };
        let mut api = ApiBucket::new(50.0, 10);
        let figures = simulate(&mut api, configured, Pacing::separate, 60, 1, senders(4, 20, 0));
        println!("separate quotas, API 50/s burst 10: {}", figures.describe(60, 50.0));
        assert!(figures.refused > 0, "{figures:?}");
        assert!(figures.rate(60) < 0.98 * 50.0, "{figures:?}");
    }

    #[test]
    fn nothing_is_sent_while_the_gate_holds() {
        // A sender tries every virtual millisecond; the API refuses every 100th request.
        let mut gate = open_gate();
        let mut jitter = Jitter::new(3);
        let mut pauses: Vec<(i64, i64)> = Vec::new();
        let mut sends: Vec<(i64, Option<f64>)> = Vec::new();
        for now_ms in 0..120_000 {
            if gate.hold_until(now_ms).is_some() {
                continue;
            }
            let rate = gate.allowed_rate();
            gate.on_send(now_ms);
            sends.push((now_ms, rate));
            if sends.len().is_multiple_of(100) {
                gate.on_rate_limited(now_ms, jitter.next_unit());
                let until = gate.hold_until(now_ms).expect("closed after an 11004");
                pauses.push((now_ms, until));
            } else {
                gate.on_success(now_ms);
            }
        }
        assert!(pauses.len() >= 10, "the scenario exercised the gate: {pauses:?}");
        let inside = sends
            .iter()
            .filter(|(t, _)| pauses.iter().any(|&(from, until)| *t > from && *t < until))
            .count();
        assert_eq!(inside, 0);
        // While throttled, two sends are never closer than the spacing (less the 1 ms tolerance).
        for pair in sends.windows(2) {
            let ((_, _), (t, rate)) = (pair[0], pair[1]);
            if let Some(rate) = rate {
                let gap = t - pair[0].0;
                assert!(gap as f64 >= 1000.0 / rate - 1.0, "{gap} ms at {rate}/s");
            }
        }
    }

    #[test]
    fn an_11009_pauses_until_the_next_reset_and_survives_a_restart() {
        let mut gate = open_gate();
        let persisted = gate.on_daily_limit(17_500, &SHORT_DAY, "CCPayment 11009 ReqDailyLimit");
        assert_eq!(
            persisted,
            PersistedPause {
                daily_until_ms: Some(23_000),
                kill_switch: false,
                reason: Some("CCPayment 11009 ReqDailyLimit".to_owned()),
            }
        );
        assert_eq!(gate.hold_until(17_500), Some(23_000));
        assert_eq!(gate.hold_until(22_999), Some(23_000));
        assert_eq!(
            gate.reason(20_000).as_deref(),
            Some("daily request limit reached, paused until 1970-01-01T00:00:23.000Z: CCPayment 11009 ReqDailyLimit")
        );
        // A late refusal of a request sent before the pause does not move the pause back.
        gate.on_daily_limit(12_000, &SHORT_DAY, "late reply");
        assert_eq!(gate.hold_until(20_000), Some(23_000));

        // The engine stores the pause; a restart restores it and stays closed until the reset.
        let stored = serde_json::to_string(&gate.persisted()).expect("serialize");
        let restored: PersistedPause = serde_json::from_str(&stored).expect("deserialize");
        assert_eq!(restored, gate.persisted());
        let after_restart = GateState::new(restored, BASE_SPACING);
        assert_eq!(after_restart.hold_until(21_000), Some(23_000));
        // At the reset the gate opens again.
        assert_eq!(after_restart.hold_until(23_000), None);
        assert_eq!(after_restart.reason(23_000), None);
    }

    #[test]
    fn an_11009_just_after_the_reset_pauses_briefly_and_then_for_the_day() {
        let mut gate = open_gate();
        gate.on_daily_limit(17_500, &SHORT_DAY, "11009");
        assert_eq!(gate.hold_until(22_999), Some(23_000));
        assert_eq!(gate.hold_until(23_000), None);
        // A request sent just before the reset is refused just after it: not a reason to pause
        // the whole new day (the grace of 10-second days is 1% of them, 100 ms).
        let persisted = gate.on_daily_limit(23_040, &SHORT_DAY, "late 11009");
        assert_eq!(persisted.daily_until_ms, Some(23_540));
        assert_eq!(gate.hold_until(23_040), Some(23_540));
        assert!(gate.reason(23_100).is_some_and(|r| r.contains("daily request limit")));
        assert_eq!(gate.hold_until(23_540), None);
        // Refused again once the grace is over: the new day's cap is reached too.
        gate.on_daily_limit(23_540, &SHORT_DAY, "11009");
        assert_eq!(gate.hold_until(23_540), Some(33_000));
        // A late reply inside the grace never shortens a pause already in force.
        gate.on_daily_limit(33_010, &SHORT_DAY, "late 11009");
        assert_eq!(gate.hold_until(33_010), Some(33_510));
        gate.on_daily_limit(33_020, &SHORT_DAY, "late 11009");
        assert_eq!(gate.hold_until(33_020), Some(33_520));
        gate.on_daily_limit(33_000, &SHORT_DAY, "out of order");
        assert_eq!(gate.hold_until(33_020), Some(33_520));

        // Real days: 30 seconds of grace after midnight UTC (with CCPayment's clock up to that
        // much behind ours, sending resumes within half a second of its reset).
        let midnight = 1_777_593_600_000;
        let mut gate = open_gate();
        gate.on_daily_limit(midnight + 2_000, &DayClock::UTC_MIDNIGHT, "11009");
        assert_eq!(gate.hold_until(midnight + 2_000), Some(midnight + 2_500));
        gate.on_daily_limit(midnight + 30_000, &DayClock::UTC_MIDNIGHT, "11009");
        assert_eq!(gate.hold_until(midnight + 30_000), Some(midnight + 86_400_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_restored_daily_pause_opens_at_the_reset() {
        // The pause an 11009 left before a restart; the process starts 2.5 s before the reset.
        let reset = 1_777_593_600_000;
        let restored = PersistedPause {
            daily_until_ms: Some(reset),
            kill_switch: false,
            reason: Some("CCPayment's daily request limit (11009)".to_owned()),
        };
        let clock = ManualClock::new(reset - 2_500);
        let gate = Arc::new(Gate::new(GateState::new(restored, BASE_SPACING), clock.clone(), 7));
        assert_eq!(gate.hold_until(), Some(reset));
        let waiter = {
            let (gate, clock) = (Arc::clone(&gate), clock.clone());
            tokio::spawn(async move {
                gate.wait_open().await;
                clock.now_ms()
            })
        };
        // Move the crate clock and tokio's clock together, 10 ms at a time.
        while !waiter.is_finished() {
            assert!(clock.now_ms() <= reset + 1_000, "still closed a second after the reset");
            clock.advance(Duration::from_millis(10));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let opened_at = waiter.await.expect("waiter task");
        assert!(
            opened_at >= reset && opened_at < reset + 20,
            "opened at reset + {} ms",
            opened_at - reset
        );
        assert_eq!(gate.hold_until(), None);
    }

    #[test]
    fn the_kill_switch_holds_until_released() {
        let mut gate = open_gate();
        let persisted = gate.set_kill_switch(true, Some("incident 42".to_owned()));
        assert!(persisted.kill_switch);
        assert_eq!(gate.hold_until(0), Some(i64::MAX));
        assert_eq!(gate.hold_until(i64::MAX - 1), Some(i64::MAX));
        assert_eq!(gate.reason(0).as_deref(), Some("paused by the operator: incident 42"));
        // A late 11009 reply records its pause but keeps the operator's note.
        let persisted = gate.on_daily_limit(0, &SHORT_DAY, "CCPayment 11009 ReqDailyLimit");
        assert_eq!(persisted.reason.as_deref(), Some("incident 42"));
        assert_eq!(persisted.daily_until_ms, Some(3_000));
        let persisted = gate.set_kill_switch(true, Some("incident 42".to_owned()));
        // It survives a restart.
        let stored = serde_json::to_string(&persisted).expect("serialize");
        let restored: PersistedPause = serde_json::from_str(&stored).expect("deserialize");
        let mut gate = GateState::new(restored, BASE_SPACING);
        assert_eq!(gate.hold_until(5), Some(i64::MAX));
        // Released: the daily pause recorded meanwhile still holds until its reset, then open.
        let persisted = gate.set_kill_switch(false, None);
        assert_eq!(persisted.daily_until_ms, Some(3_000));
        assert!(!persisted.kill_switch);
        assert_eq!(gate.hold_until(5), Some(3_000));
        assert_eq!(gate.hold_until(3_000), None);
        assert_eq!(gate.reason(3_000), None);
    }

    #[test]
    fn times_in_reasons_are_rfc3339_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_777_593_600_000), "2026-05-01T00:00:00.000Z");
        assert_eq!(utc(951_868_799_123), "2000-02-29T23:59:59.123Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59.999Z");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_open_returns_only_after_the_hold_passes() {
        let clock = ManualClock::new(1_777_593_600_000);
        let gate = Arc::new(Gate::new(open_gate(), clock.clone(), 7));
        gate.on_rate_limited();
        let until = gate.lock().hold_until(clock.now_ms()).expect("closed after an 11004");
        let (persisted, reason) = gate.snapshot();
        assert_eq!(persisted, PersistedPause::default(), "an 11004 pause is not persisted");
        assert!(reason.is_some_and(|r| r.contains("(11004)")));

        let waiter = {
            let (gate, clock) = (Arc::clone(&gate), clock.clone());
            tokio::spawn(async move {
                gate.wait_open().await;
                clock.now_ms()
            })
        };
        // Move the crate clock and tokio's clock together, the crate clock first.
        while clock.now_ms() < until {
            assert!(!waiter.is_finished(), "opened at {} before {until}", clock.now_ms());
            clock.advance(Duration::from_millis(50));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Once the hold has passed the waiter notices within one capped sleep.
        for _ in 0..21 {
            if waiter.is_finished() {
                break;
            }
            clock.advance(Duration::from_millis(50));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(waiter.is_finished());
        let opened_at = waiter.await.expect("waiter task");
        assert!(opened_at >= until);
        // Open again, with the lowered rate still in force.
        assert_eq!(gate.snapshot(), (PersistedPause::default(), None));
        assert!(gate.allowed_rate().is_some_and(|rate| rate < 50.0));
    }

    #[tokio::test(start_paused = true)]
    async fn releasing_the_kill_switch_wakes_waiters_at_once() {
        let clock = ManualClock::new(1_000_000);
        let gate = Arc::new(Gate::new(open_gate(), clock.clone(), 7));
        let persisted = gate.set_kill_switch(true, Some("incident 42".to_owned()));
        assert!(persisted.kill_switch);
        let waiter = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { gate.wait_open().await })
        };
        for _ in 0..10 {
            clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(!waiter.is_finished());
        }
        let released_at = tokio::time::Instant::now();
        assert_eq!(gate.set_kill_switch(false, None), PersistedPause::default());
        waiter.await.expect("waiter task");
        // Woken by the notification, not by the next one-second poll.
        assert_eq!(tokio::time::Instant::now(), released_at);
        assert_eq!(gate.snapshot(), (PersistedPause::default(), None));
    }

    #[test]
    fn pauses_are_counted_when_they_begin() {
        let mut gate = open_gate();
        assert_eq!(gate.pause_counts(), PauseCounts::default());
        // An 11004 and its echoes during the pause: one pause.
        gate.on_rate_limited(0, 0.5);
        for now_ms in [1, 200, 499] {
            gate.on_rate_limited(now_ms, 0.5);
        }
        assert_eq!(gate.pause_counts().rate_limit, 1);
        // After the pause a refusal begins another.
        gate.on_rate_limited(500, 0.5);
        assert_eq!(
            gate.pause_counts(),
            PauseCounts {
                rate_limit: 2,
                daily_limit: 0
            }
        );

        // An 11009, then late or repeated ones before the reset: one pause.
        gate.on_daily_limit(17_500, &SHORT_DAY, "11009");
        gate.on_daily_limit(12_000, &SHORT_DAY, "late reply");
        gate.on_daily_limit(22_999, &SHORT_DAY, "11009 again");
        assert_eq!(gate.pause_counts().daily_limit, 1);
        // The next day's 11009 (after the grace of the reset) begins a new pause.
        gate.on_daily_limit(23_200, &SHORT_DAY, "11009 next day");
        assert_eq!(gate.hold_until(23_200), Some(33_000));
        assert_eq!(
            gate.pause_counts(),
            PauseCounts {
                rate_limit: 2,
                daily_limit: 2
            }
        );

        // A pause restored at start did not begin in this process, nor does a reply during it.
        let mut restored = GateState::new(gate.persisted(), BASE_SPACING);
        restored.on_daily_limit(25_000, &SHORT_DAY, "11009");
        assert_eq!(restored.pause_counts(), PauseCounts::default());
        // The kill switch is not a limit pause.
        restored.set_kill_switch(true, None);
        assert_eq!(restored.pause_counts(), PauseCounts::default());
    }

    #[test]
    fn the_gate_reports_pause_counts_and_whether_it_is_paused() {
        let clock = ManualClock::new(17_500);
        let gate = Gate::new(open_gate(), clock.clone(), 1);
        assert_eq!(gate.pause_counts(), PauseCounts::default());
        assert_eq!(gate.snapshot().1, None);

        gate.on_rate_limited();
        gate.on_rate_limited();
        assert_eq!(gate.pause_counts().rate_limit, 1);
        assert!(gate.snapshot().1.is_some_and(|r| r.contains("(11004)")));
        // The pause is at most a second at level 1.
        clock.advance(Duration::from_secs(1));
        assert_eq!(gate.snapshot().1, None);

        gate.on_daily_limit(&SHORT_DAY, "CCPayment 11009 ReqDailyLimit");
        assert_eq!(
            gate.pause_counts(),
            PauseCounts {
                rate_limit: 1,
                daily_limit: 1
            }
        );
        assert!(gate.snapshot().1.is_some_and(|r| r.contains("daily request limit")));
        clock.set_ms(23_000);
        assert_eq!(gate.snapshot().1, None);
        assert_eq!(gate.pause_counts().daily_limit, 1);
    }

    #[test]
    fn a_daily_pause_through_the_gate_is_persisted() {
        let clock = ManualClock::new(17_500);
        let gate = Gate::new(open_gate(), clock.clone(), 1);
        let persisted = gate.on_daily_limit(&SHORT_DAY, "client daily budget used up");
        assert_eq!(persisted.daily_until_ms, Some(23_000));
        assert_eq!(gate.snapshot().0, persisted);
        gate.on_success();
        clock.set_ms(23_000);
        assert_eq!(gate.snapshot().1, None);
    }

    /// The loop asks `is_paused` on every turn instead of building `reason`'s words: the two must
    /// agree in every state, the spacing of a reduced rate being no pause for either.
    #[test]
    fn is_paused_agrees_with_reason() {
        let day = DayClock::UTC_MIDNIGHT;
        let mut state = GateState::new(PersistedPause::default(), Duration::from_millis(20));
        let agree =
            |state: &GateState, now: i64| assert_eq!(state.is_paused(now), state.reason(now).is_some(), "{now}");
        agree(&state, 0);
        state.on_rate_limited(1_000, 0.5);
        agree(&state, 1_001);
        assert!(state.is_paused(1_001));
        // Long after the backoff, only the spacing may remain: not a pause.
        agree(&state, 1_000_000);
        assert!(!state.is_paused(1_000_000));
        state.on_daily_limit(2_000_000, &day, "11009");
        agree(&state, 2_000_001);
        assert!(state.is_paused(2_000_001));
        agree(&state, day.next_reset_ms(2_000_000) + 1);
        state.set_kill_switch(true, Some("x".into()));
        agree(&state, 0);
        assert!(state.is_paused(i64::MAX - 1));
    }
}
