//! One pacing for every request to CCPayment.
//!
//! CCPayment limits requests per IP over all endpoints, per second (11004) and per day (11009).
//! So every request ccpayout makes — a withdrawal, a status query, a lookup by orderId, every
//! preflight question (coins, chains, fees, balances, addresses, Cwallet users), each page of a
//! paged answer, a raw `ccpayout api` call — passes the same [`Pacing`] before it leaves: the
//! pause gate first (11004 backoff, 11009 pause until the daily reset, the operator's kill
//! switch), then the client-side daily budget, then the shared quota (and the extra cap on
//! reads). The [`crate::api::Client`] does this itself in its one `send`, so there is no side door:
//! a caller cannot reach CCPayment without passing it. Its answers feed back the same way: an
//! 11004 slows everyone down, an 11009 closes the gate until the reset, any other answer from
//! CCPayment lets the gate ramp back up.
//!
//! The pause must survive a restart: [`Pacing::unsaved_pause`] says when it changed since the
//! owner (the engine, or whoever took a file in) last stored it.
//!
//! - [`backoff`]: capped exponential backoff with full jitter (pure).
//! - [`limiter`]: the governor quota every request shares, the extra cap on reads, and the
//!   daily request budget.
//! - [`gate`]: the pause gate for 11004 backoff, 11009 daily pauses and the kill switch.
//! - [`inflight`]: how many requests may be in flight, from the latency measured.

pub mod backoff;
pub mod gate;
pub mod inflight;
pub mod limiter;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::gate::{DayClock, Gate, GateState, PersistedPause};
use self::inflight::InFlight;
use self::limiter::{CallKind, Limiters, Quota};
use super::error::{ApiError, CallError};
use crate::util::clock::SharedClock;

/// The pace the operator configured (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingSettings {
    /// Requests per second of every kind, creates and reads alike.
    pub rate_per_second: u32,
    /// Requests that may go out back to back after a quiet spell.
    pub burst: u32,
    /// The extra cap on reads, so status queries never take the whole rate from withdrawals.
    pub read_rate_per_second: u32,
    /// The most requests of any kind per API day; `None` leaves the daily cap to the API.
    pub daily_budget: Option<u64>,
    /// The API's day, for 11009 pauses and the budget.
    pub day: DayClock,
    /// The most requests in flight at once (`limits.concurrency`); below it, the limit follows
    /// the latency measured (see [`inflight`]).
    pub max_in_flight: u32,
}

/// What was stored of the pacing at the last run: the pause and the daily budget's counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    pub pause: PersistedPause,
    /// (day index, requests used that day).
    pub budget: Option<(i64, u64)>,
}

/// The one pacing: pause gate, quotas and daily budget, shared by every request of the process.
#[derive(Debug)]
pub struct Pacing {
    gate: Gate,
    limiters: Limiters,
    clock: SharedClock,
    day: DayClock,
    /// The pause as its owner last stored it.
    saved: Mutex<PersistedPause>,
    in_flight: InFlight,
    /// Whether CCPayment has answered a withdrawal create of this process (see
    /// [`Pacing::send_limit`]).
    create_answered: std::sync::atomic::AtomicBool,
}

impl Pacing {
    /// The pacing for `settings`, resuming what was stored. `seed` seeds the gate's jitter.
    ///
    /// The shared quota starts with its burst spent: whoever used the API just before (a run that
    /// just stopped) may have drained CCPayment's bucket, and an opening burst on top of that is
    /// answered 11004.
    pub fn new(settings: &PacingSettings, restored: Restored, clock: SharedClock, seed: u64) -> Pacing {
        let limiters = Limiters::new(
            Quota {
                per_second: settings.rate_per_second,
                burst: settings.burst,
            },
            Quota {
                per_second: settings.read_rate_per_second,
                burst: settings.burst,
            },
            settings.daily_budget,
            clock.clone(),
        );
        if let Some((day, used)) = restored.budget {
            limiters.restore_budget(day, used);
        }
        let spacing = Duration::from_secs(1) / settings.rate_per_second.max(1);
        let gate = Gate::new(GateState::new(restored.pause.clone(), spacing), clock.clone(), seed);
        Pacing {
            gate,
            limiters,
            clock,
            day: settings.day,
            saved: Mutex::new(restored.pause),
            in_flight: InFlight::new(settings.rate_per_second, settings.max_in_flight),
            create_answered: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The pause gate, for views (why sending is held, the rate in use) and the kill switch.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The API's day.
    pub fn day(&self) -> DayClock {
        self.day
    }

    /// Lets one request through: the gate (until it opens or `cancel` fires), the daily budget,
    /// then the quotas. `Err` says why the request was not sent; nothing reached CCPayment.
    ///
    /// A withdrawal refused by the daily budget is answered like CCPayment's own 11009 (the
    /// engine defers it to the reset), a read as not sent; either closes the gate until the
    /// reset.
    pub async fn admit(
        &self,
        kind: CallKind,
        cancel: Option<&CancellationToken>,
        endpoint: &str,
    ) -> Result<(), CallError> {
        let not_sent = |detail: String| CallError::NotSent {
            endpoint: endpoint.to_owned(),
            detail,
        };
        let opened = match cancel {
            Some(cancel) => {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => false,
                    () = self.gate.wait_open() => true,
                }
            }
            None => {
                self.gate.wait_open().await;
                true
            }
        };
        if !opened {
            return Err(not_sent("cancelled before sending".into()));
        }
        // The time after the gate: a wait across a daily reset charges the new day's budget.
        match self.limiters.acquire(kind, self.clock.now_ms(), &self.day).await {
            Ok(()) => Ok(()),
            Err(exhausted) => {
                self.gate
                    .on_daily_limit(&self.day, "the client-side daily request budget is used up");
                Err(match kind {
                    CallKind::Withdraw => {
                        CallError::Api(ApiError::new("client daily budget", 11009, exhausted.to_string()))
                    }
                    CallKind::Read => not_sent(exhausted.to_string()),
                })
            }
        }
    }

    /// What an answer tells every sender: `Some(code)` is CCPayment's envelope code, `None` a
    /// request that got no answer (which says nothing about the rate).
    pub fn on_answer(&self, code: Option<i64>) {
        match code {
            Some(11004) => self.gate.on_rate_limited(),
            Some(11009) => {
                self.gate
                    .on_daily_limit(&self.day, "CCPayment's daily request limit (11009)");
            }
            Some(_) => self.gate.on_success(),
            None => {}
        }
    }

    /// The pause to store when it changed since [`Pacing::pause_saved`] was last told.
    pub fn unsaved_pause(&self) -> Option<PersistedPause> {
        let now = self.gate.persisted();
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        (*saved != now).then_some(now)
    }

    /// The owner stored `pause`.
    pub fn pause_saved(&self, pause: PersistedPause) {
        *self.saved.lock().unwrap_or_else(PoisonError::into_inner) = pause;
    }

    /// Turns the kill switch on or off and wakes the waiters; returns the pause to store.
    pub fn set_kill_switch(&self, on: bool, reason: Option<String>) -> PersistedPause {
        self.gate.set_kill_switch(on, reason)
    }

    /// A request took `elapsed_ms` from leaving to its reply (on the client's clock).
    pub fn observe_latency(&self, elapsed_ms: i64) {
        self.in_flight.observe(elapsed_ms);
    }

    /// How many requests may be in flight now: about the rate the gate allows times the latency
    /// measured, with headroom, within `limits.concurrency`.
    pub fn in_flight_limit(&self) -> usize {
        self.in_flight.limit(self.gate.allowed_rate())
    }

    /// How many withdrawal creates may be in flight now. Until CCPayment has answered one create
    /// of this process, one: a process that starts (or restarts) on a day whose cap was used up
    /// before it could hear 11009 learns it from one refused create, not from a whole round of
    /// them. Then the in-flight limit.
    pub fn send_limit(&self) -> usize {
        if self.create_answered.load(std::sync::atomic::Ordering::Relaxed) {
            self.in_flight_limit()
        } else {
            1
        }
    }

    /// CCPayment answered a withdrawal create (any code).
    pub fn note_create_answered(&self) {
        self.create_answered.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The moving average of round trips in milliseconds, once one was measured.
    pub fn latency_ms(&self) -> Option<f64> {
        self.in_flight.latency_ms()
    }

    /// The highest in-flight limit given so far.
    pub fn peak_in_flight(&self) -> usize {
        self.in_flight.peak()
    }

    /// The configured cap on requests in flight.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.cap()
    }

    /// The client-side daily budget's (day, used) counter, to store; `None` without a budget.
    pub fn budget_state(&self) -> Option<(i64, u64)> {
        self.limiters.budget_state()
    }
}
