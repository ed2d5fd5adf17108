//! Operator controls over stored batches: approve exactly the plan that was checked, and cancel
//! what has not been sent. The engine owns these because they change order states, which only
//! the state machine does; the one operator (`crate::app::operator`) calls them, on the store
//! directly or inside the daemon.

use super::{EngineError, all_final, apply_event, mark_done};
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
/// exist at CCPayment are left to finish: the state machine refuses to cancel them. When nothing
/// is left to send or follow, the batch is done.
pub fn cancel(store: &Store, batch: &BatchRecord, now_ms: i64) -> Result<u64, ControlError> {
    let kinds = [
        StateKind::Planned,
        StateKind::AwaitingApproval,
        StateKind::Queued,
        StateKind::Deferred,
    ];
    let cancelled = change_all(
        store,
        &batch.batch_id,
        &kinds,
        &Event::Cancel,
        now_ms,
        "cancelled by an operator",
    )?;
    if all_final(store, &batch.batch_id)? {
        mark_done(store, &batch.batch_id, now_ms)?;
    }
    Ok(cancelled)
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
