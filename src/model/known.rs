//! Orders seen in earlier batches: what validation asks to tell a duplicate from a conflict,
//! and what the store answers. The trait lives here, below both, so that `batch` never imports
//! `store` and `store` never imports `batch`.

/// An order_id seen in an earlier batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownOrder {
    /// The batch it was first seen in.
    pub batch: String,
    /// The payload digest of the row there (see `batch::validate::payload_digest`).
    pub payload_digest: [u8; 32],
}

/// Looks up order_ids from earlier batches.
pub trait KnownOrders {
    fn lookup(&self, order_id: &str) -> Option<KnownOrder>;
}

/// A store that knows no orders: for `check` without a state directory, and for tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoKnownOrders;

impl KnownOrders for NoKnownOrders {
    fn lookup(&self, _order_id: &str) -> Option<KnownOrder> {
        None
    }
}
