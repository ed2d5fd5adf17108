//! ccpayout pays batches of people in crypto through the CCPayment merchant API, exactly once
//! each, and proves it with reports.
//!
//! The pieces, one sentence each:
//!
//! - [`address`]: recipient format rules per chain family (EVM, TRON, XRP, Bitcoin, Solana) and
//!   Cwallet IDs and e-mails; pure.
//! - [`clock`]: wall-clock time behind a trait, so everything time-dependent runs on virtual time
//!   in tests.
//! - [`amount`]: exact amounts from strings by a strict grammar, and their canonical form.
//! - [`catalogue`]: the coins, networks and chains CCPayment offers, indexed for validation.
//! - [`policy`]: allow-lists, limits per order, batch and day, and the approval rule.
//! - [`batch`]: batch files: parsing, validation, preflight and the plan of `ccpayout check`.
//! - [`api`]: the CCPayment client: signing, typed v2 and v1 calls, and the classification of
//!   every error code and transport failure into what the engine does about it.
//! - [`report`]: per-batch result CSV and JSON and a summary of exact totals, written atomically.
//! - [`sandbox`]: a faithful simulator of the CCPayment API (signatures, catalogue, balances,
//!   orderId uniqueness, settlement, rate limits, daily caps, seeded faults, webhooks) used by the
//!   tests, by newcomers, and by `--sandbox` mode.
//! - [`store`]: batches, orders, their state index and the audit trail, durable in one redb file.
//! - [`inbox`]: inbox folders: batch-file candidates, atomic claims, archives (for the daemon).
//! - [`ops`]: operations shared by the one-shot commands and the daemon: building the engine,
//!   taking a file into the store, reports, and the operator's views and controls as text.
//! - [`daemon`]: `ccpayout run`: inbox watching, batch tasks, the control socket, lifecycle.
//! - [`jobs`]: scheduled jobs: job files, cron schedules in IANA zones, catch-up, firing.
//! - [`webhook`]: the optional webhook listener: verified hints for the engine.
//! - [`metrics`]: Prometheus text for the daemon's loopback metrics endpoint.
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
pub mod daemon;
pub mod engine;
pub mod inbox;
pub mod jobs;
pub mod metrics;
pub mod ops;
pub mod policy;
pub mod report;
pub mod sandbox;
pub mod store;
pub mod webhook;
