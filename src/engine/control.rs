//! Operator controls over stored batches: approve exactly the plan that was checked, and cancel
//! what has not been sent. The engine owns these because they change order states, which only
//! the state machine does; the one operator (`crate::app::operator`) calls them, on the store
//! directly or inside the daemon.

use super::{EngineError, all_final, apply_event, mark_done};
use crate::model::bundle::BundlePhase;
use crate::model::record::{Approval, ApproverProof, BatchRecord, GivenApproval};
use crate::model::state::{Event, StateKind};
use crate::store::{ControlEvent, Store};

/// Orders changed per store transaction.
const CHUNK: usize = 1000;

/// Why a control was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The digest given is not the batch's plan digest.
    #[error(
        "the digest does not match batch {batch}'s plan; its plan digest is {expected}{}: review the plan with `ccpayout status {batch}` and approve that exact digest",
        .review.as_ref().map(|d| format!(" (and its recipient review's digest is {d})")).unwrap_or_default()
    )]
    WrongDigest {
        batch: String,
        expected: String,
        review: Option<String>,
    },
    /// The signer of the batch file may not approve it (`policy.maker_may_approve = false`).
    #[error(
        "{who} signed batch {batch}'s file and may not approve it (policy.maker_may_approve = false): another approver must"
    )]
    MakerMayNotApprove { who: String, batch: String },
    /// One approver counts once.
    #[error(
        "{who} has already approved {part} of batch {batch}; one approver counts once ({given} of {needed} given): another approver must"
    )]
    AlreadyApproved {
        who: String,
        part: &'static str,
        batch: String,
        given: usize,
        needed: u32,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for ControlError {
    fn from(e: crate::store::StoreError) -> Self {
        ControlError::Engine(EngineError::Store(e))
    }
}

/// Which part of a batch an approval is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The batch's plan (`plan_digest`): every order except those held for the recipient review.
    Plan,
    /// The recipient review (`recipients.digest`): the orders to new or changed destinations.
    Recipients,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Plan => "the plan",
            Part::Recipients => "the recipient review",
        }
    }
}

/// Who approves, and how they were known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub name: String,
    pub proof: ApproverProof,
    /// The key's fingerprint, for a signed approval.
    pub fingerprint: Option<String>,
}

/// What `approve` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approved {
    /// The last approval needed: released this many orders of `part` for sending.
    Released { part: Part, orders: u64, by: Vec<String> },
    /// Recorded; more approvers are needed.
    Counted {
        part: Part,
        given: Vec<String>,
        needed: u32,
    },
    /// The batch needs no approval.
    NotNeeded,
    /// That part was approved before.
    Already(Part),
}

/// The part of `batch` that `digest` names, if any.
pub fn part_of(batch: &BatchRecord, digest: &str) -> Option<Part> {
    let digest = digest.trim();
    if digest.eq_ignore_ascii_case(&batch.plan_digest) {
        Some(Part::Plan)
    } else if batch
        .recipients
        .as_ref()
        .is_some_and(|r| digest.eq_ignore_ascii_case(&r.digest))
    {
        Some(Part::Recipients)
    } else {
        None
    }
}

/// Records `approver`'s approval of exactly the part whose digest is `digest` (the plan, or the
/// recipient review), and releases that part's orders once it has as many distinct approvers as
/// it needs. Refused when the digest names no part, when the approver signed the batch file and
/// the maker may not approve, and when this approver already approved that part. The approval
/// and its audit line are written in one transaction.
pub fn approve(
    store: &Store,
    mut batch: BatchRecord,
    digest: &str,
    approver: &Approver,
    now_ms: i64,
) -> Result<Approved, ControlError> {
    let Some(part) = part_of(&batch, digest) else {
        if batch.approval == Approval::NotNeeded && batch.recipients.is_none() {
            return Ok(Approved::NotNeeded);
        }
        return Err(ControlError::WrongDigest {
            batch: batch.name.clone(),
            expected: batch.plan_digest.clone(),
            review: batch.recipients.as_ref().map(|r| r.digest.clone()),
        });
    };
    let (full_digest, approval) = match (part, &batch.recipients) {
        (Part::Recipients, Some(r)) => (r.digest.clone(), r.approval.clone()),
        _ => (batch.plan_digest.clone(), batch.approval.clone()),
    };
    let (reasons, needed, mut given) = match approval {
        Approval::NotNeeded => return Ok(Approved::NotNeeded),
        Approval::Approved { .. } => return Ok(Approved::Already(part)),
        Approval::Required { reasons, needed, given } => (reasons, needed, given),
    };
    if !batch.maker_may_approve
        && let Some(signer) = &batch.signer
        && (signer.principal == approver.name || approver.fingerprint.as_deref() == Some(signer.fingerprint.as_str()))
    {
        return Err(ControlError::MakerMayNotApprove {
            who: approver.name.clone(),
            batch: batch.name.clone(),
        });
    }
    let same =
        |g: &GivenApproval| g.by == approver.name || (g.fingerprint.is_some() && g.fingerprint == approver.fingerprint);
    if given.iter().any(same) {
        return Err(ControlError::AlreadyApproved {
            who: approver.name.clone(),
            part: part.name(),
            batch: batch.name.clone(),
            given: given.len(),
            needed,
        });
    }
    given.push(GivenApproval {
        by: approver.name.clone(),
        how: approver.proof,
        fingerprint: approver.fingerprint.clone(),
        at_ms: now_ms,
    });
    let names: Vec<String> = given.iter().map(|g| g.by.clone()).collect();
    let complete = given.len() >= needed as usize;
    let event = ControlEvent {
        batch_id: batch.batch_id.as_str().to_owned(),
        event: match part {
            Part::Plan => "approval",
            Part::Recipients => "recipient_review_approval",
        },
        by: Some(approver.name.clone()),
        detail: format!(
            "{} approved {} (digest {full_digest}){}: {} of {needed}",
            approver.name,
            part.name(),
            match (&approver.proof, &approver.fingerprint) {
                (ApproverProof::SshSignature, Some(f)) => format!(" with a signature by {f}"),
                _ => " as the OS user".to_owned(),
            },
            given.len()
        ),
        at_ms: now_ms,
    };
    let new_approval = if complete {
        Approval::Approved {
            at_ms: now_ms,
            digest: full_digest,
            by: given,
        }
    } else {
        Approval::Required { reasons, needed, given }
    };
    match part {
        Part::Plan => batch.approval = new_approval,
        Part::Recipients => {
            if let Some(r) = batch.recipients.as_mut() {
                r.approval = new_approval;
            }
        }
    }
    batch.updated_ms = now_ms;
    // The approval is on disk before any order moves: a crash in between leaves the part
    // approved with orders still waiting, which the next approve (Already) sets going.
    store.put_batch_audited(&batch, &[event])?;
    if !complete {
        return Ok(Approved::Counted {
            part,
            given: names,
            needed,
        });
    }
    let orders = release_approved(store, &batch, part, now_ms)?;
    Ok(Approved::Released {
        part,
        orders,
        by: names,
    })
}

/// Releases the orders of `part` that still wait for approval: those held for the recipient
/// review, or all the others.
pub fn release_approved(store: &Store, batch: &BatchRecord, part: Part, now_ms: i64) -> Result<u64, ControlError> {
    let mut ids = Vec::new();
    store.for_each_batch_order(&batch.batch_id, &mut |order| {
        if order.kind() == StateKind::AwaitingApproval && (order.review.is_some() == (part == Part::Recipients)) {
            ids.push(order.order_id.as_str().to_owned());
        }
        Ok(())
    })?;
    let detail = match part {
        Part::Plan => "approved",
        Part::Recipients => "recipient review approved",
    };
    let mut released = 0;
    for chunk in ids.chunks(CHUNK) {
        let changes = store
            .orders(chunk)?
            .into_iter()
            .filter(|o| o.kind() == StateKind::AwaitingApproval)
            .map(|o| apply_event(o, &Event::Approve, now_ms, Some(detail.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        released += changes.len() as u64;
        store.commit(&changes)?;
    }
    Ok(released)
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
    request_abort(store, batch, now_ms)?;
    if all_final(store, &batch.batch_id)? {
        mark_done(store, &batch.batch_id, now_ms)?;
    }
    Ok(cancelled)
}

/// Marks the batch's applied bundles (CCPayment batch withdrawals) for abort: their tasks are
/// at CCPayment, so only CCPayment can cancel them — the engine sends `abortBatchWithdraw` at
/// the bundle's next step (before the confirm, or within its delay) and records which tasks were
/// cancelled and which had already run. Returns how many bundles were marked.
pub fn request_abort(store: &Store, batch: &BatchRecord, now_ms: i64) -> Result<u64, ControlError> {
    let mut marked = 0;
    for mut bundle in store.bundles(&batch.batch_id)? {
        if bundle.phase.is_final() || bundle.phase == BundlePhase::Waiting || bundle.cancel_requested {
            continue;
        }
        let from = bundle.phase.name();
        bundle.cancel_requested = true;
        bundle.updated_ms = now_ms;
        bundle.next_check_ms = Some(now_ms);
        let event = ControlEvent {
            batch_id: batch.batch_id.as_str().to_owned(),
            event: "bundle",
            by: None,
            detail: format!(
                "{} ({from}): cancel requested; its tasks not yet run will be aborted",
                bundle.id
            ),
            at_ms: now_ms,
        };
        store.commit_bundle(&bundle, from, &[], &event)?;
        marked += 1;
    }
    Ok(marked)
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
