//! Paying one stored batch, the same way for `submit` and the daemon: the engine runs it (and
//! marks it done when every order is final), then the reports are written from the store.

use std::collections::BTreeMap;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::reports::{ReportError, write_reports};
use crate::engine::{Engine, EngineError, Progress, RunEnd};
use crate::model::record::BatchRecord;
use crate::model::state::StateKind;
use crate::report::ReportPaths;

/// Whether the engine must first resolve every unknown order of every batch (a one-shot
/// command), or a caller did that once already for all the batches it runs (the daemon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    First,
    AlreadyDone,
}

/// When to write the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reports {
    /// Whatever the end: `submit` shows where the batch stands, even interrupted.
    Always,
    /// Only when the batch finished: the daemon archives a file with its final reports.
    WhenFinished,
}

/// How paying a batch went.
#[derive(Debug)]
pub struct Paid {
    pub end: RunEnd,
    /// The batch as stored after the run (done when `end` is `Finished`).
    pub batch: BatchRecord,
    /// Its orders by state.
    pub counts: BTreeMap<StateKind, u64>,
    /// Where the reports are, when they were written.
    pub reports: Option<ReportPaths>,
}

/// Why a batch could not be paid or reported.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Reports(#[from] ReportError),
}

/// Runs the engine on `batch` until it ends, then writes its reports into `reports_dir` as
/// `reports` says. `wait_final`: follow submitted orders to their final status.
#[allow(clippy::too_many_arguments)]
pub async fn pay(
    engine: &Engine,
    batch: &BatchRecord,
    reconcile: Reconcile,
    wait_final: bool,
    reports_dir: &Path,
    reports: Reports,
    cancel: &CancellationToken,
    progress: &dyn Progress,
) -> Result<Paid, PayError> {
    let end = match reconcile {
        Reconcile::First => engine.run_batch(&batch.batch_id, wait_final, cancel, progress).await?,
        Reconcile::AlreadyDone => {
            engine
                .run_reconciled_batch(&batch.batch_id, wait_final, cancel, progress)
                .await?
        }
    };
    let store = engine.store();
    let batch = store
        .batch(&batch.batch_id)
        .map_err(EngineError::from)?
        .unwrap_or_else(|| batch.clone());
    let counts = store.counts(Some(&batch.batch_id)).map_err(EngineError::from)?;
    let reports = match (reports, &end) {
        (Reports::Always, _) | (Reports::WhenFinished, RunEnd::Finished) => {
            Some(write_reports(reports_dir, store, &batch, engine.now_ms())?)
        }
        _ => None,
    };
    Ok(Paid {
        end,
        batch,
        counts,
        reports,
    })
}
