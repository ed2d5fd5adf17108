//! Bundles (`crate::model::bundle`): CCPayment batch withdrawals made of a batch's orders. They
//! are written with their batch's commit marker (so a batch and its bundles exist together),
//! and every later change of a bundle is committed together with the changes of its orders and
//! an audit line in one durable transaction ([`Store::commit_bundle`]), so a bundle's phase and
//! its orders' states never disagree on disk.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Change, ControlEvent, Store, StoreError, encode_error};
use crate::model::bundle::BundleRecord;

/// (batch id, part) → versioned [`BundleRecord`] JSON.
pub(super) const BUNDLES: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("bundles");

#[derive(Deserialize)]
#[serde(tag = "v")]
enum Stored {
    #[serde(rename = "1")]
    V1(BundleRecord),
}

#[derive(Serialize)]
#[serde(tag = "v")]
enum StoredRef<'a> {
    #[serde(rename = "1")]
    V1(&'a BundleRecord),
}

fn encode(bundle: &BundleRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&StoredRef::V1(bundle)).map_err(encode_error)
}

fn decode(bytes: &[u8]) -> Result<BundleRecord, serde_json::Error> {
    serde_json::from_slice::<Stored>(bytes).map(|Stored::V1(b)| b)
}

impl Store {
    /// Writes a new batch's bundles inside the transaction of its commit marker.
    pub(super) fn insert_bundles(&self, tx: &WriteTransaction, bundles: &[BundleRecord]) -> Result<(), StoreError> {
        if bundles.is_empty() {
            return Ok(());
        }
        let mut table = tx.open_table(BUNDLES).map_err(|e| self.db_err(e))?;
        for bundle in bundles {
            let bytes = encode(bundle)?;
            if table
                .insert((bundle.batch_id.as_str(), bundle.part), bytes.as_slice())
                .map_err(|e| self.db_err(e))?
                .is_some()
            {
                return Err(StoreError::Db(format!(
                    "bundle {} of batch {} exists already",
                    bundle.part, bundle.batch_id
                )));
            }
        }
        Ok(())
    }

    /// The bundles of a batch, in part order (none for a batch paid by single creates).
    pub fn bundles(&self, batch_id: &str) -> Result<Vec<BundleRecord>, StoreError> {
        self.read_bundles(Some(batch_id), |_| true)
    }

    /// Every bundle of every batch whose phase is not final, in (batch, part) order.
    pub fn open_bundles(&self) -> Result<Vec<BundleRecord>, StoreError> {
        self.read_bundles(None, |b| !b.phase.is_final())
    }

    /// The bundles of `batch_id` (or of every batch) that `keep` keeps, in (batch, part) order.
    /// A store written before bundles existed has no table: no bundles.
    fn read_bundles(
        &self,
        batch_id: Option<&str>,
        keep: impl Fn(&BundleRecord) -> bool,
    ) -> Result<Vec<BundleRecord>, StoreError> {
        let tx = self.read()?;
        let table = match tx.open_table(BUNDLES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.db_err(e)),
        };
        let entries = match batch_id {
            Some(id) => table.range((id, 0)..=(id, u32::MAX)),
            None => table.range::<(&str, u32)>(..),
        }
        .map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for entry in entries {
            let (key, value) = entry.map_err(|e| self.db_err(e))?;
            let (batch_id, part) = key.value();
            let bundle = decode(value.value())
                .map_err(|e| self.corrupt(format!("bundle {part} of batch {batch_id} does not read back: {e}")))?;
            if keep(&bundle) {
                out.push(bundle);
            }
        }
        Ok(out)
    }

    /// Writes a bundle's new version with the changes of its orders and the audit line of the
    /// step, in one durable transaction. Refused, with nothing written, when the stored bundle
    /// is no longer in the phase named `from` (a stale read), or when any order change is
    /// refused (see [`Store::commit`]).
    pub fn commit_bundle(
        &self,
        bundle: &BundleRecord,
        from: &str,
        changes: &[Change],
        event: &ControlEvent,
    ) -> Result<(), StoreError> {
        let tx = self.write(redb::Durability::Immediate)?;
        {
            let mut table = tx.open_table(BUNDLES).map_err(|e| self.db_err(e))?;
            let key = (bundle.batch_id.as_str(), bundle.part);
            let stored = match table.get(key).map_err(|e| self.db_err(e))? {
                Some(bytes) => decode(bytes.value()).map_err(|e| {
                    self.corrupt(format!(
                        "bundle {} of batch {} does not read back: {e}",
                        bundle.part, bundle.batch_id
                    ))
                })?,
                None => {
                    return Err(StoreError::Db(format!(
                        "cannot commit bundle {}: no such bundle",
                        bundle.id
                    )));
                }
            };
            if stored.phase.name() != from {
                return Err(StoreError::Db(format!(
                    "cannot commit bundle {} from {from}: it is {} now",
                    bundle.id,
                    stored.phase.name()
                )));
            }
            let bytes = encode(bundle)?;
            table.insert(key, bytes.as_slice()).map_err(|e| self.db_err(e))?;
        }
        let mut lines = self.apply_changes(&tx, changes)?;
        lines.extend(self.control_lines(&tx, std::slice::from_ref(event))?);
        tx.commit().map_err(|e| self.db_err(e))?;
        self.lock_audit().append(self, &lines);
        Ok(())
    }
}
