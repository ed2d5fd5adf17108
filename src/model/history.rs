//! Earlier batches as the diff to last time reads them (`batch::diff`): which batches the store
//! holds, and the rows of one of them. The trait lives here, below both, so that `batch` never
//! imports `store` (as with [`super::known::KnownOrders`]); the store implements it and the
//! preflight receives it as part of [`super::recipient::Known`].
//!
//! Errors are the reason in words ("no state directory", "cannot read the store: …"): the diff is
//! information for the approver, so a history that cannot be read leaves it out and says why,
//! and never stops a check. Pure data.

use super::record::{BatchRecord, OrderRecord};

/// The batches of earlier runs and their rows.
pub trait BatchHistory {
    /// Every stored batch, newest first.
    fn batches(&self) -> Result<Vec<BatchRecord>, String>;

    /// Visits the orders of `batch_id` in seq order (each order keeps its row as the file gave
    /// it in `input`, and its `seq` and `line`).
    fn for_each_order(&self, batch_id: &str, f: &mut dyn FnMut(&OrderRecord)) -> Result<(), String>;

    /// The orders of `batch_id` at `seqs` (the rows a diff names), in seq order; a seq the
    /// batch does not have is left out.
    fn orders_at(&self, batch_id: &str, seqs: &[u32]) -> Result<Vec<OrderRecord>, String>;
}

/// No history to read, and why: `check` without a state directory, or with one it cannot open
/// (a running daemon holds it). Knows no orders and no recipients either.
#[derive(Debug, Clone)]
pub struct NoHistory(pub String);

impl BatchHistory for NoHistory {
    fn batches(&self) -> Result<Vec<BatchRecord>, String> {
        Err(self.0.clone())
    }

    fn for_each_order(&self, _batch_id: &str, _f: &mut dyn FnMut(&OrderRecord)) -> Result<(), String> {
        Err(self.0.clone())
    }

    fn orders_at(&self, _batch_id: &str, _seqs: &[u32]) -> Result<Vec<OrderRecord>, String> {
        Err(self.0.clone())
    }
}

impl super::known::KnownOrders for NoHistory {
    fn lookup(&self, _order_id: &str) -> Option<super::known::KnownOrder> {
        None
    }
}

impl super::recipient::KnownRecipients for NoHistory {
    fn destination(&self, _key: &str) -> Option<super::recipient::RecipientEntry> {
        None
    }

    fn payee(&self, _payee: &str) -> Option<super::recipient::PayeeEntry> {
        None
    }
}

impl BatchHistory for super::known::NoKnownOrders {
    fn batches(&self) -> Result<Vec<BatchRecord>, String> {
        Err("no state directory to read earlier batches from".to_owned())
    }

    fn for_each_order(&self, _batch_id: &str, _f: &mut dyn FnMut(&OrderRecord)) -> Result<(), String> {
        Ok(())
    }

    fn orders_at(&self, _batch_id: &str, _seqs: &[u32]) -> Result<Vec<OrderRecord>, String> {
        Ok(Vec::new())
    }
}
