//! The recipient registry (`crate::model::recipient`): every destination a payout succeeded to,
//! and each payee's last destination. An order's success updates it in the same transaction as
//! the order's state ([`Store::commit`]), so the registry never misses a payout and never holds
//! one that did not happen. A store written before the registry existed gets it filled from its
//! successful orders when it is first opened ([`Store::migrate_registry`]).

use std::sync::Arc;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::codec::{BY_STATE, ORDERS, decode_order, state_range};
use super::{Store, StoreError, encode_error};
use crate::model::known::{KnownOrder, KnownOrders, RetriedOrder};
use crate::model::recipient::{Destination, Known, KnownRecipients, PayeeEntry, RecipientEntry};
use crate::model::record::OrderRecord;
use crate::model::state::StateKind;

/// Destination key ([`Destination::key`]) → versioned [`RecipientEntry`] JSON.
pub(super) const RECIPIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("recipients");
/// Payee id → versioned [`PayeeEntry`] JSON.
pub(super) const PAYEES: TableDefinition<&str, &[u8]> = TableDefinition::new("payees");

#[derive(Deserialize)]
#[serde(tag = "v")]
enum Stored<T> {
    #[serde(rename = "1")]
    V1(T),
}

#[derive(Serialize)]
#[serde(tag = "v")]
enum StoredRef<'a, T> {
    #[serde(rename = "1")]
    V1(&'a T),
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&StoredRef::V1(value)).map_err(encode_error)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice::<Stored<T>>(bytes).map(|Stored::V1(v)| v)
}

/// The destination an order pays.
pub fn destination_of(order: &OrderRecord) -> Destination {
    Destination::new(&order.input.chain, &order.input.recipient, &order.input.memo)
}

impl Store {
    /// Adds a successful payout to the registry inside `tx`.
    pub(super) fn record_payout(&self, tx: &WriteTransaction, order: &OrderRecord) -> Result<(), StoreError> {
        let at_ms = order.final_ms.unwrap_or(order.updated_ms);
        let destination = destination_of(order);
        let key = destination.key();
        let payee = order.input.payee.trim();
        let mut recipients = tx.open_table(RECIPIENTS).map_err(|e| self.db_err(e))?;
        let existing = match recipients.get(key.as_str()).map_err(|e| self.db_err(e))? {
            Some(bytes) => Some(
                decode::<RecipientEntry>(bytes.value())
                    .map_err(|e| self.corrupt(format!("registry entry {key:?} does not read back: {e}")))?,
            ),
            None => None,
        };
        let mut entry = existing.unwrap_or_else(|| RecipientEntry {
            destination: destination.clone(),
            first_paid_ms: at_ms,
            last_paid_ms: at_ms,
            payouts: 0,
            last_order_id: String::new(),
            payees: Vec::new(),
        });
        entry.payouts += 1;
        entry.first_paid_ms = entry.first_paid_ms.min(at_ms);
        if at_ms >= entry.last_paid_ms {
            entry.last_paid_ms = at_ms;
            entry.last_order_id = order.order_id.as_str().to_owned();
        }
        if !payee.is_empty() && !entry.payees.iter().any(|p| p == payee) {
            entry.payees.push(payee.to_owned());
        }
        recipients
            .insert(key.as_str(), encode(&entry)?.as_slice())
            .map_err(|e| self.db_err(e))?;
        if payee.is_empty() {
            return Ok(());
        }
        let mut payees = tx.open_table(PAYEES).map_err(|e| self.db_err(e))?;
        let existing = match payees.get(payee).map_err(|e| self.db_err(e))? {
            Some(bytes) => Some(
                decode::<PayeeEntry>(bytes.value())
                    .map_err(|e| self.corrupt(format!("payee {payee:?} does not read back: {e}")))?,
            ),
            None => None,
        };
        let entry = match existing {
            None => PayeeEntry {
                payee: payee.to_owned(),
                destination,
                since_ms: at_ms,
                last_paid_ms: at_ms,
                previous: Vec::new(),
            },
            Some(mut entry) if entry.destination.key() == key => {
                entry.last_paid_ms = entry.last_paid_ms.max(at_ms);
                entry
            }
            // A payout to another destination, older than the one on record (orders of one
            // batch finish in any order): history only.
            Some(mut entry) if at_ms < entry.since_ms => {
                if !entry.previous.iter().any(|d| d.key() == key) {
                    entry.previous.push(destination);
                }
                entry
            }
            Some(mut entry) => {
                let old = std::mem::replace(&mut entry.destination, destination);
                entry.previous.retain(|d| d.key() != key);
                entry.previous.push(old);
                entry.since_ms = at_ms;
                entry.last_paid_ms = at_ms;
                entry
            }
        };
        payees
            .insert(payee, encode(&entry)?.as_slice())
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Every destination in the registry, by key.
    pub fn recipients(&self) -> Result<Vec<RecipientEntry>, StoreError> {
        self.read_all(RECIPIENTS)
    }

    /// Every payee in the registry, by id.
    pub fn payees(&self) -> Result<Vec<PayeeEntry>, StoreError> {
        self.read_all(PAYEES)
    }

    fn read_all<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(table).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.db_err(e))? {
            let (key, value) = item.map_err(|e| self.db_err(e))?;
            out.push(
                decode(value.value())
                    .map_err(|e| self.corrupt(format!("registry entry {:?} does not read back: {e}", key.value())))?,
            );
        }
        Ok(out)
    }

    fn read_one<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.read()?;
        let table = tx.open_table(table).map_err(|e| self.db_err(e))?;
        match table.get(key).map_err(|e| self.db_err(e))? {
            Some(bytes) => Ok(Some(decode(bytes.value()).map_err(|e| {
                self.corrupt(format!("registry entry {key:?} does not read back: {e}"))
            })?)),
            None => Ok(None),
        }
    }

    /// Fills the registry from the successful orders of a store written before it existed
    /// (once: an empty registry beside successful orders).
    pub(super) fn migrate_registry(&self) -> Result<(), StoreError> {
        let tx = self.write(redb::Durability::Immediate)?;
        let filled = {
            let recipients = tx.open_table(RECIPIENTS).map_err(|e| self.db_err(e))?;
            recipients.first().map_err(|e| self.db_err(e))?.is_some()
        };
        if filled {
            return Ok(());
        }
        let mut successes = Vec::new();
        {
            let by_state = tx.open_table(BY_STATE).map_err(|e| self.db_err(e))?;
            let orders = tx.open_table(ORDERS).map_err(|e| self.db_err(e))?;
            let (start, end) = state_range(StateKind::Success, None);
            for item in by_state
                .range(start.as_slice()..end.as_slice())
                .map_err(|e| self.db_err(e))?
            {
                let (key, _) = item.map_err(|e| self.db_err(e))?;
                let Some((_, order_id)) = super::codec::split_state_key(key.value()) else {
                    continue;
                };
                if let Some(bytes) = orders.get(order_id).map_err(|e| self.db_err(e))? {
                    successes.push(
                        decode_order(bytes.value())
                            .map_err(|e| self.corrupt(format!("order {order_id:?} does not read back: {e}")))?,
                    );
                }
            }
        }
        if successes.is_empty() {
            return Ok(());
        }
        successes.sort_by_key(|o| o.final_ms.unwrap_or(o.updated_ms));
        for order in &successes {
            self.record_payout(&tx, order)?;
        }
        tx.commit().map_err(|e| self.db_err(e))?;
        tracing::info!(
            payouts = successes.len(),
            "recipient registry filled from the payouts of an earlier release"
        );
        Ok(())
    }

    /// What validation and the plan ask of earlier batches: order_ids and the registry.
    pub fn known(self: &Arc<Self>) -> Arc<dyn Known + Send + Sync> {
        Arc::new(StoreKnown(Arc::clone(self)))
    }
}

/// [`Known`] over the store (its batch history is in `history.rs`).
pub(super) struct StoreKnown(pub(super) Arc<Store>);

impl KnownOrders for StoreKnown {
    fn lookup(&self, order_id: &str) -> Option<KnownOrder> {
        super::orders::lookup_known(&self.0, order_id)
    }

    fn original(&self, order_id: &str) -> Option<RetriedOrder> {
        super::retries::lookup_original(&self.0, order_id)
    }
}

impl KnownRecipients for StoreKnown {
    fn destination(&self, key: &str) -> Option<RecipientEntry> {
        // An unreadable registry answers "not known": the row is held for review when the
        // policy holds new destinations, and its address is checked with CCPayment, which is
        // the side that costs nothing; the error is logged.
        self.0.read_one(RECIPIENTS, key).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the recipient registry");
            None
        })
    }

    fn payee(&self, payee: &str) -> Option<PayeeEntry> {
        self.0.read_one(PAYEES, payee).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the recipient registry");
            None
        })
    }
}
