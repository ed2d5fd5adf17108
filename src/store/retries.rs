//! Retries (`crate::model::retry`): which order of a later batch retries which order of an
//! earlier one. A batch's links are written in the transaction of its commit marker (so a retry
//! batch and its links exist together, or neither), and never change afterwards. Both reports
//! read them: the retry batch's names its origin, the original's names its retries; validation
//! asks them so that one order is retried by one order.

use redb::{ReadTransaction, TableDefinition, WriteTransaction};

use super::codec::{BATCHES, ORDERS, decode_head};
use super::{Store, StoreError};
use crate::model::ids::{BatchId, OrderId};
use crate::model::known::RetriedOrder;
use crate::model::retry::RetryLink;

/// (original batch id, original order_id, retrying order_id) → the retrying order's batch id.
/// Keyed by the original's batch first, so one batch's retries are one range.
pub(super) const RETRIES: TableDefinition<(&str, &str, &str), &str> = TableDefinition::new("retries");

impl Store {
    /// Writes a new batch's retry links inside the transaction of its commit marker.
    pub(super) fn insert_retries(&self, tx: &WriteTransaction, links: &[RetryLink]) -> Result<(), StoreError> {
        if links.is_empty() {
            return Ok(());
        }
        let mut table = tx.open_table(RETRIES).map_err(|e| self.db_err(e))?;
        for link in links {
            table
                .insert(
                    (
                        link.original_batch_id.as_str(),
                        link.original_order_id.as_str(),
                        link.order_id.as_str(),
                    ),
                    link.batch_id.as_str(),
                )
                .map_err(|e| self.db_err(e))?;
        }
        Ok(())
    }

    /// The orders of later batches that retry orders of `batch_id`, by original order_id.
    pub fn retries_of_batch(&self, batch_id: &str) -> Result<Vec<RetryLink>, StoreError> {
        let tx = self.read()?;
        self.retries_in(&tx, batch_id, None)
    }

    /// The orders that retry `order_id` of `batch_id`.
    pub fn retries_of_order(&self, batch_id: &str, order_id: &str) -> Result<Vec<RetryLink>, StoreError> {
        let tx = self.read()?;
        self.retries_in(&tx, batch_id, Some(order_id))
    }

    fn retries_in(
        &self,
        tx: &ReadTransaction,
        batch_id: &str,
        order_id: Option<&str>,
    ) -> Result<Vec<RetryLink>, StoreError> {
        let table = tx.open_table(RETRIES).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        let start = (batch_id, order_id.unwrap_or(""), "");
        for entry in table.range(start..).map_err(|e| self.db_err(e))? {
            let (key, retry_batch) = entry.map_err(|e| self.db_err(e))?;
            let (original_batch, original_order, order) = key.value();
            if original_batch != batch_id || order_id.is_some_and(|o| o != original_order) {
                break;
            }
            out.push(RetryLink {
                original_batch_id: BatchId::from(original_batch),
                original_order_id: OrderId::from(original_order),
                batch_id: BatchId::from(retry_batch.value()),
                order_id: OrderId::from(order),
            });
        }
        Ok(out)
    }

    /// What validation asks about a retry row's `original_order_id`: the order's batch and
    /// state, and the orders that retry it already. `None` when no visible batch has it.
    pub(super) fn original_order(&self, order_id: &str) -> Result<Option<RetriedOrder>, StoreError> {
        let tx = self.read()?;
        let orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
        let batches = tx.open_table(BATCHES).map_err(|e| self.db_err(e))?;
        let Some(bytes) = orders.get(order_id).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        let head = decode_head(bytes.value())
            .map_err(|e| self.corrupt(format!("order {order_id:?} does not read back: {e}")))?;
        if batches
            .get(head.batch_id.as_str())
            .map_err(|e| self.db_err(e))?
            .is_none()
        {
            return Ok(None); // a batch still being created
        }
        let retried_as = self
            .retries_in(&tx, &head.batch_id, Some(order_id))?
            .into_iter()
            .map(|l| l.order_id.into_string())
            .collect();
        Ok(Some(RetriedOrder {
            state: Some(head.kind()),
            batch: head.batch_id.into_string(),
            retried_as,
        }))
    }
}

/// [`Store::original_order`] for the `KnownOrders` trait, which cannot report an error: an
/// unreadable store answers with an order of unknown state, which validation refuses (answering
/// "unknown order" could let a second retry of a paid order through).
pub(super) fn lookup_original(store: &Store, order_id: &str) -> Option<RetriedOrder> {
    store.original_order(order_id).unwrap_or_else(|e| {
        tracing::error!(order_id, error = %e, "cannot look up a retried order in the state store");
        Some(RetriedOrder {
            batch: format!("(unreadable state store: {e})"),
            state: None,
            retried_as: Vec::new(),
        })
    })
}
