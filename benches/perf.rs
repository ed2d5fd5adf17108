//! The performance benchmark: every scenario of the product's quality bars, measured against the
//! sandbox running as its own process, each figure printed next to its bar with PASS or MISS.
//!
//! # How to run it
//!
//! ```text
//! cargo bench --bench perf                            # every scenario at full size
//! cargo bench --bench perf -- --quick                 # every scenario, smaller, under 2 minutes
//! cargo bench --bench perf -- --only ingest,restart   # some scenarios (combine with --quick)
//! ```
//!
//! `cargo bench` builds the release profile and passes `--bench`, which is ignored. The summary
//! (a table, the core count, the date and the git commit) is printed at the end and written to
//! `target/perf/summary.json`. The exit code is 0 even when a bar is missed (that is a MISS in
//! the table); it is 1 only when a correctness check fails (an order lost or paid twice, a child
//! that crashed, a figure that cannot be trusted), 2 on a usage error. Linux only (`/proc`,
//! `wait4`, Unix sockets).
//!
//! # The scenarios
//!
//! Each runs in its own temporary folder with its own `ccpayout sandbox --port 0` process;
//! `ccpayout` runs as child processes with `--config` and `--state-dir` in that folder. Every
//! child is killed when its scenario ends, however it ends.
//!
//! 1. `throughput`: `submit` of N orders (100,000; quick 20,000) against an unlimited sandbox
//!    that settles at once; orders per second from spawn to exit (≥ 5,000), CPU time per order and
//!    peak RSS of the `submit` process (`wait4`), API requests per order from the sandbox's
//!    statistics (total ≤ 1.1, status tracking ≤ 0.1), the sandbox's own CPU time; the ledger
//!    must show every order paid exactly once.
//! 2. `baseline`: the simplest correct sequential client, written here with the library's
//!    `api::Client` (intent fsynced, create, result fsynced, poll by orderId until final, fsynced),
//!    on 3,000 orders (quick 1,000) against the same kind of sandbox: its orders per second and the
//!    engine's speed-up over it.
//! 3. `rate-limit-match`: the API limit equals the configured one (50/s, burst 10); over the
//!    steady window (60 s, quick 20 s, the first 2 s skipped) the accepted requests per second as a
//!    share of the limit (≥ 98 %) and the 11004 answers (0), from the sandbox's per-second series.
//! 4. `rate-limit-unknown`: the API allows 30/s, ccpayout is configured for 50/s: the accepted rate
//!    as a share of 30/s (≥ 90 %) and the share of requests answered 11004 (< 1 %).
//! 5. `daily-cap`: the sandbox caps creates per short "day"; a batch larger than the cap; for each
//!    reset after a day that hit the cap, the time from the reset instant to the first create
//!    (≤ 1 s), once with `submit` SIGTERMed during the pause and started again before the reset.
//! 6. `ingest`: parse and validate a generated 1,000,000-row CSV (both modes) in a child process
//!    (this program re-executed), so its peak RSS is its own: seconds (≤ 3) and peak RSS (≤ 200 MB).
//! 7. `restart`: a state folder with 1,000,000 stored orders waiting for approval (in both modes),
//!    and the daemon's time from spawn to `READY=1` on a fake `NOTIFY_SOCKET`
//!    and to the first answered `status` on its control socket, first start, after SIGTERM and
//!    after SIGKILL (≤ 2 s each); also how long storing the batch took and its peak RSS.
//! 8. `idle`: the daemon on an empty inbox and state, sampled over 60 s (quick 15 s): peak VmRSS
//!    (≤ 30 MB), CPU used (≤ 1 % of a core) and wake-ups per second (context switches of all its
//!    threads; ≤ 10/s), which show there is no busy polling.
//!
//! 9. `latency`: the sandbox adds 50, 150 and 300 ms to every API request (API limit 100/s);
//!    `submit` at default settings except `rate_per_second = 100` beside the simplest sequential
//!    client: the accepted rate while sending as a share of the limit (≥ 95 % at each latency),
//!    the 11004 answers (0), the time to all final and its ratio to the sequential client's, the
//!    TCP connections opened.
//! 10. `batch-mode`: 10,000 USDT payouts (quick 2,000) over TRX, POLYGON and BSC, the merchant
//!     paying the fee, paid once with `withdraw_mode = "single"` and once with `"batch"` against
//!     an API limit of 10/s (ccpayout configured at 10/s): API requests per order (batch mode
//!     ≤ 0.1) and the time to all final in each mode; the ledger must show every row paid
//!     exactly once by its merchant reference.
//!
//! `benches/README.md` explains every figure.

// The modules live in benches/perf/ (a crate root's modules are looked up beside it).
#[path = "perf/batch_mode.rs"]
mod batch_mode;
#[path = "perf/daily_cap.rs"]
mod daily_cap;
#[path = "perf/data.rs"]
mod data;
#[path = "perf/harness.rs"]
mod harness;
#[path = "perf/idle.rs"]
mod idle;
#[path = "perf/ingest.rs"]
mod ingest;
#[path = "perf/latency.rs"]
mod latency;
#[path = "perf/rate_limit.rs"]
mod rate_limit;
#[path = "perf/report.rs"]
mod report;
#[path = "perf/restart.rs"]
mod restart;
#[path = "perf/throughput.rs"]
mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use report::{About, Report, load_average};

/// Requests in flight at once in the throughput scenario (`limits.concurrency`).
pub const THROUGHPUT_CONCURRENCY: u32 = 64;

/// What the scenarios share.
pub struct Ctx {
    /// Smaller sizes and windows, all scenarios in under two minutes.
    pub quick: bool,
    /// The `ccpayout` binary cargo built for this benchmark.
    pub bin: PathBuf,
    /// The scenarios selected to run.
    pub selected: Vec<&'static str>,
    /// Orders per second of the throughput scenario, for the baseline's comparison.
    pub engine_orders_per_second: Option<f64>,
    /// The rate-limit-unknown window, when quick mode runs it beside rate-limit-match.
    pub rate_limit_unknown: Option<rate_limit::Pending>,
}

impl Ctx {
    /// Whether `scenario` is selected to run.
    pub fn selected(&self, scenario: &str) -> bool {
        self.selected.contains(&scenario)
    }
}

type Scenario = fn(&mut Ctx, &mut Report) -> anyhow::Result<()>;

/// Every scenario, in the order they run.
const SCENARIOS: [(&str, Scenario); 11] = [
    ("throughput", throughput::engine),
    ("notices", throughput::with_notices),
    ("baseline", throughput::baseline),
    ("rate-limit-match", rate_limit::limits_match),
    ("rate-limit-unknown", rate_limit::unknown_lower_limit),
    ("daily-cap", daily_cap::run),
    ("ingest", ingest::run),
    ("restart", restart::run),
    ("idle", idle::run),
    ("latency", latency::run),
    ("batch-mode", batch_mode::run),
];

const USAGE: &str = "usage: cargo bench --bench perf [-- [--quick] [--only NAME[,NAME...]]]
scenarios: throughput, notices, baseline, rate-limit-match, rate-limit-unknown, daily-cap, ingest, restart, idle, latency,
           batch-mode";

/// The command line.
#[derive(Debug, Default)]
struct Args {
    quick: bool,
    only: Option<Vec<String>>,
    /// Hidden: be the ingest child (validate FILE, print JSON).
    ingest_child: Option<PathBuf>,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut parsed = Args::default();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => parsed.quick = true,
                // cargo bench passes it to every bench target.
                "--bench" => {}
                "--only" => {
                    let names = args.next().ok_or("--only needs scenario names")?;
                    parsed.only = Some(names.split(',').map(str::to_owned).collect());
                }
                ingest::CHILD_FLAG => {
                    let file = args.next().ok_or("missing file")?;
                    parsed.ingest_child = Some(PathBuf::from(file));
                }
                "-h" | "--help" => return Err(String::new()),
                other => match other.strip_prefix("--only=") {
                    Some(names) => parsed.only = Some(names.split(',').map(str::to_owned).collect()),
                    None => return Err(format!("unknown argument {other:?}")),
                },
            }
        }
        if let Some(only) = &parsed.only
            && let Some(unknown) = only.iter().find(|n| !SCENARIOS.iter().any(|(s, _)| s == n))
        {
            return Err(format!("unknown scenario {unknown:?}"));
        }
        Ok(parsed)
    }
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("perf: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(file) = &args.ingest_child {
        return ingest::child(file);
    }
    let started = Instant::now();
    let load_at_start = load_average();
    let selected: Vec<(&'static str, Scenario)> = SCENARIOS
        .into_iter()
        .filter(|(name, _)| args.only.as_ref().is_none_or(|only| only.iter().any(|n| n == name)))
        .collect();
    let mut ctx = Ctx {
        quick: args.quick,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_ccpayout")),
        selected: selected.iter().map(|(name, _)| *name).collect(),
        engine_orders_per_second: None,
        rate_limit_unknown: None,
    };
    let mode = if args.quick { "quick" } else { "full" };
    println!(
        "perf: {mode} run, binary {}, load average {load_at_start}",
        ctx.bin.display()
    );
    let mut report = Report::default();
    for (name, scenario) in selected {
        report.begin(name);
        let scenario_started = Instant::now();
        let result = scenario(&mut ctx, &mut report).map_err(|e| e.context(format!("scenario {name}")));
        report.end(scenario_started.elapsed(), result);
    }
    let about = About {
        mode,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        date_utc: chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        commit: git_commit(),
        wall_seconds: started.elapsed().as_secs_f64(),
        load_at_start,
        load_at_end: load_average(),
    };
    println!("\n== summary ==\n{}", report.summary(&about));
    let json = summary_path();
    match report.write_json(&about, &json) {
        Ok(()) => println!("summary written to {}", json.display()),
        Err(e) => eprintln!("perf: cannot write {}: {e:#}", json.display()),
    }
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `git rev-parse --short HEAD` in the crate's folder, or `unknown`.
fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `target/perf/summary.json`: the target folder is three levels above this program
/// (`target/release/deps/perf-…`).
fn summary_path() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("perf").join("summary.json")
}
