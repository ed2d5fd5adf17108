//! The durable state of ccpayout: batches, orders, the state index, counters, small typed values
//! and the audit trail, in one redb file (`<state_dir>/ccpayout.redb`) plus a mirror of the audit
//! trail in `<state_dir>/audit.jsonl`.
//!
//! This is the only module that touches redb (see `decisions.md` §1 for why redb): no redb type
//! appears in its API, so the engine sees records, [`Change`]s and [`StoreError`]s only.
//!
//! # Invariants
//!
//! - **Durable before acknowledged.** Every method that changes state returns after a
//!   `Durability::Immediate` commit (an fdatasync), so the engine may send a request as soon as
//!   [`Store::commit`] of its `Submitting` state returns. No method does network I/O, and none
//!   holds a transaction open across a call into the caller except [`Store::for_each_batch_order`],
//!   which holds a *read* snapshot only.
//! - **One transaction per group of changes.** [`Store::commit`] writes the records, the state
//!   index, the counters and the audit entries of all its changes in one write transaction: after
//!   a crash either all of them are there or none is.
//! - **The batch record is the commit marker of a batch.** [`Store::create_batch`] writes a big
//!   batch's orders in chunks and the [`BatchRecord`] last. Orders whose batch has no record are
//!   leftovers of an interrupted attempt: every read treats them as absent, `create_batch`
//!   removes them before writing, and `open` removes any that remain.
//! - **The index follows the records.** Every order has exactly one `by_state` key,
//!   `[state code][due_ms][order_id]`, computed from the stored record, and one `counts` unit in
//!   `(batch_id, state code)`; both change in the same transaction as the record.
//! - **The audit table is the truth, the file its mirror.** Audit lines are hash-chained (each
//!   line's `prev` is the SHA-256 of the previous line's text) and written to the `audit` table in
//!   the commit's transaction; the same lines are then appended to `audit.jsonl` (fsynced at
//!   least once a second and on close, not per commit). A crash between the two loses nothing:
//!   `open` appends what the file lacks. A file line the table lacks or disagrees with is
//!   corruption.
//! - **One process.** redb locks the file; a second open (in this or another process) fails at
//!   once with [`StoreError::Locked`].
//!
//! Commits use redb's quick repair: each commit also saves the allocator state, so the open after
//! a SIGKILL does not walk the whole file (which takes seconds at a million orders).

mod audit;
mod codec;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableHandle, WriteTransaction};

use self::audit::AuditMirror;
use self::codec::{
    AUDIT, AuditLine, BATCH_ORDERS, BATCHES, BY_STATE, COUNTS, LEGACY_BY_STATE, META, ORDERS, OrderIdentity,
    decode_batch, decode_head, decode_identity, decode_order, encode_batch, encode_order, line_hash, split_state_key,
    state_key, state_key_of, state_range,
};
use crate::model::known::{KnownOrder, KnownOrders};
use crate::model::record::{BatchRecord, OrderRecord};
use crate::model::state::StateKind;

/// The redb file inside the state directory.
pub const DB_FILE: &str = "ccpayout.redb";
/// The audit trail's mirror inside the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Orders per write transaction in `create_batch` and in the removal of leftovers: bounds the
/// memory a transaction holds (its dirty pages) for million-order batches.
const CHUNK_ORDERS: usize = 20_000;

/// redb's page cache. Its default (1 GiB) would let a report over a million orders grow the
/// daemon to a gigabyte; the OS page cache serves re-reads anyway.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Which batches have their record (are visible), remembered for one walk: few batches are
/// active at once, so a short list beats a map.
#[derive(Default)]
struct VisibleBatches(Vec<(String, bool)>);

impl VisibleBatches {
    fn check(
        &mut self,
        batch_id: &str,
        batches: &impl ReadableTable<&'static str, &'static [u8]>,
    ) -> Result<bool, redb::StorageError> {
        if let Some((_, visible)) = self.0.iter().find(|(b, _)| b == batch_id) {
            return Ok(*visible);
        }
        let visible = batches.get(batch_id)?.is_some();
        self.0.push((batch_id.to_owned(), visible));
        Ok(visible)
    }
}

/// What can go wrong with the state store: one variant per decision the caller makes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the state directory.
    #[error(
        "the state directory {path} is in use by another ccpayout process; stop it first (or use another --state-dir)"
    )]
    Locked { path: String },
    #[error("cannot use the state directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the state store at {path} is damaged: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("batch {0} already exists")]
    BatchExists(String),
    #[error("order_id {order_id:?} already exists (batch {batch_id})")]
    OrderExists { order_id: String, batch_id: String },
    #[error("state store error: {0}")]
    Db(String),
}

/// One order's new version and how it got there (for the audit trail).
#[derive(Debug, Clone)]
pub struct Change {
    pub order: OrderRecord,
    /// The state the caller saw the order in. When set, the commit is refused (and nothing
    /// written) unless the stored order is still in that state: a stale read never overwrites a
    /// newer state. The audit line always records the stored state.
    pub from: Option<StateKind>,
    /// The event's name (`Event::name`).
    pub event: &'static str,
    pub detail: Option<String>,
}

/// The state store. `Send + Sync`; share it behind an `Arc`.
pub struct Store {
    db: Database,
    state_dir: PathBuf,
    db_path: PathBuf,
    /// The audit file; appends take turns, and each writes the lines the file lacks in seq order.
    audit: Mutex<AuditMirror>,
    /// Held by `create_batch`: two batches created at once could both pass the duplicate check
    /// for the same order_id, and one's leftover removal could meet the other's chunks.
    creating: Mutex<()>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed, mode 0700 for the dir, 0600 for files) `<state_dir>/ccpayout.redb`.
    /// After a SIGKILL, redb repairs on open (quickly: commits save the allocator state). A second
    /// open while another process (or another `Store` in this process) holds it returns
    /// [`StoreError::Locked`].
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let dir_error = |source| StoreError::Io {
            path: state_dir.display().to_string(),
            source,
        };
        create_private_dir(state_dir).map_err(dir_error)?;
        let db_path = state_dir.join(DB_FILE);
        // redb creates its file with the process umask; create it first so it is 0600 from the
        // start (an empty file is a new database to redb).
        create_private_file(&db_path).map_err(|source| StoreError::Io {
            path: db_path.display().to_string(),
            source,
        })?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&db_path)
            .map_err(|e| redb_error(state_dir, &db_path, e.into()))?;
        let audit_path = state_dir.join(AUDIT_FILE);
        let mut store = Store {
            db,
            state_dir: state_dir.to_path_buf(),
            db_path,
            audit: Mutex::new(AuditMirror::detached(audit_path.clone())),
            creating: Mutex::new(()),
        };
        store.create_tables()?;
        store.migrate_state_index()?;
        // Leftovers of a create_batch a crash interrupted: remove them now, so that only a
        // create_batch in progress can ever have orders without a batch record.
        for batch_id in store.leftover_batches()? {
            let removed = store.remove_leftovers(&batch_id)?;
            tracing::info!(batch = %batch_id, orders = removed, "removed orders of an interrupted batch creation");
        }
        let mirror = AuditMirror::open(audit_path, &store)?;
        *store.audit.get_mut().unwrap_or_else(PoisonError::into_inner) = mirror;
        Ok(store)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    // ----- batches -----

    /// Inserts a batch and all its orders, atomically in effect: [`Store::create_batch_streamed`]
    /// over a slice.
    pub fn create_batch(&self, batch: &BatchRecord, orders: &[OrderRecord]) -> Result<(), StoreError> {
        self.create_batch_streamed(batch, orders)
    }

    /// Inserts a batch and all its orders, atomically in effect. `orders` is read as it is
    /// written, in transactions of 20,000 orders, and the batch record goes last, so memory does
    /// not grow with the batch, and a crash midway leaves orders that every read ignores and the
    /// next `open` or `create_batch` removes.
    ///
    /// Refuses an existing batch ([`StoreError::BatchExists`]) before writing anything. An
    /// order_id that exists in another batch ([`StoreError::OrderExists`]), an order that does
    /// not belong to `batch`, a repeated order_id or seq, and a number of orders other than
    /// `batch.orders` are found as the orders are written: the creation stops with that error
    /// and removes what it wrote, so nothing of it is visible or left behind.
    pub fn create_batch_streamed<I>(&self, batch: &BatchRecord, orders: I) -> Result<(), StoreError>
    where
        I: IntoIterator,
        I::Item: Borrow<OrderRecord>,
    {
        self.create_batch_with(batch, orders, CHUNK_ORDERS, true)
    }

    fn create_batch_with<I>(
        &self,
        batch: &BatchRecord,
        orders: I,
        chunk_orders: usize,
        write_marker: bool,
    ) -> Result<(), StoreError>
    where
        I: IntoIterator,
        I::Item: Borrow<OrderRecord>,
    {
        let _creating = lock(&self.creating);
        let batch_id = batch.batch_id.as_str();
        {
            let tx = self.read()?;
            let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
            if batches.get(batch_id).map_err(|e| self.db_err(e))?.is_some() {
                return Err(StoreError::BatchExists(batch_id.to_owned()));
            }
        }
        // Leftovers of interrupted creations, this batch's own included, go first: none is in
        // progress (`creating` is held), and an order_id one of them holds must not block this
        // batch. After this, an order_id met while writing belongs to a real batch or to ours.
        for leftover in self.leftover_batches()? {
            self.remove_leftovers(&leftover)?;
        }

        let written = self.write_batch(batch, orders.into_iter(), chunk_orders.max(1), write_marker);
        if let Err(error) = &written {
            // Leave no half batch behind in this process either; a failure here is repaired by
            // the next open. remove_leftovers checks that the batch record is absent, so a
            // marker commit that failed after reaching the disk is not undone.
            if let Err(cleanup) = self.remove_leftovers(batch_id) {
                tracing::warn!(batch = %batch_id, %error, %cleanup, "could not remove a failed batch creation");
            }
        }
        written
    }

    fn write_batch(
        &self,
        batch: &BatchRecord,
        orders: impl Iterator<Item: Borrow<OrderRecord>>,
        chunk_orders: usize,
        write_marker: bool,
    ) -> Result<(), StoreError> {
        let batch_id = batch.batch_id.as_str();
        let expected = u64::from(batch.orders);
        let mut orders = orders.peekable();
        let mut counts: BTreeMap<u8, u64> = BTreeMap::new();
        let mut written = 0u64;
        // One encoding buffer for every order.
        let mut bytes = Vec::with_capacity(1024);
        while orders.peek().is_some() {
            // The chunks need not be durable on their own: the marker's Immediate commit below
            // makes every earlier commit durable, and without the marker they are leftovers.
            // An error returns with the chunk's transaction open: dropping it aborts the chunk,
            // and the caller removes the chunks committed before.
            let tx = self.write(Durability::None)?;
            {
                let mut order_table = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
                let mut batch_orders = tx.open_table(BATCH_ORDERS).map_err(|e| self.db_err(e))?;
                let mut by_state = tx.open_table(BY_STATE).map_err(|e| self.db_err(e))?;
                for order in orders.by_ref().take(chunk_orders) {
                    let order = order.borrow();
                    let order_id = order.order_id.as_str();
                    if order.batch_id != batch_id {
                        return Err(StoreError::Db(format!(
                            "order_id {order_id:?} belongs to batch {}, not {batch_id}",
                            order.batch_id
                        )));
                    }
                    written += 1;
                    if written > expected {
                        return Err(miscount(batch_id, expected, "more"));
                    }
                    bytes.clear();
                    codec::encode_order_into(order, &mut bytes).map_err(encode_error)?;
                    if let Some(old) = order_table
                        .insert(order_id, bytes.as_slice())
                        .map_err(|e| self.db_err(e))?
                    {
                        // Never overwrite: the order_id is this batch's own (a repeat) or a
                        // real batch's (leftovers were removed above).
                        let owner = decode_identity(old.value())
                            .map_err(|e| self.corrupt(format!("order {order_id:?} does not read back: {e}")))?
                            .batch_id;
                        return Err(if owner == batch_id {
                            StoreError::Db(format!("order_id {order_id:?} appears twice in batch {batch_id}"))
                        } else {
                            StoreError::OrderExists {
                                order_id: order_id.to_owned(),
                                batch_id: owner,
                            }
                        });
                    }
                    if batch_orders
                        .insert((batch_id, order.seq), order_id)
                        .map_err(|e| self.db_err(e))?
                        .is_some()
                    {
                        return Err(StoreError::Db(format!(
                            "seq {} appears twice in batch {batch_id}",
                            order.seq
                        )));
                    }
                    by_state
                        .insert(state_key_of(order).as_slice(), batch_id)
                        .map_err(|e| self.db_err(e))?;
                    *counts.entry(order.kind().code()).or_default() += 1;
                }
            }
            tx.commit().map_err(|e| self.db_err(e))?;
        }
        if written < expected {
            return Err(miscount(batch_id, expected, "fewer"));
        }
        if !write_marker {
            return Ok(()); // the test hook for an interrupted creation
        }
        // The commit marker: the counters and the batch record, in one durable transaction.
        let tx = self.write(Durability::Immediate)?;
        {
            let mut batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
            let mut count_table = tx.open_table(COUNTS).map_err(|e| self.db_err(e))?;
            if batches.get(batch_id).map_err(|e| self.db_err(e))?.is_some() {
                return Err(StoreError::BatchExists(batch_id.to_owned()));
            }
            for (code, n) in &counts {
                count_table.insert((batch_id, *code), n).map_err(|e| self.db_err(e))?;
            }
            let bytes = encode_batch(batch).map_err(encode_error)?;
            batches.insert(batch_id, bytes.as_slice()).map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Writes `orders` of `batch` without the batch record, as a crash before the marker would
    /// leave them.
    #[cfg(test)]
    fn create_batch_interrupted(
        &self,
        batch: &BatchRecord,
        orders: &[OrderRecord],
        chunk_orders: usize,
    ) -> Result<(), StoreError> {
        self.create_batch_with(batch, orders, chunk_orders, false)
    }

    #[cfg(test)]
    fn create_batch_chunked<I>(&self, batch: &BatchRecord, orders: I, chunk_orders: usize) -> Result<(), StoreError>
    where
        I: IntoIterator,
        I::Item: Borrow<OrderRecord>,
    {
        self.create_batch_with(batch, orders, chunk_orders, true)
    }

    /// The batch ids that have orders but no batch record. Visits one key per batch: each step
    /// jumps past the current batch's last possible (batch_id, seq) key.
    fn leftover_batches(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.read()?;
        let batch_orders = tx.open_table(BATCH_ORDERS).map_err(|e| self.db_err(e))?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        let mut leftovers = Vec::new();
        let mut next = batch_orders
            .first()
            .map_err(|e| self.db_err(e))?
            .map(|(k, _)| k.value().0.to_owned());
        while let Some(batch_id) = next {
            let after = (
                Bound::Excluded((batch_id.as_str(), u32::MAX)),
                Bound::<(&str, u32)>::Unbounded,
            );
            next = match batch_orders.range(after).map_err(|e| self.db_err(e))?.next() {
                Some(entry) => Some(entry.map_err(|e| self.db_err(e))?.0.value().0.to_owned()),
                None => None,
            };
            if batches.get(batch_id.as_str()).map_err(|e| self.db_err(e))?.is_none() {
                leftovers.push(batch_id);
            }
        }
        Ok(leftovers)
    }

    /// Removes the orders of `batch_id` if it has no batch record (leftovers of an interrupted
    /// creation), in chunks. Returns how many orders it removed.
    fn remove_leftovers(&self, batch_id: &str) -> Result<u64, StoreError> {
        let mut removed = 0u64;
        loop {
            // Not durable on its own: if a crash undoes the removal, the leftovers are found and
            // removed again by the next open; the next durable commit makes it stick.
            let tx = self.write(Durability::None)?;
            let n = {
                let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
                if batches.get(batch_id).map_err(|e| self.db_err(e))?.is_some() {
                    return Ok(removed); // a real batch: nothing here is a leftover
                }
                let mut batch_orders = tx.open_table(BATCH_ORDERS).map_err(|e| self.db_err(e))?;
                let mut order_table = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
                let mut by_state = tx.open_table(BY_STATE).map_err(|e| self.db_err(e))?;
                let mut keys = Vec::new();
                for entry in batch_orders
                    .range((batch_id, 0u32)..=(batch_id, u32::MAX))
                    .map_err(|e| self.db_err(e))?
                {
                    let (key, order_id) = entry.map_err(|e| self.db_err(e))?;
                    keys.push((key.value().1, order_id.value().to_owned()));
                    if keys.len() == CHUNK_ORDERS {
                        break;
                    }
                }
                for (seq, order_id) in &keys {
                    batch_orders.remove((batch_id, *seq)).map_err(|e| self.db_err(e))?;
                    let old = self.load_order(&order_table, order_id)?;
                    // Only the order this leftover entry created: never another batch's.
                    if let Some(old) = old.filter(|o| o.batch_id == batch_id) {
                        by_state
                            .remove(state_key_of(&old).as_slice())
                            .map_err(|e| self.db_err(e))?;
                        order_table.remove(order_id.as_str()).map_err(|e| self.db_err(e))?;
                    }
                }
                if keys.is_empty() {
                    // Counters are written with the marker, so a leftover has none; be thorough.
                    let mut counts = tx.open_table(COUNTS).map_err(|e| self.db_err(e))?;
                    for kind in StateKind::ALL {
                        counts.remove((batch_id, kind.code())).map_err(|e| self.db_err(e))?;
                    }
                }
                keys.len()
            };
            tx.commit().map_err(|e| self.db_err(e))?;
            removed += n as u64;
            if n == 0 {
                return Ok(removed);
            }
        }
    }

    pub fn batch(&self, batch_id: &str) -> Result<Option<BatchRecord>, StoreError> {
        let tx = self.read()?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        self.load_batch(&batches, batch_id)
    }

    /// Finds a batch by full id, by a unique prefix of its id (≥ 6 hex digits), or by its `name`.
    /// A prefix or name that matches several batches is an error naming them.
    pub fn find_batch(&self, key: &str) -> Result<Option<BatchRecord>, StoreError> {
        let tx = self.read()?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        if let Some(batch) = self.load_batch(&batches, key)? {
            return Ok(Some(batch));
        }
        if key.len() >= 6 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let prefix = key.to_ascii_lowercase();
            let mut found = Vec::new();
            for entry in batches.range(prefix.as_str()..).map_err(|e| self.db_err(e))? {
                let (id, bytes) = entry.map_err(|e| self.db_err(e))?;
                if !id.value().starts_with(&prefix) {
                    break;
                }
                found.push(self.decode_batch(id.value(), bytes.value())?);
            }
            if let Some(batch) = single(key, found)? {
                return Ok(Some(batch));
            }
        }
        // By name, or by the file's stem the name starts with (`payroll` for
        // `payroll-e8fb3ef69cb5`) when only one batch has it: batches are few (one per file),
        // so a scan is fine.
        let mut exact = Vec::new();
        let mut by_stem = Vec::new();
        let stem = format!("{key}-");
        for entry in batches.iter().map_err(|e| self.db_err(e))? {
            let (id, bytes) = entry.map_err(|e| self.db_err(e))?;
            let batch = self.decode_batch(id.value(), bytes.value())?;
            if batch.name == key {
                exact.push(batch);
            } else if batch.name.strip_prefix(&stem).is_some_and(|rest| !rest.contains('-')) {
                by_stem.push(batch);
            }
        }
        if exact.is_empty() {
            single(key, by_stem)
        } else {
            single(key, exact)
        }
    }

    /// Every batch, newest first.
    pub fn batches(&self) -> Result<Vec<BatchRecord>, StoreError> {
        let tx = self.read()?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for entry in batches.iter().map_err(|e| self.db_err(e))? {
            let (id, bytes) = entry.map_err(|e| self.db_err(e))?;
            out.push(self.decode_batch(id.value(), bytes.value())?);
        }
        out.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then_with(|| a.batch_id.cmp(&b.batch_id))
        });
        Ok(out)
    }

    /// Replaces the record of an existing batch (approval, state), durably. Batches come into
    /// being only through `create_batch`: a record written here for an unknown batch would turn
    /// leftovers into a batch, so that is refused.
    pub fn put_batch(&self, batch: &BatchRecord) -> Result<(), StoreError> {
        let bytes = encode_batch(batch).map_err(encode_error)?;
        let tx = self.write(Durability::Immediate)?;
        {
            let mut batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
            if batches
                .get(batch.batch_id.as_str())
                .map_err(|e| self.db_err(e))?
                .is_none()
            {
                return Err(StoreError::Db(format!(
                    "batch {} does not exist (batches are added by create_batch)",
                    batch.batch_id
                )));
            }
            batches
                .insert(batch.batch_id.as_str(), bytes.as_slice())
                .map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    // ----- orders -----

    pub fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let tx = self.read()?;
        let orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        let Some(order) = self.load_order(&orders, order_id)? else {
            return Ok(None);
        };
        // Orders of a batch still being created (or interrupted) do not exist yet.
        let visible = batches
            .get(order.batch_id.as_str())
            .map_err(|e| self.db_err(e))?
            .is_some();
        Ok(visible.then_some(order))
    }

    /// The batch and payload digest of a visible order, for [`KnownOrders`].
    fn order_identity(&self, order_id: &str) -> Result<Option<OrderIdentity>, StoreError> {
        let tx = self.read()?;
        let orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        let Some(bytes) = orders.get(order_id).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        let identity = decode_identity(bytes.value())
            .map_err(|e| self.corrupt(format!("order {order_id:?} does not read back: {e}")))?;
        let visible = batches
            .get(identity.batch_id.as_str())
            .map_err(|e| self.db_err(e))?
            .is_some();
        Ok(visible.then_some(identity))
    }

    /// A batch's orders in seq order.
    pub fn batch_orders(&self, batch_id: &str) -> Result<Vec<OrderRecord>, StoreError> {
        let mut out = Vec::new();
        self.for_each_batch_order(batch_id, &mut |order| {
            out.push(order.clone());
            Ok(())
        })?;
        Ok(out)
    }

    /// Visits a batch's orders in seq order without collecting them (for reports of 1M-order
    /// batches). All visits see one snapshot; `f`'s first error stops the walk and is returned.
    pub fn for_each_batch_order(
        &self,
        batch_id: &str,
        f: &mut dyn FnMut(&OrderRecord) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let tx = self.read()?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        if batches.get(batch_id).map_err(|e| self.db_err(e))?.is_none() {
            return Ok(());
        }
        let batch_orders = tx.open_table(BATCH_ORDERS).map_err(|e| self.db_err(e))?;
        let orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
        for entry in batch_orders
            .range((batch_id, 0u32)..=(batch_id, u32::MAX))
            .map_err(|e| self.db_err(e))?
        {
            let (_, order_id) = entry.map_err(|e| self.db_err(e))?;
            let order = self.load_order(&orders, order_id.value())?.ok_or_else(|| {
                self.corrupt(format!(
                    "batch {batch_id} lists order {:?}, which is missing",
                    order_id.value()
                ))
            })?;
            f(&order)?;
        }
        Ok(())
    }

    /// Orders in `kind` (optionally of one batch) whose `due_ms()` <= `due_by_ms` (`None`: any),
    /// in due order (then order_id), at most `limit`.
    ///
    /// Walks the state index from the state's earliest due time; never all orders. The index
    /// carries each order's batch, so other batches' orders are skipped without reading their
    /// records; only the records returned are read.
    pub fn orders_by_state(
        &self,
        kind: StateKind,
        batch_id: Option<&str>,
        due_by_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let tx = self.read()?;
        let mut ids = Vec::new();
        self.walk_index(&tx, kind, batch_id, due_by_ms, &mut |_, order_id| {
            ids.push(order_id.to_owned());
            ids.len() < limit
        })?;
        let orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
        ids.iter()
            .map(|order_id| {
                self.load_order(&orders, order_id)?
                    .ok_or_else(|| self.corrupt(format!("the state index names order {order_id:?}, which is missing")))
            })
            .collect()
    }

    /// The (due time, order_id) of orders in `kind` (optionally of one batch) due by
    /// `due_by_ms`, in index order, at most `limit`: what [`Store::orders_by_state`] would return,
    /// without reading a record. For deciding whether there is work before loading it.
    pub fn due_keys(
        &self,
        kind: StateKind,
        batch_id: Option<&str>,
        due_by_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let tx = self.read()?;
        self.walk_index(&tx, kind, batch_id, due_by_ms, &mut |due, order_id| {
            out.push((due, order_id.to_owned()));
            out.len() < limit
        })?;
        Ok(out)
    }

    /// The visible orders among `order_ids`, in the order given; ids that do not exist (or whose
    /// batch is still being created) are left out. One snapshot for all.
    pub fn orders(&self, order_ids: &[String]) -> Result<Vec<OrderRecord>, StoreError> {
        let tx = self.read()?;
        let orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        let mut visible = VisibleBatches::default();
        let mut out = Vec::with_capacity(order_ids.len());
        for order_id in order_ids {
            if let Some(order) = self.load_order(&orders, order_id)?
                && visible.check(&order.batch_id, &batches).map_err(|e| self.db_err(e))?
            {
                out.push(order);
            }
        }
        Ok(out)
    }

    /// The earliest `due_ms` among orders in `kind` (optionally of one batch): how long the
    /// engine may sleep.
    pub fn next_due(&self, kind: StateKind, batch_id: Option<&str>) -> Result<Option<i64>, StoreError> {
        let tx = self.read()?;
        let mut first = None;
        self.walk_index(&tx, kind, batch_id, None, &mut |due, _| {
            first = Some(due);
            false
        })?;
        Ok(first)
    }

    /// Visits the index entries of visible orders in `kind` (of `batch_id`, if given) due by
    /// `due_by_ms`, in index order, until `visit` returns false. Reads no order record.
    fn walk_index(
        &self,
        tx: &ReadTransaction,
        kind: StateKind,
        batch_id: Option<&str>,
        due_by_ms: Option<i64>,
        visit: &mut dyn FnMut(i64, &str) -> bool,
    ) -> Result<(), StoreError> {
        let index = tx.open_table(BY_STATE).map_err(|e| self.db_err(e))?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        let mut visible = VisibleBatches::default();
        let (start, end) = state_range(kind, due_by_ms);
        for entry in index
            .range(start.as_slice()..end.as_slice())
            .map_err(|e| self.db_err(e))?
        {
            let (key, batch) = entry.map_err(|e| self.db_err(e))?;
            let (key, batch) = (key.value(), batch.value());
            if batch_id.is_some_and(|b| b != batch) {
                continue;
            }
            let (due, order_id) =
                split_state_key(key).ok_or_else(|| self.corrupt(format!("malformed state index key {key:?}")))?;
            if visible.check(batch, &batches).map_err(|e| self.db_err(e))? && !visit(due, order_id) {
                break;
            }
        }
        Ok(())
    }

    /// Order counts per state (every state, zeros included) for a batch, or summed over all
    /// batches, from the counters `create_batch` and `commit` maintain.
    pub fn counts(&self, batch_id: Option<&str>) -> Result<BTreeMap<StateKind, u64>, StoreError> {
        let mut out: BTreeMap<StateKind, u64> = StateKind::ALL.into_iter().map(|k| (k, 0)).collect();
        let tx = self.read()?;
        let counts = tx.open_table(COUNTS).map_err(|e| self.db_err(e))?;
        let mut add = |key: (&str, u8), n: u64| -> Result<(), StoreError> {
            let kind = StateKind::from_code(key.1)
                .ok_or_else(|| self.corrupt(format!("counter of batch {} for unknown state code {}", key.0, key.1)))?;
            *out.entry(kind).or_default() += n;
            Ok(())
        };
        match batch_id {
            Some(b) => {
                for entry in counts.range((b, 0u8)..=(b, u8::MAX)).map_err(|e| self.db_err(e))? {
                    let (key, n) = entry.map_err(|e| self.db_err(e))?;
                    add(key.value(), n.value())?;
                }
            }
            // Batches × states entries: small.
            None => {
                for entry in counts.iter().map_err(|e| self.db_err(e))? {
                    let (key, n) = entry.map_err(|e| self.db_err(e))?;
                    add(key.value(), n.value())?;
                }
            }
        }
        Ok(out)
    }

    /// Writes the new versions of the given orders in one durable write transaction: the
    /// records, the state index (old key from the stored record out, new key in), the per-batch
    /// counters and one audit line per change. Returns after the commit is on disk, and after
    /// appending the same lines to `audit.jsonl` (a failure there is logged and repaired later:
    /// the table holds the lines).
    ///
    /// Nothing is written if any change names an order that does not exist (or whose batch is
    /// not created yet), changes an order's batch_id or seq, or expects (`from`) a state the
    /// order is no longer in.
    pub fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self.write(Durability::Immediate)?;
        // On error the transaction is dropped, which aborts it: nothing of this group lands.
        let lines = self.apply(&tx, changes)?;
        tx.commit().map_err(|e| self.db_err(e))?;
        // Only now, with the lines durable in the table, does the file get them: it never holds
        // a line the table lacks. The file's lock is taken after the commit, so the next commit
        // proceeds while this one's lines are written; should a later commit reach the file
        // first, it appends the earlier lines too (from the table), and the earlier one finds
        // nothing left to write.
        self.lock_audit().append(self, &lines);
        Ok(())
    }

    fn apply(&self, tx: &WriteTransaction, changes: &[Change]) -> Result<Vec<(u64, String)>, StoreError> {
        let mut orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        let mut by_state = tx.open_table(BY_STATE).map_err(|e| self.db_err(e))?;
        let mut counts = tx.open_table(COUNTS).map_err(|e| self.db_err(e))?;
        let mut audit = tx.open_table(AUDIT).map_err(|e| self.db_err(e))?;
        let (mut seq, mut prev) = match audit.last().map_err(|e| self.db_err(e))? {
            Some((k, v)) => (k.value(), line_hash(v.value())),
            None => (0, String::new()),
        };
        let mut lines = Vec::with_capacity(changes.len());
        // Batches known to have their record, and the counter changes of the group, written
        // once per (batch, state) at the end.
        let mut created: Vec<&str> = Vec::new();
        let mut deltas: BTreeMap<(&str, StateKind), i64> = BTreeMap::new();
        for change in changes {
            let new = &change.order;
            let order_id = new.order_id.as_str();
            let unknown = || StoreError::Db(format!("cannot commit order_id {order_id:?}: no such order"));
            // Read from the transaction, so a second change of one order sees the first.
            let old = match orders.get(order_id).map_err(|e| self.db_err(e))? {
                Some(bytes) => decode_head(bytes.value())
                    .map_err(|e| self.corrupt(format!("order {order_id:?} does not read back: {e}")))?,
                None => return Err(unknown()),
            };
            if old.batch_id != new.batch_id || old.seq != new.seq {
                return Err(StoreError::Db(format!(
                    "cannot commit order_id {order_id:?}: batch and seq are fixed ({} #{}, not {} #{})",
                    old.batch_id, old.seq, new.batch_id, new.seq
                )));
            }
            if !created.contains(&new.batch_id.as_str()) {
                // An order of a batch still being created (or interrupted) does not exist yet.
                if batches
                    .get(old.batch_id.as_str())
                    .map_err(|e| self.db_err(e))?
                    .is_none()
                {
                    return Err(unknown());
                }
                created.push(&new.batch_id);
            }
            let (old_kind, new_kind) = (old.kind(), new.kind());
            if let Some(from) = change.from
                && from != old_kind
            {
                return Err(StoreError::Db(format!(
                    "cannot commit order_id {order_id:?} from {from}: it is {old_kind} now"
                )));
            }

            // Index: out with the key of the stored record, in with the new one.
            if by_state
                .remove(state_key(old_kind, old.due_ms(), order_id).as_slice())
                .map_err(|e| self.db_err(e))?
                .is_none()
            {
                return Err(self.corrupt(format!("order {order_id:?} is missing from the state index")));
            }
            by_state
                .insert(state_key_of(new).as_slice(), new.batch_id.as_str())
                .map_err(|e| self.db_err(e))?;
            if old_kind != new_kind {
                *deltas.entry((new.batch_id.as_str(), old_kind)).or_default() -= 1;
                *deltas.entry((new.batch_id.as_str(), new_kind)).or_default() += 1;
            }
            let bytes = encode_order(new).map_err(encode_error)?;
            orders.insert(order_id, bytes.as_slice()).map_err(|e| self.db_err(e))?;

            seq += 1;
            let line = serde_json::to_string(&AuditLine {
                seq,
                at_ms: new.updated_ms,
                order_id: order_id.into(),
                batch_id: new.batch_id.as_str().into(),
                from: Some(old_kind),
                to: new_kind,
                event: change.event.into(),
                attempt: new.attempts,
                detail: change.detail.as_deref().map(Into::into),
                prev: prev.as_str().into(),
            })
            .map_err(encode_error)?;
            audit.insert(seq, line.as_str()).map_err(|e| self.db_err(e))?;
            prev = line_hash(&line);
            lines.push((seq, line));
        }
        for ((batch_id, kind), delta) in deltas {
            if delta != 0 {
                self.add_count(&mut counts, batch_id, kind, delta)?;
            }
        }
        Ok(lines)
    }

    fn add_count(
        &self,
        counts: &mut redb::Table<'_, (&'static str, u8), u64>,
        batch_id: &str,
        kind: StateKind,
        delta: i64,
    ) -> Result<(), StoreError> {
        let current = counts
            .get((batch_id, kind.code()))
            .map_err(|e| self.db_err(e))?
            .map_or(0, |n| n.value());
        let next = current
            .checked_add_signed(delta)
            .ok_or_else(|| self.corrupt(format!("the {kind} counter of batch {batch_id} would go below zero")))?;
        if next == 0 {
            counts.remove((batch_id, kind.code())).map_err(|e| self.db_err(e))?;
        } else {
            counts
                .insert((batch_id, kind.code()), next)
                .map_err(|e| self.db_err(e))?;
        }
        Ok(())
    }

    // ----- small typed values -----

    pub fn meta_get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let tx = self.read()?;
        let meta = tx.open_table(META).map_err(|e| self.db_err(e))?;
        let Some(bytes) = meta.get(key).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| self.corrupt(format!("meta value {key:?} does not read back: {e}")))
    }

    /// Stores a small value durably.
    pub fn meta_put<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(encode_error)?;
        let tx = self.write(Durability::Immediate)?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.db_err(e))?;
            meta.insert(key, bytes.as_slice()).map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    // ----- validation and audit -----

    /// Cross-batch duplicate lookups for validation.
    pub fn known_orders(self: &Arc<Self>) -> Arc<dyn KnownOrders + Send + Sync> {
        Arc::new(StoreKnownOrders(Arc::clone(self)))
    }

    /// Checks the audit trail: the file and the table hold the same lines, seqs run from 1
    /// without gaps, and every line's `prev` is the SHA-256 of the line before. Brings the file
    /// up to date with the table first (as `open` does). Returns the number of entries.
    pub fn verify_audit(&self) -> Result<u64, StoreError> {
        let mut mirror = self.lock_audit();
        mirror.verify(self)
    }

    // ----- helpers -----

    fn create_tables(&self) -> Result<(), StoreError> {
        // Read transactions fail on a table that was never created, so create them all once.
        let tx = self.write(Durability::Immediate)?;
        {
            tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
            tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
            tx.open_table(BATCH_ORDERS).map_err(|e| self.db_err(e))?;
            tx.open_table(BY_STATE).map_err(|e| self.db_err(e))?;
            tx.open_table(COUNTS).map_err(|e| self.db_err(e))?;
            tx.open_table(META).map_err(|e| self.db_err(e))?;
            tx.open_table(AUDIT).map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Stores written before the state index carried each order's batch have the older
    /// `by_state` table: rebuild the index from the orders (once, in one transaction) and drop it.
    fn migrate_state_index(&self) -> Result<(), StoreError> {
        let legacy = {
            let tx = self.read()?;
            tx.list_tables()
                .map_err(|e| self.db_err(e))?
                .any(|t| t.name() == LEGACY_BY_STATE.name())
        };
        if !legacy {
            return Ok(());
        }
        let tx = self.write(Durability::Immediate)?;
        let mut rebuilt = 0u64;
        {
            let orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
            let mut index = tx.open_table(BY_STATE).map_err(|e| self.db_err(e))?;
            for entry in orders.iter().map_err(|e| self.db_err(e))? {
                let (order_id, bytes) = entry.map_err(|e| self.db_err(e))?;
                let order = decode_order(bytes.value())
                    .map_err(|e| self.corrupt(format!("order {:?} does not read back: {e}", order_id.value())))?;
                index
                    .insert(state_key_of(&order).as_slice(), order.batch_id.as_str())
                    .map_err(|e| self.db_err(e))?;
                rebuilt += 1;
            }
        }
        tx.delete_table(LEGACY_BY_STATE).map_err(|e| self.db_err(e))?;
        tx.commit().map_err(|e| self.db_err(e))?;
        tracing::info!(orders = rebuilt, "rebuilt the state index in the current layout");
        Ok(())
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(|e| self.db_err(e))
    }

    fn write(&self, durability: Durability) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        // Saves the allocator state with each commit so the open after a crash is quick.
        tx.set_quick_repair(true);
        tx.set_durability(durability).map_err(|e| self.db_err(e))?;
        Ok(tx)
    }

    fn lock_audit(&self) -> MutexGuard<'_, AuditMirror> {
        self.audit.lock().unwrap_or_else(|poisoned| {
            // A panic mid-append may have left a partial line: have the next append repair it.
            let mut mirror = poisoned.into_inner();
            mirror.mark_dirty();
            mirror
        })
    }

    fn load_order(
        &self,
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        order_id: &str,
    ) -> Result<Option<OrderRecord>, StoreError> {
        let Some(bytes) = table.get(order_id).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        decode_order(bytes.value())
            .map(Some)
            .map_err(|e| self.corrupt(format!("order {order_id:?} does not read back: {e}")))
    }

    fn load_batch(
        &self,
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        batch_id: &str,
    ) -> Result<Option<BatchRecord>, StoreError> {
        let Some(bytes) = table.get(batch_id).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        self.decode_batch(batch_id, bytes.value()).map(Some)
    }

    fn decode_batch(&self, batch_id: &str, bytes: &[u8]) -> Result<BatchRecord, StoreError> {
        decode_batch(bytes).map_err(|e| self.corrupt(format!("batch {batch_id} does not read back: {e}")))
    }

    fn db_err(&self, error: impl Into<redb::Error>) -> StoreError {
        redb_error(&self.state_dir, &self.db_path, error.into())
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.db_path.display().to_string(),
            detail,
        }
    }
}

/// Maps a redb error to the decision the caller makes about it.
fn redb_error(state_dir: &Path, db_path: &Path, error: redb::Error) -> StoreError {
    match error {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => StoreError::Locked {
            path: state_dir.display().to_string(),
        },
        redb::Error::Corrupted(detail) => StoreError::Corrupt {
            path: db_path.display().to_string(),
            detail,
        },
        redb::Error::Io(source) => StoreError::Io {
            path: db_path.display().to_string(),
            source,
        },
        other => StoreError::Db(other.to_string()),
    }
}

/// Serializing our own records cannot fail short of a bug; report it, never panic.
fn encode_error(error: serde_json::Error) -> StoreError {
    StoreError::Db(format!("cannot encode a record: {error}"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The one match among `found`, none, or an error naming the candidates.
fn single(key: &str, mut found: Vec<BatchRecord>) -> Result<Option<BatchRecord>, StoreError> {
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => {
            let names: Vec<String> = found.iter().map(|b| format!("{} ({})", b.batch_id, b.name)).collect();
            Err(StoreError::Db(format!(
                "{key:?} matches more than one batch: {}",
                names.join(", ")
            )))
        }
    }
}

/// The error of a batch whose record counts `expected` orders when `more` or fewer came.
fn miscount(batch_id: &str, expected: u64, more: &str) -> StoreError {
    StoreError::Db(format!(
        "batch {batch_id} has {expected} orders by its record, but {more} were given"
    ))
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Creates `path` readable by its owner only if it does not exist; never truncates.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    private_options().read(true).write(true).open(path).map(drop)
}

/// Options that create files with mode 0600 (the mode applies only when the file is created).
fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// [`KnownOrders`] over the store, for validation.
struct StoreKnownOrders(Arc<Store>);

impl KnownOrders for StoreKnownOrders {
    fn lookup(&self, order_id: &str) -> Option<KnownOrder> {
        let fail_safe = |why: String| {
            // The trait cannot report an error. Answering "unknown" could let a row through that
            // an earlier batch already paid, so answer with an impossible digest instead: the
            // row is refused as a conflict, and the message says why.
            tracing::error!(order_id, error = %why, "cannot look up an order_id in the state store");
            Some(KnownOrder {
                batch: format!("(unreadable state store: {why})"),
                payload_digest: [0; 32],
            })
        };
        match self.0.order_identity(order_id) {
            Ok(None) => None,
            Ok(Some(order)) => {
                let mut digest = [0u8; 32];
                match hex::decode_to_slice(&order.payload_digest, &mut digest) {
                    Ok(()) => Some(KnownOrder {
                        batch: order.batch_id,
                        payload_digest: digest,
                    }),
                    Err(e) => fail_safe(format!("order {order_id:?} has a malformed payload digest: {e}")),
                }
            }
            Err(e) => fail_safe(e.to_string()),
        }
    }
}
