//! What the two faces (the one-shot CLI and the daemon) share, so each is written once:
//!
//! - [`wiring`]: the one pacing, the client through it and the engine over the store, from the
//!   configuration and what the store kept.
//! - [`ingest`](mod@ingest): taking a batch file in (known contents by SHA-256, or check and store it), with
//!   an [`IngestError`] per decision the caller makes.
//! - [`pay`](mod@pay): paying one stored batch and writing its reports.
//! - [`reports`]: a batch's reports from the store.
//! - [`doctor`]: the read-only probe of the account (`ccpayout doctor`) and what it learns.
//! - [`operator`]: the one operator (status, approve, cancel, pause, resume, report, retry), on the
//!   store directly or inside a running daemon.
//! - [`recipients`]: the recipient registry as a table, CSV or JSON (`ccpayout recipients`).
//! - [`retry`](mod@retry): a finished batch's failed and rejected rows as a retry file of new
//!   orders (`ccpayout retry`), the answer the one operator gives and the file its caller writes.

pub mod doctor;
pub mod ingest;
pub mod operator;
pub mod pay;
pub mod recipients;
pub mod reports;
pub mod retry;
pub mod wiring;

pub use ingest::{IngestError, Ingested, file_sha256, ingest};
pub use operator::{Offline, Operator, Reply, Request, Runtime, Verdict};
pub use pay::{Paid, PayError, Reconcile, Reports, pay};
pub use reports::{ReportError, write_reports};
pub use wiring::{SANDBOX_STATE_FILE, Wired, reports_dir, wire};
