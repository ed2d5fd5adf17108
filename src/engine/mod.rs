//! The exactly-once engine: order state machine, records, pacing, submission and tracking.
//!
//! - [`state`]: every order state and the one transition function (pure).
//! - [`record`]: the order and batch records the store keeps (pure data).
//! - [`backoff`]: capped exponential backoff with full jitter (pure).
//! - [`limiter`]: the governor quota every request shares, the extra cap on reads, and the daily
//!   budget.
//! - [`gate`]: the pause gate for 11004 backoff, 11009 daily pauses and the kill switch.
//! - [`outcome`]: what an answer to a send means for the order and the engine (pure).
//! - [`intake`]: records for a checked batch (pure).
//! - [`runner`]: the loop that sends, reconciles and tracks (I/O).
//! - [`control`]: approve, cancel and the kill switch, on the store.

pub mod control;
pub mod outcome;
pub mod runner;
