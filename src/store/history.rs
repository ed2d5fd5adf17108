//! Earlier batches for the diff to last time (`crate::model::history::BatchHistory`): the batch
//! list, a batch's orders in seq order (streamed: one decoded at a time), and the few orders at
//! given seqs that a diff names.

use super::codec::{BATCH_ORDERS, BATCHES, ORDERS};
use super::recipients::StoreKnown;
use super::{Store, StoreError};
use crate::model::history::BatchHistory;
use crate::model::record::{BatchRecord, OrderRecord};

impl Store {
    /// The orders of `batch_id` at `seqs`, in seq order, from one snapshot: a point lookup
    /// each, never a walk of the batch. A seq the batch does not have is left out; a batch
    /// without a record (leftovers) has none.
    pub fn orders_at(&self, batch_id: &str, seqs: &[u32]) -> Result<Vec<OrderRecord>, StoreError> {
        let tx = self.read()?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        if batches.get(batch_id).map_err(|e| self.db_err(e))?.is_none() {
            return Ok(Vec::new());
        }
        let batch_orders = tx.open_table(BATCH_ORDERS).map_err(|e| self.db_err(e))?;
        let orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
        let mut seqs = seqs.to_vec();
        seqs.sort_unstable();
        seqs.dedup();
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let Some(order_id) = batch_orders.get((batch_id, seq)).map_err(|e| self.db_err(e))? else {
                continue;
            };
            let order = self.load_order(&orders, order_id.value())?.ok_or_else(|| {
                self.corrupt(format!(
                    "batch {batch_id} lists order {:?}, which is missing",
                    order_id.value()
                ))
            })?;
            out.push(order);
        }
        Ok(out)
    }
}

fn reason(e: StoreError) -> String {
    format!("cannot read earlier batches: {e}")
}

impl BatchHistory for StoreKnown {
    fn batches(&self) -> Result<Vec<BatchRecord>, String> {
        self.0.batches().map_err(reason)
    }

    fn for_each_order(&self, batch_id: &str, f: &mut dyn FnMut(&OrderRecord)) -> Result<(), String> {
        self.0
            .for_each_batch_order(batch_id, &mut |order| {
                f(order);
                Ok(())
            })
            .map_err(reason)
    }

    fn orders_at(&self, batch_id: &str, seqs: &[u32]) -> Result<Vec<OrderRecord>, String> {
        self.0.orders_at(batch_id, seqs).map_err(reason)
    }
}
