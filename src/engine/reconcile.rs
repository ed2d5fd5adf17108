//! Orders whose outcome is unknown (`Submitting` left by a crash, `Unknown` after an ambiguous
//! answer) are resolved by asking CCPayment about their orderId, never by sending again blind.
//!
//! A found record makes it `Submitted` (or final); any other answer leaves it unknown, asked
//! again later with backoff. "No such order" sends it back to the queue (to be resent with the
//! same orderId) only once confirmed: lookups may lag behind creates (ccpayment-api.md §5, R2)
//! and CCPayment may not refuse a reused orderId (R3, on v1 at least), so a single "not found"
//! right after a lost reply is no proof. The order is resent only when two lookups found nothing
//! and `not_found_confirm` has passed since it was last sent; until then it stays `unknown`.
//! "Not found" is any of the forms §5 R1 allows: 11003, a success with an empty record, or a
//! record for another orderId — only a record whose orderId (and recordId, once known) is the
//! order's counts as the order.

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::track::{final_status, is_this_order, pick, statuses_v1, with_record};
use super::{Engine, EngineError, Progress, error_info, ms};
use crate::api::types::WithdrawRecord;
use crate::api::{CallError, Payouts};
use crate::model::record::{Absent, BUNDLED_DUE_MS, OrderRecord};
use crate::model::state::{Event, StateKind};
use crate::store::Change;

/// An unknown order and what CCPayment said when asked about it.
type Lookup = (OrderRecord, Result<Option<WithdrawRecord>, CallError>);

impl Engine {
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
            let now = self.now();
            let changes = submitting
                .into_iter()
                .map(|mut o| {
                    // It may have left at any moment before the process stopped: absence is
                    // confirmed from now, the latest it could have arrived.
                    o.last_sent_ms = Some(o.last_sent_ms.map_or(now, |t| t.max(now)));
                    self.apply(o, &Event::Ambiguous { detail: detail.clone() }, Some(detail.clone()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.commit(&changes)?;
        }
        // Bundles (batch withdrawals) whose apply, append or confirm may have reached
        // CCPayment are resolved too, by looking them up.
        if !self.reconcile_bundles(cancel).await? {
            return Ok(false);
        }
        let mut announced = false;
        loop {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            // Orders in bundles are resolved by their bundle (above), never by orderId: their
            // index key sorts them after every due time.
            let unknown = self
                .store
                .orders_by_state(StateKind::Unknown, None, Some(BUNDLED_DUE_MS - 1), 200)?;
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

    /// Asks CCPayment about each unknown order (at most the in-flight limit at once) and commits what
    /// it says.
    pub(super) async fn reconcile_orders(
        &self,
        orders: Vec<OrderRecord>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let mut tasks = JoinSet::new();
        for order in orders {
            let payouts = self.payouts.clone();
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let result = lookup(payouts.as_ref(), &order, &cancel).await;
                (order, result)
            });
            if tasks.len() >= self.max_queries() {
                self.finish_reconcile(tasks.join_next().await)?;
            }
        }
        while let Some(done) = tasks.join_next().await {
            self.finish_reconcile(Some(done))?;
        }
        Ok(())
    }

    fn finish_reconcile(&self, done: Option<Result<Lookup, tokio::task::JoinError>>) -> Result<(), EngineError> {
        let Some(done) = done else { return Ok(()) };
        let (order, result) = done.map_err(|e| EngineError::Invariant(format!("a reconcile task failed: {e}")))?;
        let mut changes = Vec::new();
        match result {
            Ok(Some(record)) => {
                let mut order = with_record(order, &record);
                order.absent = None;
                let found = self.apply(order, &Event::Found, Some("found by orderId".into()))?;
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
            Ok(None) => changes.push(self.absent(order)?),
            Err(e) => {
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
}

impl Engine {
    /// What one more "no such order" does: once two lookups found nothing and
    /// `not_found_confirm` has passed since the order was last sent, it goes back to the queue
    /// (same orderId); until then it stays unknown, asked again no sooner than the backoff and no
    /// later than needed to reach the confirmation.
    fn absent(&self, mut order: OrderRecord) -> Result<Change, EngineError> {
        let now = self.now();
        let absent = order.absent.get_or_insert(Absent {
            since_ms: now,
            lookups: 0,
        });
        absent.lookups += 1;
        let lookups = absent.lookups;
        let sent_ms = order.last_sent_ms.unwrap_or(order.created_ms);
        let confirmed_ms = sent_ms.saturating_add(ms(self.settings.not_found_confirm));
        if lookups >= 2 && now >= confirmed_ms {
            let detail = format!(
                "CCPayment has no such order: {lookups} lookups over {} s since it was sent found nothing; it will be sent again with the same orderId",
                (now - sent_ms) / 1000
            );
            order.absent = None;
            return self.apply(order, &Event::NotFound, Some(detail));
        }
        order.checks += 1;
        let backoff = now + ms(self.settings.reconcile_backoff.delay(order.checks, self.unit()));
        // Asked again on the backoff (a create that lags behind is found the sooner), and at the
        // latest when the absence can be confirmed.
        let next = if now < confirmed_ms {
            backoff.min(confirmed_ms)
        } else {
            backoff
        };
        order.next_check_ms = Some(next.max(now + 1));
        order.updated_ms = now;
        let detail = format!(
            "no such order yet ({lookups} lookup{}); not sent again before it is confirmed",
            if lookups == 1 { "" } else { "s" }
        );
        Ok(Change {
            from: Some(order.kind()),
            event: "absent",
            detail: Some(detail),
            order,
        })
    }
}

/// Looks one order up by orderId: `Ok(None)` when CCPayment has no record of it — 11003, a
/// success with an empty record, or a record of another order (R1).
async fn lookup(
    payouts: &dyn Payouts,
    order: &OrderRecord,
    cancel: &CancellationToken,
) -> Result<Option<WithdrawRecord>, CallError> {
    if order.call.is_v1() {
        // v1 has no NotFound code: an id absent from bill/info is "no such order".
        let found = statuses_v1(payouts, std::slice::from_ref(order), cancel).await?;
        return Ok(pick(order, &found).cloned());
    }
    match payouts.record(&order.order_id, cancel).await {
        Ok(record) if is_this_order(order, &record) => Ok(Some(record)),
        Ok(_) => Ok(None),
        Err(CallError::Api(e)) if e.code == 11003 => Ok(None),
        Err(e) => Err(e),
    }
}
