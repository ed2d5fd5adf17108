//! Scenario 8: the daemon with nothing to do (an empty inbox, an empty state): its memory, its
//! CPU time and how often its threads wake up, sampled from /proc over a window.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Ctx;
use crate::harness::{
    Ccpayout, NotifySocket, SandboxProc, config_toml, context_switches, cpu_seconds, rss_mb, temp_dir,
};
use crate::report::{Figure, Report};

pub fn run(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let window = Duration::from_secs(if ctx.quick { 15 } else { 60 });
    let dir = temp_dir("idle")?;
    let mut sandbox = SandboxProc::start(&ctx.bin, dir.path(), &[])?;
    let ccpayout = Ccpayout::new(&ctx.bin, dir.path(), &sandbox.url, &config_toml(&[], "never"))?;
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    let notify = NotifySocket::bind(&dir.path().join("notify.sock"))?;
    let mut cmd = ccpayout.command(&["run", "--inbox", &inbox.to_string_lossy()]);
    cmd.env("NOTIFY_SOCKET", &notify.path);
    let mut daemon = ccpayout.spawn_with("daemon", &mut cmd)?;
    notify.wait_ready(&mut daemon, Instant::now(), Duration::from_secs(60))?;
    println!("  daemon ready; sampling for {} s", window.as_secs());

    let pid = daemon.pid();
    let sample = sample(pid, window).with_context(|| format!("sampling {}{}", daemon.what(), daemon.log_tail()))?;
    daemon.ensure_running()?;
    let seconds = window.as_secs_f64();
    report.add(
        Figure::new("peak VmRSS while idle", sample.peak_rss_mb, "MB")
            .at_most(30.0)
            .note(format!("{:.1} MB at the end", sample.last_rss_mb)),
    );
    report.add(
        Figure::new("CPU while idle", sample.cpu_seconds / seconds * 100.0, "% of a core")
            .at_most(1.0)
            .note(format!("{:.3} s over {seconds:.0} s", sample.cpu_seconds)),
    );
    report.add(
        Figure::new("wake-ups per second while idle", sample.switches as f64 / seconds, "/s")
            .at_most(10.0)
            .note(format!(
                "{} context switches over {} threads{}",
                sample.switches,
                sample.threads,
                if sample.threads_ended > 0 {
                    format!(
                        "; {} thread(s) ended during the window, their switches not counted",
                        sample.threads_ended
                    )
                } else {
                    String::new()
                }
            )),
    );
    let exit = daemon.terminate(Duration::from_secs(30))?;
    if exit.status.code() != Some(0) {
        bail!(
            "the daemon ended with {} after SIGTERM{}",
            exit.describe(),
            daemon.log_tail()
        );
    }
    sandbox.ensure_running()
}

/// What the window showed.
struct Sample {
    peak_rss_mb: f64,
    last_rss_mb: f64,
    cpu_seconds: f64,
    /// Context switches during the window, over the threads alive at its end.
    switches: u64,
    threads: usize,
    threads_ended: usize,
}

/// Reads the CPU time and the context switches at both ends of the window, and VmRSS each second.
fn sample(pid: i32, window: Duration) -> anyhow::Result<Sample> {
    let cpu_before = cpu_seconds(pid)?;
    let before = context_switches(pid)?;
    let started = Instant::now();
    let mut peak_rss_mb: f64 = rss_mb(pid)?;
    while started.elapsed() < window {
        std::thread::sleep((window - started.elapsed()).min(Duration::from_secs(1)));
        peak_rss_mb = peak_rss_mb.max(rss_mb(pid)?);
    }
    let after = context_switches(pid)?;
    let cpu = cpu_seconds(pid)? - cpu_before;
    Ok(Sample {
        peak_rss_mb,
        last_rss_mb: rss_mb(pid)?,
        cpu_seconds: cpu,
        switches: switches_between(&before, &after),
        threads: after.len(),
        threads_ended: before.keys().filter(|tid| !after.contains_key(tid)).count(),
    })
}

/// Switches during the window: a thread that started during it counts from zero.
fn switches_between(before: &BTreeMap<u32, u64>, after: &BTreeMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(tid, n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}
