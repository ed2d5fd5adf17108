//! Writing a batch's reports from the store, with the explorer links saved when it was taken in
//! and the batches retries link it with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ingest::EXPLORERS;
use crate::model::record::{BatchRecord, OrderRecord};
use crate::report::{self, LinkedBatch, Links, ReportPaths};
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
    let links = links(store, batch)?;
    let mut visit = |f: &mut dyn FnMut(&OrderRecord) -> std::io::Result<()>| -> std::io::Result<()> {
        store
            .for_each_batch_order(&batch.batch_id, &mut |order| {
                f(order).map_err(|e| StoreError::Db(e.to_string()))
            })
            .map_err(std::io::Error::other)
    };
    report::write_batch_reports(dir, batch, &mut visit, &explorers, &links, now_ms).map_err(|source| {
        ReportError::Write {
            dir: dir.to_path_buf(),
            source,
        }
    })
}

/// How retries link `batch` with other batches, as the store knows it: the batches whose orders
/// it retries (kept in its record when it was taken in), the batches that retry its orders and
/// which order retries each (the store's retry links, written with each retrying batch).
pub fn links(store: &Store, batch: &BatchRecord) -> Result<Links, StoreError> {
    let name_of = |batch_id: &str| -> Result<(String, i64), StoreError> {
        Ok(store
            .batch(batch_id)?
            .map_or_else(|| (batch_id.to_owned(), 0), |b| (b.name, b.created_ms)))
    };
    let mut links = Links::default();
    if let Some(of) = &batch.retry_of {
        for retried in &of.batches {
            links.retry_of.push(LinkedBatch {
                batch: name_of(&retried.batch_id)?.0,
                batch_id: retried.batch_id.to_string(),
                orders: u64::from(retried.orders),
            });
        }
    }
    let mut by_batch: BTreeMap<String, u64> = BTreeMap::new();
    for link in store.retries_of_batch(&batch.batch_id)? {
        *by_batch.entry(link.batch_id.to_string()).or_default() += 1;
        links
            .retried_as
            .entry(link.original_order_id.into_string())
            .and_modify(|ids| {
                ids.push_str("; ");
                ids.push_str(&link.order_id);
            })
            .or_insert_with(|| link.order_id.into_string());
    }
    let mut retried_by = Vec::new();
    for (batch_id, orders) in by_batch {
        let (name, created_ms) = name_of(&batch_id)?;
        retried_by.push((
            created_ms,
            LinkedBatch {
                batch: name,
                batch_id,
                orders,
            },
        ));
    }
    // Oldest first: a retry, then the retry of its retries' batch, in the order they came.
    retried_by.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.batch_id.cmp(&b.1.batch_id)));
    links.retried_by = retried_by.into_iter().map(|(_, b)| b).collect();
    Ok(links)
}

/// The lines `report` and `status` show about a batch's retries: "retry of batch …" and
/// "retried by batch … (N rows)"; empty for a batch that has nothing to do with one.
pub fn link_lines(links: &Links, indent: &str) -> String {
    let mut out = String::new();
    let rows = |n: u64| super::retry::plural(n, "row", "rows");
    for b in &links.retry_of {
        out.push_str(&format!("{indent}retry of batch {} ({})\n", b.batch, rows(b.orders)));
    }
    for b in &links.retried_by {
        out.push_str(&format!("{indent}retried by batch {} ({})\n", b.batch, rows(b.orders)));
    }
    out
}
