//! The shared model: what an order and a batch are, the states an order moves through and the
//! one function that moves it, and the withdrawal call it makes. Every layer above speaks these
//! types; this module imports only [`crate::rules`] and [`crate::util`], and does no I/O.
//!
//! - [`state`]: every order state and event, and the one transition function.
//! - [`record`]: the order and batch records the store keeps.
//! - [`bundle`]: a CCPayment batch withdrawal made of a batch's orders (`withdraw_mode = "batch"`).
//! - [`call`]: the withdrawal call an order stores and sends.
//! - [`ids`]: [`ids::OrderId`] and [`ids::BatchId`], ids as types of their own.
//! - [`known`]: the question "was this order_id seen before?", asked by validation, answered by
//!   the store.
//! - [`notice`]: notices to the people who must act (events, the outbox record, deliveries).
//! - [`recipient`]: the recipient registry's entries and the question "was this destination
//!   paid before, and is it this payee's?".
//! - [`history`]: earlier batches and their rows, for the diff to last time.
//! - [`retry`]: the order_id a retried row gets (`ORDER~r1`) and the link from an order to the
//!   order that retries it.

pub mod bundle;
pub mod call;
pub mod history;
pub mod ids;
pub mod known;
pub mod notice;
pub mod recipient;
pub mod record;
pub mod retry;
pub mod state;

use serde::{Deserialize, Serialize};

/// Which generation of CCPayment's API payouts go through. Stored in batch records as `"v2"`
/// or `"v1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiGeneration {
    /// The current API (HMAC-SHA256). The default.
    V2,
    /// The legacy API, for accounts that get 11013 on v2.
    V1,
}

impl ApiGeneration {
    /// `"v2"` or `"v1"`, as configured and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiGeneration::V2 => "v2",
            ApiGeneration::V1 => "v1",
        }
    }
}

impl std::fmt::Display for ApiGeneration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
