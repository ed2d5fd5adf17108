//! The exactly-once engine: order state machine, records, pacing, submission and tracking.
//!
//! - [`state`]: every order state and the one transition function (pure).
//! - [`record`]: the order and batch records the store keeps (pure data).

pub mod record;
pub mod state;
