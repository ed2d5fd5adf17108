//! Writing a batch's reports from the store, with the explorer links saved when it was taken in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ingest::EXPLORERS;
use crate::model::record::{BatchRecord, OrderRecord};
use crate::report::{self, ReportPaths};
use crate::store::{Store, StoreError};

/// Why reports could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot create the reports folder {}: {source}", .dir.display())]
    Folder { dir: PathBuf, source: std::io::Error },
    #[error("cannot write the reports in {}: {source}", .dir.display())]
    Write { dir: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes the batch's reports from the store into `dir`.
pub fn write_reports(dir: &Path, store: &Store, batch: &BatchRecord, now_ms: i64) -> Result<ReportPaths, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Folder {
        dir: dir.to_path_buf(),
        source,
    })?;
    let explorers: BTreeMap<String, String> = store.get(&EXPLORERS)?.unwrap_or_default();
    let mut visit = |f: &mut dyn FnMut(&OrderRecord) -> std::io::Result<()>| -> std::io::Result<()> {
        store
            .for_each_batch_order(&batch.batch_id, &mut |order| {
                f(order).map_err(|e| StoreError::Db(e.to_string()))
            })
            .map_err(std::io::Error::other)
    };
    report::write_batch_reports(dir, batch, &mut visit, &explorers, now_ms).map_err(|source| ReportError::Write {
        dir: dir.to_path_buf(),
        source,
    })
}
