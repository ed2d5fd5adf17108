//! Scenarios 3 and 4: how much of the API's rate limit ccpayout uses, when its configured rate
//! matches the limit and when the limit is lower and unknown to it. The figures come from the
//! sandbox's per-second series of accepted and 11004-answered requests.
//!
//! In quick mode, when both scenarios are selected, their windows run side by side (each with
//! its own sandbox and `submit`, a few percent of a core each) to keep the quick run under two
//! minutes; the second scenario then reports what its window measured.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::bail;
use ccpayout::sandbox::{Ledger, SandboxStats};

use crate::Ctx;
use crate::data::{paid_at_most_once, write_trx_batch};
use crate::harness::{Ccpayout, SandboxProc, config_toml, temp_dir, unix_now};
use crate::report::{Figure, Report};

/// The first seconds of a run are start-up (preflight, storing the batch, the first burst).
const SKIP_SECONDS: i64 = 2;

/// One rate-limit run.
struct Setup {
    scenario: &'static str,
    /// The sandbox's token bucket.
    api_per_second: u32,
    api_burst: u32,
    /// ccpayout's `[limits]` lines.
    limits: &'static [&'static str],
}

/// Scenario 3: API limit 50/s burst 10, ccpayout configured the same.
const MATCH: Setup = Setup {
    scenario: "rate-limit-match",
    api_per_second: 50,
    api_burst: 10,
    limits: &["rate_per_second = 50", "burst = 10"],
};

/// Scenario 4: API limit 30/s, ccpayout configured for 50/s.
const UNKNOWN: Setup = Setup {
    scenario: "rate-limit-unknown",
    api_per_second: 30,
    api_burst: 10,
    limits: &["rate_per_second = 50"],
};

/// What the sandbox saw over the steady window.
pub struct Window {
    /// The set-up, in words.
    setup: String,
    seconds: u64,
    accepted: u64,
    rate_limited: u64,
    rate_limited_whole_run: u64,
    /// `, endpoint: n` for each endpoint answered 11004 in the whole run.
    rate_limited_by_endpoint: String,
    creates: u64,
}

impl Window {
    fn accepted_per_second(&self) -> f64 {
        self.accepted as f64 / self.seconds as f64
    }

    fn creates_per_second(&self) -> Figure {
        Figure::new("creates per second", self.creates as f64 / self.seconds as f64, "/s")
    }

    fn use_of_limit(&self, setup: &Setup) -> Figure {
        let limit = f64::from(setup.api_per_second);
        Figure::new(
            "accepted requests / API limit",
            self.accepted_per_second() / limit * 100.0,
            "%",
        )
        .note(format!(
            "{:.2}/s of {limit}/s over {} s",
            self.accepted_per_second(),
            self.seconds
        ))
    }
}

/// A window measured in the background, for the next scenario.
pub type Pending = JoinHandle<anyhow::Result<Window>>;

pub fn limits_match(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    if ctx.quick && ctx.selected(UNKNOWN.scenario) {
        let (bin, quick) = (ctx.bin.clone(), ctx.quick);
        println!("  (quick mode: {} runs its window at the same time)", UNKNOWN.scenario);
        ctx.rate_limit_unknown = Some(std::thread::spawn(move || measure(bin, quick, &UNKNOWN)));
    }
    let w = measure(ctx.bin.clone(), ctx.quick, &MATCH)?;
    println!("  {}", w.setup);
    report.add(w.use_of_limit(&MATCH).at_least(98.0));
    report.add(
        Figure::new("11004 answers in the window", w.rate_limited as f64, "")
            .at_most(0.0)
            .note(format!(
                "{} in the whole run{}",
                w.rate_limited_whole_run, w.rate_limited_by_endpoint
            )),
    );
    report.add(w.creates_per_second());
    Ok(())
}

pub fn unknown_lower_limit(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let w = match ctx.rate_limit_unknown.take() {
        Some(pending) => {
            println!("  (measured side by side with {})", MATCH.scenario);
            pending
                .join()
                .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))??
        }
        None => measure(ctx.bin.clone(), ctx.quick, &UNKNOWN)?,
    };
    println!("  {}", w.setup);
    report.add(w.use_of_limit(&UNKNOWN).at_least(90.0));
    let answered = w.accepted + w.rate_limited;
    report.add(
        Figure::new(
            "requests answered 11004",
            w.rate_limited as f64 / answered as f64 * 100.0,
            "%",
        )
        .below(1.0)
        .note(format!(
            "{} of {answered} in the window, {} in the whole run{}",
            w.rate_limited, w.rate_limited_whole_run, w.rate_limited_by_endpoint
        )),
    );
    report.add(w.creates_per_second());
    Ok(())
}

/// Runs `submit` on more rows than the window can pay, stops it after the window, and reads the
/// sandbox's series.
fn measure(bin: PathBuf, quick: bool, setup: &Setup) -> anyhow::Result<Window> {
    let window_secs: u64 = if quick { 20 } else { 60 };
    // Enough rows to keep sending for the whole window at the configured 50/s.
    let rows = 50 * window_secs * 3 / 2 + 500;
    let dir = temp_dir(setup.scenario)?;
    let batch = dir.path().join("rate.csv");
    write_trx_batch(&batch, "rl", rows)?;
    let flags = [
        "--rate-limit".to_owned(),
        setup.api_per_second.to_string(),
        "--burst".to_owned(),
        setup.api_burst.to_string(),
        "--balance".to_owned(),
        "USDT=1000000000".to_owned(),
    ];
    let mut sandbox = SandboxProc::start(&bin, dir.path(), &flags)?;
    let ccpayout = Ccpayout::new(&bin, dir.path(), &sandbox.url, &config_toml(setup.limits, "never"))?;
    let setup_text = format!(
        "API limit {}/s burst {}; ccpayout [limits] {}; {rows} orders; window {window_secs} s",
        setup.api_per_second,
        setup.api_burst,
        setup.limits.join(", ")
    );

    let spawned = unix_now();
    let mut submit = ccpayout.spawn("submit", &["submit", &batch.to_string_lossy()])?;
    std::thread::sleep(Duration::from_secs(window_secs));
    let stopped = unix_now();
    if let Some(exit) = submit.try_exit()? {
        bail!(
            "submit ended before the window did ({}): the measure needs more rows{}",
            exit.describe(),
            submit.log_tail()
        );
    }
    let exit = submit.terminate(Duration::from_secs(60))?;
    // 2: interrupted, as asked; 0 or 1 if it just finished.
    if !matches!(exit.status.code(), Some(0..=2)) {
        bail!(
            "submit ended with {} after SIGTERM{}",
            exit.describe(),
            submit.log_tail()
        );
    }
    let stats = sandbox.stats()?;
    let ledger = sandbox.ledger()?;
    sandbox.ensure_running()?;
    paid_at_most_once(&ledger, "rl")?;
    window(&stats, &ledger, spawned, stopped, setup_text)
}

/// The whole seconds from `SKIP_SECONDS` after the spawn to the last whole second before the stop.
fn window(stats: &SandboxStats, ledger: &Ledger, spawned: f64, stopped: f64, setup: String) -> anyhow::Result<Window> {
    let series = &stats.per_second;
    let first = spawned.floor() as i64 + 1 + SKIP_SECONDS;
    let last = stopped.floor() as i64 - 1;
    let index = |sec: i64| usize::try_from(sec - series.start_sec).ok();
    let (Some(from), Some(to)) = (index(first), index(last)) else {
        bail!("the sandbox's series starts after the window");
    };
    if to < from || to >= series.accepted.len() {
        bail!(
            "the sandbox's series does not cover the window (seconds {first}..={last}, series from {} for {} s)",
            series.start_sec,
            series.accepted.len()
        );
    }
    let (from_ms, to_ms) = (first * 1000, (last + 1) * 1000);
    Ok(Window {
        setup,
        seconds: (to - from + 1) as u64,
        accepted: series.accepted[from..=to].iter().sum(),
        rate_limited: series.rate_limited[from..=to].iter().sum(),
        rate_limited_whole_run: stats.with_code(11004),
        rate_limited_by_endpoint: stats
            .requests
            .iter()
            .filter(|r| r.code == 11004)
            .map(|r| format!(", {}: {}", r.endpoint, r.count))
            .collect(),
        creates: ledger
            .payouts
            .iter()
            .filter(|p| (from_ms..to_ms).contains(&p.created_ms))
            .count() as u64,
    })
}
