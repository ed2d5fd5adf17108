//! Scenario 9: the whole quota at real network latency. CCPayment is far away (150–300 ms a round
//! trip from Europe or America); the sandbox adds that latency to every API request. At 50, 150
//! and 300 ms, with an API limit of 100/s, `submit` runs with every setting at its default except
//! `rate_per_second = 100`, beside the simplest correct sequential client (sign, post, journal
//! with fsync; then poll 20 orderIds a query until all are final).
//!
//! Figures per latency: the accepted requests per second while the creates were being sent, as a
//! share of the API limit (bar ≥ 95 %), the 11004 answers (bar 0), the time until every order was
//! final, the baseline's time for the same rows (measured on fewer rows and scaled: it is
//! sequential, its time is linear in the rows), the ratio, and the TCP connections ccpayout
//! opened (they are reused: a handful, not one per request).

use std::fs::{File, OpenOptions};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ccpayout::api::Client;
use ccpayout::api::types::WithdrawRecordListQuery;
use ccpayout::sandbox::{Ledger, SandboxStats};

use crate::Ctx;
use crate::data::{TRON, order_id, paid_exactly_once, write_trx_batch};
use crate::harness::{Ccpayout, SandboxProc, config_toml, temp_dir};
use crate::report::{Figure, Report};
use crate::throughput::{append, client_for, trx_payout};

/// The API's limit, and ccpayout's configured rate.
const API_PER_SECOND: u32 = 100;
/// Round trips added to every API request, in milliseconds.
const LATENCIES_MS: [u64; 3] = [50, 150, 300];

pub fn run(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    // Enough creates for a steady window of several seconds at 100/s.
    let rows: u64 = if ctx.quick { 600 } else { 1_500 };
    let baseline_rows: u64 = if ctx.quick { 40 } else { 100 };
    for latency in LATENCIES_MS {
        let engine = engine(ctx, latency, rows)?;
        let baseline = baseline(ctx, latency, baseline_rows)?;
        println!(
            "  {latency} ms: {rows} orders final in {:.1} s ({} creates over {} s, {:.1} accepted/s); baseline {:.2} orders/s",
            engine.all_final_secs,
            engine.creates,
            engine.window_secs,
            engine.accepted as f64 / engine.window_secs as f64,
            baseline
        );
        let share = engine.accepted as f64 / engine.window_secs as f64 / f64::from(API_PER_SECOND) * 100.0;
        report.add(
            Figure::new(format!("{latency} ms: accepted requests / API limit"), share, "%")
                .at_least(95.0)
                .note(format!(
                    "{} accepted over the {} s of sending; in flight at most {} (default cap 64)",
                    engine.accepted, engine.window_secs, engine.peak_in_flight
                )),
        );
        report.add(
            Figure::new(format!("{latency} ms: 11004 answers"), engine.rate_limited as f64, "")
                .at_most(0.0)
                .note("whole run"),
        );
        let baseline_secs = rows as f64 / baseline;
        report.add(
            Figure::new(
                format!("{latency} ms: ccpayout / sequential"),
                baseline_secs / engine.all_final_secs,
                "×",
            )
            .note(format!(
                "{rows} orders all final: {:.1} s against {:.1} s ({baseline:.2} orders/s over {baseline_rows})",
                engine.all_final_secs, baseline_secs
            )),
        );
        report.add(
            Figure::new(format!("{latency} ms: TCP connections"), engine.connections as f64, "")
                .note(format!("for {} requests", engine.requests)),
        );
    }
    Ok(())
}

/// What one `submit` at one latency showed.
struct EngineRun {
    all_final_secs: f64,
    creates: u64,
    window_secs: u64,
    accepted: u64,
    rate_limited: u64,
    connections: u64,
    requests: u64,
    peak_in_flight: u64,
}

fn sandbox_flags(latency: u64) -> Vec<String> {
    [
        "--rate-limit",
        &API_PER_SECOND.to_string(),
        "--burst",
        &API_PER_SECOND.to_string(),
        "--latency-ms",
        &latency.to_string(),
        "--settle-delay-ms",
        "1000",
        "--balance",
        "USDT=1000000000",
    ]
    .map(String::from)
    .to_vec()
}

fn engine(ctx: &Ctx, latency: u64, rows: u64) -> anyhow::Result<EngineRun> {
    let dir = temp_dir("latency")?;
    let batch = dir.path().join("latency.csv");
    write_trx_batch(&batch, "lt", rows)?;
    let mut sandbox = SandboxProc::start(&ctx.bin, dir.path(), &sandbox_flags(latency))?;
    let rate = format!("rate_per_second = {API_PER_SECOND}");
    let ccpayout = Ccpayout::new(
        &ctx.bin,
        dir.path(),
        &sandbox.url,
        &config_toml(&[rate.as_str()], "never"),
    )?;
    let mut submit = ccpayout.spawn("submit", &["submit", &batch.to_string_lossy()])?;
    let exit = submit.wait(Duration::from_secs(600))?;
    let seconds = submit.started().elapsed().as_secs_f64();
    if exit.status.code() != Some(0) {
        bail!("submit ended with {}, not exit 0{}", exit.describe(), submit.log_tail());
    }
    let stats = sandbox.stats()?;
    let ledger = sandbox.ledger()?;
    sandbox.ensure_running()?;
    paid_exactly_once(&ledger, "lt", rows).context("the ledger disagrees with the batch")?;
    let (window_secs, accepted, creates) = sending_window(&stats, &ledger)?;
    Ok(EngineRun {
        all_final_secs: seconds,
        creates,
        window_secs,
        accepted,
        rate_limited: stats.with_code(11004),
        connections: stats.connections,
        requests: stats.total(),
        peak_in_flight: peak_in_flight(&ccpayout.stdout_of("submit")),
    })
}

/// The whole seconds strictly between the second of the first create and that of the last: the
/// accepted requests in them (creates and the status queries beside them) and the creates.
fn sending_window(stats: &SandboxStats, ledger: &Ledger) -> anyhow::Result<(u64, u64, u64)> {
    let first = ledger.payouts.iter().map(|p| p.created_ms).min().unwrap_or(0) / 1000 + 1;
    let last = ledger.payouts.iter().map(|p| p.created_ms).max().unwrap_or(0) / 1000 - 1;
    let series = &stats.per_second;
    let index = |sec: i64| usize::try_from(sec - series.start_sec).ok();
    let (Some(from), Some(to)) = (index(first), index(last)) else {
        bail!("the sandbox's series does not cover the sending");
    };
    if to < from + 1 || to >= series.accepted.len() {
        bail!("the sending lasted under three seconds: more rows are needed for a window");
    }
    let creates = ledger
        .payouts
        .iter()
        .filter(|p| (first * 1000..(last + 1) * 1000).contains(&p.created_ms))
        .count() as u64;
    Ok(((to - from + 1) as u64, series.accepted[from..=to].iter().sum(), creates))
}

/// The highest in-flight limit `submit` reported at its end (`in flight up to N`), 0 if it did
/// not say.
fn peak_in_flight(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.split("in flight up to ").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The sequential client's orders per second at `latency`, on `rows` orders.
fn baseline(ctx: &Ctx, latency: u64, rows: u64) -> anyhow::Result<f64> {
    let dir = temp_dir("latency-baseline")?;
    let mut sandbox = SandboxProc::start(&ctx.bin, dir.path(), &sandbox_flags(latency))?;
    let client = client_for(&sandbox.url)?;
    let journal = dir.path().join("journal.log");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal)
        .with_context(|| format!("cannot open {}", journal.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    runtime.block_on(sequential(&client, &mut log, rows))?;
    let seconds = started.elapsed().as_secs_f64();
    let ledger = sandbox.ledger()?;
    sandbox.ensure_running()?;
    paid_exactly_once(&ledger, "sq", rows).context("the ledger disagrees with the baseline's orders")?;
    Ok(rows as f64 / seconds)
}

/// Sign, post and journal each create in turn, then poll 20 orderIds a query until all are final.
async fn sequential(client: &Client, log: &mut File, rows: u64) -> anyhow::Result<()> {
    let ids: Vec<String> = (0..rows).map(|i| order_id("sq", i)).collect();
    for (i, id) in ids.iter().enumerate() {
        append(log, &format!("intent {id}\n"))?;
        let receipt = client
            .apply_app_withdraw_to_network(&trx_payout(id, TRON[i % 3]))
            .await
            .with_context(|| format!("baseline: creating {id}"))?;
        append(log, &format!("created {id} {}\n", receipt.record_id))?;
    }
    let mut open: Vec<String> = ids;
    while !open.is_empty() {
        let mut still = Vec::new();
        for chunk in open.chunks(20) {
            let query = WithdrawRecordListQuery {
                order_ids: chunk.to_vec(),
                ..WithdrawRecordListQuery::default()
            };
            let page = client
                .get_app_withdraw_record_list(&query)
                .await
                .context("baseline: the record list")?;
            for id in chunk {
                match page.records.iter().find(|r| &r.order_id == id) {
                    Some(r) if r.status.is_final() => append(log, &format!("final {id} {}\n", r.status.as_str()))?,
                    _ => still.push(id.clone()),
                }
            }
        }
        open = still;
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
