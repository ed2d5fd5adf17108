//! The loop of one batch: answers in, one durable commit per turn (outcomes, wakes, intents),
//! requests out, tracking and reconciliation, then sleep until something can happen. When
//! every order is final the engine marks the batch done: the one place that decides it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::send::{Sent, StopReason};
use super::track::{Checked, Tracking};
use super::{Engine, EngineError, Progress, RunEnd, mark_done, ms};
use crate::api::types::{MAX_ORDER_IDS_PER_LIST_QUERY, V1_MAX_ORDER_IDS_PER_QUERY};
use crate::model::record::BUNDLED_DUE_MS;
use crate::model::state::{Event, StateKind};

impl Engine {
    /// Sends, tracks and reconciles the orders of one batch until `wait_final` is satisfied,
    /// `cancel` fires, or a problem stops all sending; first resolves every unknown order of
    /// every batch.
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
    ///
    /// `Finished` means every order is final and the batch is stored as done.
    pub async fn run_reconciled_batch(
        &self,
        batch_id: &str,
        wait_final: bool,
        cancel: &CancellationToken,
        progress: &dyn Progress,
    ) -> Result<RunEnd, EngineError> {
        let end = self.batch_loop(batch_id, wait_final, cancel, progress).await?;
        if end == RunEnd::Finished {
            mark_done(&self.store, batch_id, self.now())?;
        }
        self.save_pacing(true)?;
        Ok(end)
    }

    async fn batch_loop(
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
        let mut stopped: Option<StopReason> = None;
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
            if sending && !self.pacing.gate().is_paused() {
                let room = self.max_sends().saturating_sub(inflight.len());
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
            // Bundles (batch withdrawals) take their next step: applies, appends and confirms
            // only while sending, each intent durable before its request.
            let bundles = self
                .drive_bundles(batch_id, sending && inflight.len() < self.max_sends(), cancel)
                .await?;
            if let Some(stop) = bundles.stop {
                stopped.get_or_insert(stop);
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
                    self.stopped_notice(code, &message)?;
                    return Ok(RunEnd::Stopped { code, message });
                }
                if cancel.is_cancelled() {
                    return Ok(RunEnd::Interrupted);
                }
                // Orders waiting for an approval (the batch's, or its recipient review's) end
                // the loop once the rest is sent and, when asked, followed to the end.
                // A bundle not yet confirmed has sending to do (its orders may already count as
                // submitted: present at CCPayment, but not confirmed).
                if open_sends == 0 && bundles.unconfirmed == 0 && (count(StateKind::Submitted) == 0 || !wait_final) {
                    if count(StateKind::AwaitingApproval) + count(StateKind::Planned) > 0 {
                        return Ok(RunEnd::AwaitingApproval);
                    }
                    return Ok(if count(StateKind::Submitted) == 0 {
                        RunEnd::Finished
                    } else {
                        RunEnd::AllSubmitted
                    });
                }
            }

            // Sleep until something can happen: an answer, a due time, the gate, or cancel.
            // Biased, so a replay on paused time takes the same branch.
            let room = sending && inflight.len() < self.max_sends();
            let mut next = self.next_wake(batch_id, room, &tracking)?;
            if let Some(at) = bundles.next_ms {
                next = next.min(at);
            }
            tokio::select! {
                biased;
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
            if let Some(t) = self.store.next_due(kind, Some(batch_id))?
                && t < BUNDLED_DUE_MS
            {
                next = next.min(t.max(now));
            }
        }
        // Tracking acts when a query is full or its oldest order has waited the slack (see
        // `start_tracking`); waking earlier would only spin. With every query slot busy, an
        // answer wakes the loop.
        if tracking.tasks.len() < self.max_queries() {
            let slack = ms(self.settings.track_first_delay) / 2;
            let keys: Vec<(i64, String)> = self
                .store
                .due_keys(
                    StateKind::Submitted,
                    Some(batch_id),
                    None,
                    tracking.asking.len() + V1_MAX_ORDER_IDS_PER_QUERY,
                )?
                .into_iter()
                .filter(|(due, id)| *due < BUNDLED_DUE_MS && !tracking.asking.contains(id.as_str()))
                .collect();
            // A query is full at the batch's query size (v1 asks about 100 orderIds at once): a
            // wake at 20 would find nothing to send on a v1 batch, and spin.
            let size = match keys.first() {
                Some((_, id)) => self.query_size_of(id)?,
                None => MAX_ORDER_IDS_PER_LIST_QUERY,
            };
            let first: Vec<i64> = keys.into_iter().map(|(due, _)| due).take(size).collect();
            if let Some(oldest) = first.first() {
                let full_at = match first.last() {
                    Some(due) if first.len() == size => due - slack,
                    _ => i64::MAX,
                };
                next = next.min((oldest + slack).min(full_at).max(now));
            }
        }
        // Queued work wakes the loop at once only when a request could actually leave; with every
        // slot busy the loop waits for an answer instead of spinning.
        let gate = self.pacing.gate();
        if room_to_send
            && self
                .store
                .next_due(StateKind::Queued, Some(batch_id))?
                .is_some_and(|t| t < BUNDLED_DUE_MS)
        {
            if !gate.is_paused() {
                next = now;
            } else if let Some(opens) = gate.hold_until() {
                // Paused (the daily cap, an 11004 backoff): the first send leaves when the gate
                // opens, not at the next poll. The kill switch (i64::MAX) waits for the poll.
                next = next.min(opens.max(now));
            }
        }
        Ok(next)
    }

    /// Sleeps until `at_ms` (at most a second) or until `cancel` fires.
    pub(super) async fn sleep_until(&self, at_ms: i64, cancel: &CancellationToken) {
        let wait = (at_ms - self.now()).clamp(0, 1000);
        if wait == 0 {
            tokio::task::yield_now().await;
            return;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
        }
    }
}
