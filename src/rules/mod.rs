//! The rules a payout must meet, as pure functions over plain values: recipient formats,
//! amounts, and the operator's policy. They import only [`crate::util`].
//!
//! - [`address`]: recipient format rules per chain family (EVM, TRON, XRP, Bitcoin, Solana) and
//!   Cwallet IDs and e-mails.
//! - [`amount`]: exact amounts from strings by a strict grammar, and their canonical form.
//! - [`policy`]: allow-lists, limits per order, batch and day, and the approval rule.

pub mod address;
pub mod amount;
pub mod policy;
