//! `submit`, `status` and `report`: the CLI face of the engine and the store.
//!
//! `submit FILE` is the whole job in the foreground: check the file (or recognise it by its
//! SHA-256 and resume), store the plan, reconcile, send, track, write the reports, and map the
//! result to the exit code. Ctrl-C (or SIGTERM) stops new sends; the requests in flight finish
//! and are recorded, and running the same command again resumes without paying twice.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{CliError, Outcome, api_client, shutdown_signal};
use crate::batch::{preflight, render};
use crate::clock::{self, SharedClock};
use crate::config::Config;
use crate::engine::backoff::{Backoff, Jitter};
use crate::engine::gate::{DayClock, Gate, GateState, PersistedPause};
use crate::engine::intake;
use crate::engine::limiter::{Limiters, Quota};
use crate::engine::outcome::RetryPolicy;
use crate::engine::record::{Approval, BatchRecord, BatchState, OrderRecord};
use crate::engine::runner::{Engine, EngineSettings, META_PAUSE, Progress, RunEnd};
use crate::engine::state::StateKind;
use crate::report::{self, ReportPaths};
use crate::store::{Store, StoreError};

/// Meta key: explorer URL templates per chain, saved at submission so reports work offline.
const META_EXPLORERS: &str = "explorers";
/// The simulated account of `--sandbox` runs, kept beside their state store.
const SANDBOX_STATE_FILE: &str = "sandbox-account.json";
/// Meta key: the client-side daily budget's (day, used) counter.
const META_BUDGET: &str = "daily_budget";

/// Where the state lives when no `--state-dir` is given: `$STATE_DIRECTORY` under systemd,
/// else `$XDG_STATE_HOME/ccpayout`, else `~/.local/state/ccpayout`. Sandbox runs keep their own
/// folder below it, so simulated orders never mix with real ones.
pub fn default_state_dir(sandbox: bool) -> Result<PathBuf, CliError> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = env("STATE_DIRECTORY")
        .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("ccpayout")))
        .or_else(|| env("HOME").map(|h| h.join(".local/state/ccpayout")))
        .ok_or_else(|| anyhow::anyhow!("no state directory: pass --state-dir or set CCPAYOUT_STATE_DIR"))?;
    Ok(if sandbox { base.join("sandbox") } else { base })
}

fn open_store(dir: &Path) -> Result<Arc<Store>, CliError> {
    Store::open(dir)
        .map(Arc::new)
        .map_err(|e| anyhow::Error::from(e).into())
}

/// The SHA-256 of a file, hex: a batch's identity.
fn file_sha256(path: &Path) -> Result<String, CliError> {
    let mut file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `ccpayout submit FILE`.
pub async fn submit(
    config: &Config,
    state_dir: &Path,
    file: &Path,
    sandbox: bool,
    wait: bool,
) -> Result<Outcome, CliError> {
    let store = open_store(state_dir)?;
    let (client, _sandbox) = api_client(config, sandbox, sandbox.then(|| state_dir.join(SANDBOX_STATE_FILE))).await?;
    let clock = clock::system();
    let batch_id = file_sha256(file)?;

    let batch = match store.batch(&batch_id).map_err(anyhow::Error::from)? {
        Some(batch) => {
            eprintln!(
                "batch {} is already known (same file contents): resuming; nothing is paid twice",
                batch.name
            );
            batch
        }
        None => {
            let prepared = match preflight::prepare(&client, config, file, store.known_orders()).await {
                Ok(p) => p,
                Err(preflight::CheckError::NotABatch(message)) => {
                    eprintln!("error: {message}");
                    return Ok(Outcome::Refused);
                }
                Err(e) => return Err(anyhow::Error::from(e).into()),
            };
            let plan = &prepared.report.plan;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(render::check_report(&prepared.report).as_bytes());
            drop(out);
            if !plan.blockers.is_empty() || prepared.validated.has_file_problem() {
                eprintln!("nothing was submitted: the batch is blocked (see above)");
                return Ok(Outcome::Refused);
            }
            let explorers: BTreeMap<String, String> = prepared
                .chains
                .iter()
                .map(|c| (c.chain.clone(), c.base_url.clone()))
                .collect();
            store
                .meta_put(META_EXPLORERS, &explorers)
                .map_err(anyhow::Error::from)?;
            let (batch, orders) = intake::build(&prepared, file, config.api.generation, clock.now_ms());
            if orders.is_empty() {
                eprintln!("nothing to submit: no row of the batch is payable");
                write_reports(config, state_dir, &store, &batch, clock.now_ms())?;
                return Ok(Outcome::Refused);
            }
            store.create_batch(&batch, &orders).map_err(anyhow::Error::from)?;
            eprintln!(
                "stored batch {} ({} orders, plan digest {})",
                batch.name, batch.orders, batch.plan_digest
            );
            batch
        }
    };

    if let Approval::Required { reasons } = &batch.approval {
        eprintln!(
            "batch {} needs approval before anything is sent ({}).\n  approve exactly this plan with: ccpayout approve {} --digest {}{}\n  then run this command again",
            batch.name,
            reasons.join("; "),
            batch.name,
            batch.plan_digest,
            if sandbox { " --sandbox" } else { "" }
        );
        return Ok(Outcome::Refused);
    }

    let pause: PersistedPause = store
        .meta_get(META_PAUSE)
        .map_err(anyhow::Error::from)?
        .unwrap_or_default();
    if pause.kill_switch {
        eprintln!(
            "submission is paused by an operator{}; nothing was sent. `ccpayout resume` lifts the pause",
            pause.reason.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        return Ok(Outcome::Refused);
    }

    let engine = build_engine(config, &store, client.clone(), clock.clone(), sandbox)?;
    let cancel = CancellationToken::new();
    let watcher = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!(
                "\nstopping: no new payouts are sent; waiting for the requests in flight (again to quit at once)"
            );
            cancel.cancel();
            shutdown_signal().await;
            eprintln!("quitting at once; run the same command again to resume");
            std::process::exit(130);
        })
    };
    let progress = make_progress(u64::from(batch.orders));
    let end = engine
        .run_batch(&batch.batch_id, wait, &cancel, progress.as_ref())
        .await
        .map_err(anyhow::Error::from)?;
    watcher.abort();
    progress.message("");
    drop(progress);
    save_budget(&store, &engine)?;

    let mut batch = store
        .batch(&batch.batch_id)
        .map_err(anyhow::Error::from)?
        .unwrap_or(batch);
    if end == RunEnd::Finished {
        batch.state = BatchState::Done;
        batch.updated_ms = clock.now_ms();
        store.put_batch(&batch).map_err(anyhow::Error::from)?;
    }
    let paths = write_reports(config, state_dir, &store, &batch, clock.now_ms())?;
    let counts = store.counts(Some(&batch.batch_id)).map_err(anyhow::Error::from)?;
    print_outcome(&batch, &counts, &paths);
    let sent = client.request_counts();
    let total: u64 = sent.values().sum();
    let by_endpoint: Vec<String> = sent.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("API requests this run: {total} ({})", by_endpoint.join(", "));

    let count = |k: StateKind| counts.get(&k).copied().unwrap_or(0);
    let bad = count(StateKind::Failed)
        + count(StateKind::Rejected)
        + count(StateKind::Cancelled)
        + batch.refused.len() as u64;
    match end {
        RunEnd::Finished | RunEnd::AllSubmitted => Ok(if bad == 0 { Outcome::Success } else { Outcome::Refused }),
        RunEnd::AwaitingApproval => Ok(Outcome::Refused),
        RunEnd::Interrupted => Err(anyhow::anyhow!(
            "interrupted: nothing new was sent after the signal; run the same command again to resume"
        )
        .into()),
        RunEnd::Stopped { code, message } => {
            let hint = crate::api::codes::lookup(code)
                .and_then(|c| c.hint)
                .map(|h| format!("\n  check: {h}"))
                .unwrap_or_default();
            Err(
                anyhow::anyhow!("sending stopped: {message}{hint}\n  run the same command again once it is fixed")
                    .into(),
            )
        }
    }
}

fn build_engine(
    config: &Config,
    store: &Arc<Store>,
    client: crate::api::Client,
    clock: SharedClock,
    sandbox: bool,
) -> Result<Engine, CliError> {
    let limits = &config.limits;
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
    ));
    if let Some((day, used)) = store.meta_get::<(i64, u64)>(META_BUDGET).map_err(anyhow::Error::from)? {
        limiters.restore_budget(day, used);
    }
    let pause: PersistedPause = store
        .meta_get(META_PAUSE)
        .map_err(anyhow::Error::from)?
        .unwrap_or_default();
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

fn save_budget(store: &Store, engine: &Engine) -> Result<(), CliError> {
    if let Some(state) = engine.budget_state() {
        store.meta_put(META_BUDGET, &state).map_err(anyhow::Error::from)?;
    }
    Ok(())
}

fn reports_dir(config: &Config, state_dir: &Path) -> PathBuf {
    config.reports.dir.clone().unwrap_or_else(|| state_dir.join("reports"))
}

/// Writes the batch's reports from the store.
fn write_reports(
    config: &Config,
    state_dir: &Path,
    store: &Store,
    batch: &BatchRecord,
    now_ms: i64,
) -> Result<ReportPaths, CliError> {
    let dir = reports_dir(config, state_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create the reports folder {}: {e}", dir.display()))?;
    let explorers: BTreeMap<String, String> = store
        .meta_get(META_EXPLORERS)
        .map_err(anyhow::Error::from)?
        .unwrap_or_default();
    let mut visit = |f: &mut dyn FnMut(&OrderRecord) -> std::io::Result<()>| -> std::io::Result<()> {
        store
            .for_each_batch_order(&batch.batch_id, &mut |order| {
                f(order).map_err(|e| StoreError::Db(e.to_string()))
            })
            .map_err(std::io::Error::other)
    };
    report::write_batch_reports(&dir, batch, &mut visit, &explorers, now_ms)
        .map_err(|e| anyhow::anyhow!("cannot write the reports in {}: {e}", dir.display()).into())
}

fn print_outcome(batch: &BatchRecord, counts: &BTreeMap<StateKind, u64>, paths: &ReportPaths) {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let refused = if batch.refused.is_empty() {
        String::new()
    } else {
        format!(", {} refused", batch.refused.len())
    };
    println!(
        "batch {}: {}{refused}",
        batch.name,
        if parts.is_empty() {
            "no orders".to_owned()
        } else {
            parts.join(", ")
        }
    );
    println!("reports:");
    for path in [&paths.result_csv, &paths.result_json, &paths.summary_json] {
        println!("  {}", path.display());
    }
}

/// `ccpayout status [BATCH|ORDER]`.
pub fn status(state_dir: &Path, target: Option<&str>) -> Result<Outcome, CliError> {
    let store = open_store(state_dir)?;
    let pause: PersistedPause = store
        .meta_get(META_PAUSE)
        .map_err(anyhow::Error::from)?
        .unwrap_or_default();
    let now = clock::system().now_ms();
    if pause.kill_switch {
        println!(
            "submission is PAUSED by an operator{}",
            pause.reason.map(|r| format!(": {r}")).unwrap_or_default()
        );
    } else if let Some(until) = pause.daily_until_ms.filter(|&t| t > now) {
        println!(
            "submission is paused until {} (daily request limit)",
            report::rfc3339_ms(until)
        );
    }
    let Some(target) = target else {
        let batches = store.batches().map_err(anyhow::Error::from)?;
        if batches.is_empty() {
            println!("no batches in {}", state_dir.display());
            return Ok(Outcome::Success);
        }
        for batch in batches {
            let counts = store.counts(Some(&batch.batch_id)).map_err(anyhow::Error::from)?;
            println!("{}", batch_line(&batch, &counts));
        }
        return Ok(Outcome::Success);
    };
    if let Some(batch) = store.find_batch(target).map_err(anyhow::Error::from)? {
        let counts = store.counts(Some(&batch.batch_id)).map_err(anyhow::Error::from)?;
        println!("{}", batch_line(&batch, &counts));
        println!("  id:          {}", batch.batch_id);
        println!("  source:      {} ({}, api {})", batch.source, batch.format, batch.api);
        println!("  created:     {}", report::rfc3339_ms(batch.created_ms));
        println!("  plan digest: {}", batch.plan_digest);
        match &batch.approval {
            Approval::NotNeeded => println!("  approval:    not needed"),
            Approval::Required { reasons } => println!("  approval:    REQUIRED ({})", reasons.join("; ")),
            Approval::Approved { at_ms, .. } => println!("  approval:    approved at {}", report::rfc3339_ms(*at_ms)),
        }
        for kind in StateKind::ALL {
            if let Some(n) = counts.get(&kind).filter(|n| **n > 0) {
                println!("  {:<18} {n}", kind.as_str());
            }
        }
        if !batch.refused.is_empty() {
            println!("  {:<18} {}", "refused (rows)", batch.refused.len());
        }
        return Ok(Outcome::Success);
    }
    if let Some(order) = store.order(target).map_err(anyhow::Error::from)? {
        println!(
            "order {} (batch {}, line {})",
            order.order_id,
            &order.batch_id[..12.min(order.batch_id.len())],
            order.line
        );
        println!(
            "  state:     {}",
            serde_json::to_string(&order.state).unwrap_or_default()
        );
        println!("  attempts:  {}", order.attempts);
        println!(
            "  amount:    {} {} on {} to {}",
            order.input.amount, order.input.coin, order.input.chain, order.input.recipient
        );
        if let Some(id) = &order.record_id {
            println!("  record id: {id}");
        }
        if let Some(tx) = &order.tx_id {
            println!("  tx id:     {tx}");
        }
        if let Some(error) = &order.error {
            println!("  last error: {}", error.message);
        }
        return Ok(Outcome::Success);
    }
    Err(anyhow::anyhow!("no batch or order matches {target:?} in {}", state_dir.display()).into())
}

fn batch_line(batch: &BatchRecord, counts: &BTreeMap<StateKind, u64>) -> String {
    let total: u64 = counts.values().sum();
    let done = StateKind::ALL
        .iter()
        .filter(|k| k.is_final())
        .map(|k| counts.get(k).copied().unwrap_or(0))
        .sum::<u64>();
    let count = |k| counts.get(&k).copied().unwrap_or(0);
    format!(
        "{}  {:?}  {done}/{total} final  ({} success, {} failed, {} rejected; {} refused rows)",
        batch.name,
        batch.state,
        count(StateKind::Success),
        count(StateKind::Failed),
        count(StateKind::Rejected),
        batch.refused.len()
    )
}

fn find_batch(store: &Store, state_dir: &Path, target: &str) -> Result<BatchRecord, CliError> {
    store
        .find_batch(target)
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| anyhow::anyhow!("no batch matches {target:?} in {}", state_dir.display()).into())
}

/// `ccpayout approve BATCH --digest D`.
pub fn approve(state_dir: &Path, target: &str, digest: &str) -> Result<Outcome, CliError> {
    use crate::engine::control::{self, Approved, ControlError};
    let store = open_store(state_dir)?;
    let batch = find_batch(&store, state_dir, target)?;
    match control::approve(&store, batch.clone(), digest, clock::system().now_ms()) {
        Ok(Approved::Released(n)) => {
            println!(
                "approved batch {} (plan digest {}): {n} orders released; run `ccpayout submit {}` to pay them",
                batch.name, batch.plan_digest, batch.source
            );
            Ok(Outcome::Success)
        }
        Ok(Approved::NotNeeded) => {
            println!("batch {} needs no approval", batch.name);
            Ok(Outcome::Success)
        }
        Ok(Approved::Already) => {
            println!("batch {} is already approved", batch.name);
            Ok(Outcome::Success)
        }
        Err(e @ ControlError::WrongDigest { .. }) => {
            eprintln!("error: {e}");
            Ok(Outcome::Refused)
        }
        Err(e) => Err(anyhow::Error::from(e).into()),
    }
}

/// `ccpayout cancel BATCH`.
pub fn cancel(state_dir: &Path, target: &str) -> Result<Outcome, CliError> {
    let store = open_store(state_dir)?;
    let batch = find_batch(&store, state_dir, target)?;
    let n = crate::engine::control::cancel(&store, &batch, clock::system().now_ms()).map_err(anyhow::Error::from)?;
    println!(
        "cancelled {n} unsent orders of batch {}; orders already sent are followed to their end",
        batch.name
    );
    Ok(Outcome::Success)
}

/// `ccpayout pause` / `ccpayout resume`.
pub fn pause(state_dir: &Path, on: bool, reason: Option<String>) -> Result<Outcome, CliError> {
    let store = open_store(state_dir)?;
    crate::engine::control::set_kill_switch(&store, on, reason).map_err(anyhow::Error::from)?;
    println!(
        "{}",
        if on {
            "submission paused: nothing is sent until `ccpayout resume`"
        } else {
            "submission resumed"
        }
    );
    Ok(Outcome::Success)
}

/// `ccpayout report BATCH`.
pub fn report(config: &Config, state_dir: &Path, target: &str) -> Result<Outcome, CliError> {
    let store = open_store(state_dir)?;
    let batch = store
        .find_batch(target)
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| anyhow::anyhow!("no batch matches {target:?} in {}", state_dir.display()))?;
    let paths = write_reports(config, state_dir, &store, &batch, clock::system().now_ms())?;
    let counts = store.counts(Some(&batch.batch_id)).map_err(anyhow::Error::from)?;
    print_outcome(&batch, &counts, &paths);
    Ok(Outcome::Success)
}

/// A progress bar on a terminal, plain lines (at most one every 2 s) otherwise.
fn make_progress(total: u64) -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} final  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(BarProgress(bar))
    } else {
        Box::new(LineProgress {
            total,
            last: Mutex::new(None),
        })
    }
}

struct BarProgress(ProgressBar);

impl Progress for BarProgress {
    fn update(&self, counts: &BTreeMap<StateKind, u64>) {
        let done: u64 = counts.iter().filter(|(k, _)| k.is_final()).map(|(_, n)| n).sum();
        self.0.set_position(done);
        self.0.set_message(summary(counts));
    }
    fn message(&self, text: &str) {
        if text.is_empty() {
            self.0.finish_and_clear();
        } else {
            self.0.println(text);
        }
    }
}

struct LineProgress {
    total: u64,
    last: Mutex<Option<Instant>>,
}

impl Progress for LineProgress {
    fn update(&self, counts: &BTreeMap<StateKind, u64>) {
        let Ok(mut last) = self.last.lock() else { return };
        let done: u64 = counts.iter().filter(|(k, _)| k.is_final()).map(|(_, n)| n).sum();
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) && done < self.total {
            return;
        }
        *last = Some(Instant::now());
        eprintln!("progress: {done}/{} final ({})", self.total, summary(counts));
    }
    fn message(&self, text: &str) {
        if !text.is_empty() {
            eprintln!("{text}");
        }
    }
}

fn summary(counts: &BTreeMap<StateKind, u64>) -> String {
    counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
