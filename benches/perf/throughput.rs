//! Scenarios 1 and 2: the engine end to end against an unlimited API, and the simplest correct
//! sequential client on the same kind of sandbox.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ccpayout::api::Client;
use ccpayout::api::types::{NetworkWithdrawRequest, WithdrawRecordQuery, method};
use ccpayout::config::Config;
use ccpayout::sandbox::{DEMO_APP_ID, DEMO_APP_SECRET, SandboxStats};

use crate::data::{TRON, order_id, paid_exactly_once, write_trx_batch};
use crate::harness::{Ccpayout, SandboxProc, config_toml, temp_dir};
use crate::report::{Figure, Report, number};
use crate::{Ctx, THROUGHPUT_CONCURRENCY};

/// The demo catalogue's coin id of USDT.
const USDT: u64 = 1280;

/// A sandbox that settles at once, with no limits, and money for every order.
fn unlimited_sandbox(ctx: &Ctx, dir: &Path) -> anyhow::Result<SandboxProc> {
    let flags = ["--settle-delay-ms", "0", "--balance", "USDT=1000000000"].map(String::from);
    SandboxProc::start(&ctx.bin, dir, &flags)
}

/// The configuration of the throughput runs: no rate limit of our own, the first status check
/// after 1 s, no approval.
fn unlimited_config() -> String {
    let concurrency = format!("concurrency = {THROUGHPUT_CONCURRENCY}");
    let limits = [
        "rate_per_second = 1000000",
        "read_rate_per_second = 1000000",
        concurrency.as_str(),
        "track_first_check_secs = 1",
    ];
    config_toml(&limits, "never")
}

/// Scenario 1: `submit` of N orders, from spawn to exit.
pub fn engine(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let rows: u64 = if ctx.quick { 20_000 } else { 100_000 };
    let dir = temp_dir("throughput")?;
    let batch = dir.path().join("throughput.csv");
    write_trx_batch(&batch, "tp", rows)?;
    let mut sandbox = unlimited_sandbox(ctx, dir.path())?;
    let ccpayout = Ccpayout::new(&ctx.bin, dir.path(), &sandbox.url, &unlimited_config())?;
    println!("  {rows} orders, concurrency {THROUGHPUT_CONCURRENCY}");

    let sandbox_cpu_before = sandbox.cpu_seconds()?;
    let mut submit = ccpayout.spawn("submit", &["submit", &batch.to_string_lossy()])?;
    let exit = submit.wait(Duration::from_secs(600 + rows / 100))?;
    let seconds = submit.started().elapsed().as_secs_f64();
    let sandbox_cpu = sandbox.cpu_seconds()? - sandbox_cpu_before;
    if exit.status.code() != Some(0) {
        bail!("submit ended with {}, not exit 0{}", exit.describe(), submit.log_tail());
    }
    let stats = sandbox.stats()?;
    let orders_per_second = rows as f64 / seconds;
    ctx.engine_orders_per_second = Some(orders_per_second);
    add_engine_figures(report, rows, seconds, &stats, &ccpayout.stdout_of("submit"));
    report.add(
        Figure::new("ccpayout CPU per order", exit.cpu_seconds / rows as f64 * 1e6, "µs")
            .note(format!("{:.2} s user+sys", exit.cpu_seconds)),
    );
    report.add(Figure::new("ccpayout peak RSS", exit.max_rss_mb, "MB").note(format!(
        "wait4 ru_maxrss; the benchmark was at {:.0} MB when it spawned it",
        submit.parent_rss_mb()
    )));
    report.add(
        Figure::new("sandbox CPU per order", sandbox_cpu / rows as f64 * 1e6, "µs")
            .note(format!("{sandbox_cpu:.2} s; not ccpayout's cost")),
    );

    let ledger = sandbox.ledger()?;
    sandbox.ensure_running()?;
    paid_exactly_once(&ledger, "tp", rows).context("the ledger disagrees with the batch")?;
    println!("  ledger: each of the {rows} orders paid exactly once");
    Ok(())
}

fn add_engine_figures(report: &mut Report, rows: u64, seconds: f64, stats: &SandboxStats, stdout: &str) {
    report.add(
        Figure::new("orders per second, end to end", rows as f64 / seconds, "orders/s")
            .at_least(5000.0)
            .note(format!("{rows} orders in {seconds:.2} s")),
    );
    let total = stats.total();
    let submit_said = stdout
        .lines()
        .find_map(|l| l.strip_prefix("API requests this run: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?");
    report.add(
        Figure::new("API requests per order", total as f64 / rows as f64, "")
            .at_most(1.1)
            .note(format!("{total} counted by the sandbox, {submit_said} by submit")),
    );
    let tracking =
        stats.to_endpoint(method::GET_APP_WITHDRAW_RECORD_LIST) + stats.to_endpoint(method::GET_APP_WITHDRAW_RECORD);
    report.add(
        Figure::new("status tracking requests per order", tracking as f64 / rows as f64, "")
            .at_most(0.1)
            .note(format!("{tracking} record queries")),
    );
}

/// Scenario 2: the simplest correct sequential client.
pub fn baseline(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let rows: u64 = if ctx.quick { 1_000 } else { 3_000 };
    let dir = temp_dir("baseline")?;
    let mut sandbox = unlimited_sandbox(ctx, dir.path())?;
    let client = client_for(&sandbox.url)?;
    let state = dir.path().join("baseline.log");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&state)
        .with_context(|| format!("cannot open {}", state.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    let started = Instant::now();
    runtime.block_on(async {
        for i in 0..rows {
            pay_one(&client, &mut log, &order_id("bl", i), TRON[(i % 3) as usize]).await?;
        }
        anyhow::Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let orders_per_second = rows as f64 / seconds;
    report.add(
        Figure::new("baseline orders per second", orders_per_second, "orders/s").note(format!(
            "{rows} orders in {seconds:.2} s, one request at a time, 3 fsyncs each"
        )),
    );
    let ratio = ctx
        .engine_orders_per_second
        .map_or(f64::NAN, |engine| engine / orders_per_second);
    report.add(
        Figure::new("engine / baseline", ratio, "×").note(match ctx.engine_orders_per_second {
            Some(engine) => format!("{} orders/s / {}", number(engine), number(orders_per_second)),
            None => "throughput was not run".to_owned(),
        }),
    );

    let ledger = sandbox.ledger()?;
    sandbox.ensure_running()?;
    paid_exactly_once(&ledger, "bl", rows).context("the ledger disagrees with the baseline's orders")?;
    println!("  ledger: each of the {rows} orders paid exactly once");
    Ok(())
}

/// A client for the sandbox, built the way ccpayout builds one from its configuration.
pub fn client_for(url: &str) -> anyhow::Result<Client> {
    let env = |key: &str| match key {
        ccpayout::config::ENV_API_BASE_URL => Some(url.to_owned()),
        ccpayout::config::ENV_APP_ID => Some(DEMO_APP_ID.to_owned()),
        ccpayout::config::ENV_APP_SECRET => Some(DEMO_APP_SECRET.to_owned()),
        _ => None,
    };
    let config = Config::load(None, &env).map_err(|e| anyhow::anyhow!("{e}"))?;
    let client_config = config.client_config().map_err(|e| anyhow::anyhow!("{e}"))?;
    Client::new(client_config, ccpayout::util::clock::system())
}

/// One order: intent durable, create, result durable, then its record until final, durable.
async fn pay_one(client: &Client, log: &mut File, id: &str, address: &str) -> anyhow::Result<()> {
    append(log, &format!("intent {id}\n"))?;
    let receipt = client
        .apply_app_withdraw_to_network(&trx_payout(id, address))
        .await
        .with_context(|| format!("baseline: creating {id}"))?;
    append(log, &format!("created {id} {}\n", receipt.record_id))?;
    let query = WithdrawRecordQuery {
        record_id: None,
        order_id: Some(id.to_owned()),
    };
    loop {
        let record = client
            .get_app_withdraw_record(&query)
            .await
            .with_context(|| format!("baseline: asking for {id}"))?;
        if record.status.is_final() {
            return append(log, &format!("final {id} {}\n", record.status.as_str()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The baselines' payout: 2 USDT on TRX to `address`.
pub fn trx_payout(id: &str, address: &str) -> NetworkWithdrawRequest {
    NetworkWithdrawRequest {
        order_id: id.to_owned(),
        coin_id: USDT,
        chain: "TRX".to_owned(),
        address: address.to_owned(),
        memo: None,
        amount: "2".to_owned(),
        merchant_pay_network_fee: None,
        network_fee_inquiry_id: None,
        notify_url: None,
    }
}

/// Appends a line and makes it durable.
pub fn append(log: &mut File, line: &str) -> anyhow::Result<()> {
    log.write_all(line.as_bytes())?;
    log.sync_data().context("baseline: fsync of its state file")
}

/// Scenario: the throughput scenario's `submit` with a `[[notify]]` target (a receiver in this
/// process that answers 200): recording notices in the engine's transactions and sending them
/// beside the payouts must not slow the payouts.
pub fn with_notices(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let rows: u64 = if ctx.quick { 20_000 } else { 100_000 };
    let dir = temp_dir("notices")?;
    let batch = dir.path().join("notices.csv");
    write_trx_batch(&batch, "nt", rows)?;
    let mut sandbox = unlimited_sandbox(ctx, dir.path())?;
    let receiver = Receiver::start()?;
    let mut config = unlimited_config();
    config.push_str(&format!(
        "[[notify]]\nname = \"bench\"\nurl = \"http://{}/hook\"\n",
        receiver.addr
    ));
    let ccpayout = Ccpayout::new(&ctx.bin, dir.path(), &sandbox.url, &config)?;
    println!("  {rows} orders, concurrency {THROUGHPUT_CONCURRENCY}, a notify target on loopback");
    let mut submit = ccpayout.spawn("submit", &["submit", &batch.to_string_lossy()])?;
    let exit = submit.wait(Duration::from_secs(600 + rows / 100))?;
    let seconds = submit.started().elapsed().as_secs_f64();
    if exit.status.code() != Some(0) {
        bail!("submit ended with {}, not exit 0{}", exit.describe(), submit.log_tail());
    }
    let per_second = rows as f64 / seconds;
    report.add(
        Figure::new("orders per second with notices", per_second, "orders/s")
            .at_least(5000.0)
            .note(format!("{rows} orders in {seconds:.2} s")),
    );
    if let Some(without) = ctx.engine_orders_per_second {
        report.add(
            Figure::new("with notices / without", per_second / without, "")
                .at_least(0.9)
                .note(format!("{without:.0} orders/s in the throughput scenario")),
        );
    }
    let received = receiver.received();
    report.add(
        Figure::new("notices received", received as f64, "")
            .at_least(1.0)
            .note("batch_finished, acknowledged with 200 before submit exited"),
    );
    let ledger = sandbox.ledger()?;
    sandbox.ensure_running()?;
    paid_exactly_once(&ledger, "nt", rows).context("the ledger disagrees with the batch")?;
    println!("  ledger: each of the {rows} orders paid exactly once; {received} notice(s) received");
    Ok(())
}

/// A webhook receiver on loopback that answers every POST with 200 and counts them.
struct Receiver {
    addr: std::net::SocketAddr,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    fn start() -> anyhow::Result<Receiver> {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_ok() {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Ok(Receiver { addr, count })
    }

    fn received(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}
