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
//!   `failed` ⇔ a `Failed` payout with the same record id, `rejected` ⇔ no payout;
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
//!   it can take); nor other chains (but USDC on POLYGON under `pre-delisting`), Cwallet
//!   transfers, webhooks, approval, daily caps or full disks. v1 only under `--reading v1-only`.
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
use ccpayout::api::types::RecordStatus;
use ccpayout::sandbox::demo::v1_token_id;
use ccpayout::sandbox::readings::PRE_DELISTING_COIN;
use ccpayout::sandbox::{AttemptOutcome, DEMO_APP_ID, DEMO_APP_SECRET, Ledger, LedgerPayout, Readings, SandboxStats};
use clap::Parser;
use serde::Deserialize;

/// Valid TRON addresses the sandbox pays normally (not its always-failing demo address).
const RECIPIENTS: [&str; 3] = [
    "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K",
    "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr",
    "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq",
];

/// Valid POLYGON addresses for the USDC rows under `pre-delisting`.
const EVM_RECIPIENTS: [&str; 3] = [
    "0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d",
    "0x09a939da0a61353314b90d4bdcc7d7450c847008",
    "0xfd8a42518aa107f174cb78a6bbeef965d4f0bd15",
];

/// The config: fast tracking, so a batch settles within seconds of its last send; a short
/// request timeout, so "no such order" after a lost request is confirmed in seconds rather than
/// a minute, but never before a lagging lookup can see the create (`lookup-lag`); v1 for an
/// account that only speaks v1.
fn config_toml(readings: &Readings) -> String {
    let confirm_secs = not_found_confirm_secs(readings);
    let version = if readings.v1_only { "version = \"v1\"\n" } else { "" };
    format!(
        "[api]\n{version}connect_timeout_ms = 1000\nrequest_timeout_ms = 3000\n\
         [limits]\nrate_per_second = 200\nconcurrency = 8\ntrack_first_check_secs = 1\ntrack_max_interval_secs = 2\n\
         not_found_confirm_secs = {confirm_secs}\n"
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
/// Ample for 500 rows at the configured rate with 300 ms settlement; a hang is a finding.
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        // Any value will do; it is printed so the run can be repeated.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        SplitMix64(now.as_nanos() as u64).next_u64()
    });
    let readings = match args.readings() {
        Ok(readings) => readings,
        Err(e) => {
            eprintln!("chaos: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("chaos: seed {seed} (repeat with --seed {seed}), readings: {readings}");
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
    let outcome = chaos(&args, &readings, seed, &bin, dir.path());
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
fn chaos(args: &Args, readings: &Readings, seed: u64, bin: &Path, root: &Path) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let state = root.join("state");
    let config_path = root.join("ccpayout.toml");
    fs::write(&config_path, config_toml(readings)).context("cannot write the config")?;
    let batch_path = root.join("chaos.csv");
    // Separate streams, so that changing --kills or --max-delay-ms keeps the same batch.
    let order_ids = write_batch(
        &batch_path,
        args.rows,
        readings,
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
                child.kill()?;
                let status = child.wait()?;
                if killed_by_sigkill(status) {
                    stats.kills_hit += 1;
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

    // Run to completion.
    let final_started = Instant::now();
    let mut final_code = None;
    for attempt in 1..=FINAL_ATTEMPTS {
        stats.runs += 1;
        stats.final_runs += 1;
        let mut child = submit.start(stats.runs, &format!("final run, attempt {attempt}"))?;
        let deadline = Instant::now() + FINAL_TIMEOUT;
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
                FINAL_TIMEOUT.as_secs()
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
    // What the lookups met (a lagging read answers 11003); only for the figures.
    let lookups = fetch_stats(&sandbox.url).map(|s| Lookups::of(&s)).unwrap_or_default();
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
    figures.lookups = lookups;

    print_figures(
        args,
        readings,
        seed,
        &stats,
        &ledger,
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
/// token.
fn write_batch(path: &Path, rows: u32, readings: &Readings, rng: &mut SplitMix64) -> anyhow::Result<Vec<String>> {
    let mut csv = String::from(if readings.v1_only {
        "order_id,recipient,coin,chain,amount,token_id\n"
    } else {
        "order_id,recipient,coin,chain,amount\n"
    });
    let mut ids = Vec::with_capacity(rows as usize);
    for i in 0..rows {
        let id = format!("chaos-{i:05}");
        let pick = rng.below(RECIPIENTS.len() as u64) as usize;
        let (recipient, coin, chain) = if readings.pre_delisting && i % 5 == 4 {
            (EVM_RECIPIENTS[pick], PRE_DELISTING_COIN, "POLYGON")
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

/// The results of the checks.
#[derive(Debug, Default)]
struct Figures {
    /// orderIds with more than one payout.
    double_paid: usize,
    /// Payouts whose orderId is not in the file.
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

    let mut payouts: HashMap<&str, Vec<&LedgerPayout>> = HashMap::new();
    for p in &ledger.payouts {
        payouts.entry(p.order_id.as_str()).or_default().push(p);
    }
    let mut paid: Vec<(&str, &Vec<&LedgerPayout>)> = payouts.iter().map(|(id, ps)| (*id, ps)).collect();
    paid.sort_unstable_by_key(|(id, _)| *id);
    for (id, ps) in paid {
        if ps.len() > 1 {
            figures.double_paid += 1;
            let records: Vec<&str> = ps.iter().map(|p| p.record_id.as_str()).collect();
            violations.push(format!(
                "{id} was paid {} times (records {})",
                ps.len(),
                records.join(", ")
            ));
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
            "rejected" => None,
            other => {
                figures.non_final += 1;
                violations.push(format!(
                    "{id} ended with status {other:?}, not success, failed or rejected"
                ));
                continue;
            }
        };
        all_succeeded &= row.status == "success";
        let found = payouts.get(id.as_str()).map(Vec::as_slice).unwrap_or_default();
        let problem = match (expected, found) {
            (None, []) => None,
            (None, [p, ..]) => Some(format!(
                "reported rejected, but the ledger has payout {} ({})",
                p.record_id,
                p.status.as_str()
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
            (Some(_), _) => None,
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

struct Times {
    kills: Duration,
    final_runs: Duration,
    wall: Duration,
}

fn print_figures(
    args: &Args,
    readings: &Readings,
    seed: u64,
    stats: &RunStats,
    ledger: &Ledger,
    figures: &Figures,
    times: Times,
) {
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    let mut refusals: BTreeMap<i64, usize> = BTreeMap::new();
    let mut created = 0;
    for attempt in &ledger.attempts {
        match &attempt.outcome {
            AttemptOutcome::Created { .. } => created += 1,
            AttemptOutcome::Refused { code } => *refusals.entry(*code).or_default() += 1,
            AttemptOutcome::Fault { fault } => *faults.entry(fault.as_str()).or_default() += 1,
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
    println!("  payouts in the ledger     {}", ledger.payouts.len());
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
