//! The rules a payout must meet, as pure functions over plain values: recipient formats,
//! amounts, and the operator's policy. They import only [`crate::util`].
//!
//! - [`address`]: recipient format rules per chain family (EVM, TRON, XRP, Bitcoin, Solana) and
//!   Cwallet IDs and e-mails.
//! - [`amount`]: exact amounts from strings by a strict grammar, and their canonical form.
//! - [`deny`]: deny lists of addresses never paid, and the case rule addresses compare by.
//! - [`policy`]: allow-lists, limits per order, batch and day, the approval rules (quorum,
//!   tiers, maker and checker) and what happens to new or changed recipients.

pub mod address;
pub mod amount;
pub mod deny;
pub mod policy;
pub mod signature;
