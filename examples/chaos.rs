//! Crash-chaos harness: SIGKILL `ccpayout submit` at random instants, resume, and prove that
//! every row was paid exactly once and that the report tells the truth.
//!
//! # What it proves
//!
//! Against a sandbox that injects faults on withdrawal creates (committed-then-dropped replies,
//! HTTP 502, 11002, slow replies), rate-limits (150/s, burst 20), settles after 300 ms and fails
//! 2% of payouts, it starts `ccpayout submit` on one batch over and over and SIGKILLs each run
//! after a seeded random delay: a quarter of the kills land in the first 30 ms (process start-up,
//! store open), the rest anywhere up to `--max-delay-ms` (preflight, sending, tracking, writing
//! the reports). Kills go on after the batch has finished, so no-op resumes are killed too. Then
//! it runs `submit` to completion and checks, against the sandbox's ledger (the ground truth):
//!
//! - no orderId was paid twice, and nothing outside the file was paid;
//! - every row of the file is in the result report, once, with a final status (success, failed
//!   or rejected);
//! - the report equals the ledger: `success` ⇔ a `Success` payout with the same record id,
//!   `failed` ⇔ a `Failed` payout with the same record id, `rejected` ⇔ no payout; a paid row's
//!   amount sent is the amount paid;
//! - the final exit code agrees with the report (0 exactly when every row succeeded);
//! - no run ended on its own with a crash (panic, signal, unexpected exit code).
//!
//! The sandbox, like CCPayment, refuses a second create for an orderId (11011), so by default a
//! double payment in its ledger would mean the sandbox is broken; the teeth are in the report
//! check: a resume that lost track of a committed create would report it rejected, or never
//! final. Under `--reading no-order-uniqueness` the sandbox pays a reused orderId again, and the
//! ledger check has teeth of its own.
//!
//! It prints its figures (the readings, rows, kills that hit a running process, runs, create
//! attempts in the ledger, faults by kind, 11004 refusals, what the lookups were answered, the
//! violation counts, times, seed) and exits 1 with the list of violations when a check fails, 2
//! when the harness itself cannot run; in both cases it keeps its temporary folder (batch,
//! config, state, every run's output, sandbox log).
//!
//! # Batch mode
//!
//! `--withdraw-mode batch` runs the same proof with `withdraw_mode = "batch"` in `[api]` and
//! `default_merchant_pays_fee = true` in `[batch]`, so network rows are paid through CCPayment's
//! batch withdrawals (apply, append, confirm, the batch and its task list): one batch of up to
//! 500 tasks per coin and chain. The file spreads its rows over USDT on TRX (four in ten),
//! POLYGON (two) and BSC (two), Cwallet (one), and every tenth row is USDT on TRX whose receiver
//! pays the fee: those and the Cwallet rows stay single creates beside the batches. The
//! sandbox's faults hit apply, append and confirm as they hit single creates (a batch committed
//! and its reply dropped, HTTP 502, 11002, slow replies), so lost replies happen there too, and
//! the kills land anywhere: with a batch's intent on disk and its request out, while a lost apply
//! is looked up, while a confirmed batch runs and is followed. `--batch-execution single|batch`
//! and `--confirm-delay SECS` set `api.batch_execution` and `api.batch_confirm_delay_secs`; the
//! final run's time limit grows by the confirm delay and the `batch-review` time.
//!
//! A batch task's payout carries CCPayment's own orderId and ccpayout's order_id in its remark,
//! so every check identifies a payout by its merchant reference (`LedgerPayout::merchant_ref`:
//! a task's remark, a single withdrawal's orderId):
//!
//! - no order_id of the file has two payouts, single or task, and no payout's reference is
//!   outside the file;
//! - every row is in the report, once, final: `cancelled` (a task aborted before it ran) counts
//!   as final and, like `rejected`, means no payout;
//! - the report equals the ledger as above and, for a task, its `batch_order_id`, `task_seq` and
//!   `ccpayment_order_id` are the payout's batch, seq and orderId (a single withdrawal's row has
//!   no task columns).
//!
//! It also prints the tasks paid (by status), the requests to each batch route by answer (from
//! the sandbox's stats), the faults by route, and where the kills landed: each kill is placed,
//! by the bundle lines of `audit.jsonl`, under the most telling phase any batch was in at that
//! moment (`applying`, `appending`, `confirming`: the request's intent on disk and its answer not
//! recorded yet; `unknown`: a lost apply being looked up; `open`: applied, not confirmed;
//! `confirmed`: running and followed; `waiting`: none applied yet; `done`).
//!
//! Readings that give the batch checks teeth: `batch-id-reuse` (a second apply with the same
//! batchOrderId makes a second batch, so a blind re-apply after a lost reply would pay twice),
//! `batch-seq-unchecked` (a task seq sent twice is paid twice), with `lookup-lag` so the lookup
//! of a lost apply first finds nothing; and `batch-apply-idempotent`, `task-status-success`,
//! `batch-review[=MS]`.
//!
//! # Readings of the API
//!
//! `--reading NAME` (repeatable, or several names separated by commas) is passed to
//! `ccpayout sandbox --reading`, so the same proof runs against another plausible reading of the
//! API where its documentation is silent (ccpayment-api.md §5; the names are those of
//! `ccpayout sandbox --help`). Three readings change the harness too:
//!
//! - `lookup-lag=MS`: the config's `not_found_confirm_secs` is raised above the lag (the lag in
//!   whole seconds plus 2, at least 3), as an operator must for an account whose reads lag.
//! - `v1-only`: the account refuses every v2 call, so the config says `api.version = "v1"` and
//!   the batch names each row's v1 token (amounts from 12 USDT, above v1's one minimum per
//!   coin). A v1 bill carries no record id, so a v1 row whose create reply was lost is reported
//!   without one; any record id it has must still be the ledger's.
//! - `pre-delisting`: every fifth row pays USDC on POLYGON, the coin that reading lists as
//!   `Pre-delisting` (payable).
//!
//! # How to run it
//!
//! The harness drives the `ccpayout` binary next to its own folder (`target/<profile>/ccpayout`),
//! which `cargo run --example` does not build, so build it first:
//!
//! ```text
//! cargo build && cargo run --example chaos                          # full: 500 rows, 200 kills
//! cargo build && cargo run --example chaos -- --rows 100 --kills 20  # CI form
//! cargo run --example chaos -- --seed 1234                           # repeat a run
//! cargo run --example chaos -- --rows 30 --kills 5 --reading lookup-lag=1000 --reading no-order-uniqueness
//! cargo build && cargo run --example chaos -- --withdraw-mode batch --rows 500 --kills 200
//! cargo run --example chaos -- --withdraw-mode batch --rows 100 --kills 20   # CI form, batch mode
//! cargo run --example chaos -- --withdraw-mode batch --rows 60 --kills 10 \
//!     --reading batch-id-reuse,batch-seq-unchecked,lookup-lag=1000
//! ```
//!
//! Other options: `--max-delay-ms MS` (default 1500), `--bin PATH` (another binary), `--keep`
//! (keep the temporary folder even when every check passes). Unix only: it needs SIGKILL.
//!
//! # What it does not prove
//!
//! - Durability against power loss or a kernel crash: SIGKILL leaves the page cache intact, so
//!   data written but not yet on disk survives here and might not survive a power cut.
//! - Exact reproducibility: the seed fixes the batch, the delays and the sandbox's faults, but
//!   where a kill lands inside the program still depends on scheduling, so a failing seed may
//!   need a few tries to fail again.
//! - Behaviour of the real CCPayment API, only of the sandbox's model of it (and of the readings
//!   it can take); nor other chains (but USDC on POLYGON under `pre-delisting`, and POLYGON,
//!   BSC and Cwallet in batch mode), webhooks, approval, daily caps or full disks. v1 only under
//!   `--reading v1-only`.
//! - In batch mode, an append cut short: ccpayout appends only tasks found missing from a batch
//!   that exists, and the sandbox stores a batch with all its tasks or not at all, so
//!   `appendBatchWithdraw` is not sent in these runs (its count is printed). Nor `cancel` and
//!   the aborts it sends, or batches larger than 500 tasks (at most 500 rows per chain here).
//! - The pacing itself: ccpayout is configured at 200/s against the sandbox's 150/s (burst 20),
//!   so some 11004 refusals happen and are counted, but their effect on throughput is measured by
//!   the benchmarks, not here.
//! - Two `submit` processes on one state folder at once (the runs here never overlap), or the
//!   graceful Ctrl-C/SIGTERM path (only SIGKILL is used).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use ccpayout::api::types::{RecordStatus, method};
use ccpayout::sandbox::demo::v1_token_id;
use ccpayout::sandbox::readings::PRE_DELISTING_COIN;
use ccpayout::sandbox::{
    AttemptOutcome, DEMO_APP_ID, DEMO_APP_SECRET, Ledger, LedgerPayout, Readings, STATS_NO_REPLY, STATS_SUCCESS,
    SandboxStats,
};
use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// Valid TRON addresses the sandbox pays normally (not its always-failing demo address).
const RECIPIENTS: [&str; 3] = [
    "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K",
    "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr",
    "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq",
];

/// Valid EVM addresses: the POLYGON and BSC rows of batch mode, the USDC rows under
/// `pre-delisting`.
const EVM_RECIPIENTS: [&str; 3] = [
    "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d",
    "0x09a939da0a61353314b90d4bdcc7d7450c847008",
    "0xfd8a42518aa107f174cb78a6bbeef965d4f0bd15",
];

/// Cwallet IDs the sandbox knows (its demo users), for the Cwallet rows of batch mode.
const CWALLET_RECIPIENTS: [&str; 3] = ["9558861", "35255142", "10000001"];

/// The six batch withdrawal routes, in the order a batch meets them.
const BATCH_ROUTES: [&str; 6] = [
    method::APPLY_BATCH_WITHDRAW,
    method::APPEND_BATCH_WITHDRAW,
    method::CONFIRM_BATCH_WITHDRAW,
    method::ABORT_BATCH_WITHDRAW,
    method::GET_BATCH_WITHDRAW_ORDER,
    method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST,
];

/// The config: fast tracking, so a batch settles within seconds of its last send; a short
/// request timeout, so "no such order" after a lost request is confirmed in seconds rather than
/// a minute, but never before a lagging lookup can see the create (`lookup-lag`); v1 for an
/// account that only speaks v1. In batch mode, `withdraw_mode = "batch"` (with the execution
/// and confirm delay asked for) and the merchant paying the fee of every row that does not say
/// otherwise, so network rows go into CCPayment's batch withdrawals.
fn config_toml(readings: &Readings, mode: &Mode) -> String {
    let confirm_secs = not_found_confirm_secs(readings);
    let mut api = String::new();
    if readings.v1_only {
        api.push_str("version = \"v1\"\n");
    }
    let mut batch = String::new();
    if let Mode::Batch {
        execution,
        confirm_delay_secs,
    } = mode
    {
        api.push_str("withdraw_mode = \"batch\"\n");
        if let Some(execution) = execution {
            let _ = writeln!(api, "batch_execution = \"{}\"", execution.name());
        }
        if let Some(delay) = confirm_delay_secs {
            let _ = writeln!(api, "batch_confirm_delay_secs = {delay}");
        }
        batch.push_str("[batch]\ndefault_merchant_pays_fee = true\n");
    }
    format!(
        "[api]\n{api}connect_timeout_ms = 1000\nrequest_timeout_ms = 3000\n\
         [limits]\nrate_per_second = 200\nconcurrency = 8\ntrack_first_check_secs = 1\ntrack_max_interval_secs = 2\n\
         not_found_confirm_secs = {confirm_secs}\n{batch}"
    )
}

/// 3 s (the request timeout), or the lookup lag in whole seconds plus 2 when that is more: an
/// absence is confirmed only well after a create would have become visible.
fn not_found_confirm_secs(readings: &Readings) -> u64 {
    let lag_secs = readings
        .lookup_lag
        .map_or(0, |lag| lag.as_millis().div_ceil(1000) as u64);
    if lag_secs == 0 { 3 } else { (lag_secs + 2).max(3) }
}

/// Runs to completion after the kills: exit 2 (interrupted, runtime error) earns another try.
const FINAL_ATTEMPTS: u32 = 5;
/// Ample for 500 rows at the configured rate with 300 ms settlement (or a batch withdrawal's
/// tasks run 100 ms apart); a hang is a finding. A batch's confirm delay and review time come on
/// top.
const FINAL_TIMEOUT: Duration = Duration::from_secs(120);
/// A quarter of the kills land this early, while the process starts and opens its store.
const EARLY_KILL_MS: u64 = 30;
/// Violations printed in full; the rest are counted.
const SHOW_VIOLATIONS: usize = 50;

#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    about = "SIGKILL `ccpayout submit` at random instants and verify exactly-once payment"
)]
struct Args {
    /// Rows in the generated batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    rows: u32,
    /// Runs of `submit` to start and kill.
    #[arg(long, default_value_t = 200)]
    kills: u32,
    /// Seed of the batch, the kill delays and the sandbox's faults (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Longest delay between starting a run and killing it.
    #[arg(long, default_value_t = 1500, value_name = "MS")]
    max_delay_ms: u64,
    /// The ccpayout binary (default: target/<profile>/ccpayout next to this example).
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// Keep the temporary folder even when every check passes.
    #[arg(long)]
    keep: bool,
    /// A reading of the API for the sandbox to take, as `ccpayout sandbox --reading NAME`
    /// (repeatable; e.g. `lookup-lag=1000`, `no-order-uniqueness`, `v1-only`).
    #[arg(long = "reading", value_name = "NAME", value_parser = Readings::parse)]
    readings: Vec<Readings>,
    /// How ccpayout pays network rows (`api.withdraw_mode`): `single`, a create per row, or
    /// `batch`, CCPayment's batch withdrawals (the batch then spreads over TRX, POLYGON, BSC and
    /// Cwallet).
    #[arg(long, value_enum, default_value_t = WithdrawMode::Single)]
    withdraw_mode: WithdrawMode,
    /// Batch mode: CCPayment's `mode` for the batch withdrawals (`api.batch_execution`;
    /// ccpayout's default is `single`).
    #[arg(long, value_enum)]
    batch_execution: Option<Execution>,
    /// Batch mode: seconds CCPayment waits after the confirm (`api.batch_confirm_delay_secs`,
    /// 0 to 3600; ccpayout's default is 0).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=3600))]
    confirm_delay: Option<u64>,
}

/// `--withdraw-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WithdrawMode {
    Single,
    Batch,
}

/// `--batch-execution`: CCPayment's `mode` of a batch withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Execution {
    /// A transaction per task, one after another.
    Single,
    /// Every task in one transaction.
    Batch,
}

impl Execution {
    /// The value of `api.batch_execution`.
    fn name(self) -> &'static str {
        match self {
            Execution::Single => "single",
            Execution::Batch => "batch",
        }
    }
}

/// How the runs pay: every option of `--withdraw-mode` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Single,
    Batch {
        /// `None`: ccpayout's default (`single`).
        execution: Option<Execution>,
        /// `None`: ccpayout's default (0).
        confirm_delay_secs: Option<u64>,
    },
}

impl Mode {
    fn is_batch(&self) -> bool {
        matches!(self, Mode::Batch { .. })
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Single => f.write_str("single"),
            Mode::Batch {
                execution,
                confirm_delay_secs,
            } => write!(
                f,
                "batch (execution {}, confirm delay {} s)",
                execution.unwrap_or(Execution::Single).name(),
                confirm_delay_secs.unwrap_or(0)
            ),
        }
    }
}

impl Args {
    /// Every `--reading`, merged.
    fn readings(&self) -> anyhow::Result<Readings> {
        let mut all = Readings::NONE;
        for r in &self.readings {
            all.merge(r).map_err(|e| anyhow::anyhow!("--reading: {e}"))?;
        }
        Ok(all)
    }

    /// `--withdraw-mode` with its batch options, which need batch mode and v2.
    fn mode(&self, readings: &Readings) -> anyhow::Result<Mode> {
        match self.withdraw_mode {
            WithdrawMode::Single => {
                if self.batch_execution.is_some() || self.confirm_delay.is_some() {
                    bail!("--batch-execution and --confirm-delay need --withdraw-mode batch");
                }
                Ok(Mode::Single)
            }
            WithdrawMode::Batch => {
                if readings.v1_only {
                    bail!(
                        "--withdraw-mode batch needs v2: v1 accounts have no batch withdrawals (drop --reading v1-only)"
                    );
                }
                Ok(Mode::Batch {
                    execution: self.batch_execution,
                    confirm_delay_secs: self.confirm_delay,
                })
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        // Any value will do; it is printed so the run can be repeated.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        SplitMix64(now.as_nanos() as u64).next_u64()
    });
    let (readings, mode) = match args.readings().and_then(|r| Ok((r, args.mode(&r)?))) {
        Ok(both) => both,
        Err(e) => {
            eprintln!("chaos: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("chaos: seed {seed} (repeat with --seed {seed}), readings: {readings}, withdraw mode: {mode}");
    let bin = match locate_binary(args.bin.as_deref()) {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("chaos: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let dir = match tempfile::Builder::new().prefix("ccpayout-chaos-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("chaos: error: cannot create a temporary folder: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = chaos(&args, &readings, &mode, seed, &bin, dir.path());
    let code = match &outcome {
        Ok(violations) if violations.is_empty() => {
            println!("chaos: PASS");
            ExitCode::SUCCESS
        }
        Ok(violations) => {
            println!("chaos: FAIL, {} violation(s):", violations.len());
            for v in violations.iter().take(SHOW_VIOLATIONS) {
                println!("  - {v}");
            }
            if violations.len() > SHOW_VIOLATIONS {
                println!("  ... and {} more", violations.len() - SHOW_VIOLATIONS);
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("chaos: error: {e:#}");
            ExitCode::from(2)
        }
    };
    if code != ExitCode::SUCCESS || args.keep {
        // The state, the batch and every run's output are what a post-mortem needs.
        println!("chaos: kept {} (runs.log, sandbox.log, state/)", dir.keep().display());
    }
    code
}

/// The whole harness in folder `root`; returns the violations found (empty: every check passed).
fn chaos(
    args: &Args,
    readings: &Readings,
    mode: &Mode,
    seed: u64,
    bin: &Path,
    root: &Path,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let state = root.join("state");
    let config_path = root.join("ccpayout.toml");
    fs::write(&config_path, config_toml(readings, mode)).context("cannot write the config")?;
    let batch_path = root.join("chaos.csv");
    // Separate streams, so that changing --kills or --max-delay-ms keeps the same batch.
    let order_ids = write_batch(
        &batch_path,
        args.rows,
        readings,
        mode,
        &mut SplitMix64(seed ^ 0xba7c_0000_0000_0001),
    )?;

    let sandbox = Sandbox::start(bin, seed, readings, &root.join("sandbox.log"))?;
    println!("chaos: sandbox at {}, work folder {}", sandbox.url, root.display());
    let submit = Submit {
        bin,
        config: &config_path,
        state: &state,
        batch: &batch_path,
        url: &sandbox.url,
        log: &root.join("runs.log"),
    };

    let mut violations = Vec::new();
    let mut stats = RunStats::default();

    // Start runs and kill them at random instants.
    let kill_started = Instant::now();
    let mut delays = SplitMix64(seed ^ 0xde1a_0000_0000_0002);
    let report_every = (args.kills / 10).max(1);
    // `--kills` counts SIGKILLs that hit a running process; runs that finish before their kill
    // do not count. Once runs start finishing by themselves (the batch is done and a resume is
    // quick), kills aim at the first moments of a run: start-up, store open, reconciliation.
    let max_runs = args.kills.saturating_mul(10).max(10);
    let mut last_ended_by_itself = false;
    let mut k = 0;
    while stats.kills_hit < args.kills && stats.runs < max_runs {
        k += 1;
        let delay_ms = if last_ended_by_itself || delays.chance(0.25) {
            delays.below(EARLY_KILL_MS + 1)
        } else {
            delays.below(args.max_delay_ms + 1)
        };
        stats.runs += 1;
        let run = stats.runs;
        let mut child = submit.start(run, &format!("killed after {delay_ms} ms"))?;
        std::thread::sleep(Duration::from_millis(delay_ms));
        // A run that ended before the kill is judged by its status; only a SIGKILL as the end of
        // a run proves the kill hit a live process (it may exit between the check and the kill).
        let ended_by_itself = match child.try_wait()? {
            Some(status) => Some(status),
            None => {
                let kill_ms = unix_ms();
                child.kill()?;
                let status = child.wait()?;
                if killed_by_sigkill(status) {
                    stats.kills_hit += 1;
                    stats.kill_times_ms.push(kill_ms);
                    None
                } else {
                    Some(status)
                }
            }
        };
        last_ended_by_itself = ended_by_itself.is_some();
        if let Some(status) = ended_by_itself {
            stats.note_self_exit(run, status, &mut violations);
        }
        if k % report_every == 0 {
            println!(
                "chaos: run {k}: {}/{} kills hit a running process, {} runs ended by themselves",
                stats.kills_hit,
                args.kills,
                stats.self_exits.values().sum::<u32>()
            );
        }
    }
    if stats.kills_hit < args.kills {
        violations.push(format!(
            "only {} of {} kills hit a running process in {} runs",
            stats.kills_hit, args.kills, stats.runs
        ));
    }
    let kill_time = kill_started.elapsed();

    // Run to completion. A batch withdrawal's confirm delay and review are waited for too.
    let final_timeout = FINAL_TIMEOUT
        + match mode {
            Mode::Batch {
                confirm_delay_secs: Some(delay),
                ..
            } => Duration::from_secs(*delay),
            _ => Duration::ZERO,
        }
        + readings.batch_review.unwrap_or_default();
    let final_started = Instant::now();
    let mut final_code = None;
    for attempt in 1..=FINAL_ATTEMPTS {
        stats.runs += 1;
        stats.final_runs += 1;
        let mut child = submit.start(stats.runs, &format!("final run, attempt {attempt}"))?;
        let deadline = Instant::now() + final_timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        match status {
            None => violations.push(format!(
                "final run {attempt} did not finish within {}s",
                final_timeout.as_secs()
            )),
            Some(status) => match status.code() {
                Some(code @ (0 | 1)) => {
                    final_code = Some(code);
                    break;
                }
                Some(2) => println!("chaos: final run {attempt} exited 2 (interrupted or runtime error); trying again"),
                _ => violations.push(format!("final run {attempt} ended with {}", describe(status))),
            },
        }
    }
    let final_time = final_started.elapsed();
    if final_code.is_none() {
        violations.push(format!(
            "no run finished the batch (exit 0 or 1) in {FINAL_ATTEMPTS} attempts"
        ));
    }

    // Verify against the ground truth.
    let ledger = fetch_ledger(&sandbox.url).with_context(|| {
        format!(
            "cannot read the sandbox's ledger (did it stop? see {})",
            root.join("sandbox.log").display()
        )
    })?;
    // What the lookups met (a lagging read answers 11003) and the batch routes; only for the
    // figures.
    let sandbox_stats = fetch_stats(&sandbox.url).ok();
    drop(sandbox);
    let report = read_report(&state.join("reports"));
    let mut figures = verify(
        &order_ids,
        &ledger,
        report,
        final_code,
        readings.v1_only,
        &mut violations,
    );
    figures.lookups = sandbox_stats.as_ref().map(Lookups::of).unwrap_or_default();
    figures.kill_phases = kills_by_phase(&bundle_transitions(&state.join("audit.jsonl")), &stats.kill_times_ms);

    print_figures(
        args,
        readings,
        mode,
        seed,
        &stats,
        &ledger,
        sandbox_stats.as_ref(),
        &figures,
        Times {
            kills: kill_time,
            final_runs: final_time,
            wall: started.elapsed(),
        },
    );
    Ok(violations)
}

/// `target/<profile>/ccpayout` next to `target/<profile>/examples/chaos`, or `--bin`.
fn locate_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this harness's own path")?;
    let bin = match explicit {
        Some(path) => path.to_path_buf(),
        None => exe
            .parent()
            .and_then(Path::parent)
            .context("this harness is not in target/<profile>/examples; pass --bin PATH")?
            .join(format!("ccpayout{}", std::env::consts::EXE_SUFFIX)),
    };
    if !bin.is_file() {
        bail!(
            "no ccpayout binary at {}: build it first: cargo build (or pass --bin PATH)",
            bin.display()
        );
    }
    // `cargo run --example` rebuilds the library but not the binary, so testing a stale binary
    // is an easy mistake: warn when a source file is newer than the binary.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if explicit.is_none()
        && let (Some(bin_time), Some(src_time)) = (modified(&bin), newest_modification(&src))
        && bin_time < src_time
    {
        eprintln!(
            "chaos: warning: {} is older than the sources in {}; run `cargo build` first",
            bin.display(),
            src.display()
        );
    }
    Ok(bin)
}

/// The latest modification time of the files under `dir` (`None` when it cannot be read).
fn newest_modification(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_modification(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// Writes the batch CSV and returns its order ids in file order. USDT on TRX; under
/// `pre-delisting` every fifth row is USDC on POLYGON; under `v1-only` each row names its v1
/// token. In batch mode the rows spread over USDT on TRX (four in ten), POLYGON (two), BSC (two)
/// and Cwallet (one), and every tenth is USDT on TRX whose receiver pays the fee
/// (`merchant_pays_fee = false`): those two kinds stay single creates, the rest go into batch
/// withdrawals (the config's `default_merchant_pays_fee = true` covers the empty cells).
fn write_batch(
    path: &Path,
    rows: u32,
    readings: &Readings,
    mode: &Mode,
    rng: &mut SplitMix64,
) -> anyhow::Result<Vec<String>> {
    let batch = mode.is_batch();
    let mut csv = String::from(if readings.v1_only {
        "order_id,recipient,coin,chain,amount,token_id\n"
    } else if batch {
        "order_id,recipient,coin,chain,amount,merchant_pays_fee\n"
    } else {
        "order_id,recipient,coin,chain,amount\n"
    });
    let mut ids = Vec::with_capacity(rows as usize);
    for i in 0..rows {
        let id = format!("chaos-{i:05}");
        let pick = rng.below(RECIPIENTS.len() as u64) as usize;
        let mut merchant_pays_fee = "";
        let (recipient, coin, chain) = if readings.pre_delisting && i % 5 == 4 {
            (EVM_RECIPIENTS[pick], PRE_DELISTING_COIN, "POLYGON")
        } else if batch {
            match i % 10 {
                4 | 5 => (EVM_RECIPIENTS[pick], "USDT", "POLYGON"),
                6 | 7 => (EVM_RECIPIENTS[pick], "USDT", "BSC"),
                8 => (CWALLET_RECIPIENTS[pick], "USDT", "CWALLET"),
                9 => {
                    merchant_pays_fee = "false";
                    (RECIPIENTS[pick], "USDT", "TRX")
                }
                _ => (RECIPIENTS[pick], "USDT", "TRX"),
            }
        } else {
            (RECIPIENTS[pick], "USDT", "TRX")
        };
        // From 2 up, so the amount always covers the 1 USDT network fee (on v1 from 12, above
        // its one minimum per coin of 10 after the fee); 0 to 6 decimals with a non-zero last
        // digit, so every amount is already in its canonical form.
        let whole = if readings.v1_only { 12 } else { 2 } + rng.below(59);
        let decimals = rng.below(7) as u32;
        let amount = if decimals == 0 {
            whole.to_string()
        } else {
            let mut frac = rng.below(10u64.pow(decimals));
            if frac.is_multiple_of(10) {
                frac += 1;
            }
            format!("{whole}.{frac:0width$}", width = decimals as usize)
        };
        // Writing to a String cannot fail.
        if readings.v1_only {
            let token = v1_token_id(coin, chain);
            let _ = writeln!(csv, "{id},{recipient},{coin},{chain},{amount},{token}");
        } else if batch {
            let _ = writeln!(csv, "{id},{recipient},{coin},{chain},{amount},{merchant_pays_fee}");
        } else {
            let _ = writeln!(csv, "{id},{recipient},{coin},{chain},{amount}");
        }
        ids.push(id);
    }
    fs::write(path, csv).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(ids)
}

/// How to start one `submit` run.
struct Submit<'a> {
    bin: &'a Path,
    config: &'a Path,
    state: &'a Path,
    batch: &'a Path,
    url: &'a str,
    log: &'a Path,
}

impl Submit<'_> {
    /// Starts run `n`, its stdout and stderr appended to the runs log under a header.
    fn start(&self, n: u32, what: &str) -> anyhow::Result<KillOnDrop> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        writeln!(log, "\n=== run {n} ({what}) ===")?;
        let stderr = log.try_clone()?;
        let child = Command::new(self.bin)
            .arg("--config")
            .arg(self.config)
            .arg("--state-dir")
            .arg(self.state)
            .arg("submit")
            .arg(self.batch)
            // The caller's own settings must not leak into the runs.
            .env_remove("CCPAYOUT_CONFIG")
            .env_remove("CCPAYOUT_STATE_DIR")
            .env_remove("RUST_LOG")
            .env("CCPAYOUT_API_BASE_URL", self.url)
            .env("CCPAYOUT_APP_ID", DEMO_APP_ID)
            .env("CCPAYOUT_APP_SECRET", DEMO_APP_SECRET)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        Ok(KillOnDrop(child))
    }
}

/// A child process that is killed and reaped when dropped, so a panic or an early return never
/// leaves a sandbox or a submit run behind.
struct KillOnDrop(Child);

impl KillOnDrop {
    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.0.try_wait()
    }

    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }

    fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.0.wait()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Both do nothing to a child that was already reaped, so no recycled pid is hit.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(unix)]
fn killed_by_sigkill(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(9)
}

#[cfg(not(unix))]
fn killed_by_sigkill(status: ExitStatus) -> bool {
    status.code().is_none()
}

/// An exit status in a few words: `exit 2`, or how it was killed.
fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit {code}"),
        None => status.to_string(),
    }
}

/// The `ccpayout sandbox` process and its address.
struct Sandbox {
    url: String,
    _process: KillOnDrop,
}

impl Sandbox {
    fn start(bin: &Path, seed: u64, readings: &Readings, log: &Path) -> anyhow::Result<Sandbox> {
        let stderr = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(bin);
        command.args(["sandbox", "--port", "0"]);
        for name in readings.names() {
            command.arg("--reading").arg(name);
        }
        let mut child = command
            .arg("--seed")
            .arg(seed.to_string())
            .args(["--settle-delay-ms", "300", "--fail-rate", "0.02"])
            .args(["--rate-limit", "150", "--burst", "20"])
            .args([
                "--fault-drop-after-commit",
                "0.15",
                "--fault-5xx",
                "0.05",
                "--fault-11002",
                "0.05",
            ])
            .args(["--fault-slow", "0.05", "--slow-ms", "400"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {} sandbox", bin.display()))?;
        let stdout = child.stdout.take();
        // From here on the sandbox dies with the guard, whatever happens.
        let process = KillOnDrop(child);
        let mut lines = BufReader::new(stdout.context("the sandbox's stdout is not piped")?);
        let mut first = String::new();
        lines
            .read_line(&mut first)
            .context("cannot read the sandbox's first line")?;
        let url = first
            .trim()
            .strip_prefix("ccpayout sandbox listening on ")
            .with_context(|| {
                format!(
                    "the sandbox did not announce its address (it said {first:?}; see {})",
                    log.display()
                )
            })?
            .trim_end_matches('/')
            .to_owned();
        // Drain the rest, so the sandbox never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
        Ok(Sandbox { url, _process: process })
    }
}

/// `GET {url}/sandbox/ledger`.
fn fetch_ledger(url: &str) -> anyhow::Result<Ledger> {
    fetch(url, "ledger").context("the ledger is not a ccpayout::sandbox::Ledger")
}

/// `GET {url}/sandbox/stats`.
fn fetch_stats(url: &str) -> anyhow::Result<SandboxStats> {
    fetch(url, "stats").context("the stats are not a ccpayout::sandbox::SandboxStats")
}

/// `GET {url}/sandbox/{what}`, decoded.
fn fetch<T: serde::de::DeserializeOwned>(url: &str, what: &str) -> anyhow::Result<T> {
    ccpayout::api::ensure_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let bytes = runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let reply = client
            .get(format!("{url}/sandbox/{what}"))
            .send()
            .await?
            .error_for_status()?;
        reply.bytes().await
    })?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// The parts of `<name>.result.json` the checks need.
#[derive(Debug, Deserialize)]
struct ResultFile {
    rows: Vec<ResultRow>,
}

#[derive(Debug, Deserialize)]
struct ResultRow {
    line: u64,
    order_id: Option<String>,
    status: String,
    record_id: Option<String>,
    amount_sent: Option<String>,
    /// The task columns, present for a row paid as a task of a batch withdrawal.
    batch_order_id: Option<String>,
    task_seq: Option<String>,
    ccpayment_order_id: Option<String>,
}

/// The one `*.result.json` in the reports folder (the harness pays one batch per state folder).
fn read_report(dir: &Path) -> Result<ResultFile, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("no reports folder {}: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".result.json"))
        .collect();
    let path = match found.len() {
        1 => found.remove(0),
        0 => return Err(format!("no *.result.json in {}", dir.display())),
        n => {
            return Err(format!(
                "{n} *.result.json files in {} (expected one batch)",
                dir.display()
            ));
        }
    };
    let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not a result report: {e}", path.display()))
}

/// What the runs did, apart from the ledger.
#[derive(Debug, Default)]
struct RunStats {
    /// Every `submit` started.
    runs: u32,
    /// Of those, the runs to completion after the kills.
    final_runs: u32,
    /// Kills that ended a live process.
    kills_hit: u32,
    /// When each of those kills was sent (Unix ms), to place it among the batch withdrawals'
    /// steps in the audit file.
    kill_times_ms: Vec<i64>,
    /// Runs of the kill loop that ended before their kill, by status.
    self_exits: BTreeMap<String, u32>,
}

impl RunStats {
    fn note_self_exit(&mut self, run: u32, status: ExitStatus, violations: &mut Vec<String>) {
        *self.self_exits.entry(describe(status)).or_default() += 1;
        // 0 and 1: the batch finished; 2: interrupted or a runtime error, which a resume must
        // get over. Anything else (a panic's 101, a signal) is a crash.
        if !matches!(status.code(), Some(0..=2)) {
            violations.push(format!("run {run} crashed: {}", describe(status)));
        }
    }
}

/// Milliseconds since the Unix epoch, on the clock ccpayout's audit lines use.
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Bundle phases from the most telling to the least: a kill is counted under the first phase
/// any bundle was in at that moment. The first four have a request's intent on disk and its
/// answer not yet recorded.
const PHASES: [&str; 10] = [
    "applying",
    "appending",
    "confirming",
    "aborting",
    "unknown",
    "open",
    "confirmed",
    "waiting",
    "done",
    "refused",
];

/// Each bundle's phase changes, from the audit lines `{id} ({from} → {to}): …` of `audit.jsonl`:
/// (at_ms, bundle id, the phase it entered), in the file's order. Empty when there is no file
/// (single mode) or it cannot be read.
fn bundle_transitions(audit: &Path) -> Vec<(i64, String, String)> {
    let Ok(text) = fs::read_to_string(audit) else {
        return Vec::new();
    };
    let mut transitions = Vec::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if entry["control"] != "bundle" {
            continue;
        }
        let (Some(at_ms), Some(detail)) = (entry["at_ms"].as_i64(), entry["detail"].as_str()) else {
            continue;
        };
        let Some((id, rest)) = detail.split_once(" (") else {
            continue;
        };
        let Some(to) = rest
            .split_once(')')
            .and_then(|(change, _)| change.split_once(" → "))
            .map(|(_, to)| to)
        else {
            continue;
        };
        transitions.push((at_ms, id.to_owned(), to.to_owned()));
    }
    transitions
}

/// The kills by the most telling phase a bundle was in when each was sent ([`PHASES`]); a kill
/// before any bundle left `waiting` counts as `waiting`.
fn kills_by_phase(transitions: &[(i64, String, String)], kill_times_ms: &[i64]) -> Vec<(&'static str, u32)> {
    let mut counts = [0u32; PHASES.len()];
    for &t in kill_times_ms {
        let mut phases: HashMap<&str, &str> = HashMap::new();
        for (_, id, to) in transitions.iter().take_while(|(at, _, _)| *at <= t) {
            phases.insert(id.as_str(), to.as_str());
        }
        let rank = phases
            .values()
            .filter_map(|phase| PHASES.iter().position(|p| p == phase))
            .min()
            .unwrap_or(PHASES.iter().position(|p| *p == "waiting").unwrap_or(0));
        counts[rank] += 1;
    }
    PHASES
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(p, n)| (*p, n))
        .collect()
}

/// The results of the checks.
#[derive(Debug, Default)]
struct Figures {
    /// order_ids with more than one payout (single or task, by [`LedgerPayout::merchant_ref`]).
    double_paid: usize,
    /// Payouts whose merchant reference is not an order_id of the file.
    stray_payouts: usize,
    /// Rows of the file missing from the report.
    lost: usize,
    /// Rows whose status can still change.
    non_final: usize,
    /// Rows whose report status disagrees with the ledger.
    mismatches: usize,
    /// Report rows by status.
    statuses: BTreeMap<String, usize>,
    /// What the sandbox answered to lookups.
    lookups: Lookups,
    /// The kills by the phase the batch withdrawals were in (batch mode).
    kill_phases: Vec<(&'static str, u32)>,
}

/// Lookups by orderId and status queries the sandbox answered, from its stats.
#[derive(Debug, Default)]
struct Lookups {
    /// `getAppWithdrawRecord` requests, and how many answered 11003 (no such order).
    by_order_id: u64,
    not_found: u64,
    /// `getAppWithdrawRecordList` pages.
    lists: u64,
    /// v1 `bill/info` requests.
    bills: u64,
    /// Requests answered 11013 NoSupportVersion (a v2 call to a v1-only account).
    refused_11013: u64,
}

impl Lookups {
    fn of(stats: &SandboxStats) -> Lookups {
        Lookups {
            by_order_id: stats.to_endpoint("getAppWithdrawRecord"),
            not_found: stats
                .requests
                .iter()
                .filter(|r| r.endpoint == "getAppWithdrawRecord" && r.code == 11003)
                .map(|r| r.count)
                .sum(),
            lists: stats.to_endpoint("getAppWithdrawRecordList"),
            bills: stats.to_endpoint("v1/bill/info"),
            refused_11013: stats.with_code(11013),
        }
    }
}

fn verify(
    order_ids: &[String],
    ledger: &Ledger,
    report: Result<ResultFile, String>,
    final_code: Option<i32>,
    v1: bool,
    violations: &mut Vec<String>,
) -> Figures {
    let mut figures = Figures::default();
    let in_file: HashMap<&str, usize> = order_ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();

    // A payout belongs to a row by its merchant reference: the orderId of a single withdrawal,
    // the remark (ccpayout's order_id) of a batch task, whose orderId is CCPayment's own.
    let mut payouts: HashMap<&str, Vec<&LedgerPayout>> = HashMap::new();
    for p in &ledger.payouts {
        payouts.entry(p.merchant_ref()).or_default().push(p);
    }
    let mut paid: Vec<(&str, &Vec<&LedgerPayout>)> = payouts.iter().map(|(id, ps)| (*id, ps)).collect();
    paid.sort_unstable_by_key(|(id, _)| *id);
    for (id, ps) in paid {
        if ps.len() > 1 {
            figures.double_paid += 1;
            let records: Vec<String> = ps.iter().map(|p| describe_payout(p)).collect();
            violations.push(format!("{id} was paid {} times ({})", ps.len(), records.join("; ")));
        }
        if !in_file.contains_key(id) {
            figures.stray_payouts += ps.len();
            violations.push(format!("payout for {id:?}, which is not in the batch"));
        }
    }

    let report = match report {
        Ok(report) => report,
        Err(e) => {
            figures.lost = order_ids.len();
            violations.push(e);
            return figures;
        }
    };
    let mut rows: HashMap<&str, &ResultRow> = HashMap::new();
    for row in &report.rows {
        *figures.statuses.entry(row.status.clone()).or_default() += 1;
        let Some(id) = row.order_id.as_deref() else {
            violations.push(format!("report line {} has no order_id", row.line));
            continue;
        };
        if rows.insert(id, row).is_some() {
            violations.push(format!("{id} is in the report more than once"));
        }
        if !in_file.contains_key(id) {
            violations.push(format!(
                "report line {} has order_id {id:?}, which is not in the batch",
                row.line
            ));
        }
    }

    let mut all_succeeded = true;
    for id in order_ids {
        let Some(row) = rows.get(id.as_str()) else {
            figures.lost += 1;
            violations.push(format!("{id} is missing from the report"));
            continue;
        };
        let expected = match row.status.as_str() {
            "success" => Some(RecordStatus::Success),
            "failed" => Some(RecordStatus::Failed),
            // Refused by CCPayment, or a batch task aborted before it ran: never paid.
            "rejected" | "cancelled" => None,
            other => {
                figures.non_final += 1;
                violations.push(format!(
                    "{id} ended with status {other:?}, not success, failed, rejected or cancelled"
                ));
                continue;
            }
        };
        all_succeeded &= row.status == "success";
        let found = payouts.get(id.as_str()).map(Vec::as_slice).unwrap_or_default();
        let problem = match (expected, found) {
            (None, []) => None,
            (None, [p, ..]) => Some(format!(
                "reported {}, but the ledger has a payout ({})",
                row.status,
                describe_payout(p)
            )),
            (Some(_), []) => Some(format!("reported {}, but the ledger has no payout", row.status)),
            (Some(want), [p, ..]) if p.status != want => Some(format!(
                "reported {}, but payout {} is {}",
                row.status,
                p.record_id,
                p.status.as_str()
            )),
            // A v1 row whose create reply was lost has no record id (bills carry none).
            (Some(_), [p, ..])
                if row.record_id.as_deref() != Some(p.record_id.as_str())
                    && !(v1 && row.record_id.as_deref().is_none_or(str::is_empty)) =>
            {
                Some(format!(
                    "reported record id {:?}, but the ledger's payout is {}",
                    row.record_id.as_deref().unwrap_or("(none)"),
                    p.record_id
                ))
            }
            (Some(_), [p, ..]) => task_problem(row, p),
        };
        if let Some(problem) = problem {
            figures.mismatches += 1;
            violations.push(format!("{id}: {problem}"));
        }
    }

    // Exit 0 promises every row succeeded; 1 that some did not.
    if let Some(code) = final_code
        && (code == 0) != all_succeeded
    {
        violations.push(format!(
            "the final run exited {code}, but {} row succeeded",
            if all_succeeded { "every" } else { "not every" }
        ));
    }
    figures
}

/// A payout in a few words: its record id, and for a batch task its batch, seq and orderId.
fn describe_payout(p: &LedgerPayout) -> String {
    if p.is_batch_task() {
        format!(
            "record {} {}, task {} of {} (orderId {})",
            p.record_id,
            p.status.as_str(),
            p.seq,
            p.batch_order_id,
            p.order_id
        )
    } else {
        format!("record {} {}, single withdrawal", p.record_id, p.status.as_str())
    }
}

/// Where a paid row's report disagrees with its payout beyond status and record id: the amount
/// sent, and the task columns (present exactly when the payout is a batch task, and naming its
/// batch, seq and CCPayment's orderId).
fn task_problem(row: &ResultRow, p: &LedgerPayout) -> Option<String> {
    let cell = |c: &Option<String>| c.as_deref().unwrap_or_default().to_owned();
    if let Some(amount) = row.amount_sent.as_deref().filter(|a| !a.is_empty())
        && amount != p.amount
    {
        return Some(format!("reported amount {amount}, but the ledger paid {}", p.amount));
    }
    let reported = (
        cell(&row.batch_order_id),
        cell(&row.task_seq),
        cell(&row.ccpayment_order_id),
    );
    if p.is_batch_task() {
        let ledger = (p.batch_order_id.clone(), p.seq.to_string(), p.order_id.clone());
        (reported != ledger).then(|| {
            format!(
                "reported as task {:?} seq {:?} with ccpayment_order_id {:?}, but the ledger paid task {} seq {} with orderId {}",
                reported.0, reported.1, reported.2, ledger.0, ledger.1, ledger.2
            )
        })
    } else {
        (!reported.0.is_empty() || !reported.2.is_empty()).then(|| {
            format!(
                "reported as task {:?} with ccpayment_order_id {:?}, but the ledger's payout {} is a single withdrawal",
                reported.0, reported.2, p.record_id
            )
        })
    }
}

struct Times {
    kills: Duration,
    final_runs: Duration,
    wall: Duration,
}

#[allow(clippy::too_many_arguments)]
fn print_figures(
    args: &Args,
    readings: &Readings,
    mode: &Mode,
    seed: u64,
    stats: &RunStats,
    ledger: &Ledger,
    sandbox_stats: Option<&SandboxStats>,
    figures: &Figures,
    times: Times,
) {
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    let mut faults_by_route: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut refusals: BTreeMap<i64, usize> = BTreeMap::new();
    let mut created = 0;
    for attempt in &ledger.attempts {
        match &attempt.outcome {
            AttemptOutcome::Created { .. } => created += 1,
            AttemptOutcome::Refused { code } => *refusals.entry(*code).or_default() += 1,
            AttemptOutcome::Fault { fault } => {
                *faults.entry(fault.as_str()).or_default() += 1;
                *faults_by_route
                    .entry((attempt.endpoint.as_str(), fault.as_str()))
                    .or_default() += 1;
            }
        }
    }
    // A committed create that was then dropped or slowed is logged twice: what the body did,
    // then the fault; counting those faults once more would count the request twice.
    let second_entries = faults.get("drop_after_commit").unwrap_or(&0) + faults.get("slow").unwrap_or(&0);
    let requests = ledger.attempts.len() - second_entries;
    let list = |m: Vec<String>| if m.is_empty() { "none".to_owned() } else { m.join(", ") };
    let self_exits = list(stats.self_exits.iter().map(|(k, n)| format!("{k}: {n}")).collect());

    println!("chaos: figures");
    println!("  readings                  {readings}");
    println!("  withdraw mode             {mode}");
    println!("  rows                      {}", args.rows);
    println!(
        "  kills                     {} of {} hit a running process",
        stats.kills_hit, args.kills
    );
    println!(
        "  runs                      {} ({} to completion)",
        stats.runs, stats.final_runs
    );
    println!("  ended before their kill   {self_exits}");
    println!(
        "  creates in the ledger     {requests} requests ({} entries): {created} created, {} refused, {} faults",
        ledger.attempts.len(),
        refusals.values().sum::<usize>(),
        faults.values().sum::<usize>()
    );
    println!(
        "  faults by kind            {}",
        list(faults.iter().map(|(k, n)| format!("{k}: {n}")).collect())
    );
    println!(
        "  refusals by code          {}",
        list(refusals.iter().map(|(k, n)| format!("{k}: {n}")).collect())
    );
    println!("  11004 rate limited        {}", refusals.get(&11004).unwrap_or(&0));
    let l = &figures.lookups;
    println!(
        "  lookups                   {} by orderId ({} answered 11003), {} record lists, {} v1 bills; {} answered 11013",
        l.by_order_id, l.not_found, l.lists, l.bills, l.refused_11013
    );
    let tasks: Vec<&LedgerPayout> = ledger.payouts.iter().filter(|p| p.is_batch_task()).collect();
    let mut batches: Vec<&str> = tasks.iter().map(|p| p.batch_order_id.as_str()).collect();
    batches.sort_unstable();
    batches.dedup();
    println!(
        "  payouts in the ledger     {} ({} batch tasks in {} batches, {} single withdrawals)",
        ledger.payouts.len(),
        tasks.len(),
        batches.len(),
        ledger.payouts.len() - tasks.len()
    );
    if mode.is_batch() {
        let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &tasks {
            *by_status.entry(p.status.as_str()).or_default() += 1;
        }
        println!(
            "  kills by batch phase      {} (the most telling phase a batch was in)",
            list(figures.kill_phases.iter().map(|(k, n)| format!("{k}: {n}")).collect())
        );
        println!(
            "  tasks paid                {} ({})",
            tasks.len(),
            list(by_status.iter().map(|(k, n)| format!("{k}: {n}")).collect())
        );
        match sandbox_stats {
            Some(s) => {
                println!("  batch requests by route   (requests, then by answer)");
                for route in BATCH_ROUTES {
                    let mut codes: Vec<String> = s
                        .requests
                        .iter()
                        .filter(|r| r.endpoint == route)
                        .map(|r| match r.code {
                            STATS_SUCCESS => format!("{} ok", r.count),
                            STATS_NO_REPLY => format!("{} no reply", r.count),
                            code => format!("{} × {code}", r.count),
                        })
                        .collect();
                    if codes.is_empty() {
                        codes.push("none".to_owned());
                    }
                    println!("    {route:<32} {} ({})", s.to_endpoint(route), codes.join(", "));
                }
                println!("  requests, every endpoint  {}", s.total());
            }
            None => println!("  batch requests            (the sandbox's stats could not be read)"),
        }
        println!(
            "  faults by route           {}",
            list(
                faults_by_route
                    .iter()
                    .map(|((route, fault), n)| format!("{route} {fault}: {n}"))
                    .collect()
            )
        );
    }
    println!(
        "  report statuses           {}",
        list(figures.statuses.iter().map(|(k, n)| format!("{k}: {n}")).collect())
    );
    println!("  double payments           {}", figures.double_paid);
    println!("  payouts not in the batch  {}", figures.stray_payouts);
    println!("  lost orders               {}", figures.lost);
    println!("  non-final rows            {}", figures.non_final);
    println!("  report/ledger mismatches  {}", figures.mismatches);
    println!(
        "  time                      {:.1} s (kills {:.1} s, runs to completion {:.1} s)",
        times.wall.as_secs_f64(),
        times.kills.as_secs_f64(),
        times.final_runs.as_secs_f64()
    );
    println!("  seed                      {seed}");
}

/// splitmix64: a tiny seeded generator, so the harness needs no rand crate and a seed repeats
/// the same batch and the same delays.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0); the modulo bias is far below anything that matters here.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}
