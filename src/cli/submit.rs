//! `submit`: the CLI face of the engine and the store, and how operator replies are shown.
//!
//! `submit FILE` is the whole job in the foreground: check the file (or recognise it by its
//! SHA-256 and resume), store the plan, reconcile, send, track, write the reports, and map the
//! result to the exit code. Ctrl-C (or SIGTERM) stops new sends; the requests in flight finish
//! and are recorded, and running the same command again resumes without paying twice.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::{CliError, Outcome, api_client, shutdown_signal};
use crate::app::{self, Ingested, Reconcile, Reply, Reports, Verdict};
use crate::config::Config;
use crate::engine::{Progress, RunEnd};
use crate::model::record::{Approval, BatchRecord};
use crate::model::state::StateKind;
use crate::report::ReportPaths;
use crate::store::Store;
use crate::util::clock;

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

pub(super) fn open_store(dir: &Path) -> Result<Arc<Store>, CliError> {
    Store::open(dir)
        .map(Arc::new)
        .map_err(|e| anyhow::Error::from(e).into())
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
    // Notices go out beside the payouts, never in their way; what is left is flushed at the end.
    let notices = app::wiring::notices(config, &store, clock::system())?;
    let sending = notices.clone().map(|dispatcher| {
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { dispatcher.run(stop).await }
        });
        (stop, task)
    });
    let outcome = submit_stored(config, state_dir, store, file, sandbox, wait).await;
    if let Some((stop, task)) = sending {
        stop.cancel();
        let _ = task.await;
    }
    if let Some(dispatcher) = notices {
        flush_notices(&dispatcher).await;
    }
    outcome
}

/// How long a one-shot command waits for its notices to be delivered before it leaves the
/// rest to the next `submit` or `run`.
const NOTICE_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends the notices still due, for at most [`NOTICE_FLUSH`], and says what is left.
pub(super) async fn flush_notices(dispatcher: &crate::notify::Dispatcher) {
    let left = dispatcher.flush(NOTICE_FLUSH).await;
    for (target, (n, error)) in &left.pending {
        eprintln!(
            "notices: {n} not yet delivered to {target:?}{}; the next `ccpayout submit` or `ccpayout run` sends them",
            error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
}

/// `submit` on the opened store.
async fn submit_stored(
    config: &Config,
    state_dir: &Path,
    store: Arc<Store>,
    file: &Path,
    sandbox: bool,
    wait: bool,
) -> Result<Outcome, CliError> {
    // The operator's pause holds every request, a preflight's too: say so instead of waiting.
    let pause = app::wiring::restored_pacing(&store).map_err(anyhow::Error::from)?.pause;
    if pause.kill_switch {
        eprintln!(
            "submission is paused by an operator{}; nothing was sent. `ccpayout resume` lifts the pause",
            pause.reason.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        return Ok(Outcome::Refused);
    }
    let (client, _sandbox) = api_client(
        config,
        sandbox,
        sandbox.then(|| state_dir.join(app::SANDBOX_STATE_FILE)),
    )
    .await?;
    let clock = clock::system();
    let reports = app::reports_dir(config, state_dir);
    // One pacing for the preflight and the payouts.
    let wired = app::wire(
        config,
        &store,
        client,
        clock.clone(),
        sandbox,
        app::wiring::entropy_seed(),
    )
    .map_err(anyhow::Error::from)?;

    let ingested = app::ingest(&wired.client, config, &store, file, clock.now_ms())
        .await
        .map_err(anyhow::Error::from)?;
    // The preflight may have met an 11009: its pause is stored before anything else happens.
    wired.engine.save_pacing(true).map_err(anyhow::Error::from)?;
    let batch = match ingested {
        Ingested::Known(batch) => {
            eprintln!(
                "batch {} is already known (same file contents): resuming; nothing is paid twice",
                batch.name
            );
            batch
        }
        Ingested::NotABatch { message } => {
            eprintln!("error: {message}");
            return Ok(Outcome::Refused);
        }
        Ingested::Blocked { plan } => {
            let _ = std::io::stdout().lock().write_all(plan.as_bytes());
            eprintln!("nothing was submitted: the batch is blocked (see above)");
            return Ok(Outcome::Refused);
        }
        Ingested::NothingPayable { batch, plan } => {
            let _ = std::io::stdout().lock().write_all(plan.as_bytes());
            eprintln!("nothing to submit: no row of the batch is payable");
            app::write_reports(&reports, &store, &batch, clock.now_ms()).map_err(anyhow::Error::from)?;
            return Ok(Outcome::Refused);
        }
        Ingested::Created { batch, plan, .. } => {
            let _ = std::io::stdout().lock().write_all(plan.as_bytes());
            eprintln!(
                "stored batch {} ({} orders, plan digest {})",
                batch.name, batch.orders, batch.plan_digest
            );
            batch
        }
    };
    if let Approval::Required { reasons, .. } = &batch.approval {
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
    let paid = app::pay(
        &wired.engine,
        &batch,
        Reconcile::First,
        wait,
        &reports,
        Reports::Always,
        &cancel,
        progress.as_ref(),
    )
    .await
    .map_err(anyhow::Error::from)?;
    watcher.abort();
    progress.message("");
    drop(progress);

    let batch = &paid.batch;
    if let Some(paths) = &paid.reports {
        print_outcome(batch, &paid.counts, paths);
    }
    if let Some(review) = batch
        .recipients
        .as_ref()
        .filter(|r| matches!(r.approval, Approval::Required { .. }))
    {
        eprintln!(
            "{} orders of batch {} wait for the recipient review (new or changed destinations; `ccpayout status {}` lists them beside the old ones).\n  approve them with: ccpayout approve {} --digest {}{}\n  then run this command again",
            review.orders,
            batch.name,
            batch.name,
            batch.name,
            review.digest,
            if sandbox { " --sandbox" } else { "" }
        );
    }
    let sent = wired.client.request_counts();
    let total: u64 = sent.values().sum();
    let by_endpoint: Vec<String> = sent.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("API requests this run: {total} ({})", by_endpoint.join(", "));
    if let Some(latency) = wired.pacing.latency_ms() {
        println!(
            "round trip {latency:.0} ms on average; in flight up to {} (limits.concurrency {})",
            wired.pacing.peak_in_flight(),
            wired.pacing.max_in_flight()
        );
    }

    let count = |k: StateKind| paid.counts.get(&k).copied().unwrap_or(0);
    let bad = count(StateKind::Failed)
        + count(StateKind::Rejected)
        + count(StateKind::Cancelled)
        + batch.refused.len() as u64;
    match paid.end {
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

/// Prints an operator's reply and maps it to the exit code.
pub fn show(reply: Reply) -> Result<Outcome, CliError> {
    match reply.verdict {
        Verdict::Done => {
            print!("{}", reply.shown());
            Ok(Outcome::Success)
        }
        Verdict::Refused => {
            eprint!("error: {}", reply.shown());
            Ok(Outcome::Refused)
        }
        Verdict::Failed => Err(anyhow::anyhow!("{}", reply.shown().trim_end()).into()),
    }
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
