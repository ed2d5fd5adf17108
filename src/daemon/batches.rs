//! The daemon's batch runner: one task per batch being paid, at most `max_active_batches` at a
//! time, all sharing one engine (one rate limit, one pause gate).
//!
//! A batch task waits until the start-up reconciliation is over (no new send before every
//! Submitting/Unknown order is resolved), runs the engine until every order of the batch is
//! final, then marks the batch done, writes its reports and tells the daemon (which archives an
//! inbox file). A batch that waits for approval ends its task; `approve` starts it again.
//! Stopping one batch (for `cancel`) cancels its task and waits until its in-flight requests
//! are recorded, so the cancel never races the engine on the same orders.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Fatal, Shared};
use crate::app::{self, Reconcile, Reports};
use crate::engine::{NoProgress, RunEnd};
use crate::model::record::BatchState;

/// How long a batch stopped by a problem every order would meet (credentials, IP whitelist,
/// clock) waits before it is tried again.
const RETRY_STOPPED: Duration = Duration::from_secs(60);

/// A batch that must not be launched (an operator command is changing its orders).
type Held = Mutex<std::collections::HashSet<String>>;

struct Running {
    cancel: CancellationToken,
    done: watch::Receiver<bool>,
}

/// The batches being paid.
pub struct Batches {
    shared: Arc<Shared>,
    running: Mutex<HashMap<String, Running>>,
    held: Held,
    permits: Arc<Semaphore>,
    reconciled: watch::Receiver<bool>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    fatal: Fatal,
}

impl Batches {
    pub(super) fn new(
        shared: Arc<Shared>,
        max_active: usize,
        reconciled: watch::Receiver<bool>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        fatal: Fatal,
    ) -> Arc<Batches> {
        Arc::new(Batches {
            shared,
            running: Mutex::new(HashMap::new()),
            held: Mutex::new(Default::default()),
            permits: Arc::new(Semaphore::new(max_active.max(1))),
            reconciled,
            tracker,
            shutdown,
            fatal,
        })
    }

    /// Batch ids with a task now.
    pub fn running(&self) -> Vec<String> {
        self.running
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts paying `batch_id` unless it is being paid already or the daemon is stopping.
    pub fn launch(self: &Arc<Self>, batch_id: &str) {
        if self.shutdown.is_cancelled() || self.held.lock().map(|h| h.contains(batch_id)).unwrap_or(false) {
            return;
        }
        let Ok(mut running) = self.running.lock() else { return };
        if running.contains_key(batch_id) {
            return;
        }
        let cancel = self.shutdown.child_token();
        let (done_tx, done_rx) = watch::channel(false);
        running.insert(
            batch_id.to_owned(),
            Running {
                cancel: cancel.clone(),
                done: done_rx,
            },
        );
        drop(running);
        let me = self.clone();
        let id = batch_id.to_owned();
        let name = format!("batch {}", &id[..12.min(id.len())]);
        let fatal = self.fatal.clone();
        self.tracker.spawn(async move {
            let result = me.pay(&id, &cancel).await;
            if let Ok(mut running) = me.running.lock() {
                running.remove(&id);
            }
            let _ = done_tx.send(true);
            match result {
                Ok(Some(retry_after)) => me.relaunch_later(id, retry_after),
                Ok(None) => {}
                Err(e) => fatal.report(&name, &e),
            }
        });
    }

    /// Stops paying `batch_id`, waits until its requests in flight are recorded, and keeps it
    /// from being launched (by an approval, a retry, a recovered file) until [`Batches::release`].
    pub async fn hold(&self, batch_id: &str) {
        if let Ok(mut held) = self.held.lock() {
            held.insert(batch_id.to_owned());
        }
        self.stop(batch_id).await;
    }

    /// Ends a [`Batches::hold`] and pays the batch again.
    pub fn release(self: &Arc<Self>, batch_id: &str) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(batch_id);
        }
        self.launch(batch_id);
    }

    /// Stops paying `batch_id` and waits until its requests in flight are recorded.
    pub async fn stop(&self, batch_id: &str) {
        let found = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(batch_id).map(|run| (run.cancel.clone(), run.done.clone())));
        if let Some((cancel, mut done)) = found {
            cancel.cancel();
            let _ = done.wait_for(|d| *d).await;
        }
    }

    fn relaunch_later(self: &Arc<Self>, batch_id: String, after: Duration) {
        let me = self.clone();
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(after) => me.launch(&batch_id),
                _ = shutdown.cancelled() => {}
            }
        });
    }

    /// Runs one batch to its end. `Ok(Some(delay))`: sending stopped on a problem every order
    /// would meet; try again after `delay`.
    async fn pay(&self, batch_id: &str, cancel: &CancellationToken) -> anyhow::Result<Option<Duration>> {
        let mut reconciled = self.reconciled.clone();
        tokio::select! {
            r = reconciled.wait_for(|r| *r) => { if r.is_err() { return Ok(None) } }
            _ = cancel.cancelled() => return Ok(None),
        }
        let _permit = tokio::select! {
            permit = self.permits.clone().acquire_owned() => permit?,
            _ = cancel.cancelled() => return Ok(None),
        };
        let shared = &self.shared;
        let Some(batch) = shared.store.batch(batch_id)? else {
            anyhow::bail!("batch {batch_id} is not in the store");
        };
        let reports_dir = shared.reports_dir();
        if batch.state == BatchState::Done {
            // Finished before the last stop; its file may still wait to be archived.
            let paths = app::write_reports(&reports_dir, &shared.store, &batch, shared.clock.now_ms())?;
            shared.batch_finished(batch_id, "already done", &paths.result_csv)?;
            return Ok(None);
        }
        tracing::info!(batch = %batch.name, orders = batch.orders, "paying batch");
        let paid = app::pay(
            &shared.engine,
            &batch,
            Reconcile::AlreadyDone,
            true,
            &reports_dir,
            Reports::WhenFinished,
            cancel,
            &NoProgress,
        )
        .await?;
        match paid.end {
            RunEnd::Finished | RunEnd::AllSubmitted => {
                if let Some(paths) = &paid.reports {
                    let summary: Vec<String> = paid
                        .counts
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(k, n)| format!("{n} {k}"))
                        .collect();
                    shared.batch_finished(batch_id, &summary.join(", "), &paths.result_csv)?;
                }
                Ok(None)
            }
            RunEnd::AwaitingApproval => {
                let batch = &paid.batch;
                if matches!(batch.approval, crate::model::record::Approval::Required { .. }) {
                    tracing::warn!(
                        batch = %batch.name,
                        digest = %batch.plan_digest,
                        "batch waits for approval: ccpayout approve {} --digest {}",
                        batch.name,
                        batch.plan_digest
                    );
                }
                if let Some(review) = batch
                    .recipients
                    .as_ref()
                    .filter(|r| matches!(r.approval, crate::model::record::Approval::Required { .. }))
                {
                    tracing::warn!(
                        batch = %batch.name,
                        orders = review.orders,
                        digest = %review.digest,
                        "orders to new or changed destinations wait for the recipient review: ccpayout approve {} --digest {}",
                        batch.name,
                        review.digest
                    );
                }
                Ok(None)
            }
            RunEnd::Interrupted => Ok(None),
            RunEnd::Stopped { code, message } => {
                let hint = crate::api::codes::lookup(code)
                    .and_then(|c| c.hint)
                    .unwrap_or("see the error code in the README");
                tracing::error!(
                    batch = %batch.name,
                    code,
                    "sending stopped: {message}; check: {hint}; trying again in {} s",
                    RETRY_STOPPED.as_secs()
                );
                Ok(Some(RETRY_STOPPED))
            }
        }
    }
}
