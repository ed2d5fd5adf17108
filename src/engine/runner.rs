//! The engine's loop: reconcile what may exist at CCPayment, send queued orders within the
//! limits, follow submitted ones to their final status, and stop cleanly when told.
//!
//! The durability protocol, in the order things happen:
//! 1. An order's `Send` transition (`Submitting{attempt}`) is committed — in a group with other
//!    orders, but always before any of their requests leave. No HTTP call runs inside a store
//!    transaction.
//! 2. The request is sent; its answer becomes an event (see [`super::outcome`]) and the new
//!    state is committed, again in groups.
//! 3. Outcomes are durable before anything depends on them: reports are written from the store
//!    after the commits.
//! 4. At start, every `Submitting` or `Unknown` order — of any batch — is resolved by orderId
//!    before anything new is sent: found → `Submitted` (or final), `11003 NotFound` → queued for
//!    a resend with the same orderId, any other answer → still unknown, asked again later.
//!
//! Submitted orders are followed with `getAppWithdrawRecordList`, 20 orderIds per request (v1:
//! `bill/info`, 100), first after `track_first_delay` and then on a growing schedule, which
//! keeps tracking near one request per 20 orders.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::outcome::{RetryPolicy, Signal, classify};
use crate::api::pacing::backoff::{Backoff, Jitter};
use crate::api::pacing::gate::{DayClock, Gate};
use crate::api::pacing::limiter::{CallKind, Limiters};
use crate::api::types::{
    MAX_ORDER_IDS_PER_LIST_QUERY, RecordStatus, V1_MAX_ORDER_IDS_PER_QUERY, WithdrawRecord, WithdrawRecordListQuery,
    WithdrawRecordQuery, v1_status,
};
use crate::api::{CallError, Client};
use crate::model::call::WithdrawCall;
use crate::model::record::{ErrorInfo, OrderRecord};
use crate::model::state::{Event, FinalStatus, StateKind, transition};
use crate::store::{Change, Store, StoreError};
use crate::util::clock::SharedClock;

/// The key under which the pause gate's persistent part is stored.
pub const META_PAUSE: &str = "pause";

/// How the engine paces itself.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Requests in flight at once.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// First status query after an order is created.
    pub track_first_delay: Duration,
    /// Later status queries: the ceiling of this backoff for the number of checks made.
    pub track_backoff: Backoff,
    /// Re-asking about unknown orders after an unhelpful answer.
    pub reconcile_backoff: Backoff,
    /// The daily reset, for 11009 pauses.
    pub day: DayClock,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every order of the batch is final.
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

/// The exactly-once engine.
pub struct Engine {
    store: Arc<Store>,
    client: Client,
    limiters: Arc<Limiters>,
    gate: Arc<Gate>,
    clock: SharedClock,
    settings: EngineSettings,
    jitter: Mutex<Jitter>,
    /// Order ids a webhook said changed: asked about at the next tracking pass.
    hints: Mutex<HashSet<String>>,
}

/// At most this many hinted order ids are remembered; more are dropped (polling still finds them).
const MAX_HINTS: usize = 10_000;

/// Why sending stopped: a CCPayment code and its message.
type StopReason = (i64, String);

/// A status query's orders and what CCPayment said about them.
type Checked = (Vec<OrderRecord>, Result<HashMap<String, WithdrawRecord>, CallError>);

/// The status queries one batch's loop has in flight, and the orders they ask about (not asked
/// about again until the answer is in).
#[derive(Default)]
struct Tracking {
    tasks: JoinSet<Checked>,
    asking: HashSet<String>,
}

/// An unknown order and what CCPayment said when asked about it.
type Lookup = (OrderRecord, Result<Option<WithdrawRecord>, CallError>);

/// The answer to one send.
struct Sent {
    order: OrderRecord,
    result: Result<Option<String>, CallError>,
    at_ms: i64,
}

impl Engine {
    pub fn new(
        store: Arc<Store>,
        client: Client,
        limiters: Arc<Limiters>,
        gate: Arc<Gate>,
        clock: SharedClock,
        settings: EngineSettings,
    ) -> Engine {
        Engine {
            store,
            client,
            limiters,
            gate,
            clock,
            settings,
            jitter: Mutex::new(Jitter::from_entropy()),
            hints: Mutex::new(HashSet::new()),
        }
    }

    /// The pause gate (kill switch, rate-limit and daily pauses), shared by every batch.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The API client.
    pub fn client(&self) -> &Client {
        &self.client
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

    /// Submitted orders of `batch_id` that were hinted, taken out of the hint set. Hints for
    /// orders that are not (or no longer) submitted are dropped.
    fn take_hinted(&self, batch_id: &str) -> Result<Vec<OrderRecord>, EngineError> {
        let ids: Vec<String> = match self.hints.lock() {
            Ok(hints) if !hints.is_empty() => hints.iter().cloned().collect(),
            _ => return Ok(Vec::new()),
        };
        let mut mine = Vec::new();
        let mut done = Vec::new();
        for id in ids {
            match self.store.order(&id)? {
                Some(order) if order.batch_id == batch_id => {
                    if order.kind() == StateKind::Submitted {
                        mine.push(order);
                    }
                    done.push(id);
                }
                Some(order) if order.kind() == StateKind::Submitted => {}
                // Unknown orders and orders that are not submitted need no hint.
                _ => done.push(id),
            }
        }
        if let Ok(mut hints) = self.hints.lock() {
            for id in done {
                hints.remove(&id);
            }
        }
        Ok(mine)
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// What a failed read tells every sender: 11004 slows the gate down; 11009 (CCPayment's daily
    /// cap, reached by a status query before any create met it) pauses sending until the reset,
    /// persisted like a create's 11009.
    fn on_read_refused(&self, e: &CallError) -> Result<(), EngineError> {
        match e.code() {
            Some(11004) => self.gate.on_rate_limited(),
            Some(11009) => {
                let pause = self
                    .gate
                    .on_daily_limit(&self.settings.day, "CCPayment's daily request limit (11009)");
                self.store.meta_put(META_PAUSE, &pause)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The client-side daily budget's (day, used) counter, for the caller to persist.
    pub fn budget_state(&self) -> Option<(i64, u64)> {
        self.limiters.budget_state()
    }

    fn unit(&self) -> f64 {
        self.jitter.lock().map(|mut j| j.next_unit()).unwrap_or(0.5)
    }

    /// Applies `event` to `order`, returning the change to commit. An event that does not apply
    /// is a bug: it is refused with the state named, and nothing is written.
    fn apply(&self, order: OrderRecord, event: &Event, detail: Option<String>) -> Result<Change, EngineError> {
        apply_event(order, event, self.now(), detail)
    }

    fn commit(&self, changes: &[Change]) -> Result<(), EngineError> {
        if !changes.is_empty() {
            self.store.commit(changes)?;
        }
        Ok(())
    }

    /// Resolves every order that may exist at CCPayment (`Submitting`, `Unknown`) by orderId,
    /// across all batches, before anything new is sent. Keeps asking (with backoff) until each
    /// has an answer or `cancel` fires; returns whether all were resolved.
    pub async fn reconcile_pending(
        &self,
        cancel: &CancellationToken,
        progress: &dyn Progress,
    ) -> Result<bool, EngineError> {
        // An order left in Submitting may or may not have been sent: it is unknown.
        loop {
            let submitting = self.store.orders_by_state(StateKind::Submitting, None, None, 1000)?;
            if submitting.is_empty() {
                break;
            }
            let detail = "interrupted while sending; the request may have reached CCPayment".to_owned();
            let changes = submitting
                .into_iter()
                .map(|o| self.apply(o, &Event::Ambiguous { detail: detail.clone() }, Some(detail.clone())))
                .collect::<Result<Vec<_>, _>>()?;
            self.commit(&changes)?;
        }
        let mut announced = false;
        loop {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            let unknown = self.store.orders_by_state(StateKind::Unknown, None, None, 200)?;
            if unknown.is_empty() {
                return Ok(true);
            }
            if !announced {
                progress.message("reconciling orders whose outcome is unknown before sending anything new");
                announced = true;
            }
            let now = self.now();
            let due: Vec<OrderRecord> = unknown
                .into_iter()
                .filter(|o| o.next_check_ms.is_none_or(|t| t <= now))
                .collect();
            if due.is_empty() {
                let next = self.store.next_due(StateKind::Unknown, None)?.unwrap_or(now + 1000);
                self.sleep_until(next, cancel).await;
                continue;
            }
            self.reconcile_orders(due, cancel).await?;
        }
    }

    /// Asks CCPayment about each unknown order and commits what it says.
    async fn reconcile_orders(&self, orders: Vec<OrderRecord>, cancel: &CancellationToken) -> Result<(), EngineError> {
        let mut tasks = JoinSet::new();
        for order in orders {
            let client = self.client.clone();
            let pacing = self.pacing();
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let result = match pacing.admit(CallKind::Read, &cancel, "getAppWithdrawRecord").await {
                    Ok(()) => lookup(&client, &order).await,
                    Err(not_sent) => Err(not_sent),
                };
                (order, result)
            });
            if tasks.len() >= self.settings.concurrency.max(1) {
                self.finish_reconcile(tasks.join_next().await).await?;
            }
        }
        while let Some(done) = tasks.join_next().await {
            self.finish_reconcile(Some(done)).await?;
        }
        Ok(())
    }

    async fn finish_reconcile(&self, done: Option<Result<Lookup, tokio::task::JoinError>>) -> Result<(), EngineError> {
        let Some(done) = done else { return Ok(()) };
        let (order, result) = done.map_err(|e| EngineError::Invariant(format!("a reconcile task failed: {e}")))?;
        let mut changes = Vec::new();
        match result {
            Ok(Some(record)) => {
                self.gate.on_success();
                let found = self.apply(
                    with_record(order, &record),
                    &Event::Found,
                    Some("found by orderId".into()),
                )?;
                let mut order = found.order.clone();
                changes.push(found);
                match final_status(&record.status, &record.reason) {
                    Some(status) => changes.push(self.apply(order, &Event::Final(status), None)?),
                    None => {
                        // Now followed like any submitted order.
                        order.next_check_ms = Some(self.now() + ms(self.settings.track_first_delay));
                        if let Some(last) = changes.last_mut() {
                            last.order = order;
                        }
                    }
                }
            }
            Ok(None) => {
                self.gate.on_success();
                changes.push(self.apply(
                    order,
                    &Event::NotFound,
                    Some("CCPayment has no such order; it will be sent again with the same orderId".into()),
                )?);
            }
            Err(e) => {
                self.on_read_refused(&e)?;
                let mut order = order;
                order.checks += 1;
                order.next_check_ms =
                    Some(self.now() + ms(self.settings.reconcile_backoff.delay(order.checks, self.unit())));
                order.error = Some(error_info(&e));
                changes.push(self.apply(order, &Event::Ambiguous { detail: e.to_string() }, Some(e.to_string()))?);
            }
        }
        self.commit(&changes)
    }

    /// Sends, tracks and reconciles the orders of one batch until `wait_final` is satisfied,
    /// `cancel` fires, or a problem stops all sending.
    pub async fn run_batch(
        &self,
        batch_id: &str,
        wait_final: bool,
        cancel: &CancellationToken,
        progress: &dyn Progress,
    ) -> Result<RunEnd, EngineError> {
        if !self.reconcile_pending(cancel, progress).await? {
            return Ok(RunEnd::Interrupted);
        }
        self.run_reconciled_batch(batch_id, wait_final, cancel, progress).await
    }

    /// [`Engine::run_batch`] without the global reconciliation at its start: for a caller that
    /// ran [`Engine::reconcile_pending`] once before running several batches at the same time
    /// (the daemon). Each batch's own unknown orders are still reconciled by its loop, and no two
    /// loops may run the same batch.
    pub async fn run_reconciled_batch(
        &self,
        batch_id: &str,
        wait_final: bool,
        cancel: &CancellationToken,
        progress: &dyn Progress,
    ) -> Result<RunEnd, EngineError> {
        let mut inflight: JoinSet<Sent> = JoinSet::new();
        let mut answered: Vec<Sent> = Vec::new();
        let mut tracking = Tracking::default();
        let mut checked: Vec<Checked> = Vec::new();
        let mut stopped: Option<(i64, String)> = None;
        let mut last_counts = BTreeMap::new();
        loop {
            // Answers first: they free slots and may pause everyone. Their outcomes, the deferred
            // orders whose time has come and the intents of the next sends go into one durable
            // commit (one fsync per turn of the loop, however many orders move).
            let (mut changes, stop) = self.take_answers(&mut inflight, std::mem::take(&mut answered))?;
            if let Some(stop) = stop {
                stopped.get_or_insert(stop);
            }
            self.take_statuses(&mut tracking, std::mem::take(&mut checked), &mut changes)?;
            let sending = stopped.is_none() && !cancel.is_cancelled();
            let now = self.now();

            // Deferred orders whose time has come go back to the queue.
            let due = self
                .store
                .orders_by_state(StateKind::Deferred, Some(batch_id), Some(now), 1000)?;
            for order in due {
                changes.push(self.apply(order, &Event::Wake, None)?);
            }

            let mut intents = 0;
            if sending && self.gate.snapshot().1.is_none() {
                let room = self.settings.concurrency.saturating_sub(inflight.len());
                if room > 0 {
                    intents = self.intents(batch_id, room, &mut changes)?;
                }
            }
            // The intent of every order about to be sent is on disk before any request leaves.
            self.commit(&changes)?;
            let first_intent = changes.len() - intents;
            for change in changes.drain(first_intent..) {
                self.spawn_send(change.order, &mut inflight, cancel);
            }
            if !cancel.is_cancelled() {
                self.start_tracking(batch_id, &mut tracking, cancel)?;
                let unknown = self
                    .store
                    .orders_by_state(StateKind::Unknown, Some(batch_id), Some(now), 200)?;
                if !unknown.is_empty() {
                    self.reconcile_orders(unknown, cancel).await?;
                }
            }

            let counts = self.store.counts(Some(batch_id))?;
            if counts != last_counts {
                progress.update(&counts);
                last_counts = counts.clone();
            }
            let count = |k: StateKind| counts.get(&k).copied().unwrap_or(0);
            let open_sends = count(StateKind::Queued)
                + count(StateKind::Deferred)
                + count(StateKind::Submitting)
                + count(StateKind::Unknown);
            if inflight.is_empty() {
                if let Some((code, message)) = stopped.take() {
                    return Ok(RunEnd::Stopped { code, message });
                }
                if cancel.is_cancelled() {
                    return Ok(RunEnd::Interrupted);
                }
                if count(StateKind::AwaitingApproval) + count(StateKind::Planned) > 0 && open_sends == 0 {
                    return Ok(RunEnd::AwaitingApproval);
                }
                if open_sends == 0 && (count(StateKind::Submitted) == 0 || !wait_final) {
                    return Ok(if count(StateKind::Submitted) == 0 {
                        RunEnd::Finished
                    } else {
                        RunEnd::AllSubmitted
                    });
                }
            }

            // Sleep until something can happen: an answer, a due time, the gate, or cancel.
            let room = sending && inflight.len() < self.settings.concurrency;
            let next = self.next_wake(batch_id, room, &tracking)?;
            tokio::select! {
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    answered.push(done.map_err(|e| EngineError::Invariant(format!("a send task failed: {e}")))?);
                }
                Some(done) = tracking.tasks.join_next(), if !tracking.tasks.is_empty() => {
                    checked.push(done.map_err(|e| EngineError::Invariant(format!("a status task failed: {e}")))?);
                }
                _ = self.sleep_until(next, cancel) => {}
            }
        }
    }

    /// The earliest moment the loop has work: a deferred order, a status check, an unknown
    /// order, the gate opening; at most a second away so a queue filled by someone else is
    /// noticed. Orders whose status is being asked about right now do not count.
    fn next_wake(&self, batch_id: &str, room_to_send: bool, tracking: &Tracking) -> Result<i64, EngineError> {
        let now = self.now();
        let mut next = now + 1000;
        for kind in [StateKind::Deferred, StateKind::Unknown] {
            if let Some(t) = self.store.next_due(kind, Some(batch_id))? {
                next = next.min(t.max(now));
            }
        }
        // Tracking acts when a query is full or its oldest order has waited the slack (see
        // `start_tracking`); waking earlier would only spin. With every query slot busy, an
        // answer wakes the loop.
        if tracking.tasks.len() < self.max_queries() {
            let slack = ms(self.settings.track_first_delay) / 2;
            let first: Vec<i64> = self
                .store
                .due_keys(
                    StateKind::Submitted,
                    Some(batch_id),
                    None,
                    tracking.asking.len() + MAX_ORDER_IDS_PER_LIST_QUERY,
                )?
                .into_iter()
                .filter(|(_, id)| !tracking.asking.contains(id))
                .map(|(due, _)| due)
                .take(MAX_ORDER_IDS_PER_LIST_QUERY)
                .collect();
            if let Some(oldest) = first.first() {
                let full_at = match first.last() {
                    Some(due) if first.len() == MAX_ORDER_IDS_PER_LIST_QUERY => due - slack,
                    _ => i64::MAX,
                };
                next = next.min((oldest + slack).min(full_at).max(now));
            }
        }
        // Queued work wakes the loop at once only when a request could actually leave; with every
        // slot busy the loop waits for an answer instead of spinning.
        if room_to_send && self.store.next_due(StateKind::Queued, Some(batch_id))?.is_some() {
            if self.gate.snapshot().1.is_none() {
                next = now;
            } else if let Some(opens) = self.gate.hold_until() {
                // Paused (the daily cap, an 11004 backoff): the first send leaves when the gate
                // opens, not at the next poll. The kill switch (i64::MAX) waits for the poll.
                next = next.min(opens.max(now));
            }
        }
        Ok(next)
    }

    /// The gate, quotas, clock and day a request task passes through.
    fn pacing(&self) -> Pacing {
        Pacing {
            gate: self.gate.clone(),
            limiters: self.limiters.clone(),
            clock: self.clock.clone(),
            day: self.settings.day,
        }
    }

    /// Status queries in flight at once per batch.
    fn max_queries(&self) -> usize {
        self.settings.concurrency.max(1)
    }

    async fn sleep_until(&self, at_ms: i64, cancel: &CancellationToken) {
        let wait = (at_ms - self.now()).clamp(0, 1000);
        if wait == 0 {
            tokio::task::yield_now().await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            _ = cancel.cancelled() => {}
        }
    }

    /// Adds the `Send` transitions of up to `room` queued orders to `changes`; returns how many.
    /// The caller commits them, then starts their requests with [`Engine::spawn_send`].
    fn intents(&self, batch_id: &str, room: usize, changes: &mut Vec<Change>) -> Result<usize, EngineError> {
        let queued = self
            .store
            .orders_by_state(StateKind::Queued, Some(batch_id), None, room)?;
        let now = self.now();
        let n = queued.len();
        for mut order in queued {
            order.first_sent_ms.get_or_insert(now);
            order.last_sent_ms = Some(now);
            changes.push(self.apply(order, &Event::Send, None)?);
        }
        Ok(n)
    }

    /// Starts the request of an order whose `Submitting` state is committed.
    fn spawn_send(&self, order: OrderRecord, inflight: &mut JoinSet<Sent>, cancel: &CancellationToken) {
        let client = self.client.clone();
        let Pacing {
            gate,
            limiters,
            clock,
            day,
        } = self.pacing();
        let cancel = cancel.clone();
        inflight.spawn(async move {
            // Cancelled while the gate held it: the request never left, so nothing exists.
            if !wait_open(&gate, &cancel).await {
                let result = Err(CallError::NotSent {
                    endpoint: "withdrawal".into(),
                    detail: "cancelled before sending".into(),
                });
                return Sent {
                    order,
                    result,
                    at_ms: clock.now_ms(),
                };
            }
            let result = match limiters.acquire(CallKind::Withdraw, clock.now_ms(), &day).await {
                Ok(()) => send(&client, &order.call).await,
                Err(exhausted) => Err(CallError::Api(crate::api::ApiError::new(
                    "client daily budget",
                    11009,
                    exhausted.to_string(),
                ))),
            };
            Sent {
                order,
                result,
                at_ms: clock.now_ms(),
            }
        });
    }

    /// The changes the answers in `first` and every other send that has already answered make,
    /// for the caller to commit in one durable transaction (one fsync for many answers), and a
    /// stop reason when sending must stop. Nothing depends on an outcome before that commit.
    fn take_answers(
        &self,
        inflight: &mut JoinSet<Sent>,
        first: Vec<Sent>,
    ) -> Result<(Vec<Change>, Option<StopReason>), EngineError> {
        let mut sents = first;
        while let Some(done) = inflight.try_join_next() {
            sents.push(done.map_err(|e| EngineError::Invariant(format!("a send task failed: {e}")))?);
        }
        let mut changes = Vec::with_capacity(sents.len() + self.settings.concurrency);
        let mut stop = None;
        for sent in sents {
            let (change, signal) = self.outcome_of(sent)?;
            changes.push(change);
            if let Some(s) = signal {
                stop.get_or_insert(s);
            }
        }
        Ok((changes, stop))
    }

    /// The change one send's answer makes to its order, and a stop reason if sending must stop.
    fn outcome_of(&self, sent: Sent) -> Result<(Change, Option<(i64, String)>), EngineError> {
        let Sent {
            mut order,
            result,
            at_ms,
        } = sent;
        let (mut event, signal) = classify(&result, order.attempts, &self.settings.retry, at_ms, self.unit());
        match (&signal, &result) {
            (Signal::RateLimited, _) => self.gate.on_rate_limited(),
            (Signal::DailyLimit, _) => {
                // Persisted before the order's deferral, so a restart does not hammer the API.
                let pause = self
                    .gate
                    .on_daily_limit(&self.settings.day, "CCPayment's daily request limit (11009)");
                self.store.meta_put(META_PAUSE, &pause)?;
                if let (Event::Retry { until_ms, .. }, Some(until)) = (&mut event, pause.daily_until_ms) {
                    *until_ms = until;
                }
            }
            // Any answer from CCPayment that is not a rate limit lets the gate ramp back up.
            (_, Ok(_) | Err(CallError::Api(_))) => self.gate.on_success(),
            _ => {}
        }
        match &result {
            Ok(record_id) => {
                order.record_id = record_id.clone();
                order.error = None;
                order.next_check_ms = Some(at_ms + ms(self.settings.track_first_delay));
            }
            Err(e) => order.error = Some(error_info(e)),
        }
        if let Event::Ambiguous { .. } = event {
            // Ask about it soon: the answer decides whether it is ever sent again.
            order.next_check_ms = Some(at_ms + ms(self.settings.reconcile_backoff.delay(1, self.unit())));
        }
        let detail = result.as_ref().err().map(ToString::to_string);
        let change = self.apply(order, &event, detail)?;
        let stop = match signal {
            Signal::Stop { code, message } => Some((code, message)),
            _ => None,
        };
        Ok((change, stop))
    }

    /// Starts status queries for the batch's submitted orders that are due, 20 (v1: 100)
    /// orderIds per request, while fewer than [`Engine::max_queries`] are in flight. The answers
    /// come back through `tracking.tasks` to [`Engine::take_statuses`].
    fn start_tracking(
        &self,
        batch_id: &str,
        tracking: &mut Tracking,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let room = self.max_queries().saturating_sub(tracking.tasks.len());
        if room == 0 {
            return Ok(());
        }
        // Orders come due one by one as they were created; asking about each trickle would cost
        // nearly a request per order. So a query waits until it is full (20 orderIds) or until
        // its oldest order has waited `slack`, and orders due within `slack` ride along early.
        // The decision is made on the state index alone; only the orders asked about are read.
        let now = self.now();
        let slack = ms(self.settings.track_first_delay) / 2;
        let mut hinted = self.take_hinted(batch_id)?;
        // An order already being asked about keeps its hint for the pass after that answer.
        hinted.retain(|o| {
            let asking = tracking.asking.contains(&o.order_id);
            if asking {
                self.hint(&o.order_id);
            }
            !asking
        });
        let keys: Vec<(i64, String)> = self
            .store
            .due_keys(
                StateKind::Submitted,
                Some(batch_id),
                Some(now + slack),
                tracking.asking.len() + room * V1_MAX_ORDER_IDS_PER_QUERY,
            )?
            .into_iter()
            .filter(|(_, id)| !tracking.asking.contains(id))
            .collect();
        if keys.is_empty() && hinted.is_empty() {
            return Ok(());
        }
        // A batch is built for one API version; its first order tells the query size.
        let first_is_v1 = match hinted.first() {
            Some(order) => is_v1(order),
            None => match keys.first() {
                Some((_, id)) => self.store.order(id)?.is_some_and(|o| is_v1(&o)),
                None => false,
            },
        };
        let chunk_size = if first_is_v1 {
            V1_MAX_ORDER_IDS_PER_QUERY
        } else {
            MAX_ORDER_IDS_PER_LIST_QUERY
        };
        // A hinted order is asked about now: it goes first, so its query is sent even when it is
        // not full. The rest follow in due order, so only the last chunk can be partial.
        let hinted_ids: HashSet<&str> = hinted.iter().map(|o| o.order_id.as_str()).collect();
        let candidates: Vec<(bool, &str)> = hinted
            .iter()
            .map(|o| (true, o.order_id.as_str()))
            .chain(
                keys.iter()
                    .filter(|(_, id)| !hinted_ids.contains(id.as_str()))
                    .map(|(due, id)| (*due <= now - slack, id.as_str())),
            )
            .collect();
        let mut wanted: Vec<String> = Vec::new();
        for chunk in candidates.chunks(chunk_size).take(room) {
            if chunk.len() == chunk_size || chunk.iter().any(|(overdue, _)| *overdue) {
                wanted.extend(chunk.iter().map(|(_, id)| (*id).to_owned()));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let due: Vec<OrderRecord> = self
            .store
            .orders(&wanted)?
            .into_iter()
            .filter(|o| o.kind() == StateKind::Submitted)
            .collect();
        let (v1, v2): (Vec<OrderRecord>, Vec<OrderRecord>) = due.into_iter().partition(is_v1);
        for (chunk_size, group, v1) in [
            (MAX_ORDER_IDS_PER_LIST_QUERY, v2, false),
            (V1_MAX_ORDER_IDS_PER_QUERY, v1, true),
        ] {
            for chunk in group.chunks(chunk_size) {
                let chunk = chunk.to_vec();
                tracking.asking.extend(chunk.iter().map(|o| o.order_id.clone()));
                let client = self.client.clone();
                let pacing = self.pacing();
                let cancel = cancel.clone();
                tracking.tasks.spawn(async move {
                    if let Err(not_sent) = pacing.admit(CallKind::Read, &cancel, "status query").await {
                        return (chunk, Err(not_sent));
                    }
                    let result = if v1 {
                        statuses_v1(&client, &chunk).await
                    } else {
                        statuses_v2(&client, &chunk).await
                    };
                    (chunk, result)
                });
            }
        }
        Ok(())
    }

    /// Adds to `changes` what the answered status queries (`first`, and any other that has
    /// answered) say: final orders become final, the others are asked again later, less often
    /// each time.
    fn take_statuses(
        &self,
        tracking: &mut Tracking,
        first: Vec<Checked>,
        changes: &mut Vec<Change>,
    ) -> Result<(), EngineError> {
        let mut answers = first;
        while let Some(done) = tracking.tasks.try_join_next() {
            answers.push(done.map_err(|e| EngineError::Invariant(format!("a status task failed: {e}")))?);
        }
        for (chunk, result) in answers {
            let statuses = match result {
                Ok(statuses) => {
                    self.gate.on_success();
                    statuses
                }
                Err(e) => {
                    self.on_read_refused(&e)?;
                    HashMap::new()
                }
            };
            for mut order in chunk {
                tracking.asking.remove(&order.order_id);
                order.checks += 1;
                let record = statuses.get(&order.order_id);
                if let Some(record) = record {
                    order = with_record(order, record);
                    if let Some(status) = final_status(&record.status, &record.reason) {
                        changes.push(self.apply(order, &Event::Final(status), None)?);
                        continue;
                    }
                }
                // Not final yet (or not listed yet): ask again later, less often each time.
                let delay = self.settings.track_backoff.ceiling(order.checks);
                order.next_check_ms = Some(self.now() + ms(delay));
                order.updated_ms = self.now();
                changes.push(Change {
                    from: Some(order.kind()),
                    event: "check",
                    detail: None,
                    order,
                });
            }
        }
        Ok(())
    }
}

fn is_v1(order: &OrderRecord) -> bool {
    matches!(order.call, WithdrawCall::V1(_))
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

/// Waits for the gate; false when cancelled first (a daily pause can last hours).
async fn wait_open(gate: &Gate, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = gate.wait_open() => true,
        _ = cancel.cancelled() => false,
    }
}

/// What a request task needs to pass the gate and the quotas, cloned into each task.
struct Pacing {
    gate: Arc<Gate>,
    limiters: Arc<Limiters>,
    clock: SharedClock,
    day: DayClock,
}

impl Pacing {
    /// Lets one read request through: the gate, then the quota. The error says why the request
    /// was not sent (cancelled, or the daily budget is used up); reads change nothing at
    /// CCPayment.
    async fn admit(&self, kind: CallKind, cancel: &CancellationToken, endpoint: &str) -> Result<(), CallError> {
        let not_sent = |detail: String| CallError::NotSent {
            endpoint: endpoint.to_owned(),
            detail,
        };
        if !wait_open(&self.gate, cancel).await {
            return Err(not_sent("cancelled".into()));
        }
        // The time after the gate: a wait across a daily reset charges the new day's budget.
        self.limiters
            .acquire(kind, self.clock.now_ms(), &self.day)
            .await
            .map_err(|e| not_sent(e.to_string()))
    }
}

/// Sends a withdrawal call; the record id when CCPayment returns one.
async fn send(client: &Client, call: &WithdrawCall) -> Result<Option<String>, CallError> {
    match call {
        WithdrawCall::Network(req) => client
            .apply_app_withdraw_to_network(&req.into())
            .await
            .map(|r| Some(r.record_id)),
        WithdrawCall::Cwallet(req) => client
            .apply_app_withdraw_to_cwallet(&req.into())
            .await
            .map(|r| Some(r.record_id)),
        WithdrawCall::V1(req) => client
            .v1_withdraw(&req.into())
            .await
            .map(|r| Some(r.record_id).filter(|id| !id.is_empty())),
    }
}

/// Looks one order up by orderId: `Ok(None)` only when CCPayment says it does not exist.
async fn lookup(client: &Client, order: &OrderRecord) -> Result<Option<WithdrawRecord>, CallError> {
    if matches!(order.call, WithdrawCall::V1(_)) {
        // v1 has no NotFound code: an id absent from bill/info was never created.
        let mut found = statuses_v1(client, std::slice::from_ref(order)).await?;
        return Ok(found.remove(&order.order_id));
    }
    let query = WithdrawRecordQuery {
        order_id: Some(order.order_id.clone()),
        record_id: None,
    };
    match client.get_app_withdraw_record(&query).await {
        Ok(record) => Ok(Some(record)),
        Err(CallError::Api(e)) if e.code == 11003 => Ok(None),
        Err(e) => Err(e),
    }
}

async fn statuses_v2(client: &Client, orders: &[OrderRecord]) -> Result<HashMap<String, WithdrawRecord>, CallError> {
    let mut out = HashMap::new();
    let mut query = WithdrawRecordListQuery {
        order_ids: orders.iter().map(|o| o.order_id.clone()).collect(),
        ..WithdrawRecordListQuery::default()
    };
    // With orderIds the answer fits one page; follow nextId anyway rather than drop records.
    for _ in 0..10 {
        let page = client.get_app_withdraw_record_list(&query).await?;
        for record in page.records {
            out.insert(record.order_id.clone(), record);
        }
        if page.next_id.is_empty() {
            break;
        }
        query.next_id = Some(page.next_id);
    }
    Ok(out)
}

async fn statuses_v1(client: &Client, orders: &[OrderRecord]) -> Result<HashMap<String, WithdrawRecord>, CallError> {
    let ids: Vec<String> = orders.iter().map(|o| o.order_id.clone()).collect();
    let bills = client.v1_bill_info(&ids).await?;
    Ok(bills
        .into_iter()
        .map(|bill| {
            let trade = bill.trade_list.first().cloned().unwrap_or_default();
            let record = WithdrawRecord {
                record_id: bill.order_detail.order_id.clone(),
                order_id: bill.order_detail.merchant_order_id.clone(),
                status: v1_status(&bill.order_detail.status),
                tx_id: trade.txid.clone(),
                chain: bill.order_detail.chain.clone(),
                amount: bill.order_detail.order_amount.clone(),
                fee: (!trade.network_fee.is_empty()).then(|| crate::api::types::FeeAmount {
                    coin_id: trade.network_coin_id.parse().unwrap_or(0),
                    coin_symbol: trade.network_fee_crypto.clone(),
                    amount: trade.network_fee.clone(),
                }),
                ..WithdrawRecord::default()
            };
            (record.order_id.clone(), record)
        })
        .collect())
}

/// The final status a record shows, if it shows one.
fn final_status(status: &RecordStatus, reason: &str) -> Option<FinalStatus> {
    match status {
        RecordStatus::Success => Some(FinalStatus::Success),
        RecordStatus::Failed => Some(FinalStatus::Failed {
            reason: if reason.is_empty() {
                "CCPayment reports the withdrawal failed".into()
            } else {
                reason.to_owned()
            },
        }),
        RecordStatus::Rejected => Some(FinalStatus::Failed {
            reason: "rejected on the CCPayment dashboard".into(),
        }),
        _ => None,
    }
}

/// Copies what a record tells about the payout into the order.
fn with_record(mut order: OrderRecord, record: &WithdrawRecord) -> OrderRecord {
    if !record.record_id.is_empty() {
        order.record_id = Some(record.record_id.clone());
    }
    if !record.tx_id.is_empty() {
        order.tx_id = Some(record.tx_id.clone());
    }
    if let Some(fee) = &record.fee {
        order.fee = Some(fee.clone().into());
    }
    order
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
