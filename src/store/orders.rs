//! Reading orders: one by id, a batch's in seq order, a list of ids, the state-index queries the
//! engine schedules by (what is due, when the next is due) and the per-batch counters; and the
//! cross-batch order_id lookup that validation uses.

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::{ReadTransaction, ReadableTable};

use super::codec::{
    BATCH_ORDERS, BATCHES, BY_STATE, COUNTS, ORDERS, OrderIdentity, decode_identity, split_state_key, state_range,
};
use super::{Store, StoreError};
use crate::model::known::KnownOrder;
use crate::model::record::OrderRecord;
use crate::model::state::StateKind;

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

impl Store {
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
            .map(|order_id| self.indexed_order(&orders, order_id))
            .collect()
    }

    /// The order the state index names: missing, the store is damaged.
    fn indexed_order(
        &self,
        orders: &impl ReadableTable<&'static str, &'static [u8]>,
        order_id: &str,
    ) -> Result<OrderRecord, StoreError> {
        self.load_order(orders, order_id)?
            .ok_or_else(|| self.corrupt(format!("the state index names order {order_id:?}, which is missing")))
    }

    /// Visits every order in `kind` (optionally of one batch) in the state index's order,
    /// without collecting them: for sums over batches of a million orders. One snapshot; `f`'s
    /// first error stops the walk and is returned.
    pub fn for_each_order_in_state(
        &self,
        kind: StateKind,
        batch_id: Option<&str>,
        f: &mut dyn FnMut(&OrderRecord) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let tx = self.read()?;
        let orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
        let mut failed = None;
        self.walk_index(&tx, kind, batch_id, None, &mut |_, order_id| {
            let step = self.indexed_order(&orders, order_id).and_then(|order| f(&order));
            match step {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        failed.map_or(Ok(()), Err)
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

    /// Cross-batch duplicate lookups for validation, and the recipient registry.
    pub fn known_orders(self: &Arc<Self>) -> Arc<dyn crate::model::recipient::Known + Send + Sync> {
        self.known()
    }
}

/// An order_id from an earlier batch, for validation.
pub(super) fn lookup_known(store: &Store, order_id: &str) -> Option<KnownOrder> {
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
    match store.order_identity(order_id) {
        Ok(None) => None,
        Ok(Some(order)) => {
            let mut digest = [0u8; 32];
            match hex::decode_to_slice(&order.payload_digest, &mut digest) {
                Ok(()) => Some(KnownOrder {
                    batch: order.batch_id.into_string(),
                    payload_digest: digest,
                }),
                Err(e) => fail_safe(format!("order {order_id:?} has a malformed payload digest: {e}")),
            }
        }
        Err(e) => fail_safe(e.to_string()),
    }
}
