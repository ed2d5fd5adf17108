//! Scenario 10: batch mode. The same file of N USDT payouts over TRX, POLYGON and BSC, the
//! merchant paying every fee, is paid twice against a sandbox that allows 10 requests a second:
//! once with `withdraw_mode = "single"` (a create per row, then status queries of 20 orderIds)
//! and once with `withdraw_mode = "batch"` (CCPayment's batch withdrawals: an apply and a confirm
//! per bundle of up to 500 tasks of one coin on one chain, then the batch and its task list).
//! ccpayout is configured at the API's rate (`rate_per_second = 10`).
//!
//! Figures per mode: the API requests per order (every request the sandbox counted, preflight
//! included, over the orders; bar for batch mode ≤ 0.1) and the time from spawning `submit` to
//! its exit with every order final, batch mode's beside single mode's. The ledger must show
//! every row paid exactly once, by its merchant reference (a task's remark, a single
//! withdrawal's orderId), and `Success`.

use std::time::Duration;

use anyhow::{Context, bail};
use ccpayout::api::types::method;
use ccpayout::sandbox::SandboxStats;

use crate::Ctx;
use crate::data::{order_id, paid_exactly_once, write_batch_mode_batch};
use crate::harness::{Ccpayout, SandboxProc, config_toml, temp_dir};
use crate::report::{Figure, Report};

/// The API's limit, and ccpayout's configured rate.
const API_PER_SECOND: u32 = 10;
/// The sandbox's pause between two tasks of a batch withdrawal in `Single` execution (its default
/// is 100 ms: 476 tasks of a bundle would take 48 s of sandbox time).
const TASK_INTERVAL_MS: u64 = 1;
/// The order ids' prefix.
const PREFIX: &str = "bm";

/// How `submit` pays the network rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Single,
    Batch,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Batch => "batch",
        }
    }
}

/// What one `submit` showed.
struct Leg {
    seconds: f64,
    stats: SandboxStats,
    /// What `submit` said it sent (`API requests this run: N (…)`).
    submit_said: String,
    tasks: usize,
    batches: usize,
}

impl Leg {
    fn requests_per_order(&self, rows: u64) -> f64 {
        self.stats.total() as f64 / rows as f64
    }
}

pub fn run(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let rows: u64 = if ctx.quick { 2_000 } else { 10_000 };
    println!(
        "  {rows} orders (USDT on TRX, POLYGON, BSC; merchant pays the fee), API limit {API_PER_SECOND}/s, rate_per_second = {API_PER_SECOND}"
    );
    let batch = leg(ctx, Mode::Batch, rows)?;
    let single = leg(ctx, Mode::Single, rows)?;
    for (mode, leg) in [(Mode::Batch, &batch), (Mode::Single, &single)] {
        println!(
            "  {} mode: {rows} orders final in {:.1} s, {} requests (submit: {}), {} tasks in {} batch withdrawals",
            mode.name(),
            leg.seconds,
            leg.stats.total(),
            leg.submit_said,
            leg.tasks,
            leg.batches
        );
    }

    let routes = |s: &SandboxStats| {
        let count = |m: &str| s.to_endpoint(m);
        let batch_reads = count(method::GET_BATCH_WITHDRAW_ORDER) + count(method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST);
        let creates = count(method::APPLY_APP_WITHDRAW_TO_NETWORK) + count(method::APPLY_APP_WITHDRAW_TO_CWALLET);
        let tracking = count(method::GET_APP_WITHDRAW_RECORD_LIST) + count(method::GET_APP_WITHDRAW_RECORD);
        let batch_writes = count(method::APPLY_BATCH_WITHDRAW)
            + count(method::APPEND_BATCH_WITHDRAW)
            + count(method::CONFIRM_BATCH_WITHDRAW)
            + count(method::ABORT_BATCH_WITHDRAW);
        let other = s.total() - batch_reads - creates - tracking - batch_writes;
        format!(
            "{} requests: {} apply, {} append, {} confirm, {batch_reads} batch reads, {creates} single creates, {tracking} record queries, {other} preflight and other; {} answered 11004",
            s.total(),
            count(method::APPLY_BATCH_WITHDRAW),
            count(method::APPEND_BATCH_WITHDRAW),
            count(method::CONFIRM_BATCH_WITHDRAW),
            s.with_code(11004)
        )
    };
    report.add(
        Figure::new("batch mode: API requests per order", batch.requests_per_order(rows), "")
            .at_most(0.1)
            .note(routes(&batch.stats)),
    );
    report.add(
        Figure::new(
            "single mode: API requests per order",
            single.requests_per_order(rows),
            "",
        )
        .note(routes(&single.stats)),
    );
    report.add(
        Figure::new("batch mode: time to all final", batch.seconds, "s").note(format!(
            "single mode {:.1} s; {rows} orders, spawn to exit",
            single.seconds
        )),
    );
    report.add(
        Figure::new("single mode: time to all final", single.seconds, "s").note(format!(
            "{rows} creates at {API_PER_SECOND}/s take {} s alone",
            rows / u64::from(API_PER_SECOND)
        )),
    );
    report.add(
        Figure::new("single / batch time", single.seconds / batch.seconds, "×")
            .note("how much sooner batch mode has every order final"),
    );
    println!("  ledger: in both modes each of the {rows} orders paid exactly once (by merchant reference), Success");
    Ok(())
}

fn sandbox_flags() -> Vec<String> {
    [
        "--rate-limit",
        &API_PER_SECOND.to_string(),
        "--burst",
        &API_PER_SECOND.to_string(),
        "--settle-delay-ms",
        "0",
        "--batch-task-interval-ms",
        &TASK_INTERVAL_MS.to_string(),
        "--balance",
        "USDT=1000000000",
        "--balance",
        "MATIC=1000000",
    ]
    .map(String::from)
    .to_vec()
}

/// `submit` of the file in one mode, against its own sandbox; checks the ledger.
fn leg(ctx: &Ctx, mode: Mode, rows: u64) -> anyhow::Result<Leg> {
    let dir = temp_dir(&format!("batch-mode-{}", mode.name()))?;
    let file = dir.path().join("batch-mode.csv");
    write_batch_mode_batch(&file, PREFIX, rows)?;
    let mut sandbox = SandboxProc::start(&ctx.bin, dir.path(), &sandbox_flags())?;
    let ccpayout = Ccpayout::new(&ctx.bin, dir.path(), &sandbox.url, &config(mode))?;
    let mut submit = ccpayout.spawn("submit", &["submit", &file.to_string_lossy()])?;
    // Single mode sends a create per row at 10/s.
    let exit = submit.wait(Duration::from_secs(600 + rows / 5))?;
    let seconds = submit.started().elapsed().as_secs_f64();
    if exit.status.code() != Some(0) {
        bail!(
            "{} mode: submit ended with {}, not exit 0{}",
            mode.name(),
            exit.describe(),
            submit.log_tail()
        );
    }
    let stats = sandbox.stats()?;
    let ledger = sandbox.ledger()?;
    sandbox.ensure_running()?;
    paid_exactly_once(&ledger, PREFIX, rows)
        .with_context(|| format!("{} mode: the ledger disagrees with the batch", mode.name()))?;
    let tasks = ledger.payouts.iter().filter(|p| p.is_batch_task()).count();
    let mut batches: Vec<&str> = ledger
        .payouts
        .iter()
        .filter(|p| p.is_batch_task())
        .map(|p| p.batch_order_id.as_str())
        .collect();
    batches.sort_unstable();
    batches.dedup();
    // Each mode must have paid the way it says: batch mode every row as a task, single mode none.
    let expected_tasks = match mode {
        Mode::Batch => rows as usize,
        Mode::Single => 0,
    };
    if tasks != expected_tasks {
        bail!(
            "{} mode: the ledger has {tasks} batch tasks, expected {expected_tasks} (first row {})",
            mode.name(),
            order_id(PREFIX, 0)
        );
    }
    let stdout = ccpayout.stdout_of("submit");
    let submit_said = stdout
        .lines()
        .find_map(|l| l.strip_prefix("API requests this run: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    Ok(Leg {
        seconds,
        stats,
        submit_said,
        tasks,
        batches: batches.len(),
    })
}

/// The same limits in both modes; batch mode adds `withdraw_mode = "batch"` (CCPayment's default
/// `single` execution, no confirm delay).
fn config(mode: Mode) -> String {
    let limits = [
        format!("rate_per_second = {API_PER_SECOND}"),
        "track_first_check_secs = 1".to_owned(),
    ];
    let limits: Vec<&str> = limits.iter().map(String::as_str).collect();
    let api = match mode {
        Mode::Single => "[api]\nwithdraw_mode = \"single\"\n",
        Mode::Batch => "[api]\nwithdraw_mode = \"batch\"\n",
    };
    format!("{api}{}", config_toml(&limits, "never"))
}
