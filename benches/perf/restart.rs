//! Scenario 7: how fast the daemon is ready with 1,000,000 orders in its store: from spawn to
//! `READY=1` on a fake `NOTIFY_SOCKET` (a Unix datagram socket, as systemd gives it) and to the
//! first `status` answered on its control socket; first start, after SIGTERM, after SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ccpayout::app::Reply;
use ccpayout::daemon::socket::{Request, socket_path};

use crate::Ctx;
use crate::data::write_trx_batch;
use crate::harness::{Ccpayout, NotifySocket, Proc, SandboxProc, config_toml, temp_dir};
use crate::report::{Figure, Report};

/// The longest the benchmark waits for a start; far beyond the bar, short of a hang.
const START_LIMIT: Duration = Duration::from_secs(60);

pub fn run(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    // Full size in both modes: storing a million orders takes about 10 s, and the README's
    // restart figures must be checkable with --quick.
    let rows: u64 = 1_000_000;
    let dir = temp_dir("restart")?;
    let batch = dir.path().join("restart.csv");
    write_trx_batch(&batch, "rs", rows)?;
    let flags = ["--balance", "USDT=1000000000"].map(String::from);
    let mut sandbox = SandboxProc::start(&ctx.bin, dir.path(), &flags)?;
    let ccpayout = Ccpayout::new(&ctx.bin, dir.path(), &sandbox.url, &config_toml(&[], "always"))?;
    store_batch(&ccpayout, &batch, rows, report)?;

    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    let start = |name: &str| start_daemon(&ccpayout, &inbox, name, rows);

    let (mut daemon, first) = start("daemon-1")?;
    add_start_figures(report, "first start", first);
    let mut stops = vec![stop(&mut daemon, first)?];

    let (mut daemon, clean) = start("daemon-2")?;
    add_start_figures(report, "after a clean stop", clean);
    daemon.signal(libc::SIGKILL)?;
    daemon.wait(Duration::from_secs(10))?;

    let (mut daemon, killed) = start("daemon-3")?;
    add_start_figures(report, "after SIGKILL", killed);
    stops.push(stop(&mut daemon, killed)?);
    let clean_exits = stops.iter().filter(|s| s.as_str() == "exit 0").count();
    report.add(
        Figure::new("SIGTERM stops ending in exit 0", clean_exits as f64, "of 2")
            .at_least(2.0)
            .note(stops.join("; ")),
    );
    sandbox.ensure_running()
}

/// `submit` with approval required: the batch is stored and waits (exit 1).
fn store_batch(ccpayout: &Ccpayout, batch: &Path, rows: u64, report: &mut Report) -> anyhow::Result<()> {
    let mut submit = ccpayout.spawn("store", &["submit", &batch.to_string_lossy()])?;
    let exit = submit.wait(Duration::from_secs(900))?;
    let seconds = submit.started().elapsed().as_secs_f64();
    if exit.status.code() != Some(1) || !ccpayout.stdout_of("store").contains("approval") {
        bail!(
            "submit with approval required ended with {}, not exit 1 waiting for approval{}",
            exit.describe(),
            submit.log_tail()
        );
    }
    report.add(Figure::new(format!("storing {rows} orders (submit)"), seconds, "s"));
    report.add(
        Figure::new("peak RSS of that submit", exit.max_rss_mb, "MB").note(format!(
            "wait4 ru_maxrss; the benchmark was at {:.0} MB when it spawned it",
            submit.parent_rss_mb()
        )),
    );
    Ok(())
}

/// SIGTERM right after a start, and how the daemon ended: `exit 0`, or killed by the SIGTERM
/// itself (it came before the daemon handled the signal: a finding, not a crash). Anything else
/// is an error.
fn stop(daemon: &mut Proc, start: Start) -> anyhow::Result<String> {
    let sent = daemon.started().elapsed();
    let exit = daemon.terminate(Duration::from_secs(60))?;
    if exit.status.code() == Some(0) {
        return Ok("exit 0".to_owned());
    }
    if exit.status.signal() != Some(libc::SIGTERM) {
        bail!(
            "the daemon ended with {} after SIGTERM{}",
            exit.describe(),
            daemon.log_tail()
        );
    }
    Ok(format!(
        "killed by the SIGTERM itself, sent {} ms after spawn and {} ms after READY=1",
        sent.as_millis(),
        sent.saturating_sub(start.ready).as_millis()
    ))
}

/// Times of one start, from spawn.
#[derive(Debug, Clone, Copy)]
struct Start {
    ready: Duration,
    status: Duration,
}

fn add_start_figures(report: &mut Report, when: &str, start: Start) {
    report.add(Figure::new(format!("READY=1, {when}"), start.ready.as_secs_f64(), "s").at_most(2.0));
    report.add(Figure::new(format!("status answered, {when}"), start.status.as_secs_f64(), "s").at_most(2.0));
}

/// Spawns `run --inbox INBOX` with a fake NOTIFY_SOCKET, and waits for both READY=1 and an
/// answered status (which must count the stored orders).
fn start_daemon(ccpayout: &Ccpayout, inbox: &Path, name: &str, rows: u64) -> anyhow::Result<(Proc, Start)> {
    let notify = NotifySocket::bind(&inbox.with_file_name(format!("{name}.notify")))?;
    let mut cmd = ccpayout.command(&["run", "--inbox", &inbox.to_string_lossy()]);
    cmd.env("NOTIFY_SOCKET", &notify.path);
    let control = socket_path(&ccpayout.state);
    let stop = AtomicBool::new(false);

    let mut daemon = ccpayout.spawn_with(name, &mut cmd)?;
    let spawned = daemon.started();
    let (ready, status) = std::thread::scope(|scope| {
        let poller = scope.spawn(|| poll_status(&control, spawned, &stop));
        let ready = notify.wait_ready(&mut daemon, spawned, START_LIMIT);
        if ready.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let status = poller
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the status poller panicked")));
        (ready, status)
    });
    let ready = ready?;
    let (status, text) = status.with_context(|| format!("{}{}", daemon.what(), daemon.log_tail()))?;
    if !text.contains(&rows.to_string()) {
        bail!("the daemon's status does not mention the {rows} stored orders:\n{text}");
    }
    Ok((daemon, Start { ready, status }))
}

/// Asks for `status` on the control socket every 5 ms until it is answered.
fn poll_status(control: &Path, spawned: Instant, stop: &AtomicBool) -> anyhow::Result<(Duration, String)> {
    let request = serde_json::to_string(&Request::Status { target: None })?;
    loop {
        if let Ok(reply) = ask(control, &request) {
            return Ok((spawned.elapsed(), reply.text));
        }
        if stop.load(Ordering::Relaxed) || spawned.elapsed() > START_LIMIT {
            bail!("no status answered on {}", control.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One request line, one reply line.
fn ask(control: &Path, request: &str) -> anyhow::Result<Reply> {
    let mut stream = UnixStream::connect(control)?;
    stream.set_read_timeout(Some(START_LIMIT))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(serde_json::from_str(&line)?)
}
