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
//!
//! # Where the code is
//!
//! `mod.rs` opens the store and holds what the other files share: the errors, [`Change`], the
//! transaction helpers. `batches.rs` creates, finds and replaces batches and removes leftovers;
//! `orders.rs` reads orders and answers the state-index queries; `commit.rs` writes groups of
//! changes with their audit lines and verifies the trail; `meta.rs` keeps small typed values
//! under [`Key`]s; `history.rs` reads earlier batches' rows for the diff to last time;
//! `retries.rs` which order retries which (`ccpayout retry`); `outbox.rs` the notices. `codec.rs`
//! is the on-disk layout and `audit.rs` the audit file's mirror.

mod audit;
mod batches;
mod bundles;
mod codec;
mod commit;
mod history;
mod meta;
mod orders;
mod outbox;
mod recipients;
mod retries;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableHandle, WriteTransaction};

use self::audit::AuditMirror;
use self::codec::{
    AUDIT, BATCH_ORDERS, BATCHES, BY_STATE, COUNTS, LEGACY_BY_STATE, META, ORDERS, decode_batch, decode_order,
    state_key_of,
};
pub use self::meta::Key;
pub use self::outbox::{OutboxSummary, TargetSummary};
pub use self::recipients::destination_of;
use crate::model::record::{BatchRecord, OrderRecord};
use crate::model::state::StateKind;

/// The redb file inside the state directory.
pub const DB_FILE: &str = "ccpayout.redb";
/// The audit trail's mirror inside the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// redb's page cache. Its default (1 GiB) would let a report over a million orders grow the
/// daemon to a gigabyte; the OS page cache serves re-reads anyway.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

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

/// A batch-level decision for the audit trail, written in the transaction of the change it
/// explains: a batch file's signer checked, a row refused by a deny list, an approval given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlEvent {
    pub batch_id: String,
    /// `signature_verified`, `deny_list_hit`, `approval`, `recipient_review_approval`, …
    pub event: &'static str,
    /// Who acted, when someone did (an approver).
    pub by: Option<String>,
    pub detail: String,
    pub at_ms: i64,
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
    /// Which targets want which events (`set_subscriptions`); none: no notice is recorded.
    subscriptions: std::sync::RwLock<Vec<crate::model::notice::Subscription>>,
    /// Wakes the notice dispatcher when a notice was recorded.
    notice_signal: tokio::sync::Notify,
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
        let create = || Database::builder().set_cache_size(CACHE_BYTES).create(&db_path);
        let db = match create() {
            Ok(db) => db,
            // A SIGKILL while redb was creating the file: start it afresh (it never held data).
            Err(e) if interrupted_creation(state_dir, &db_path).unwrap_or(false) => {
                tracing::warn!(path = %db_path.display(), error = %e, "the state store's creation was interrupted before its first commit; creating it again");
                OpenOptions::new()
                    .write(true)
                    .open(&db_path)
                    .and_then(|f| f.set_len(0).and_then(|()| f.sync_all()))
                    .map_err(|source| StoreError::Io {
                        path: db_path.display().to_string(),
                        source,
                    })?;
                create().map_err(|e| redb_error(state_dir, &db_path, e.into()))?
            }
            Err(e) => return Err(redb_error(state_dir, &db_path, e.into())),
        };
        let audit_path = state_dir.join(AUDIT_FILE);
        let mut store = Store {
            db,
            state_dir: state_dir.to_path_buf(),
            db_path,
            audit: Mutex::new(AuditMirror::detached(audit_path.clone())),
            creating: Mutex::new(()),
            subscriptions: std::sync::RwLock::new(Vec::new()),
            notice_signal: tokio::sync::Notify::new(),
        };
        store.create_tables()?;
        store.migrate_state_index()?;
        store.migrate_registry()?;
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
            tx.open_table(recipients::RECIPIENTS).map_err(|e| self.db_err(e))?;
            tx.open_table(recipients::PAYEES).map_err(|e| self.db_err(e))?;
            tx.open_table(outbox::OUTBOX).map_err(|e| self.db_err(e))?;
            tx.open_table(retries::RETRIES).map_err(|e| self.db_err(e))?;
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

/// Whether `db_path` is a database file whose creation a crash interrupted: redb writes a new
/// file's header with its magic number left zero, and writes the magic number only once the
/// file is initialized and on disk, so a non-empty file whose first bytes (where the magic
/// number goes) are all zero was never a database: no commit can have happened in it. Only
/// while the state directory has no audit file, which the first open that got past redb's
/// creation writes: a store that was ever opened is never emptied, whatever its header says.
fn interrupted_creation(state_dir: &Path, db_path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    const MAGIC_LEN: usize = 9;
    if state_dir.join(AUDIT_FILE).exists() {
        return Ok(false);
    }
    let mut file = std::fs::File::open(db_path)?;
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    let mut head = [0u8; MAGIC_LEN];
    let mut read = 0;
    while read < MAGIC_LEN {
        match file.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
    }
    Ok(head[..read].iter().all(|b| *b == 0))
}

/// Serializing our own records cannot fail short of a bug; report it, never panic.
fn encode_error(error: serde_json::Error) -> StoreError {
    StoreError::Db(format!("cannot encode a record: {error}"))
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
