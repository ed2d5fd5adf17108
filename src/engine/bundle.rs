//! Bundles: the orders of a batch paid through CCPayment's batch withdrawals
//! (`withdraw_mode = "batch"`), one `batchOrderId` per bundle of up to 500 tasks.
//!
//! The same rules as single payouts, at two levels:
//! - **Intent before every request.** The bundle's phase (`Applying`, `Appending`,
//!   `Confirming`, `Aborting`) and its orders' states (`Submitting`) are committed together
//!   before the apply, an append, the confirm or an abort leaves.
//! - **Ambiguity is resolved by looking, never by sending again blind.** A lost apply is
//!   resolved with `getBatchWithdrawOrder`: found → its task list is read; absent → applied
//!   again with the same `batchOrderId` only after the absence is confirmed the way a single
//!   order's is (two lookups and `not_found_confirm` since the request left, R2/R3). A lost
//!   append is resolved by reading the task list: tasks present are never appended again, and
//!   a missing task is appended only once its absence is confirmed the same way.
//! - **Confirm only what is known.** A bundle is confirmed only when every task is known to be
//!   present — after any ambiguity, its task list is read and matched against what was sent
//!   (seq, remark = order_id, address, memo, amount), and a list that holds a task ccpayout did
//!   not send, a seq twice or a changed task is never confirmed: it is aborted and its orders are
//!   reported not paid. A lost confirm is resolved by looking the batch up: still `Init`, it is
//!   confirmed again (a confirm names the batch, so a second one cannot add a payment).
//! - **CCPayment ends what it has.** A task's order becomes final only from CCPayment's task
//!   list (or an abort's answer listing it cancelled), never locally.
//!
//! Every request passes the one pacing inside [`Payouts::batch`]. Bundle steps run inline in the
//! batch's loop, one step per bundle per turn; a step takes at most a few requests.

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

use super::outcome::{Signal, classify};
use super::send::StopReason;
use super::{Engine, EngineError, ms};
use crate::api::types::{
    AbortBatchWithdrawRequest, AppendBatchWithdrawRequest, ApplyBatchWithdrawRequest, BATCH_RECORD_PAGE_SIZE,
    BatchOrderQuery, BatchRecordListQuery, BatchTask, BatchWithdrawOrder, ConfirmBatchWithdrawRequest, TaskStatus,
};
use crate::api::{BatchAnswer, BatchCall, CallError};
use crate::model::bundle::{AbortCause, AbortOutcome, BundlePhase, BundleRecord, RemoteView};
use crate::model::call::WithdrawCall;
use crate::model::record::{Absent, ErrorInfo, Fee, OrderRecord};
use crate::model::state::{Event, FinalStatus, OrderState, StateKind};
use crate::rules::deny::match_key;
use crate::store::{Change, ControlEvent};

/// Abort every task of a bundle whose task list is not what was sent.
const ABORT_MISMATCH: BundlePhase = BundlePhase::Aborting {
    seqs: Vec::new(),
    cause: AbortCause::Mismatch,
};

const INTERRUPTED_APPLY: &str = "interrupted while applying; the batch may exist at CCPayment";
const INTERRUPTED_APPEND: &str = "interrupted while appending; the tasks may be at CCPayment";

/// While a bundle runs, its task list is read again at most this often.
const PROGRESS_LISTING_MS: i64 = 60_000;

/// What one pass over a batch's bundles found.
#[derive(Debug, Default)]
pub(super) struct BundlesTick {
    /// The earliest moment a bundle has work next.
    pub next_ms: Option<i64>,
    /// Bundles not yet confirmed that can move (not merely waiting for an approval).
    pub unconfirmed: usize,
    /// Bundles confirmed and still followed.
    pub following: usize,
    /// A problem every request would meet: sending stops.
    pub stop: Option<StopReason>,
}

/// The orders of a bundle by order_id.
type Orders = HashMap<String, OrderRecord>;

/// A bundle step's outcome to commit: the bundle's new version, its orders' changes, and what
/// the audit line says.
struct Commit {
    bundle: BundleRecord,
    from: &'static str,
    changes: Vec<Change>,
    detail: String,
}

impl Engine {
    /// One pass over the bundles of `batch_id`: each one whose next step is due takes it.
    /// `sending`: new applies, appends and confirms may leave (not after a stop or a cancel).
    pub(super) async fn drive_bundles(
        &self,
        batch_id: &str,
        sending: bool,
        cancel: &CancellationToken,
    ) -> Result<BundlesTick, EngineError> {
        let mut tick = BundlesTick::default();
        let bundles = self.store.bundles(batch_id)?;
        if bundles.is_empty() {
            return Ok(tick);
        }
        for bundle in bundles {
            if bundle.phase.is_final() {
                continue;
            }
            let now = self.now();
            let due = bundle.next_check_ms.is_none_or(|t| t <= now);
            // A paused gate (11009, the kill switch, an 11004 backoff) would hold an inline
            // request for as long as it is closed: the loop waits for it to open instead.
            let before = (bundle.phase.clone(), bundle.updated_ms);
            let bundle = if due && !cancel.is_cancelled() && !self.pacing.gate().is_paused() {
                match self.bundle_step(bundle, sending, cancel).await? {
                    (bundle, Some(stop)) => {
                        tick.stop.get_or_insert(stop);
                        bundle
                    }
                    (bundle, None) => bundle,
                }
            } else {
                bundle
            };
            // A step that moved the bundle may be followed by the next at once (the confirm after
            // the apply); one that could not move it (the gate closed, no room to send, an order
            // not ready) is tried again when the gate opens or a second later, never in a spin.
            let moved = (bundle.phase.clone(), bundle.updated_ms) != before;
            if bundle.phase.is_final() {
                continue;
            }
            match bundle.phase {
                BundlePhase::Confirmed => tick.following += 1,
                BundlePhase::Waiting if self.awaits_approval(&bundle)? => {}
                _ => tick.unconfirmed += 1,
            }
            let now = self.now();
            let next = match bundle.next_check_ms {
                Some(t) if t > now => t,
                _ if moved => now,
                _ => match self.pacing.gate().hold_until() {
                    Some(opens) if opens > now && opens < i64::MAX => opens,
                    _ => now + 1000,
                },
            };
            tick.next_ms = Some(tick.next_ms.map_or(next, |t| t.min(next)));
        }
        Ok(tick)
    }

    /// Resolves every bundle of every batch whose request may have reached CCPayment without its
    /// answer being recorded (`Applying`, `Unknown`, `Appending`, `Confirming`), before anything
    /// new is sent: part of [`Engine::reconcile_pending`]. Returns false when `cancel` fired.
    pub(super) async fn reconcile_bundles(&self, cancel: &CancellationToken) -> Result<bool, EngineError> {
        loop {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            let uncertain: Vec<BundleRecord> = self
                .store
                .open_bundles()?
                .into_iter()
                .filter(|b| b.phase.is_uncertain())
                .collect();
            if uncertain.is_empty() {
                return Ok(true);
            }
            let now = self.now();
            let mut next = now + 1000;
            for bundle in uncertain {
                let bundle = if bundle.next_check_ms.is_none_or(|t| t <= now) && !self.pacing.gate().is_paused() {
                    self.bundle_step(bundle, false, cancel).await?.0
                } else {
                    bundle
                };
                // A bundle still due (the gate closed, or no answer yet) is tried again shortly,
                // never in a spin that would hold virtual time still.
                let now = self.now();
                let due = bundle.next_check_ms.filter(|t| *t > now).unwrap_or(now + 250);
                next = next.min(due);
            }
            self.sleep_until(next, cancel).await;
        }
    }

    /// Whether a waiting bundle's orders wait for an approval.
    fn awaits_approval(&self, bundle: &BundleRecord) -> Result<bool, EngineError> {
        let orders = self.store.orders(&bundle.orders)?;
        Ok(orders
            .iter()
            .any(|o| matches!(o.kind(), StateKind::Planned | StateKind::AwaitingApproval)))
    }

    /// Takes the bundle's next step; returns its new version and a stop reason when CCPayment
    /// answered with a problem every request would meet.
    async fn bundle_step(
        &self,
        bundle: BundleRecord,
        sending: bool,
        cancel: &CancellationToken,
    ) -> Result<(BundleRecord, Option<StopReason>), EngineError> {
        let orders: Orders = self
            .store
            .orders(&bundle.orders)?
            .into_iter()
            .map(|o| (o.order_id.as_str().to_owned(), o))
            .collect();
        match bundle.phase.clone() {
            BundlePhase::Waiting => self.waiting(bundle, orders, sending, cancel).await,
            BundlePhase::Applying { attempt } => {
                // Found at the start of a step: the process stopped while the apply was out.
                let next = BundlePhase::Unknown {
                    attempt,
                    detail: INTERRUPTED_APPLY.to_owned(),
                };
                self.interrupted(bundle, &orders, next, INTERRUPTED_APPLY)
                    .map(|b| (b, None))
            }
            BundlePhase::Unknown { .. } => self.look_up(bundle, orders, cancel).await.map(|b| (b, None)),
            BundlePhase::Open { verify: true } => self.verify(bundle, orders, cancel).await.map(|b| (b, None)),
            BundlePhase::Open { verify: false } => self.open(bundle, orders, sending, cancel).await,
            // Interrupted while appending: the tasks may be there; the list is read.
            BundlePhase::Appending { .. } => self
                .interrupted(bundle, &orders, BundlePhase::Open { verify: true }, INTERRUPTED_APPEND)
                .map(|b| (b, None)),
            BundlePhase::Confirming { .. } => self.confirm_resolved(bundle, cancel).await.map(|b| (b, None)),
            BundlePhase::Confirmed => self.follow(bundle, orders, cancel).await.map(|b| (b, None)),
            BundlePhase::Aborting { seqs, cause } => {
                self.abort(bundle, orders, seqs, cause, cancel).await.map(|b| (b, None))
            }
            BundlePhase::Done | BundlePhase::Refused { .. } => Ok((bundle, None)),
        }
    }

    /// A bundle found in `Applying` or `Appending` at the start of a step: the process stopped
    /// with that request out. Its `Submitting` orders become `Unknown`, it moves to `next`, and
    /// absence is confirmed from now (the latest moment the request could have arrived, R2).
    fn interrupted(
        &self,
        bundle: BundleRecord,
        orders: &Orders,
        next: BundlePhase,
        detail: &str,
    ) -> Result<BundleRecord, EngineError> {
        let mut bundle = bundle;
        let from = bundle.phase.name();
        let now = self.now();
        bundle.phase = next;
        bundle.last_sent_ms = Some(bundle.last_sent_ms.map_or(now, |t| t.max(now)));
        let changes = self.ambiguous_orders(orders, detail)?;
        self.save(Commit {
            bundle,
            from,
            changes,
            detail: detail.to_owned(),
        })
    }

    /// Commits a step: the bundle (if still in `from`), its orders' changes and an audit line.
    fn save(&self, commit: Commit) -> Result<BundleRecord, EngineError> {
        let Commit {
            mut bundle,
            from,
            changes,
            detail,
        } = commit;
        let now = self.now();
        bundle.updated_ms = now;
        self.save_pacing(false)?;
        let event = ControlEvent {
            batch_id: bundle.batch_id.as_str().to_owned(),
            event: "bundle",
            by: None,
            detail: format!("{} ({from} → {}): {detail}", bundle.id, bundle.phase.name()),
            at_ms: now,
        };
        self.store.commit_bundle(&bundle, from, &changes, &event)?;
        Ok(bundle)
    }

    /// Moves the bundle to `phase`, with nothing scheduled (the next step is taken at once), and
    /// commits it with `changes`.
    fn enter(
        &self,
        mut bundle: BundleRecord,
        phase: BundlePhase,
        changes: Vec<Change>,
        detail: impl Into<String>,
    ) -> Result<BundleRecord, EngineError> {
        let from = bundle.phase.name();
        bundle.phase = phase;
        bundle.next_check_ms = None;
        self.save(Commit {
            bundle,
            from,
            changes,
            detail: detail.into(),
        })
    }

    /// Writes a bundle's schedule (next check, counters) without an order change or a phase
    /// change.
    fn reschedule(&self, mut bundle: BundleRecord, next_ms: i64, detail: String) -> Result<BundleRecord, EngineError> {
        bundle.next_check_ms = Some(next_ms);
        let from = bundle.phase.name();
        self.save(Commit {
            bundle,
            from,
            changes: Vec::new(),
            detail,
        })
    }

    /// Every order of the bundle still `Submitting` becomes `Unknown`.
    fn ambiguous_orders(&self, orders: &Orders, detail: &str) -> Result<Vec<Change>, EngineError> {
        let mut changes = Vec::new();
        for order in orders.values().filter(|o| o.kind() == StateKind::Submitting) {
            changes.push(self.apply(
                order.clone(),
                &Event::Ambiguous {
                    detail: detail.to_owned(),
                },
                Some(detail.to_owned()),
            )?);
        }
        Ok(changes)
    }

    /// The tasks of `seqs` as they are sent: seq, address, memo, amount, remark = order_id.
    fn tasks(&self, bundle: &BundleRecord, orders: &Orders, seqs: &[u32]) -> Result<Vec<BatchTask>, EngineError> {
        seqs.iter()
            .map(|&seq| {
                let order_id = bundle
                    .order_of(seq)
                    .ok_or_else(|| EngineError::Invariant(format!("bundle {} has no task {seq}", bundle.id)))?;
                let order = orders.get(order_id).ok_or_else(|| {
                    EngineError::Invariant(format!("bundle {}: order {order_id} is not in the store", bundle.id))
                })?;
                let WithdrawCall::Network(call) = &order.call else {
                    return Err(EngineError::Invariant(format!(
                        "bundle {}: order {order_id} is not a network withdrawal",
                        bundle.id
                    )));
                };
                Ok(BatchTask {
                    seq,
                    address: call.address.clone(),
                    memo: call.memo.clone().unwrap_or_default(),
                    amount: call.amount.clone(),
                    remark: order_id.to_owned(),
                    ..BatchTask::default()
                })
            })
            .collect()
    }

    /// Seqs of the bundle's orders in `kind`, in seq order.
    fn seqs_in(bundle: &BundleRecord, orders: &Orders, kinds: &[StateKind]) -> Vec<u32> {
        bundle
            .orders
            .iter()
            .zip(1u32..)
            .filter(|(id, _)| orders.get(id.as_str()).is_some_and(|o| kinds.contains(&o.kind())))
            .map(|(_, seq)| seq)
            .collect()
    }

    /// The answer to an apply, append or confirm, as the single-order rules read it; a daily
    /// limit defers to the reset.
    fn classify_answer<T>(&self, result: &Result<T, CallError>, attempts: u32) -> (Event, Signal) {
        let now = self.now();
        let (mut event, signal) = classify(result, attempts, &self.settings.retry, now, self.unit());
        if signal == Signal::DailyLimit
            && let (Event::Retry { until_ms, .. }, Some(until)) = (&mut event, self.pause().daily_until_ms)
        {
            *until_ms = until;
        }
        (event, signal)
    }

    // -----------------------------------------------------------------------------------------
    // Waiting → Applying
    // -----------------------------------------------------------------------------------------

    async fn waiting(
        &self,
        bundle: BundleRecord,
        orders: Orders,
        sending: bool,
        cancel: &CancellationToken,
    ) -> Result<(BundleRecord, Option<StopReason>), EngineError> {
        let now = self.now();
        let mut changes = Vec::new();
        let mut waiting_until: Option<i64> = None;
        let mut blocked = false;
        let mut woken: HashMap<String, OrderRecord> = HashMap::new();
        for order in orders.values() {
            match &order.state {
                OrderState::Planned | OrderState::AwaitingApproval => blocked = true,
                OrderState::Deferred { until_ms, .. } if *until_ms <= now => {
                    let change = self.apply(order.clone(), &Event::Wake, None)?;
                    woken.insert(order.order_id.as_str().to_owned(), change.order.clone());
                    changes.push(change);
                }
                OrderState::Deferred { until_ms, .. } => {
                    waiting_until = Some(waiting_until.map_or(*until_ms, |t: i64| t.min(*until_ms)));
                }
                _ => {}
            }
        }
        if blocked || waiting_until.is_some() {
            // Every task of a bundle goes in one apply: it waits for all of them.
            let next = waiting_until.unwrap_or(now + 2000);
            if bundle.next_check_ms == Some(next) {
                return Ok((bundle, None));
            }
            let mut bundle = bundle;
            bundle.next_check_ms = Some(next);
            let from = bundle.phase.name();
            let detail = if blocked {
                "waiting for an approval".to_owned()
            } else {
                "waiting for deferred orders".to_owned()
            };
            return self
                .save(Commit {
                    bundle,
                    from,
                    changes,
                    detail,
                })
                .map(|b| (b, None));
        }
        let mut orders = orders;
        orders.extend(woken);
        let seqs = Self::seqs_in(&bundle, &orders, &[StateKind::Queued]);
        if seqs.is_empty() {
            // Cancelled or refused before anything was applied: nothing exists at CCPayment.
            if orders.values().all(|o| o.state.is_final()) {
                return self
                    .enter(bundle, BundlePhase::Done, changes, "nothing left to apply")
                    .map(|b| (b, None));
            }
            return Ok((bundle, None));
        }
        if !sending {
            return Ok((bundle, None));
        }
        // The intent: the bundle applying, its orders submitting, on disk before the request.
        let mut bundle = bundle;
        let from = bundle.phase.name();
        bundle.attempts += 1;
        bundle.phase = BundlePhase::Applying {
            attempt: bundle.attempts,
        };
        bundle.last_sent_ms = Some(now);
        bundle.absent = None;
        bundle.next_check_ms = None;
        for seq in &seqs {
            let id = bundle.order_of(*seq).unwrap_or_default().to_owned();
            if let Some(order) = orders.get(&id) {
                let mut order = order.clone();
                order.first_sent_ms.get_or_insert(now);
                order.last_sent_ms = Some(now);
                order.absent = None;
                let change = self.apply(order, &Event::Send, None)?;
                orders.insert(id, change.order.clone());
                changes.push(change);
            }
        }
        let tasks = self.tasks(&bundle, &orders, &seqs)?;
        let detail = format!("applying {} task(s), attempt {}", tasks.len(), bundle.attempts);
        let bundle = self.save(Commit {
            bundle,
            from,
            changes,
            detail,
        })?;
        let request = ApplyBatchWithdrawRequest {
            batch_order_id: bundle.id.clone(),
            coin_id: bundle.coin_id,
            chain: bundle.chain.clone(),
            product_name: String::new(),
            orders: tasks,
            mode: bundle.settings.execution.wire().to_owned(),
            notify_url: String::new(),
        };
        let BatchAnswer::Applied(result) = self.payouts.batch(BatchCall::Apply(&request), cancel).await else {
            return Err(EngineError::Invariant("the apply was answered as another call".into()));
        };
        let result = match result {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => return self.not_routed(bundle, orders, &seqs).map(|b| (b, None)),
            Err(e) => Err(e),
        };
        let (event, signal) = self.classify_answer(&result, bundle.attempts);
        let at = self.now();
        let mut bundle = bundle;
        let from = bundle.phase.name();
        let attempt = bundle.attempts;
        let mut changes = Vec::new();
        let detail = match &result {
            Ok(reply) => {
                bundle.phase = BundlePhase::Open { verify: false };
                let remote = bundle.remote.get_or_insert_with(RemoteView::default);
                remote.status = "Init".into();
                remote.bill_id = reply.bill_id.clone();
                remote.at_ms = at;
                "applied".to_owned()
            }
            Err(e) => e.to_string(),
        };
        match &event {
            Event::Created => {}
            Event::Ambiguous { detail } => {
                bundle.phase = BundlePhase::Unknown {
                    attempt,
                    detail: detail.clone(),
                };
                // The request reached CCPayment, if it did, before this answer (R2).
                bundle.last_sent_ms = Some(at);
                bundle.next_check_ms = Some(at + ms(self.settings.reconcile_backoff.delay(1, self.unit())));
            }
            Event::Retry { until_ms, .. } => {
                bundle.phase = BundlePhase::Waiting;
                bundle.next_check_ms = Some(*until_ms);
            }
            Event::Refuse { code, reason } => {
                bundle.phase = BundlePhase::Refused {
                    code: *code,
                    reason: reason.clone(),
                };
                bundle.problem = Some(format!("CCPayment refused the batch withdrawal: {reason}"));
                bundle.next_check_ms = None;
            }
            _ => {}
        }
        for seq in &seqs {
            let id = bundle.order_of(*seq).unwrap_or_default().to_owned();
            if let Some(order) = orders.get(&id) {
                let mut order = order.clone();
                match &result {
                    Ok(_) => order.error = None,
                    Err(e) => order.error = Some(error_info(e)),
                }
                if matches!(event, Event::Ambiguous { .. }) {
                    order.last_sent_ms = Some(at);
                }
                changes.push(self.apply(order, &event, result.as_ref().err().map(ToString::to_string))?);
            }
        }
        let bundle = self.save(Commit {
            bundle,
            from,
            changes,
            detail,
        })?;
        Ok((bundle, stop_of(signal)))
    }

    /// The account does not have the batch routes (the apply was answered HTTP 404 without a
    /// CCPayment envelope: the router never reached a handler, so nothing was created). The
    /// bundle ends and its orders leave it for single creates, with the same order_ids; the
    /// audit line and `status` say why.
    fn not_routed(&self, bundle: BundleRecord, orders: Orders, seqs: &[u32]) -> Result<BundleRecord, EngineError> {
        let now = self.now();
        let reason =
            "the account does not answer applyBatchWithdraw (HTTP 404): its rows go through single creates".to_owned();
        tracing::warn!(bundle = %bundle.id, "{reason}");
        let mut bundle = bundle;
        let from = bundle.phase.name();
        bundle.phase = BundlePhase::Refused {
            code: None,
            reason: reason.clone(),
        };
        bundle.problem = Some(reason.clone());
        bundle.next_check_ms = None;
        let mut changes = Vec::new();
        for seq in seqs {
            let Some(order) = bundle.order_of(*seq).and_then(|id| orders.get(id)) else {
                continue;
            };
            let mut order = order.clone();
            // Not created: sendable again at once, without counting an attempt, now as a
            // single create (the index key moves with the task gone).
            order.attempts = order.attempts.saturating_sub(1);
            order.task = None;
            let event = Event::Retry {
                until_ms: now,
                reason: reason.clone(),
                attempts_left: true,
                code: None,
            };
            changes.push(self.apply(order, &event, Some(reason.clone()))?);
        }
        self.save(Commit {
            bundle,
            from,
            changes,
            detail: reason,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Unknown: look the batch up
    // -----------------------------------------------------------------------------------------

    /// Asks CCPayment about the bundle's batch (`getBatchWithdrawOrder`).
    async fn ask_order(&self, bundle: &BundleRecord, cancel: &CancellationToken) -> Result<Lookup, EngineError> {
        let query = BatchOrderQuery {
            batch_order_id: bundle.id.clone(),
            verbose: 0,
        };
        let BatchAnswer::Order(result) = self.payouts.batch(BatchCall::Order(&query), cancel).await else {
            return Err(EngineError::Invariant(
                "a batch lookup was answered as another call".into(),
            ));
        };
        Ok(found(bundle, result))
    }

    async fn look_up(
        &self,
        bundle: BundleRecord,
        orders: Orders,
        cancel: &CancellationToken,
    ) -> Result<BundleRecord, EngineError> {
        let answer = self.ask_order(&bundle, cancel).await?;
        let now = self.now();
        let mut bundle = bundle;
        let from = bundle.phase.name();
        match answer {
            Lookup::Found(order) => {
                bundle.remote = Some(view_of(&order, now));
                bundle.phase = BundlePhase::Open { verify: true };
                bundle.absent = None;
                bundle.next_check_ms = None;
                bundle.checks = 0;
                self.save(Commit {
                    bundle,
                    from,
                    changes: Vec::new(),
                    detail: format!("found at CCPayment ({}); its task list is read next", order.status),
                })
            }
            Lookup::Absent => {
                let absent = bundle.absent.get_or_insert(Absent {
                    since_ms: now,
                    lookups: 0,
                });
                absent.lookups += 1;
                let lookups = absent.lookups;
                let last_sent = bundle.last_sent_ms.unwrap_or(0);
                let confirmed = lookups >= 2 && now - last_sent >= ms(self.settings.not_found_confirm);
                if confirmed {
                    // Absence confirmed: apply again, with the same batchOrderId.
                    bundle.phase = BundlePhase::Waiting;
                    bundle.next_check_ms = None;
                    let mut changes = Vec::new();
                    for order in orders.values().filter(|o| o.kind() == StateKind::Unknown) {
                        changes.push(self.apply(order.clone(), &Event::NotFound, Some("batch not found".into()))?);
                    }
                    self.save(Commit {
                        bundle,
                        from,
                        changes,
                        detail: format!("absent after {lookups} lookups; it is applied again with the same id"),
                    })
                } else {
                    let wait = ms(self.settings.reconcile_backoff.delay(lookups + 1, self.unit()));
                    let until_confirmed = last_sent + ms(self.settings.not_found_confirm) - now;
                    let next = now + wait.max(until_confirmed.min(wait * 4)).max(100);
                    self.reschedule(bundle, next, format!("not found ({lookups} lookup(s)); asked again"))
                }
            }
            Lookup::Unanswered(detail) => {
                bundle.checks += 1;
                let next = now + ms(self.settings.reconcile_backoff.delay(bundle.checks, self.unit()));
                self.reschedule(bundle, next, format!("lookup unanswered: {detail}"))
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Open: read and match the task list, append what is missing, confirm
    // -----------------------------------------------------------------------------------------

    /// Reads every page of the bundle's task list. `None` when a page went unanswered.
    async fn task_list(
        &self,
        bundle: &BundleRecord,
        cancel: &CancellationToken,
    ) -> Result<Result<Vec<BatchTask>, String>, EngineError> {
        let mut tasks = Vec::new();
        let mut next_id = String::new();
        // A cursor that never ends would loop forever: the pages cannot exceed the tasks sent
        // (plus a few, so duplicates are seen).
        let max_pages = bundle.orders.len().div_ceil(BATCH_RECORD_PAGE_SIZE) + 5;
        for _ in 0..max_pages {
            let query = BatchRecordListQuery {
                batch_order_id: bundle.id.clone(),
                next_id: next_id.clone(),
                limit: BATCH_RECORD_PAGE_SIZE as u64,
            };
            let BatchAnswer::Records(result) = self.payouts.batch(BatchCall::Records(&query), cancel).await else {
                return Err(EngineError::Invariant(
                    "a task list was answered as another call".into(),
                ));
            };
            match result {
                Ok(page) => {
                    let last = page.next_id.is_empty() || page.next_id == next_id || page.records.is_empty();
                    tasks.extend(page.records);
                    if last {
                        return Ok(Ok(tasks));
                    }
                    next_id = page.next_id;
                }
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
        Ok(Err(format!("the task list did not end after {max_pages} pages")))
    }

    async fn verify(
        &self,
        bundle: BundleRecord,
        orders: Orders,
        cancel: &CancellationToken,
    ) -> Result<BundleRecord, EngineError> {
        let listed = match self.task_list(&bundle, cancel).await? {
            Ok(listed) => listed,
            Err(detail) => {
                let mut bundle = bundle;
                bundle.checks += 1;
                let next = self.now() + ms(self.settings.reconcile_backoff.delay(bundle.checks, self.unit()));
                return self.reschedule(bundle, next, format!("task list unanswered: {detail}"));
            }
        };
        let now = self.now();
        let mut bundle = bundle;
        let from = bundle.phase.name();
        let (present, problem) = match_tasks(&bundle, &orders, &listed);
        if let Some(problem) = problem {
            // Never confirmed: what it holds is aborted, and its orders are reported not paid.
            bundle.problem = Some(problem.clone());
            let detail =
                format!("the task list is not what was sent: {problem}; the batch is aborted, never confirmed");
            return self.enter(bundle, ABORT_MISMATCH, Vec::new(), detail);
        }
        let mut changes = Vec::new();
        let mut missing_acknowledged = 0usize;
        let mut still_unknown = 0usize;
        for (order_id, seq) in bundle.orders.iter().zip(1u32..) {
            let Some(order) = orders.get(order_id) else { continue };
            let here = present.contains_key(&seq);
            match (order.kind(), here) {
                (StateKind::Unknown, true) => {
                    let mut order = order.clone();
                    order.absent = None;
                    changes.push(self.apply(order, &Event::Found, Some("task found in the batch".into()))?);
                }
                (StateKind::Unknown, false) => {
                    // Confirmed absent the way a single order is before it is sent again.
                    let mut order = order.clone();
                    let absent = order.absent.get_or_insert(Absent {
                        since_ms: now,
                        lookups: 0,
                    });
                    absent.lookups += 1;
                    let last_sent = order.last_sent_ms.unwrap_or(0);
                    if absent.lookups >= 2 && now - last_sent >= ms(self.settings.not_found_confirm) {
                        changes.push(self.apply(order, &Event::NotFound, Some("task not in the batch".into()))?);
                    } else {
                        still_unknown += 1;
                        changes.push(Change {
                            from: Some(StateKind::Unknown),
                            event: "absent",
                            detail: Some("task not in the batch yet; asked again".into()),
                            order,
                        });
                    }
                }
                (StateKind::Submitted, false) => missing_acknowledged += 1,
                _ => {}
            }
        }
        if missing_acknowledged > 0 || still_unknown > 0 {
            // A task CCPayment acknowledged is missing (or an unknown one not yet confirmed
            // absent): the list may lag; read it again before deciding anything.
            bundle.checks += 1;
            if missing_acknowledged > 0 && bundle.checks > 10 {
                bundle.problem = Some(format!(
                    "{missing_acknowledged} task(s) CCPayment acknowledged are missing from its task list"
                ));
                let detail = "acknowledged tasks stayed missing; the batch is aborted, never confirmed";
                return self.enter(bundle, ABORT_MISMATCH, changes, detail);
            }
            bundle.next_check_ms = Some(now + ms(self.settings.reconcile_backoff.delay(bundle.checks, self.unit())));
            return self.save(Commit {
                bundle,
                from,
                changes,
                detail: format!(
                    "{} task(s) listed; {missing_acknowledged} acknowledged and {still_unknown} unknown not listed yet",
                    listed.len()
                ),
            });
        }
        bundle.phase = BundlePhase::Open { verify: false };
        bundle.checks = 0;
        bundle.next_check_ms = None;
        self.save(Commit {
            bundle,
            from,
            changes,
            detail: format!("{} task(s) listed, each as sent", listed.len()),
        })
    }

    async fn open(
        &self,
        bundle: BundleRecord,
        orders: Orders,
        sending: bool,
        cancel: &CancellationToken,
    ) -> Result<(BundleRecord, Option<StopReason>), EngineError> {
        let now = self.now();
        if bundle.cancel_requested {
            let seqs = Self::seqs_in(&bundle, &orders, &[StateKind::Submitted, StateKind::Unknown]);
            let aborting = BundlePhase::Aborting {
                seqs,
                cause: AbortCause::Cancel,
            };
            return self
                .enter(
                    bundle,
                    aborting,
                    Vec::new(),
                    "cancelled before the confirm: its tasks are aborted",
                )
                .map(|b| (b, None));
        }
        // Deferred appends whose time has come go back to the queue.
        let mut orders = orders;
        let mut changes = Vec::new();
        let mut deferred_until: Option<i64> = None;
        for order in orders.values_mut() {
            if let OrderState::Deferred { until_ms, .. } = order.state {
                if until_ms <= now {
                    let change = self.apply(order.clone(), &Event::Wake, None)?;
                    *order = change.order.clone();
                    changes.push(change);
                } else {
                    deferred_until = Some(deferred_until.map_or(until_ms, |t: i64| t.min(until_ms)));
                }
            }
        }
        let queued = Self::seqs_in(&bundle, &orders, &[StateKind::Queued]);
        if !queued.is_empty() {
            if !sending {
                return Ok((bundle, None));
            }
            return self.append(bundle, orders, queued, changes, cancel).await;
        }
        if let Some(until) = deferred_until {
            let mut bundle = bundle;
            bundle.next_check_ms = Some(until);
            let from = bundle.phase.name();
            return self
                .save(Commit {
                    bundle,
                    from,
                    changes,
                    detail: "waiting to append deferred tasks".into(),
                })
                .map(|b| (b, None));
        }
        let submitted = Self::seqs_in(&bundle, &orders, &[StateKind::Submitted]);
        let unknown = Self::seqs_in(&bundle, &orders, &[StateKind::Unknown, StateKind::Submitting]);
        if !unknown.is_empty() {
            return Err(EngineError::Invariant(format!(
                "bundle {} is open with unknown tasks but not verifying",
                bundle.id
            )));
        }
        if submitted.is_empty() {
            // Every task refused: nothing to confirm. The empty batch is left unconfirmed.
            return self
                .enter(bundle, BundlePhase::Done, changes, "no task left to confirm")
                .map(|b| (b, None));
        }
        if !sending {
            return Ok((bundle, None));
        }
        self.confirm(bundle, changes, cancel).await
    }

    async fn append(
        &self,
        bundle: BundleRecord,
        mut orders: Orders,
        seqs: Vec<u32>,
        mut changes: Vec<Change>,
        cancel: &CancellationToken,
    ) -> Result<(BundleRecord, Option<StopReason>), EngineError> {
        let now = self.now();
        let mut bundle = bundle;
        let from = bundle.phase.name();
        bundle.phase = BundlePhase::Appending { seqs: seqs.clone() };
        bundle.last_sent_ms = Some(now);
        bundle.next_check_ms = None;
        for seq in &seqs {
            let id = bundle.order_of(*seq).unwrap_or_default().to_owned();
            if let Some(order) = orders.get(&id) {
                let mut order = order.clone();
                order.last_sent_ms = Some(now);
                order.absent = None;
                let change = self.apply(order, &Event::Send, None)?;
                orders.insert(id, change.order.clone());
                changes.push(change);
            }
        }
        let tasks = self.tasks(&bundle, &orders, &seqs)?;
        let bundle = self.save(Commit {
            bundle,
            from,
            changes,
            detail: format!("appending {} task(s)", tasks.len()),
        })?;
        let request = AppendBatchWithdrawRequest {
            batch_order_id: bundle.id.clone(),
            orders: tasks,
        };
        let BatchAnswer::Appended(result) = self.payouts.batch(BatchCall::Append(&request), cancel).await else {
            return Err(EngineError::Invariant("an append was answered as another call".into()));
        };
        let attempts = seqs
            .first()
            .and_then(|s| bundle.order_of(*s))
            .and_then(|id| orders.get(id))
            .map_or(1, |o| o.attempts);
        let (event, signal) = self.classify_answer(&result, attempts);
        let at = self.now();
        let mut bundle = bundle;
        let from = bundle.phase.name();
        bundle.phase = match &event {
            Event::Ambiguous { .. } => {
                bundle.last_sent_ms = Some(at);
                BundlePhase::Open { verify: true }
            }
            _ => BundlePhase::Open { verify: false },
        };
        if let Event::Retry { until_ms, .. } = &event {
            bundle.next_check_ms = Some(*until_ms);
        }
        let mut changes = Vec::new();
        for seq in &seqs {
            let id = bundle.order_of(*seq).unwrap_or_default().to_owned();
            if let Some(order) = orders.get(&id) {
                let mut order = order.clone();
                match &result {
                    Ok(()) => order.error = None,
                    Err(e) => order.error = Some(error_info(e)),
                }
                if matches!(event, Event::Ambiguous { .. }) {
                    order.last_sent_ms = Some(at);
                }
                changes.push(self.apply(order, &event, result.as_ref().err().map(ToString::to_string))?);
            }
        }
        let detail = match &result {
            Ok(()) => format!("{} task(s) appended", seqs.len()),
            Err(e) => e.to_string(),
        };
        let bundle = self.save(Commit {
            bundle,
            from,
            changes,
            detail,
        })?;
        Ok((bundle, stop_of(signal)))
    }

    async fn confirm(
        &self,
        bundle: BundleRecord,
        changes: Vec<Change>,
        cancel: &CancellationToken,
    ) -> Result<(BundleRecord, Option<StopReason>), EngineError> {
        let now = self.now();
        let mut bundle = bundle;
        let from = bundle.phase.name();
        let attempt = match bundle.phase {
            BundlePhase::Confirming { attempt } => attempt + 1,
            _ => 1,
        };
        bundle.phase = BundlePhase::Confirming { attempt };
        bundle.last_sent_ms = Some(now);
        bundle.next_check_ms = None;
        let detail = format!("confirming, delay {} s", bundle.settings.confirm_delay_secs);
        let bundle = self.save(Commit {
            bundle,
            from,
            changes,
            detail,
        })?;
        let request = ConfirmBatchWithdrawRequest {
            batch_order_id: bundle.id.clone(),
            delay_seconds: bundle.settings.confirm_delay_secs,
        };
        let BatchAnswer::Confirmed(result) = self.payouts.batch(BatchCall::Confirm(&request), cancel).await else {
            return Err(EngineError::Invariant("a confirm was answered as another call".into()));
        };
        let (event, signal) = self.classify_answer(&result, attempt);
        let at = self.now();
        let mut bundle = bundle;
        let from = bundle.phase.name();
        let detail = match (&result, &event) {
            (Ok(order), _) => {
                bundle.phase = BundlePhase::Confirmed;
                bundle.confirmed_ms = Some(at);
                bundle.remote = Some(view_of(order, at));
                bundle.checks = 0;
                bundle.next_check_ms = Some(at + self.first_follow_ms(&bundle));
                format!("confirmed ({})", order.status)
            }
            (Err(e), Event::Ambiguous { .. }) => {
                // Left `Confirming`: the next step looks the batch up.
                bundle.last_sent_ms = Some(at);
                bundle.next_check_ms = Some(at + ms(self.settings.reconcile_backoff.delay(1, self.unit())));
                e.to_string()
            }
            (Err(e), Event::Retry { until_ms, .. }) => {
                bundle.phase = BundlePhase::Open { verify: false };
                bundle.next_check_ms = Some(*until_ms);
                e.to_string()
            }
            (Err(e), _) => {
                // Refused for good: the batch must never run later; abort it.
                bundle.problem = Some(format!("CCPayment refused the confirm: {e}"));
                bundle.phase = BundlePhase::Aborting {
                    seqs: Vec::new(),
                    cause: AbortCause::Refused,
                };
                bundle.next_check_ms = None;
                e.to_string()
            }
        };
        let bundle = self.save(Commit {
            bundle,
            from,
            changes: Vec::new(),
            detail,
        })?;
        Ok((bundle, stop_of(signal)))
    }

    /// The wait before the next question about a running bundle: the tracking backoff's ceiling
    /// for the questions asked, half of it jittered (a full jitter would ask needlessly soon).
    fn follow_delay(&self, checks: u32) -> i64 {
        let ceiling = ms(self.settings.track_backoff.ceiling(checks));
        ceiling / 2 + (ceiling as f64 / 2.0 * self.unit()) as i64
    }

    /// The wait before the next question about a running bundle: [`Engine::follow_delay`], or
    /// longer when CCPayment's counts say how long the rest will take (the tasks ended so far
    /// over the time it has run), up to the tracking backoff's cap: a steady batch is asked
    /// about about when it should be done, not every doubling of the backoff.
    fn expected_wait(&self, bundle: &BundleRecord, now: i64) -> i64 {
        let wait = self.follow_delay(bundle.checks);
        let (Some(remote), Some(confirmed)) = (&bundle.remote, bundle.confirmed_ms) else {
            return wait;
        };
        let started = confirmed + i64::try_from(bundle.settings.confirm_delay_secs).unwrap_or(0) * 1000;
        let ran = now - started;
        let ended = remote.ended();
        let left = i64::try_from(bundle.orders.len()).unwrap_or(i64::MAX) - ended;
        if ended <= 0 || ran <= 0 || left <= 0 {
            return wait;
        }
        let rest = i128::from(ran) * i128::from(left) / i128::from(ended);
        let cap = ms(self.settings.track_backoff.cap);
        wait.max(i64::try_from(rest).unwrap_or(cap).min(cap) + 1000)
    }

    /// The first question about a confirmed bundle: after its delay and the usual first wait.
    fn first_follow_ms(&self, bundle: &BundleRecord) -> i64 {
        let delay = i64::try_from(bundle.settings.confirm_delay_secs).unwrap_or(0) * 1000;
        delay + ms(self.settings.track_first_delay)
    }

    /// A confirm whose answer was not recorded: still `Init` at CCPayment, it is confirmed again
    /// (a confirm names the batch, whose tasks are verified: a second one adds no payment);
    /// anything else means it took.
    async fn confirm_resolved(
        &self,
        bundle: BundleRecord,
        cancel: &CancellationToken,
    ) -> Result<BundleRecord, EngineError> {
        let answer = self.ask_order(&bundle, cancel).await?;
        let now = self.now();
        let mut bundle = bundle;
        let from = bundle.phase.name();
        match answer {
            Lookup::Found(order) if order.status.eq_ignore_ascii_case("init") => {
                bundle.remote = Some(view_of(&order, now));
                // Confirmed again by the next step, once the answer may have landed (R2).
                let settle = bundle.last_sent_ms.unwrap_or(0) + ms(self.settings.not_found_confirm);
                bundle.phase = BundlePhase::Open { verify: false };
                bundle.next_check_ms = Some(settle.max(now));
                self.save(Commit {
                    bundle,
                    from,
                    changes: Vec::new(),
                    detail: "the confirm did not take (Init); confirmed again".into(),
                })
            }
            Lookup::Found(order) => {
                bundle.remote = Some(view_of(&order, now));
                bundle.phase = BundlePhase::Confirmed;
                bundle.confirmed_ms = bundle.last_sent_ms.or(Some(now));
                bundle.checks = 0;
                bundle.next_check_ms = Some(now + self.first_follow_ms(&bundle));
                self.save(Commit {
                    bundle,
                    from,
                    changes: Vec::new(),
                    detail: format!("the confirm took ({})", order.status),
                })
            }
            Lookup::Absent | Lookup::Unanswered(_) => {
                bundle.checks += 1;
                let next = now + ms(self.settings.reconcile_backoff.delay(bundle.checks, self.unit()));
                self.reschedule(bundle, next, "confirm unresolved; asked again".into())
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Confirmed: follow every task to its end
    // -----------------------------------------------------------------------------------------

    async fn follow(
        &self,
        bundle: BundleRecord,
        orders: Orders,
        cancel: &CancellationToken,
    ) -> Result<BundleRecord, EngineError> {
        let now = self.now();
        let open = Self::seqs_in(&bundle, &orders, &[StateKind::Submitted, StateKind::Unknown]);
        if bundle.cancel_requested && bundle.abort.is_none() && !open.is_empty() {
            let aborting = BundlePhase::Aborting {
                seqs: open,
                cause: AbortCause::Cancel,
            };
            let detail = "cancelled after the confirm: the tasks not yet run are aborted";
            return self.enter(bundle, aborting, Vec::new(), detail);
        }
        if open.is_empty() {
            return self.enter(bundle, BundlePhase::Done, Vec::new(), "every task is final");
        }
        let answer = self.ask_order(&bundle, cancel).await?;
        let mut bundle = bundle;
        bundle.checks += 1;
        let order = match answer {
            Lookup::Found(order) => order,
            Lookup::Absent => {
                let next = now + self.follow_delay(bundle.checks);
                return self.reschedule(bundle, next, "the confirmed batch was not found; asked again".into());
            }
            Lookup::Unanswered(detail) => {
                let next = now + self.follow_delay(bundle.checks);
                return self.reschedule(bundle, next, format!("status unanswered: {detail}"));
            }
        };
        let view = view_of(&order, now);
        let rejected = order.status.eq_ignore_ascii_case("rejected");
        let completed = order.status.eq_ignore_ascii_case("completed");
        // The task list (a request per 100 tasks) is read when the batch has ended, and while it
        // runs only when CCPayment counts more tasks final and the last reading is a minute old:
        // the reports need each task's end, the operator a picture now and then.
        let ended = view.ended() >= i64::try_from(bundle.orders.len()).unwrap_or(i64::MAX) && view.processing == 0;
        let progressed = view.ended() > bundle.listed_final
            && bundle
                .listed_ms
                .or(bundle.confirmed_ms)
                .is_none_or(|t| now - t >= PROGRESS_LISTING_MS);
        bundle.remote = Some(view);
        if !(rejected || completed || ended || progressed) {
            let next = now + self.expected_wait(&bundle, now);
            let detail = format!(
                "{} ({} of {} final)",
                order.status,
                bundle.remote.as_ref().map_or(0, RemoteView::ended),
                bundle.orders.len()
            );
            return self.reschedule(bundle, next, detail);
        }
        let listed = match self.task_list(&bundle, cancel).await? {
            Ok(listed) => listed,
            Err(detail) => {
                let next = now + self.follow_delay(bundle.checks);
                return self.reschedule(bundle, next, format!("task list unanswered: {detail}"));
            }
        };
        let from = bundle.phase.name();
        let mut changes = Vec::new();
        let mut final_listed = 0i64;
        let mut by_seq: HashMap<u32, &BatchTask> = HashMap::new();
        for task in &listed {
            by_seq.entry(task.seq).or_insert(task);
        }
        for (order_id, seq) in bundle.orders.iter().zip(1u32..) {
            let Some(order) = orders.get(order_id) else { continue };
            let task = by_seq
                .get(&seq)
                .filter(|t| t.remark.is_empty() || t.remark == *order_id);
            let status = task.map_or(TaskStatus::Open, |t| TaskStatus::of(&t.status));
            if status.is_final() {
                final_listed += 1;
            }
            if order.state.is_final() {
                continue;
            }
            let mut order = order.clone();
            if let Some(task) = task {
                with_task(&mut order, task, &bundle);
            }
            let event = match status {
                TaskStatus::Succeeded => Some(Event::Final(FinalStatus::Success)),
                TaskStatus::Failed => Some(Event::Final(FinalStatus::Failed {
                    reason: task
                        .map(|t| t.reason.clone())
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| "CCPayment reports the task failed".into()),
                })),
                TaskStatus::Canceled => Some(Event::Aborted),
                TaskStatus::Open if rejected => Some(Event::Final(FinalStatus::Failed {
                    reason: format!(
                        "CCPayment rejected the batch withdrawal{}",
                        if order_reason(&bundle).is_empty() {
                            String::new()
                        } else {
                            format!(": {}", order_reason(&bundle))
                        }
                    ),
                })),
                TaskStatus::Open => None,
            };
            match event {
                Some(event) => changes.push(self.apply(order, &event, task.map(|t| t.status.clone()))?),
                None => changes.push(Change {
                    from: Some(order.kind()),
                    event: "checked",
                    detail: task.map(|t| t.status.clone()),
                    order,
                }),
            }
        }
        bundle.listed_final = final_listed;
        bundle.listed_ms = Some(now);
        let all_final = bundle.orders.iter().all(|id| {
            orders.get(id).is_none_or(|o| o.state.is_final())
                || changes
                    .iter()
                    .any(|c| c.order.order_id.as_str() == id && c.order.state.is_final())
        });
        if all_final {
            bundle.phase = BundlePhase::Done;
            bundle.next_check_ms = None;
        } else {
            bundle.next_check_ms = Some(now + self.expected_wait(&bundle, now));
        }
        // Orders whose state did not change are not rewritten.
        changes.retain(|c| c.event != "checked" || orders.get(c.order.order_id.as_str()) != Some(&c.order));
        self.save(Commit {
            bundle,
            from,
            changes,
            detail: format!("{} ({final_listed} of {} tasks final)", order.status, listed.len()),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Aborting
    // -----------------------------------------------------------------------------------------

    async fn abort(
        &self,
        bundle: BundleRecord,
        orders: Orders,
        seqs: Vec<u32>,
        cause: AbortCause,
        cancel: &CancellationToken,
    ) -> Result<BundleRecord, EngineError> {
        let request = AbortBatchWithdrawRequest {
            batch_order_id: bundle.id.clone(),
            seqs: seqs.clone(),
        };
        let BatchAnswer::Aborted(result) = self.payouts.batch(BatchCall::Abort(&request), cancel).await else {
            return Err(EngineError::Invariant("an abort was answered as another call".into()));
        };
        let now = self.now();
        let mut bundle = bundle;
        let from = bundle.phase.name();
        let reply = match result {
            Ok(reply) => reply,
            Err(CallError::Api(e)) if e.code == 14028 => {
                // Nothing can be aborted any more: the tasks are followed to their end.
                bundle.phase = BundlePhase::Confirmed;
                bundle.abort = Some(AbortOutcome {
                    canceled: Vec::new(),
                    ignored: seqs,
                    at_ms: now,
                });
                bundle.next_check_ms = Some(now);
                return self.save(Commit {
                    bundle,
                    from,
                    changes: Vec::new(),
                    detail: format!("{e}; its tasks are followed to their end"),
                });
            }
            Err(e) => {
                // An abort is safe to send again: it only cancels.
                bundle.checks += 1;
                let next = now + ms(self.settings.reconcile_backoff.delay(bundle.checks, self.unit()));
                return self.reschedule(bundle, next, format!("abort unanswered: {e}; sent again"));
            }
        };
        let mut changes = Vec::new();
        for seq in &reply.canceled_seqs {
            let Some(order_id) = bundle.order_of(*seq) else {
                continue;
            };
            let Some(order) = orders.get(order_id) else { continue };
            if order.state.is_final() || !order.kind().may_exist_remotely() || order.kind() == StateKind::Submitting {
                continue;
            }
            let event = match cause {
                AbortCause::Cancel => Event::Aborted,
                AbortCause::Mismatch | AbortCause::Refused => Event::Final(FinalStatus::Failed {
                    reason: format!(
                        "not paid: {}",
                        bundle
                            .problem
                            .clone()
                            .unwrap_or_else(|| "the batch withdrawal was aborted".into())
                    ),
                }),
            };
            changes.push(self.apply(order.clone(), &event, Some(format!("aborted in {}", bundle.id)))?);
        }
        bundle.abort = Some(AbortOutcome {
            canceled: reply.canceled_seqs.clone(),
            ignored: reply.ignored_seqs.clone(),
            at_ms: now,
        });
        let ended: Vec<&str> = changes.iter().map(|c| c.order.order_id.as_str()).collect();
        let left = bundle
            .orders
            .iter()
            .filter(|id| orders.get(id.as_str()).is_some_and(|o| !o.state.is_final()) && !ended.contains(&id.as_str()))
            .count();
        if left == 0 {
            bundle.phase = BundlePhase::Done;
            bundle.next_check_ms = None;
        } else {
            // What was not cancelled (already run, or handed to the fund service) is followed.
            bundle.phase = BundlePhase::Confirmed;
            bundle.next_check_ms = Some(now + ms(self.settings.track_first_delay));
        }
        let detail = format!(
            "aborted: {} cancelled, {} ignored",
            reply.canceled_seqs.len(),
            reply.ignored_seqs.len()
        );
        self.save(Commit {
            bundle,
            from,
            changes,
            detail,
        })
    }
}

fn stop_of(signal: Signal) -> Option<StopReason> {
    match signal {
        Signal::Stop { code, message } => Some((code, message)),
        _ => None,
    }
}

fn error_info(e: &CallError) -> ErrorInfo {
    ErrorInfo {
        code: e.code(),
        message: e.to_string(),
    }
}

/// CCPayment's reason on the batch, if it gave one.
fn order_reason(bundle: &BundleRecord) -> String {
    bundle.remote.as_ref().map(|r| r.reason.clone()).unwrap_or_default()
}

/// What a lookup of a bundle found.
enum Lookup {
    Found(Box<BatchWithdrawOrder>),
    /// 11003, an empty answer, or another batch (R1 for batches): not this bundle.
    Absent,
    Unanswered(String),
}

fn found(bundle: &BundleRecord, result: Result<BatchWithdrawOrder, CallError>) -> Lookup {
    match result {
        // Only an answer naming this batchOrderId is this bundle (R1).
        Ok(order) if order.batch_order_id == bundle.id => Lookup::Found(Box::new(order)),
        Ok(_) => Lookup::Absent,
        Err(CallError::Api(e)) if e.code == 11003 => Lookup::Absent,
        Err(e) => Lookup::Unanswered(e.to_string()),
    }
}

fn view_of(order: &BatchWithdrawOrder, at_ms: i64) -> RemoteView {
    RemoteView {
        status: order.status.clone(),
        reason: order.reason.clone(),
        bill_id: order.bill_id.clone(),
        network_fee: order.network_fee.clone(),
        network_fee_coin: order.network_fee_coin.coin_symbol.clone(),
        total: order.stats.total,
        succeeded: order.stats.succeeded,
        failed: order.stats.failed,
        canceled: order.stats.canceled,
        processing: order.stats.processing,
        at_ms,
    }
}

/// What a task tells about its order: CCPayment's ids, the transaction, the fee.
fn with_task(order: &mut OrderRecord, task: &BatchTask, bundle: &BundleRecord) {
    if !task.record_id.is_empty() {
        order.record_id = Some(task.record_id.clone());
    }
    if !task.tx_id.is_empty() {
        order.tx_id = Some(task.tx_id.clone());
    }
    if let Some(t) = order.task.as_mut()
        && !task.order_id.is_empty()
    {
        t.ccp_order_id = Some(task.order_id.clone());
    }
    if !task.network_fee.is_empty() {
        let symbol = bundle
            .remote
            .as_ref()
            .map(|r| r.network_fee_coin.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| bundle.coin.clone());
        order.fee = Some(Fee {
            coin_id: if symbol == bundle.coin { bundle.coin_id } else { 0 },
            coin_symbol: symbol,
            amount: task.network_fee.clone(),
        });
    }
}

/// Matches a task list against what the bundle sent. Returns the seqs present (each matching
/// its order) and, when the list is not what was sent, why.
fn match_tasks<'a>(
    bundle: &BundleRecord,
    orders: &Orders,
    listed: &'a [BatchTask],
) -> (HashMap<u32, &'a BatchTask>, Option<String>) {
    let mut present: HashMap<u32, &BatchTask> = HashMap::new();
    for task in listed {
        let Some(order_id) = bundle.order_of(task.seq) else {
            return (
                present,
                Some(format!("seq {} is a task ccpayout did not send", task.seq)),
            );
        };
        if present.insert(task.seq, task).is_some() {
            return (present, Some(format!("seq {} is in the batch twice", task.seq)));
        }
        let Some(order) = orders.get(order_id) else {
            return (
                present,
                Some(format!("seq {} names order {order_id}, which is not stored", task.seq)),
            );
        };
        if let Some(problem) = task_differs(task, order) {
            return (present, Some(format!("seq {} ({order_id}): {problem}", task.seq)));
        }
    }
    (present, None)
}

/// How a listed task differs from the order it should be, if it does.
fn task_differs(task: &BatchTask, order: &OrderRecord) -> Option<String> {
    let WithdrawCall::Network(call) = &order.call else {
        return Some("not a network withdrawal".into());
    };
    if !task.remark.is_empty() && task.remark != order.order_id.as_str() {
        return Some(format!("its remark is {:?}, not the order_id", task.remark));
    }
    if match_key(&task.address) != match_key(&call.address) {
        return Some(format!("its address is {:?}, not {:?}", task.address, call.address));
    }
    if task.memo != call.memo.clone().unwrap_or_default() {
        return Some(format!("its memo is {:?}", task.memo));
    }
    let same_amount = match (Decimal::from_str(&task.amount), Decimal::from_str(&call.amount)) {
        (Ok(a), Ok(b)) => a == b,
        _ => task.amount == call.amount,
    };
    if !same_amount {
        return Some(format!("its amount is {:?}, not {:?}", task.amount, call.amount));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiError;
    use crate::model::bundle::{BundleSettings, Execution};
    use crate::model::call::NetworkWithdrawal;
    use crate::model::record::InputRow;

    fn order(id: &str, address: &str, amount: &str) -> OrderRecord {
        OrderRecord {
            order_id: id.to_owned().into(),
            batch_id: "b".to_owned().into(),
            seq: 0,
            line: 2,
            input: InputRow::default(),
            call: WithdrawCall::Network(NetworkWithdrawal {
                order_id: id.into(),
                coin_id: 1280,
                chain: "POLYGON".into(),
                address: address.into(),
                memo: None,
                amount: amount.into(),
                merchant_pay_network_fee: Some(true),
                network_fee_inquiry_id: None,
                notify_url: None,
            }),
            payload_digest: String::new(),
            state: OrderState::Submitted,
            attempts: 1,
            record_id: None,
            tx_id: None,
            fee: None,
            error: None,
            created_ms: 0,
            updated_ms: 0,
            first_sent_ms: None,
            last_sent_ms: None,
            final_ms: None,
            next_check_ms: None,
            checks: 0,
            absent: None,
            review: None,
            task: None,
        }
    }

    const A: &str = "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d";
    const B: &str = "0x09a939da0a61353314b90d4bdcc7d7450c847008";

    fn bundle() -> (BundleRecord, Orders) {
        let settings = BundleSettings {
            execution: Execution::Single,
            confirm_delay_secs: 0,
        };
        let mut bundle = BundleRecord::new(
            "b".to_owned().into(),
            1,
            1280,
            "USDT",
            "POLYGON",
            settings,
            vec!["o-1".into(), "o-2".into()],
            0,
        );
        bundle.phase = BundlePhase::Open { verify: true };
        let orders = [order("o-1", A, "12.5"), order("o-2", B, "3")]
            .into_iter()
            .map(|o| (o.order_id.as_str().to_owned(), o))
            .collect();
        (bundle, orders)
    }

    fn task(seq: u32, remark: &str, address: &str, amount: &str) -> BatchTask {
        BatchTask {
            seq,
            address: address.into(),
            amount: amount.into(),
            remark: remark.into(),
            ..BatchTask::default()
        }
    }

    #[test]
    fn a_task_list_as_sent_matches_whatever_the_spelling_of_its_amounts_and_address_case() {
        let (b, orders) = bundle();
        let listed = [
            task(1, "o-1", &A.to_uppercase().replace("0X", "0x"), "12.50"),
            task(2, "o-2", B, "3.0"),
        ];
        let (present, problem) = match_tasks(&b, &orders, &listed);
        assert_eq!(problem, None);
        assert_eq!(present.len(), 2);
        // A list with a task missing is no mismatch: the missing one is looked for again.
        let (present, problem) = match_tasks(&b, &orders, &listed[..1]);
        assert_eq!((present.len(), problem), (1, None));
    }

    #[test]
    fn a_task_list_that_is_not_what_was_sent_is_refused_naming_why() {
        let (b, orders) = bundle();
        let cases: [(Vec<BatchTask>, &str); 5] = [
            (vec![task(3, "o-3", A, "1")], "seq 3 is a task ccpayout did not send"),
            (
                vec![task(1, "o-1", A, "12.5"), task(1, "o-1", A, "12.5")],
                "seq 1 is in the batch twice",
            ),
            (vec![task(1, "o-1", A, "12.6")], "its amount is \"12.6\""),
            (vec![task(1, "o-1", B, "12.5")], "its address is"),
            (vec![task(2, "o-1", B, "3")], "its remark is \"o-1\""),
        ];
        for (listed, why) in cases {
            let (_, problem) = match_tasks(&b, &orders, &listed);
            let problem = problem.unwrap_or_else(|| panic!("{listed:?} must not match"));
            assert!(problem.contains(why), "{problem} ∌ {why}");
        }
    }

    #[test]
    fn only_an_answer_naming_the_bundle_is_the_bundle() {
        let (b, _) = bundle();
        let named = |id: &str| BatchWithdrawOrder {
            batch_order_id: id.into(),
            status: "Init".into(),
            ..BatchWithdrawOrder::default()
        };
        assert!(matches!(found(&b, Ok(named(&b.id))), Lookup::Found(_)));
        // R1 for batches: an empty answer or another batch is no proof it exists.
        assert!(matches!(found(&b, Ok(named(""))), Lookup::Absent));
        assert!(matches!(found(&b, Ok(named("cpo-other"))), Lookup::Absent));
        let api = |code| Err(CallError::Api(ApiError::new("getBatchWithdrawOrder", code, "m")));
        assert!(matches!(found(&b, api(11003)), Lookup::Absent));
        assert!(matches!(found(&b, api(11002)), Lookup::Unanswered(_)));
        let timeout = Err(CallError::Ambiguous {
            endpoint: "getBatchWithdrawOrder".into(),
            detail: "timeout".into(),
        });
        assert!(matches!(found(&b, timeout), Lookup::Unanswered(_)));
    }

    #[test]
    fn task_statuses_in_every_spelling_end_only_when_final() {
        for (status, end) in [
            ("Successful", TaskStatus::Succeeded),
            ("Success", TaskStatus::Succeeded),
            ("Failed", TaskStatus::Failed),
            ("Canceled", TaskStatus::Canceled),
            ("Processing", TaskStatus::Open),
            ("Pending", TaskStatus::Open),
            ("Init", TaskStatus::Open),
            ("SomethingNew", TaskStatus::Open),
        ] {
            assert_eq!(TaskStatus::of(status), end, "{status}");
        }
        assert!(!TaskStatus::of("SomethingNew").is_final());
    }
}
