//! Orders seen in earlier batches: what validation asks to tell a duplicate from a conflict,
//! and what the store answers. The trait lives here, below both, so that `batch` never imports
//! `store` and `store` never imports `batch`.
//!
//! It also answers what validation asks about a retry row (one naming the order it retries in
//! `original_order_id`): where that order ended, and whether another order retries it already.

use super::state::StateKind;

/// An order_id seen in an earlier batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownOrder {
    /// The batch it was first seen in.
    pub batch: String,
    /// The payload digest of the row there (see `batch::validate::payload_digest`).
    pub payload_digest: [u8; 32],
}

/// An order of an earlier batch that a row says it retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetriedOrder {
    /// Its batch.
    pub batch: String,
    /// Its state now; `None` when the store could not say (the row is then refused rather than
    /// risk paying an order twice).
    pub state: Option<StateKind>,
    /// The orders of later batches that retry it already.
    pub retried_as: Vec<String>,
}

/// Looks up order_ids from earlier batches.
pub trait KnownOrders {
    fn lookup(&self, order_id: &str) -> Option<KnownOrder>;

    /// The order `order_id` of an earlier batch, as a retry row's `original_order_id` names
    /// it; `None` when no earlier batch has it. Without a store nothing is known.
    fn original(&self, _order_id: &str) -> Option<RetriedOrder> {
        None
    }
}

/// A store that knows no orders: for `check` without a state directory, and for tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoKnownOrders;

impl KnownOrders for NoKnownOrders {
    fn lookup(&self, _order_id: &str) -> Option<KnownOrder> {
        None
    }
}
