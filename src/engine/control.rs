//! Operator controls over stored batches: approve exactly the plan that was checked, cancel
//! what has not been sent, and the kill switch that stops all submission.
//!
//! Each works on the store: directly from the CLI when no daemon runs, or inside the daemon when
//! the command came through its control socket. Every order change goes through the state machine.

use super::runner::{EngineError, META_PAUSE, apply_event};
use crate::api::pacing::gate::PersistedPause;
use crate::model::record::{Approval, BatchRecord};
use crate::model::state::{Event, StateKind};
use crate::store::Store;

/// Orders changed per store transaction.
const CHUNK: usize = 1000;

/// Why a control was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The digest given is not the batch's plan digest.
    #[error(
        "the digest does not match batch {batch}'s plan; its plan digest is {expected}: review the plan with `ccpayout status {batch}` and approve that exact digest"
    )]
    WrongDigest { batch: String, expected: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for ControlError {
    fn from(e: crate::store::StoreError) -> Self {
        ControlError::Engine(EngineError::Store(e))
    }
}

/// What `approve` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approved {
    /// Released this many orders for sending.
    Released(u64),
    /// The batch needs no approval.
    NotNeeded,
    /// It was approved before.
    Already,
}

/// Releases exactly the approved plan: refused unless `digest` is the batch's plan digest.
pub fn approve(store: &Store, mut batch: BatchRecord, digest: &str, now_ms: i64) -> Result<Approved, ControlError> {
    match &batch.approval {
        Approval::NotNeeded => return Ok(Approved::NotNeeded),
        Approval::Approved { .. } => return Ok(Approved::Already),
        Approval::Required { .. } => {}
    }
    if !digest.trim().eq_ignore_ascii_case(&batch.plan_digest) {
        return Err(ControlError::WrongDigest {
            batch: batch.name.clone(),
            expected: batch.plan_digest.clone(),
        });
    }
    let released = change_all(
        store,
        &batch.batch_id,
        &[StateKind::AwaitingApproval],
        &Event::Approve,
        now_ms,
        "approved",
    )?;
    batch.approval = Approval::Approved {
        at_ms: now_ms,
        digest: batch.plan_digest.clone(),
    };
    batch.updated_ms = now_ms;
    store.put_batch(&batch)?;
    Ok(Approved::Released(released))
}

/// Cancels every order of the batch that has not been sent; returns how many. Orders that may
/// exist at CCPayment are left to finish: the state machine refuses to cancel them.
pub fn cancel(store: &Store, batch: &BatchRecord, now_ms: i64) -> Result<u64, ControlError> {
    let kinds = [
        StateKind::Planned,
        StateKind::AwaitingApproval,
        StateKind::Queued,
        StateKind::Deferred,
    ];
    change_all(
        store,
        &batch.batch_id,
        &kinds,
        &Event::Cancel,
        now_ms,
        "cancelled by an operator",
    )
}

/// Turns the kill switch on or off; persisted, so a restart keeps it.
pub fn set_kill_switch(store: &Store, on: bool, reason: Option<String>) -> Result<PersistedPause, ControlError> {
    let mut pause: PersistedPause = store.meta_get(META_PAUSE)?.unwrap_or_default();
    pause.kill_switch = on;
    pause.reason = if on { reason } else { None };
    store.meta_put(META_PAUSE, &pause)?;
    Ok(pause)
}

fn change_all(
    store: &Store,
    batch_id: &str,
    kinds: &[StateKind],
    event: &Event,
    now_ms: i64,
    detail: &str,
) -> Result<u64, ControlError> {
    let mut changed = 0;
    for &kind in kinds {
        loop {
            let orders = store.orders_by_state(kind, Some(batch_id), None, CHUNK)?;
            if orders.is_empty() {
                break;
            }
            let changes = orders
                .into_iter()
                .map(|o| apply_event(o, event, now_ms, Some(detail.to_owned())))
                .collect::<Result<Vec<_>, _>>()?;
            changed += changes.len() as u64;
            store.commit(&changes)?;
        }
    }
    Ok(changed)
}
