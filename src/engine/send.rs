//! Sending: the intents of queued orders (committed before any request leaves), the creates in
//! the background within the concurrency, and what each answer does to its order.

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::outcome::{Signal, classify};
use super::{Engine, EngineError, error_info, ms};
use crate::api::CallError;
use crate::model::record::{BUNDLED_DUE_MS, OrderRecord};
use crate::model::state::{Event, StateKind};
use crate::store::Change;

/// Why sending stopped: a CCPayment code and its message.
pub(super) type StopReason = (i64, String);

/// The answer to one send.
pub(super) struct Sent {
    order: OrderRecord,
    result: Result<Option<String>, CallError>,
    at_ms: i64,
}

impl Engine {
    /// Adds the `Send` transitions of up to `room` queued orders to `changes`; returns how many.
    /// The caller commits them, then starts their requests with [`Engine::spawn_send`].
    pub(super) fn intents(&self, batch_id: &str, room: usize, changes: &mut Vec<Change>) -> Result<usize, EngineError> {
        let queued = self
            .store
            // Bundled orders sort after every due time: their bundle sends them.
            .orders_by_state(StateKind::Queued, Some(batch_id), Some(BUNDLED_DUE_MS - 1), room)?;
        let now = self.now();
        let n = queued.len();
        for mut order in queued {
            order.first_sent_ms.get_or_insert(now);
            order.last_sent_ms = Some(now);
            // A new send starts a new question of whether it arrived.
            order.absent = None;
            changes.push(self.apply(order, &Event::Send, None)?);
        }
        Ok(n)
    }

    /// Starts the request of an order whose `Submitting` state is committed. The request waits
    /// for the pacing inside [`crate::api::Payouts::withdraw`]; cancelled while it waits, it never
    /// leaves and the answer says so (`NotSent`), which defers the order without counting an
    /// attempt.
    pub(super) fn spawn_send(&self, order: OrderRecord, inflight: &mut JoinSet<Sent>, cancel: &CancellationToken) {
        let payouts = self.payouts.clone();
        let clock = self.clock.clone();
        let cancel = cancel.clone();
        inflight.spawn(async move {
            let result = payouts.withdraw(&order.call, &cancel).await;
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
    pub(super) fn take_answers(
        &self,
        inflight: &mut JoinSet<Sent>,
        first: Vec<Sent>,
    ) -> Result<(Vec<Change>, Option<StopReason>), EngineError> {
        let mut sents = first;
        while let Some(done) = inflight.try_join_next() {
            sents.push(done.map_err(|e| EngineError::Invariant(format!("a send task failed: {e}")))?);
        }
        let mut changes = Vec::with_capacity(sents.len() + self.max_sends());
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
    /// The pacing has already heard the answer (11004 slows everyone, 11009 closes the gate
    /// until the reset); here the order follows: an 11009 defers it to the gate's reopening.
    fn outcome_of(&self, sent: Sent) -> Result<(Change, Option<StopReason>), EngineError> {
        let Sent {
            mut order,
            result,
            at_ms,
        } = sent;
        let (mut event, signal) = classify(&result, order.attempts, &self.settings.retry, at_ms, self.unit());
        if signal == Signal::DailyLimit
            && let (Event::Retry { until_ms, .. }, Some(until)) = (&mut event, self.pause().daily_until_ms)
        {
            *until_ms = until;
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
            // The request left some time after its intent (it may have waited at the pacing for
            // long) and reached CCPayment, if it did, before this answer: absence is confirmed
            // from here, never from the intent (R2).
            order.last_sent_ms = Some(order.last_sent_ms.map_or(at_ms, |t| t.max(at_ms)));
        }
        let detail = result.as_ref().err().map(ToString::to_string);
        let change = self.apply(order, &event, detail)?;
        let stop = match signal {
            Signal::Stop { code, message } => Some((code, message)),
            _ => None,
        };
        Ok((change, stop))
    }
}
