//! ccpayout pays batches of people in crypto through the CCPayment merchant API, exactly once
//! each, and proves it with reports.
//!
//! The pieces, one sentence each:
//!
//! - [`address`]: recipient format rules per chain family (EVM, TRON, XRP, Bitcoin, Solana) and
//!   Cwallet IDs and e-mails; pure.
//! - [`clock`]: wall-clock time behind a trait, so everything time-dependent runs on virtual time
//!   in tests.
//! - [`api`]: the CCPayment client: signing, typed v2 and v1 calls, and the classification of
//!   every error code and transport failure into what the engine does about it.
//! - [`sandbox`]: a faithful simulator of the CCPayment API (signatures, catalogue, balances,
//!   orderId uniqueness, settlement, rate limits, daily caps, seeded faults, webhooks) used by the
//!   tests, by newcomers, and by `--sandbox` mode.
//! - [`config`]: the TOML configuration and the environment overrides, with the app secret held
//!   in a secret type.
//! - [`cli`]: the `ccpayout` command line; `main.rs` only calls it.

pub mod address;
pub mod amount;
pub mod api;
pub mod batch;
pub mod catalogue;
pub mod cli;
pub mod clock;
pub mod config;
pub mod policy;
pub mod sandbox;
