//! Scenario 5: the daily create cap (11009). The sandbox caps creates per short "day"; ccpayout
//! is told the day's length; a batch larger than the cap makes it stop at the cap and wait for
//! the reset. The figure is, for each reset after a day that hit the cap, the time from the reset
//! instant to the first create of the new day (from the ledger), once across a SIGTERM and a new
//! `submit` during the pause.

use std::time::{Duration, Instant};

use anyhow::bail;
use ccpayout::sandbox::{AttemptOutcome, Ledger};

use crate::Ctx;
use crate::data::{paid_at_most_once, write_trx_batch};
use crate::harness::{Ccpayout, Proc, SandboxProc, config_toml, temp_dir, unix_now};
use crate::report::{Figure, Report};

/// Creates allowed per day.
const CAP: u64 = 200;
/// The restart happens during a pause with at least this much of it left.
const RESTART_MARGIN_MS: i64 = 1500;

/// One reset that followed a capped day.
#[derive(Debug, Clone, Copy)]
struct Reset {
    at_ms: i64,
    /// From the reset to the first create after it; `None` while none came.
    delay_ms: Option<i64>,
}

/// The run's sizes.
struct Plan {
    day_ms: i64,
    /// Resets measured before the restart.
    resets_before_restart: usize,
}

pub fn run(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let plan = if ctx.quick {
        Plan {
            day_ms: 5_000,
            resets_before_restart: 1,
        }
    } else {
        Plan {
            day_ms: 10_000,
            resets_before_restart: 3,
        }
    };
    let day_secs = (plan.day_ms / 1000).to_string();
    // Enough for every day the run needs, with days to spare.
    let rows = CAP * (plan.resets_before_restart as u64 + 4);
    let dir = temp_dir("daily-cap")?;
    let batch = dir.path().join("daily.csv");
    write_trx_batch(&batch, "dc", rows)?;
    let flags = [
        "--daily-create-limit",
        &CAP.to_string(),
        "--day-length-secs",
        &day_secs,
        "--settle-delay-ms",
        "0",
        "--balance",
        "USDT=1000000000",
    ]
    .map(String::from);
    let mut sandbox = SandboxProc::start(&ctx.bin, dir.path(), &flags)?;
    let day_line = format!("day_length_secs = {day_secs}");
    let limits = [
        "rate_per_second = 1000",
        "read_rate_per_second = 1000",
        "concurrency = 16",
        "track_first_check_secs = 1",
        "daily_reset_utc = \"00:00\"",
        day_line.as_str(),
    ];
    let ccpayout = Ccpayout::new(&ctx.bin, dir.path(), &sandbox.url, &config_toml(&limits, "never"))?;
    println!(
        "  cap {CAP} creates per {day_secs}-s day, {rows} orders; {} reset(s), then one across a restart",
        plan.resets_before_restart
    );
    let batch_arg = batch.to_string_lossy().into_owned();
    let args = ["submit", batch_arg.as_str()];

    // Phase 1: resets seen by one running `submit`.
    let mut first = ccpayout.spawn("submit-1", &args)?;
    let deadline = Instant::now() + Duration::from_millis(plan.day_ms as u64 * (plan.resets_before_restart as u64 + 3));
    let resets = wait_for(&sandbox, &mut first, deadline, |ledger| {
        // A reset with no create yet is not measured yet.
        let mut resets = resets(ledger, plan.day_ms, now_ms());
        resets.retain(|r| r.delay_ms.is_some());
        (resets.len() >= plan.resets_before_restart).then_some(resets)
    })?;

    // Phase 2: SIGTERM during a pause that `submit` has seen (an 11009 answered this day: the
    // cap used up in the ledger is not enough, the last create may have taken the last slot with
    // nobody refused yet), start again before the reset.
    let paused_until = wait_for(
        &sandbox,
        &mut first,
        Instant::now() + Duration::from_millis(plan.day_ms as u64 * 2),
        |ledger| {
            let now = now_ms();
            let day = now.div_euclid(plan.day_ms);
            let next_reset = (day + 1) * plan.day_ms;
            let capped = creates_in_day(ledger, day, plan.day_ms) >= CAP;
            let refused = refusals_in_day(ledger, day, plan.day_ms) > 0;
            (capped && refused && next_reset - now >= RESTART_MARGIN_MS).then_some(next_reset)
        },
    )?;
    let stop = first.terminate(Duration::from_secs(30))?;
    if !matches!(stop.status.code(), Some(0..=2)) {
        bail!(
            "submit ended with {} after SIGTERM{}",
            stop.describe(),
            first.log_tail()
        );
    }
    let restarted_ms = now_ms();
    if restarted_ms >= paused_until {
        bail!("stopping submit took the whole pause: it was not started again before the reset");
    }
    let mut second = ccpayout.spawn("submit-2", &args)?;
    // A create within a day of the reset, or the reset without one (a MISS, not an error).
    let give_up_ms = paused_until + plan.day_ms;
    let after_restart = wait_for(
        &sandbox,
        &mut second,
        Instant::now() + Duration::from_millis(plan.day_ms as u64 * 3),
        |ledger| {
            let reset = reset_at(ledger, paused_until);
            (reset.delay_ms.is_some() || now_ms() > give_up_ms).then_some(reset)
        },
    )?;
    let exit = second.terminate(Duration::from_secs(30))?;
    if !matches!(exit.status.code(), Some(0..=2)) {
        bail!(
            "the restarted submit ended with {}{}",
            exit.describe(),
            second.log_tail()
        );
    }
    let ledger = sandbox.ledger()?;
    sandbox.ensure_running()?;
    paid_at_most_once(&ledger, "dc")?;
    add_figures(report, &resets, after_restart, &ledger, restarted_ms);
    Ok(())
}

fn add_figures(report: &mut Report, resets: &[Reset], after_restart: Reset, ledger: &Ledger, restarted_ms: i64) {
    let seconds = |r: &Reset| r.delay_ms.map_or(f64::NAN, |d| d as f64 / 1000.0);
    let listed: Vec<String> = resets
        .iter()
        .map(|r| match r.delay_ms {
            Some(d) => format!("{d} ms"),
            None => "none".to_owned(),
        })
        .collect();
    let all: Vec<f64> = resets.iter().chain([&after_restart]).map(seconds).collect();
    let worst = if all.iter().any(|d| d.is_nan()) {
        f64::NAN
    } else {
        all.iter().copied().fold(0.0, f64::max)
    };
    report.add(
        Figure::new("resume after a reset, worst", worst, "s")
            .at_most(1.0)
            .note(format!("{} reset(s) in one run: {}", resets.len(), listed.join(", "))),
    );
    report.add(
        Figure::new("resume after a reset, across a restart", seconds(&after_restart), "s")
            .at_most(1.0)
            .note("SIGTERM during the pause, submit again before the reset"),
    );
    let refused_after_restart = ledger
        .attempts
        .iter()
        .filter(|a| matches!(a.outcome, AttemptOutcome::Refused { code: 11009 }))
        .filter(|a| a.at_ms >= restarted_ms && a.at_ms < after_restart.at_ms)
        .count();
    report.add(
        Figure::new(
            "11009 answers after the restart, before the reset",
            refused_after_restart as f64,
            "",
        )
        .at_most(0.0)
        .note("the pause the first submit saw survived the restart"),
    );
}

/// Polls the ledger every 50 ms until `done` gives an answer; an error if the child ends or the
/// deadline passes.
fn wait_for<T>(
    sandbox: &SandboxProc,
    child: &mut Proc,
    deadline: Instant,
    mut done: impl FnMut(&Ledger) -> Option<T>,
) -> anyhow::Result<T> {
    loop {
        child.ensure_running()?;
        if let Some(answer) = done(&sandbox.ledger()?) {
            return Ok(answer);
        }
        if Instant::now() >= deadline {
            bail!(
                "waited in vain for {} to pause at the cap and resume after the reset{}",
                child.what(),
                child.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn now_ms() -> i64 {
    (unix_now() * 1000.0) as i64
}

/// Creates answered 11009 in `day`.
fn refusals_in_day(ledger: &Ledger, day: i64, day_ms: i64) -> u64 {
    ledger
        .attempts
        .iter()
        .filter(|a| matches!(a.outcome, AttemptOutcome::Refused { code: 11009 }))
        .filter(|a| a.at_ms.div_euclid(day_ms) == day)
        .count() as u64
}

fn creates_in_day(ledger: &Ledger, day: i64, day_ms: i64) -> u64 {
    ledger
        .payouts
        .iter()
        .filter(|p| p.created_ms.div_euclid(day_ms) == day)
        .count() as u64
}

/// Every reset up to `now_ms` that followed a day with [`CAP`] creates.
fn resets(ledger: &Ledger, day_ms: i64, now_ms: i64) -> Vec<Reset> {
    let mut days: Vec<i64> = ledger.payouts.iter().map(|p| p.created_ms.div_euclid(day_ms)).collect();
    days.dedup();
    days.into_iter()
        .filter(|&day| creates_in_day(ledger, day, day_ms) >= CAP)
        .map(|day| (day + 1) * day_ms)
        .filter(|&at_ms| at_ms <= now_ms)
        .map(|at_ms| reset_at(ledger, at_ms))
        .collect()
}

/// The reset at `at_ms`, with the first create at or after it.
fn reset_at(ledger: &Ledger, at_ms: i64) -> Reset {
    let first = ledger
        .payouts
        .iter()
        .map(|p| p.created_ms)
        .filter(|&t| t >= at_ms)
        .min();
    Reset {
        at_ms,
        delay_ms: first.map(|t| t - at_ms),
    }
}
