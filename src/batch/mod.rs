//! Batch files: parsing, validation and the plan.
//!
//! - [`catalogue`]: the coins, networks and chains CCPayment offers, indexed for validation (pure).
//! - [`parse`]: CSV, JSON and JSON Lines readers that hand over rows one at a time (pure).
//! - [`validate`]: local rules per row, duplicates, compact rows (pure).
//! - [`diff`]: the diff to the previous batch of the series (pure).
//! - [`plan`]: fees, totals, balances, policy, verdicts and the plan digest (pure).
//! - [`preflight`]: the API questions a check asks, and the `check` orchestration (I/O).
//! - [`preflight_v1`]: the same questions for a v1 account, asked only of the v1 API (I/O).
//! - [`render`]: the plan as text (pure).
//! - [`request`]: the withdrawal call a validated row becomes (pure).
//! - [`records`]: the order and batch records of a checked batch (pure).
//! - [`retry`]: a batch's failed and rejected rows written back as a batch file in its format,
//!   for `ccpayout retry` (pure).

pub mod bundles;
pub mod catalogue;
pub mod diff;
pub mod parse;
pub mod plan;
pub mod preflight;
pub mod preflight_v1;
pub mod records;
pub mod render;
pub mod request;
pub mod retry;
pub mod validate;
