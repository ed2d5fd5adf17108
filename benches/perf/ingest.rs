//! Scenario 6: parse and locally validate a generated 1,000,000-row CSV against the sandbox's
//! demo catalogue (no network). The validation runs in a child process (this program with a
//! hidden flag), so the peak RSS measured is the validator's alone, not the generator's or the
//! other scenarios'.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ccpayout::batch::catalogue::Catalogue;
use ccpayout::batch::parse::{Format, Limits};
use ccpayout::batch::validate::{NoKnownOrders, Rules, validate};
use ccpayout::config::ApiGeneration;
use serde::{Deserialize, Serialize};

use crate::Ctx;
use crate::data::write_mixed_batch;
use crate::harness::{Proc, own_peak_rss_mb, temp_dir};
use crate::report::{Figure, Report};

/// The hidden flag that makes this program the ingest child: `--ingest-child FILE`.
pub const CHILD_FLAG: &str = "--ingest-child";
const ROWS: u64 = 1_000_000;

/// What the child prints (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
struct ChildReport {
    seconds: f64,
    rows_seen: u64,
    rows_accepted: u64,
    problems: usize,
    first_problem: Option<String>,
    /// VmHWM of the child, as it saw it.
    peak_rss_mb: Option<f64>,
}

/// The same size in both modes: the bar is about a million rows.
pub fn run(_ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let dir = temp_dir("ingest")?;
    let path = dir.path().join("ingest.csv");
    let started = Instant::now();
    let bytes = write_mixed_batch(&path, ROWS)?;
    println!(
        "  {ROWS} rows, {:.1} MB CSV, generated in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let mut cmd = Command::new(exe);
    cmd.arg(CHILD_FLAG)
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = Proc::spawn(&mut cmd, "the ingest child", None)?;
    let mut stdout = child.take_stdout().context("the child's stdout is not piped")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let exit = child.wait(Duration::from_secs(300))?;
    let text = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    if exit.status.code() != Some(0) {
        bail!("the ingest child ended with {}: {text}", exit.describe());
    }
    let child_report: ChildReport =
        serde_json::from_str(text.trim()).with_context(|| format!("unreadable child report {text:?}"))?;
    if child_report.rows_seen != ROWS || child_report.problems > 0 {
        bail!(
            "validation saw {} rows and {} problems (first: {:?}); expected {ROWS} valid rows",
            child_report.rows_seen,
            child_report.problems,
            child_report.first_problem
        );
    }
    report.add(
        Figure::new("parse + validate 1,000,000 rows", child_report.seconds, "s")
            .at_most(3.0)
            .note(format!(
                "{:.0} rows/s, {} accepted",
                ROWS as f64 / child_report.seconds,
                child_report.rows_accepted
            )),
    );
    // The child's own VmHWM counts only its memory since exec; ru_maxrss is the fallback.
    report.add(
        Figure::new(
            "peak RSS of the validating process",
            child_report.peak_rss_mb.unwrap_or(exit.max_rss_mb),
            "MB",
        )
        .at_most(200.0)
        .note(format!(
            "the child's VmHWM; wait4 gave {:.1} MB with the benchmark at {:.0} MB when it spawned it",
            exit.max_rss_mb,
            child.parent_rss_mb()
        )),
    );
    Ok(())
}

/// The child: validate the file and print a [`ChildReport`] as JSON.
pub fn child(path: &Path) -> ExitCode {
    match validate_file(path) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("perf ingest child: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn validate_file(path: &Path) -> anyhow::Result<ChildReport> {
    let demo = ccpayout::sandbox::demo::Catalogue::demo();
    let catalogue =
        Catalogue::from_api(&demo.coins, &demo.chains).map_err(|e| anyhow::anyhow!("demo catalogue: {e:?}"))?;
    let limits = Limits::default();
    let rules = Rules {
        catalogue: &catalogue,
        generation: ApiGeneration::V2,
        default_merchant_pays_fee: false,
        limits: &limits,
    };
    let started = Instant::now();
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let validated = validate(
        Format::Csv,
        std::io::BufReader::with_capacity(1 << 16, file),
        &rules,
        &NoKnownOrders,
    );
    let seconds = started.elapsed().as_secs_f64();
    Ok(ChildReport {
        seconds,
        rows_seen: validated.rows_seen,
        rows_accepted: validated.rows.len() as u64,
        problems: validated.problems.len(),
        first_problem: validated.problems.first().map(|p| format!("{p:?}")),
        peak_rss_mb: own_peak_rss_mb(),
    })
}
