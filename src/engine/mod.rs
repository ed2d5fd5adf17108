//! The exactly-once engine: reconcile what may exist at CCPayment, send queued orders within the
//! one pacing, follow submitted ones to their final status, and stop cleanly when told. It owns
//! the order lifecycle (every state change goes through [`crate::model::state::transition`]) and
//! the batch's Open → Done step.
//!
//! The durability protocol, in the order things happen:
//! 1. An order's `Send` transition (`Submitting{attempt}`) is committed — in a group with other
//!    orders, but always before any of their requests leave. No request runs inside a store
//!    transaction.
//! 2. The request is sent; its answer becomes an event (see [`outcome`]) and the new state is
//!    committed, again in groups.
//! 3. Outcomes are durable before anything depends on them: reports are written from the store
//!    after the commits, and a batch is marked done only when every order is final.
//! 4. At start, every `Submitting` or `Unknown` order — of any batch — is resolved by orderId
//!    before anything new is sent: found → `Submitted` (or final), `11003 NotFound` → queued for
//!    a resend with the same orderId, any other answer → still unknown, asked again later.
//!
//! Submitted orders are followed with `getAppWithdrawRecordList`, 20 orderIds per request (v1:
//! `bill/info`, 100), first after `track_first_delay` and then on a growing schedule, which
//! keeps tracking near one request per 20 orders.
//!
//! The engine talks to CCPayment only through [`Payouts`], whose every call passes the one
//! [`Pacing`]; it never holds a concrete client, so the deterministic simulation runs this very
//! loop in process against the sandbox's world. Every `select!` here is `biased` and every random
//! draw comes from a seeded [`Jitter`], so a run on paused time replays exactly.
//!
//! - [`outcome`]: what an answer to a send means for the order and the engine (pure).
//! - [`control`]: approve, cancel and the kill switch, on the store, through the state machine.
//! - `run`: the loop of one batch; `reconcile`: unknown orders by orderId; `send`: intents and
//!   creates; `track`: status queries.

mod bundle;
pub mod control;
pub mod outcome;
mod reconcile;
mod run;
mod send;
mod track;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::pacing::backoff::{Backoff, Jitter};
use crate::api::pacing::gate::PersistedPause;
use crate::api::{CallError, Pacing, Payouts};
use rust_decimal::Decimal;

use crate::model::notice;
use crate::model::record::{BatchRecord, BatchState, ErrorInfo, OrderRecord};
use crate::model::state::{Event, StateKind, transition};
use crate::store::{Change, Key, Store, StoreError};
use crate::util::clock::SharedClock;

use self::outcome::RetryPolicy;

/// The pacing's pause (11009 until the reset, the operator's kill switch), stored so a restart
/// neither hammers the API nor forgets the operator's pause.
pub const PAUSE: Key<PersistedPause> = Key::new("pause");
/// The client-side daily budget's (day index, requests used) counter.
pub const BUDGET: Key<(i64, u64)> = Key::new("daily_budget");

/// How the engine paces itself.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub retry: RetryPolicy,
    /// First status query after an order is created.
    pub track_first_delay: Duration,
    /// Later status queries: the ceiling of this backoff for the number of checks made.
    pub track_backoff: Backoff,
    /// Re-asking about unknown orders after an unhelpful answer.
    pub reconcile_backoff: Backoff,
    /// An unknown order is sent again only when two lookups found nothing and this long has
    /// passed since its last send (R2/R3: lookups may lag behind creates; a reused orderId may
    /// not be refused).
    pub not_found_confirm: Duration,
    /// Seeds the retry jitter: from entropy in the product, fixed in the simulation.
    pub seed: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every order of the batch is final; the batch is marked done.
    Finished,
    /// Every order is submitted or final (`--no-wait`).
    AllSubmitted,
    /// The batch waits for approval.
    AwaitingApproval,
    /// Cancelled (Ctrl-C, SIGTERM): nothing new was sent after it; the state is resumable.
    Interrupted,
    /// A problem every order would meet (credentials, IP whitelist, clock): sending stopped.
    Stopped { code: i64, message: String },
}

/// What went wrong with the engine itself.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("engine invariant broken: {0}")]
    Invariant(String),
}

/// Told about progress; the CLI draws a bar or prints lines.
pub trait Progress: Send + Sync {
    fn update(&self, counts: &BTreeMap<StateKind, u64>);
    fn message(&self, text: &str);
}

/// A progress sink that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _: &BTreeMap<StateKind, u64>) {}
    fn message(&self, _: &str) {}
}

/// The exactly-once engine. One per process: every batch being paid shares its pacing.
pub struct Engine {
    store: Arc<Store>,
    payouts: Arc<dyn Payouts>,
    pacing: Arc<Pacing>,
    clock: SharedClock,
    settings: EngineSettings,
    jitter: Mutex<Jitter>,
    /// Order ids a webhook said changed: asked about at the next tracking pass.
    hints: Mutex<HashSet<String>>,
    /// When the daily budget's counter was last stored.
    budget_saved_ms: Mutex<i64>,
    /// Notices told in this process that are not repeated (a balance refusal per batch and
    /// coin, a stop per code and hour).
    told: Mutex<HashSet<String>>,
}

/// CCPayment's answers that say a balance is short: the coin's (14000) or the network fee's
/// coin (14011).
const BALANCE_CODES: [i64; 2] = [14000, 14011];

/// At most this many hinted order ids are remembered; more are dropped (polling still finds them).
const MAX_HINTS: usize = 10_000;

/// The daily budget's counter is stored at least this often while requests are made (and at
/// the end of every run), so a crash loses at most this much of the count.
const BUDGET_SAVE_INTERVAL_MS: i64 = 10_000;

impl Engine {
    /// The engine over `store`, asking `payouts`, whose requests pass `pacing`.
    pub fn new(
        store: Arc<Store>,
        payouts: Arc<dyn Payouts>,
        pacing: Arc<Pacing>,
        clock: SharedClock,
        settings: EngineSettings,
    ) -> Engine {
        let jitter = Jitter::new(settings.seed);
        Engine {
            store,
            payouts,
            pacing,
            clock,
            settings,
            jitter: Mutex::new(jitter),
            hints: Mutex::new(HashSet::new()),
            budget_saved_ms: Mutex::new(i64::MIN),
            told: Mutex::new(HashSet::new()),
        }
    }

    /// The one pacing (pause gate, quotas, daily budget), shared by every batch and request.
    pub fn pacing(&self) -> &Arc<Pacing> {
        &self.pacing
    }

    /// The store the engine works on.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A hint (from a verified webhook) that an order's status changed: it is asked about at
    /// the next tracking pass of its batch instead of at its scheduled check. Idempotent; only
    /// the record query that follows changes anything.
    pub fn hint(&self, order_id: &str) {
        if let Ok(mut hints) = self.hints.lock()
            && hints.len() < MAX_HINTS
        {
            hints.insert(order_id.to_owned());
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The time by the engine's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn unit(&self) -> f64 {
        self.jitter.lock().map(|mut j| j.next_unit()).unwrap_or(0.5)
    }

    /// Applies `event` to `order`, returning the change to commit. An event that does not apply
    /// is a bug: it is refused with the state named, and nothing is written.
    fn apply(&self, order: OrderRecord, event: &Event, detail: Option<String>) -> Result<Change, EngineError> {
        apply_event(order, event, self.now(), detail)
    }

    /// Commits `changes` in one durable transaction, after storing the pacing's pause if it
    /// changed: an 11009 pause is on disk before the deferrals it caused, so a restart does not
    /// hammer the API.
    fn commit(&self, changes: &[Change]) -> Result<(), EngineError> {
        self.save_pacing(false)?;
        if !changes.is_empty() {
            let notices = self.balance_notices(changes);
            self.store.commit_noticed(changes, &notices)?;
        }
        Ok(())
    }

    /// Whether the notice `key` names is told for the first time in this process (and remembers
    /// it).
    fn first_time(&self, key: String) -> bool {
        self.told
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key)
    }

    /// "Balance too low" when CCPayment refused a send of this group for the balance (14000)
    /// or for the network fee's coin (14011): once per batch, coin and code in this process.
    fn balance_notices(&self, changes: &[Change]) -> Vec<notice::Notice> {
        if !self.store.notices_wanted() {
            return Vec::new();
        }
        let mut notices = Vec::new();
        for change in changes.iter().filter(|c| c.event == "retry") {
            let order = &change.order;
            let Some(code) = order.error.as_ref().and_then(|e| e.code) else {
                continue;
            };
            if !BALANCE_CODES.contains(&code) {
                continue;
            }
            let coin = coin_label(order);
            if !self.first_time(format!("balance:{}:{coin}:{code}", order.batch_id)) {
                continue;
            }
            let name = self
                .store
                .batch(&order.batch_id)
                .ok()
                .flatten()
                .map_or_else(|| order.batch_id.to_string(), |b| b.name);
            let detail = order.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
            let short = [notice::Shortfall {
                coin,
                balance: None,
                needed: None,
            }];
            notices.push(notice::balance_low(
                Some((order.batch_id.as_str(), &name)),
                None,
                &short,
                &detail,
                self.now(),
            ));
        }
        notices
    }

    /// "Sending stopped" for a problem every request meets (credentials, IP whitelist, clock):
    /// once per code in an hour in this process.
    fn stopped_notice(&self, code: i64, message: &str) -> Result<(), StoreError> {
        if !self.store.notices_wanted() {
            return Ok(());
        }
        let now = self.now();
        if !self.first_time(format!("stopped:{code}:{}", now / 3_600_000)) {
            return Ok(());
        }
        let cause = notice::PauseCause::Stopped {
            code,
            message: message.to_owned(),
            hint: crate::api::codes::lookup(code).and_then(|c| c.hint).map(str::to_owned),
        };
        self.store.record_notices(&[notice::sending_paused(&cause, now)])
    }

    /// Stores the pacing's pause if it changed, and the daily budget's counter if it is due
    /// (`force`: now).
    pub fn save_pacing(&self, force: bool) -> Result<(), StoreError> {
        if let Some(pause) = self.pacing.unsaved_pause() {
            let notices = if self.store.notices_wanted() {
                let before = self.store.get(&PAUSE)?.unwrap_or_default();
                pause_notices(&before, &pause, self.now())
            } else {
                Vec::new()
            };
            self.store.put_noticed(&PAUSE, &pause, &notices)?;
            self.pacing.pause_saved(pause);
        }
        if let Some(budget) = self.pacing.budget_state() {
            let now = self.now();
            let mut saved = self
                .budget_saved_ms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if force || now - *saved >= BUDGET_SAVE_INTERVAL_MS {
                self.store.put(&BUDGET, &budget)?;
                *saved = now;
            }
        }
        Ok(())
    }

    /// The pause the pacing holds now, as it would be stored.
    pub fn pause(&self) -> PersistedPause {
        self.pacing.gate().persisted()
    }

    /// Status queries (and lookups) in flight at once per batch: the pacing's in-flight limit,
    /// which follows the latency measured.
    fn max_queries(&self) -> usize {
        self.pacing.in_flight_limit().max(1)
    }

    /// Sends in flight at once per batch: the same limit, after the first create of the process
    /// was answered (one until then, see [`crate::api::Pacing::send_limit`]).
    fn max_sends(&self) -> usize {
        self.pacing.send_limit().max(1)
    }
}

/// Applies `event` to `order` at `now_ms` through the state machine, returning the change to
/// commit. The one place (with the store's commit) where an order's state changes.
pub fn apply_event(
    mut order: OrderRecord,
    event: &Event,
    now_ms: i64,
    detail: Option<String>,
) -> Result<Change, EngineError> {
    let from = order.kind();
    let (state, attempts) = transition(&order.state, order.attempts, event)
        .map_err(|e| EngineError::Invariant(format!("order {}: {e}", order.order_id)))?;
    order.state = state;
    order.attempts = attempts;
    order.updated_ms = now_ms;
    if order.state.is_final() {
        order.final_ms = Some(now_ms);
        order.next_check_ms = None;
    }
    Ok(Change {
        order,
        from: Some(from),
        event: event.name(),
        detail,
    })
}

/// Stores the batch as done: the one place a batch leaves `Open`, called by the engine when
/// every order of the batch is final (at the end of its loop, or after a cancel left nothing
/// to send or follow). Idempotent.
///
/// The notices "batch finished" and, when rows failed or were rejected, "rows failed" are
/// recorded in the same transaction.
pub(crate) fn mark_done(store: &Store, batch_id: &str, now_ms: i64) -> Result<(), EngineError> {
    let Some(mut batch) = store.batch(batch_id)? else {
        return Err(EngineError::Invariant(format!("batch {batch_id} is not in the store")));
    };
    if batch.state != BatchState::Done {
        batch.state = BatchState::Done;
        batch.updated_ms = now_ms;
        let notices = if store.notices_wanted() {
            let figures = finished_figures(store, &batch)?;
            notice::batch_finished(&batch.batch_id, &batch.name, &figures, now_ms)
        } else {
            Vec::new()
        };
        store.put_batch_noticed(&batch, &[], &notices)?;
    }
    Ok(())
}

/// The figures of a finished batch for its notices: orders per final state, what was paid and
/// what was not per coin (exact sums), and the failed and rejected rows.
fn finished_figures(store: &Store, batch: &BatchRecord) -> Result<notice::Finished, StoreError> {
    let mut figures = notice::Finished {
        refused_rows: batch.refused.iter().filter(|r| r.duplicate_of_batch.is_none()).count() as u64,
        duplicate_rows: batch.refused.iter().filter(|r| r.duplicate_of_batch.is_some()).count() as u64,
        ..notice::Finished::default()
    };
    let mut paid: BTreeMap<String, (u64, Decimal)> = BTreeMap::new();
    let mut not_paid: BTreeMap<String, (u64, Decimal)> = BTreeMap::new();
    store.for_each_batch_order(&batch.batch_id, &mut |order| {
        let kind = order.kind();
        *figures.counts.entry(kind.as_str().to_owned()).or_default() += 1;
        let coin = coin_label(order);
        let amount = Decimal::from_str_exact(order.call.amount()).unwrap_or_default();
        match kind {
            StateKind::Success => {
                let e = paid.entry(coin).or_default();
                e.0 += 1;
                e.1 += amount;
            }
            StateKind::Failed | StateKind::Rejected => {
                let e = not_paid.entry(coin.clone()).or_default();
                e.0 += 1;
                e.1 += amount;
                figures.failed_total += 1;
                if figures.failed.len() < notice::MAX_LISTED_ROWS {
                    figures.failed.push(notice::FailedRow {
                        order_id: order.order_id.to_string(),
                        line: order.line,
                        coin,
                        amount: order.call.amount().to_owned(),
                        state: kind.as_str().to_owned(),
                        reason: order.error.as_ref().map(|e| e.message.clone()).unwrap_or_default(),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    let sums = |m: BTreeMap<String, (u64, Decimal)>| {
        m.into_iter()
            .map(|(coin, (rows, amount))| {
                (
                    coin,
                    notice::CoinSum {
                        rows,
                        amount: amount.normalize().to_string(),
                    },
                )
            })
            .collect()
    };
    figures.paid = sums(paid);
    figures.not_paid = sums(not_paid);
    Ok(figures)
}

/// The coin of an order as its row named it (a symbol, upper-cased), or its v1 token id.
fn coin_label(order: &OrderRecord) -> String {
    if order.input.coin.is_empty() {
        order.input.token_id.clone()
    } else {
        order.input.coin.to_ascii_uppercase()
    }
}

/// The notices a change of the stored pause gives: "sending paused" when the daily limit
/// closed the gate until a new reset, or the operator turned the kill switch on.
pub fn pause_notices(before: &PersistedPause, after: &PersistedPause, now_ms: i64) -> Vec<notice::Notice> {
    let mut notices = Vec::new();
    if let Some(until_ms) = after.daily_until_ms
        && before.daily_until_ms != Some(until_ms)
        && until_ms > now_ms
    {
        let cause = notice::PauseCause::DailyLimit {
            until_ms,
            until: crate::util::time::rfc3339_ms(until_ms),
        };
        notices.push(notice::sending_paused(&cause, now_ms));
    }
    if after.kill_switch && !before.kill_switch {
        let cause = notice::PauseCause::KillSwitch {
            reason: after.reason.clone(),
        };
        notices.push(notice::sending_paused(&cause, now_ms));
    }
    notices
}

/// Whether every order of the batch is final.
pub(crate) fn all_final(store: &Store, batch_id: &str) -> Result<bool, StoreError> {
    Ok(store
        .counts(Some(batch_id))?
        .iter()
        .all(|(kind, n)| kind.is_final() || *n == 0))
}

fn error_info(e: &CallError) -> ErrorInfo {
    ErrorInfo {
        code: e.code(),
        message: e.to_string(),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_daily_pause_and_the_kill_switch_turned_on_are_told_once() {
        let open = PersistedPause::default();
        let daily = PersistedPause {
            daily_until_ms: Some(5_000),
            ..PersistedPause::default()
        };
        let told = pause_notices(&open, &daily, 1_000);
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].figures["cause"], "daily_limit");
        assert_eq!(told[0].figures["until_ms"], 5_000);
        assert!(pause_notices(&daily, &daily, 1_000).is_empty(), "the same pause again");
        assert!(pause_notices(&open, &daily, 6_000).is_empty(), "a pause already over");
        let killed = open.clone().with_kill_switch(true, Some("audit".into()));
        let told = pause_notices(&daily, &killed, 1_000);
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].figures["reason"], "audit");
        assert!(
            pause_notices(&killed, &open, 1_000).is_empty(),
            "resuming is not a pause"
        );
    }
}
