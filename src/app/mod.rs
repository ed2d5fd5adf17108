//! Operations shared by the one-shot commands (`submit`, `status`, `approve`, …) and the daemon
//! (`run` and its control socket): building the engine from the config, taking a batch file
//! into the store, writing reports, and the operator's views and controls as text.
//!
//! Each operator control returns a [`Reply`] — the text to show and the exit code — so the same
//! words reach the operator whether the command ran against the store directly or through the
//! daemon's socket.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::api::Client;
use crate::api::pacing::backoff::{Backoff, Jitter};
use crate::api::pacing::gate::{DayClock, Gate, GateState, PersistedPause};
use crate::api::pacing::limiter::{Limiters, Quota};
use crate::batch::records;
use crate::batch::{preflight, render};
use crate::config::Config;
use crate::engine::control::{self, Approved, ControlError};
use crate::engine::outcome::RetryPolicy;
use crate::engine::runner::{Engine, EngineSettings, META_PAUSE};
use crate::model::record::{Approval, BatchRecord, OrderRecord};
use crate::model::state::StateKind;
use crate::report::{self, ReportPaths};
use crate::store::{Store, StoreError};
use crate::util::clock::SharedClock;

/// Meta key: explorer URL templates per chain, saved at submission so reports work offline.
pub const META_EXPLORERS: &str = "explorers";
/// Meta key: the client-side daily budget's (day, used) counter.
pub const META_BUDGET: &str = "daily_budget";
/// The simulated account of `--sandbox` runs, kept beside their state store.
pub const SANDBOX_STATE_FILE: &str = "sandbox-account.json";

/// What an operator command says, and the exit code it maps to (0, 1 or 2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    pub exit: u8,
    pub text: String,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            exit: 0,
            text: text.into(),
        }
    }
    pub fn refused(text: impl Into<String>) -> Reply {
        Reply {
            exit: 1,
            text: text.into(),
        }
    }
    pub fn error(text: impl Into<String>) -> Reply {
        Reply {
            exit: 2,
            text: text.into(),
        }
    }
}

/// The SHA-256 of a file, hex: a batch's identity.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let with_path = |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(with_path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(with_path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The engine for `config`: limiters, the pause gate restored from the store, retry and
/// tracking schedules. `sandbox` shortens the first status check to suit the simulator.
pub fn build_engine(
    config: &Config,
    store: &Arc<Store>,
    client: Client,
    clock: SharedClock,
    sandbox: bool,
) -> Result<Engine, StoreError> {
    let limits = &config.limits;
    // Every request (creates and reads) takes a permit of the shared quota; reads are capped
    // further by their own rate.
    let limiters = Arc::new(Limiters::new(
        Quota {
            per_second: limits.rate_per_second,
            burst: limits.burst,
        },
        Quota {
            per_second: limits.read_rate_per_second,
            burst: limits.burst,
        },
        limits.daily_request_budget,
        clock.clone(),
    ));
    if let Some((day, used)) = store.meta_get::<(i64, u64)>(META_BUDGET)? {
        limiters.restore_budget(day, used);
    }
    let pause: PersistedPause = store.meta_get(META_PAUSE)?.unwrap_or_default();
    let spacing = Duration::from_secs(1) / limits.rate_per_second.max(1);
    let seed = Jitter::from_entropy().next_unit().to_bits();
    let gate = Arc::new(Gate::new(GateState::new(pause, spacing), clock.clone(), seed));
    let first_check = if sandbox {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(limits.track_first_check_secs)
    };
    let settings = EngineSettings {
        concurrency: limits.concurrency as usize,
        retry: RetryPolicy {
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
            },
            max_attempts: limits.max_attempts,
        },
        track_first_delay: first_check,
        track_backoff: Backoff {
            base: first_check,
            cap: Duration::from_secs(limits.track_max_interval_secs),
        },
        reconcile_backoff: Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        },
        day: DayClock {
            reset_offset_ms: limits.daily_reset_offset_ms,
            day_length_ms: limits.day_length_ms,
        },
    };
    Ok(Engine::new(store.clone(), client, limiters, gate, clock, settings))
}

/// Persists the client-side daily budget counter, so a restart does not reset it.
pub fn save_budget(store: &Store, engine: &Engine) -> Result<(), StoreError> {
    if let Some(state) = engine.budget_state() {
        store.meta_put(META_BUDGET, &state)?;
    }
    Ok(())
}

/// Where reports go: `reports.dir`, else `<state dir>/reports`.
pub fn reports_dir(config: &Config, state_dir: &Path) -> PathBuf {
    config.reports.dir.clone().unwrap_or_else(|| state_dir.join("reports"))
}

/// Writes the batch's reports from the store into `dir`.
pub fn write_reports(dir: &Path, store: &Store, batch: &BatchRecord, now_ms: i64) -> anyhow::Result<ReportPaths> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create the reports folder {}: {e}", dir.display()))?;
    let explorers: BTreeMap<String, String> = store.meta_get(META_EXPLORERS)?.unwrap_or_default();
    let mut visit = |f: &mut dyn FnMut(&OrderRecord) -> std::io::Result<()>| -> std::io::Result<()> {
        store
            .for_each_batch_order(&batch.batch_id, &mut |order| {
                f(order).map_err(|e| StoreError::Db(e.to_string()))
            })
            .map_err(std::io::Error::other)
    };
    report::write_batch_reports(dir, batch, &mut visit, &explorers, now_ms)
        .map_err(|e| anyhow::anyhow!("cannot write the reports in {}: {e}", dir.display()))
}

/// What taking a batch file into the store came to.
#[derive(Debug)]
pub enum Ingested {
    /// The same contents were stored before: the batch resumes, nothing is paid twice.
    Known(BatchRecord),
    /// A new batch, stored with its plan; `plan` is the rendered check report.
    Created { batch: BatchRecord, plan: String },
    /// Not a batch at all (unreadable, not CSV/JSON, broken structure): nothing stored.
    NotABatch { message: String },
    /// Valid enough to plan, but blocked (file problems or policy blockers): nothing stored.
    Blocked { plan: String },
    /// No row is payable; the batch record (never stored) still yields reports.
    NothingPayable { batch: BatchRecord, plan: String },
}

/// Takes `file` into the store: recognises known contents by SHA-256, otherwise validates,
/// preflights and plans it and stores the batch with its orders (intent before any send).
/// An API failure during preflight is an error: the file can be tried again later.
pub async fn ingest(
    client: &Client,
    config: &Config,
    store: &Arc<Store>,
    file: &Path,
    now_ms: i64,
) -> anyhow::Result<Ingested> {
    let batch_id = file_sha256(file)?;
    if let Some(batch) = store.batch(&batch_id)? {
        return Ok(Ingested::Known(batch));
    }
    let prepared = match preflight::prepare(client, &config.preflight_settings(), file, store.known_orders()).await {
        Ok(p) => p,
        Err(preflight::CheckError::NotABatch(message)) => return Ok(Ingested::NotABatch { message }),
        Err(preflight::CheckError::Api(crate::api::CallError::Api(e))) => {
            let hint = e.hint().map(|h| format!("\n  check: {h}")).unwrap_or_default();
            anyhow::bail!("preflight failed: {e}{hint}");
        }
        Err(e) => return Err(e.into()),
    };
    let plan_text = render::check_report(&prepared.report);
    if !prepared.report.plan.blockers.is_empty() || prepared.validated.has_file_problem() {
        return Ok(Ingested::Blocked { plan: plan_text });
    }
    let explorers: BTreeMap<String, String> = prepared
        .chains
        .iter()
        .map(|c| (c.chain.clone(), c.base_url.clone()))
        .collect();
    let mut known: BTreeMap<String, String> = store.meta_get(META_EXPLORERS)?.unwrap_or_default();
    known.extend(explorers);
    store.meta_put(META_EXPLORERS, &known)?;
    let generation = config.api.generation;
    let batch = records::batch_record(&prepared, file, generation, now_ms);
    if batch.batch_id != batch_id {
        anyhow::bail!(
            "{} changed while it was being read; write batch files elsewhere and rename them into place",
            file.display()
        );
    }
    if batch.orders == 0 {
        return Ok(Ingested::NothingPayable { batch, plan: plan_text });
    }
    // The orders are built as the store writes them, chunk by chunk: a big batch is never
    // held as records.
    store.create_batch_streamed(&batch, records::orders(&prepared, generation, now_ms))?;
    Ok(Ingested::Created { batch, plan: plan_text })
}

/// One line per batch: name, state and counts.
pub fn batch_line(batch: &BatchRecord, counts: &BTreeMap<StateKind, u64>) -> String {
    let total: u64 = counts.values().sum();
    let done = StateKind::ALL
        .iter()
        .filter(|k| k.is_final())
        .map(|k| counts.get(k).copied().unwrap_or(0))
        .sum::<u64>();
    let count = |k| counts.get(&k).copied().unwrap_or(0);
    let waiting = if count(StateKind::AwaitingApproval) > 0 {
        "  AWAITING APPROVAL"
    } else {
        ""
    };
    format!(
        "{}  {:?}  {done}/{total} final  ({} success, {} failed, {} rejected; {} refused rows){waiting}",
        batch.name,
        batch.state,
        count(StateKind::Success),
        count(StateKind::Failed),
        count(StateKind::Rejected),
        batch.refused.len()
    )
}

/// The pause line(s) of `status`, empty when nothing is paused.
pub fn pause_text(pause: &PersistedPause, now_ms: i64) -> String {
    if pause.kill_switch {
        format!(
            "submission is PAUSED by an operator{}; `ccpayout resume` lifts it\n",
            pause.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        )
    } else if let Some(until) = pause.daily_until_ms.filter(|&t| t > now_ms) {
        format!(
            "submission is paused until {} (daily request limit)\n",
            crate::util::time::rfc3339_ms(until)
        )
    } else {
        String::new()
    }
}

/// `status [TARGET]`: every batch, one batch (name or id prefix) or one order (order_id).
pub fn status(store: &Store, where_: &str, target: Option<&str>, now_ms: i64) -> Result<Reply, StoreError> {
    use std::fmt::Write as _;
    let pause: PersistedPause = store.meta_get(META_PAUSE)?.unwrap_or_default();
    let mut out = pause_text(&pause, now_ms);
    let Some(target) = target else {
        let batches = store.batches()?;
        if batches.is_empty() {
            let _ = writeln!(out, "no batches in {where_}");
            return Ok(Reply::ok(out));
        }
        let totals = store.counts(None)?;
        let count = |k| totals.get(&k).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "orders: {} queued, {} deferred, {} in flight or unknown, {} submitted, {} awaiting approval, {} final",
            count(StateKind::Queued),
            count(StateKind::Deferred),
            count(StateKind::Submitting) + count(StateKind::Unknown),
            count(StateKind::Submitted),
            count(StateKind::AwaitingApproval),
            StateKind::ALL
                .iter()
                .filter(|k| k.is_final())
                .map(|k| count(*k))
                .sum::<u64>()
        );
        for batch in batches {
            let counts = store.counts(Some(&batch.batch_id))?;
            let _ = writeln!(out, "{}", batch_line(&batch, &counts));
        }
        return Ok(Reply::ok(out));
    };
    if let Some(batch) = store.find_batch(target)? {
        let counts = store.counts(Some(&batch.batch_id))?;
        let _ = writeln!(out, "{}", batch_line(&batch, &counts));
        let _ = writeln!(out, "  id:          {}", batch.batch_id);
        let _ = writeln!(
            out,
            "  source:      {} ({}, api {})",
            batch.source, batch.format, batch.api
        );
        let _ = writeln!(
            out,
            "  created:     {}",
            crate::util::time::rfc3339_ms(batch.created_ms)
        );
        let _ = writeln!(out, "  plan digest: {}", batch.plan_digest);
        match &batch.approval {
            Approval::NotNeeded => {
                let _ = writeln!(out, "  approval:    not needed");
            }
            Approval::Required { reasons } => {
                let _ = writeln!(out, "  approval:    REQUIRED ({})", reasons.join("; "));
                let _ = writeln!(
                    out,
                    "  approve with: ccpayout approve {} --digest {}",
                    batch.name, batch.plan_digest
                );
            }
            Approval::Approved { at_ms, .. } => {
                let _ = writeln!(
                    out,
                    "  approval:    approved at {}",
                    crate::util::time::rfc3339_ms(*at_ms)
                );
            }
        }
        for kind in StateKind::ALL {
            if let Some(n) = counts.get(&kind).filter(|n| **n > 0) {
                let _ = writeln!(out, "  {:<18} {n}", kind.as_str());
            }
        }
        if !batch.refused.is_empty() {
            let _ = writeln!(out, "  {:<18} {}", "refused (rows)", batch.refused.len());
        }
        return Ok(Reply::ok(out));
    }
    if let Some(order) = store.order(target)? {
        let _ = writeln!(
            out,
            "order {} (batch {}, line {})",
            order.order_id,
            &order.batch_id[..12.min(order.batch_id.len())],
            order.line
        );
        let _ = writeln!(
            out,
            "  state:     {}",
            serde_json::to_string(&order.state).unwrap_or_default()
        );
        let _ = writeln!(out, "  attempts:  {}", order.attempts);
        let _ = writeln!(
            out,
            "  amount:    {} {} on {} to {}",
            order.input.amount, order.input.coin, order.input.chain, order.input.recipient
        );
        if let Some(id) = &order.record_id {
            let _ = writeln!(out, "  record id: {id}");
        }
        if let Some(tx) = &order.tx_id {
            let _ = writeln!(out, "  tx id:     {tx}");
        }
        if let Some(error) = &order.error {
            let _ = writeln!(out, "  last error: {}", error.message);
        }
        return Ok(Reply::ok(out));
    }
    Ok(Reply::error(format!(
        "no batch or order matches {target:?} in {where_}"
    )))
}

/// Finds a batch by name or id prefix, or says none matches.
pub fn find_batch(store: &Store, where_: &str, target: &str) -> Result<Result<BatchRecord, Reply>, StoreError> {
    Ok(store
        .find_batch(target)?
        .ok_or_else(|| Reply::error(format!("no batch matches {target:?} in {where_}"))))
}

/// `approve BATCH --digest D`: releases exactly the approved plan. `next` says what happens
/// next (the daemon sends at once; without one, `submit` must be run again).
pub fn approve(
    store: &Store,
    batch: BatchRecord,
    digest: &str,
    now_ms: i64,
    next: &str,
) -> Result<Reply, ControlError> {
    match control::approve(store, batch.clone(), digest, now_ms) {
        Ok(Approved::Released(n)) => Ok(Reply::ok(format!(
            "approved batch {} (plan digest {}): {n} orders released; {next}\n",
            batch.name, batch.plan_digest
        ))),
        Ok(Approved::NotNeeded) => Ok(Reply::ok(format!("batch {} needs no approval\n", batch.name))),
        Ok(Approved::Already) => Ok(Reply::ok(format!("batch {} is already approved\n", batch.name))),
        Err(e @ ControlError::WrongDigest { .. }) => Ok(Reply::refused(format!("{e}\n"))),
        Err(e) => Err(e),
    }
}

/// `cancel BATCH`: cancels every order not sent yet.
pub fn cancel(store: &Store, batch: &BatchRecord, now_ms: i64) -> Result<Reply, ControlError> {
    let n = control::cancel(store, batch, now_ms)?;
    Ok(Reply::ok(format!(
        "cancelled {n} unsent orders of batch {}; orders already sent are followed to their end\n",
        batch.name
    )))
}

/// The words of `pause` / `resume`.
pub fn kill_switch_text(on: bool) -> &'static str {
    if on {
        "submission paused: nothing is sent until `ccpayout resume`\n"
    } else {
        "submission resumed\n"
    }
}
