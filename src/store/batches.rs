//! Batches: creating one with all its orders (streamed, in chunks, with the batch record as the
//! commit marker), finding, listing and replacing batch records, and removing the leftovers of an
//! interrupted creation.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use redb::{Durability, ReadableTable};

use super::codec::{
    self, BATCH_ORDERS, BATCHES, BY_STATE, COUNTS, ORDERS, decode_identity, encode_batch, state_key_of,
};
use super::{ControlEvent, Store, StoreError, encode_error};
use crate::model::bundle::BundleRecord;
use crate::model::notice::Notice;
use crate::model::record::{BatchRecord, OrderRecord};
use crate::model::retry::RetryLink;
use crate::model::state::StateKind;

/// Orders per write transaction in `create_batch` and in the removal of leftovers: bounds the
/// memory a transaction holds (its dirty pages) for million-order batches.
const CHUNK_ORDERS: usize = 20_000;

impl Store {
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
        self.create_batch_with(batch, orders, CHUNK_ORDERS, true, &Extras::default())
    }

    /// [`Store::create_batch_streamed`], with `events` in the audit trail, the batch's
    /// `bundles` (CCPayment batch withdrawals, batch mode) and `notices` (the batch waits for
    /// approval) in the same transaction as the batch record (the signer checked, deny-list
    /// hits).
    pub fn create_batch_audited<I>(
        &self,
        batch: &BatchRecord,
        orders: I,
        bundles: &[BundleRecord],
        events: &[ControlEvent],
        notices: &[Notice],
    ) -> Result<(), StoreError>
    where
        I: IntoIterator,
        I::Item: Borrow<OrderRecord>,
    {
        self.create_batch_retrying(batch, orders, bundles, events, &[], notices)
    }

    /// [`Store::create_batch_audited`], with the batch's `retries` (which of its orders retry
    /// which orders of earlier batches) in the same transaction as the batch record.
    pub fn create_batch_retrying<I>(
        &self,
        batch: &BatchRecord,
        orders: I,
        bundles: &[BundleRecord],
        events: &[ControlEvent],
        retries: &[RetryLink],
        notices: &[Notice],
    ) -> Result<(), StoreError>
    where
        I: IntoIterator,
        I::Item: Borrow<OrderRecord>,
    {
        if let Some(link) = retries.iter().find(|l| l.batch_id != batch.batch_id) {
            return Err(StoreError::Db(format!(
                "the retry of {} by {} belongs to batch {}, not {}",
                link.original_order_id, link.order_id, link.batch_id, batch.batch_id
            )));
        }
        let extras = Extras {
            bundles,
            events,
            retries,
            notices,
        };
        self.create_batch_with(batch, orders, CHUNK_ORDERS, true, &extras)
    }

    pub(super) fn create_batch_with<I>(
        &self,
        batch: &BatchRecord,
        orders: I,
        chunk_orders: usize,
        write_marker: bool,
        extras: &Extras<'_>,
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

        let written = self.write_batch(batch, orders.into_iter(), chunk_orders.max(1), write_marker, extras);
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
        extras: &Extras<'_>,
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
                                batch_id: owner.into_string(),
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
        self.insert_bundles(&tx, extras.bundles)?;
        self.insert_retries(&tx, extras.retries)?;
        let lines = self.control_lines(&tx, extras.events)?;
        let inserted = self.insert_notices(&tx, extras.notices)?;
        tx.commit().map_err(|e| self.db_err(e))?;
        self.lock_audit().append(self, &lines);
        self.notices_recorded(inserted);
        Ok(())
    }

    /// Writes `orders` of `batch` without the batch record, as a crash before the marker would
    /// leave them.
    #[cfg(test)]
    pub(super) fn create_batch_interrupted(
        &self,
        batch: &BatchRecord,
        orders: &[OrderRecord],
        chunk_orders: usize,
    ) -> Result<(), StoreError> {
        self.create_batch_with(batch, orders, chunk_orders, false, &Extras::default())
    }

    #[cfg(test)]
    pub(super) fn create_batch_chunked<I>(
        &self,
        batch: &BatchRecord,
        orders: I,
        chunk_orders: usize,
    ) -> Result<(), StoreError>
    where
        I: IntoIterator,
        I::Item: Borrow<OrderRecord>,
    {
        self.create_batch_with(batch, orders, chunk_orders, true, &Extras::default())
    }

    /// The batch ids that have orders but no batch record. Visits one key per batch: each step
    /// jumps past the current batch's last possible (batch_id, seq) key.
    pub(super) fn leftover_batches(&self) -> Result<Vec<String>, StoreError> {
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
    pub(super) fn remove_leftovers(&self, batch_id: &str) -> Result<u64, StoreError> {
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
        self.put_batch_audited(batch, &[])
    }

    /// [`Store::put_batch`], with `events` in the audit trail in the same transaction (an
    /// approval given).
    pub fn put_batch_audited(&self, batch: &BatchRecord, events: &[ControlEvent]) -> Result<(), StoreError> {
        self.put_batch_noticed(batch, events, &[])
    }

    /// [`Store::put_batch_audited`], with `notices` recorded in the outbox in the same
    /// transaction (a batch finished).
    pub fn put_batch_noticed(
        &self,
        batch: &BatchRecord,
        events: &[ControlEvent],
        notices: &[Notice],
    ) -> Result<(), StoreError> {
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
        let lines = self.control_lines(&tx, events)?;
        let inserted = self.insert_notices(&tx, notices)?;
        tx.commit().map_err(|e| self.db_err(e))?;
        self.lock_audit().append(self, &lines);
        self.notices_recorded(inserted);
        Ok(())
    }
}

/// What a batch's commit marker writes besides the batch record and its counters.
#[derive(Default)]
pub(super) struct Extras<'a> {
    /// Its CCPayment batch withdrawals (batch mode).
    bundles: &'a [BundleRecord],
    /// Audit lines of the controls (the signer checked, deny-list hits).
    events: &'a [ControlEvent],
    /// Which of its orders retry which orders of earlier batches.
    retries: &'a [RetryLink],
    /// Notices recorded with the batch (it waits for approval).
    notices: &'a [Notice],
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
