//! ccpayout pays batches of people in crypto through the CCPayment merchant API, exactly once
//! each, and proves it with reports.
//!
//! The pieces, one sentence each, from the bottom layer up (a module imports only from the
//! layers below its own; `ARCHITECTURE.md` states the rules and a test keeps them):
//!
//! - [`util`]: clocks, RFC 3339 time on chrono, atomic file writes, address checks.
//! - [`rules`]: recipient formats, exact amounts and the operator's policy, as pure functions.
//! - [`model`]: order and batch records, order states and the one transition function, the
//!   withdrawal call.
//! - [`api`]: the CCPayment client (signing, typed v2 and v1 calls, error classes), the
//!   [`api::Payouts`] trait the engine talks to, and the one pacing every request passes.
//! - [`batch`]: batch files: parsing, validation, the catalogue, preflight and the plan.
//! - [`report`]: per-batch result CSV and JSON and a summary of exact totals.
//! - [`store`]: batches, orders, their state index and the audit trail, durable in one redb file.
//! - [`engine`]: the exactly-once loop: reconcile, send, track; it owns the order and batch
//!   lifecycle.
//! - [`config`]: the TOML configuration and the environment overrides, with the app secret held
//!   in a secret type.
//! - [`inbox`]: inbox folders: batch-file candidates, atomic claims, archives.
//! - [`jobs`]: scheduled jobs: job files, cron schedules in IANA zones, catch-up, firing.
//! - [`notify`]: notices to the people who must act: the outbox's deliveries sent as JSON or
//!   Slack bodies, retried until acknowledged.
//! - [`app`]: what both faces share: wiring, taking a file in, paying a batch, and the one
//!   operator (status, approve, cancel, pause, resume, report).
//! - [`daemon`]: `ccpayout run`: inbox watching, batch tasks, the control socket, webhooks,
//!   metrics, lifecycle.
//! - [`cli`]: the `ccpayout` command line; `main.rs` only calls it.
//! - [`sandbox`]: a faithful simulator of the CCPayment API (signatures, catalogue, balances,
//!   orderId uniqueness, settlement, rate limits, daily caps, seeded faults, webhooks), served
//!   over HTTP or driven in process; used by the tests, newcomers, `--sandbox` and benchmarks.
//! - [`sim`]: the deterministic simulation: the engine against the sandbox's world in process,
//!   on virtual time, with seeded faults and crashes, and the invariants checked after each run.

pub mod api;
pub mod app;
pub mod batch;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod engine;
pub mod inbox;
pub mod jobs;
pub mod model;
pub mod notify;
pub mod report;
pub mod rules;
pub mod sandbox;
pub mod sim;
pub mod store;
pub mod util;
