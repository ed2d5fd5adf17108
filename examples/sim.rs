//! The deterministic simulation: many seeded runs of the engine in process against the sandbox's
//! world, with faults and crashes at any await point, and the invariants checked after each (see
//! `ccpayout::sim`).
//!
//! ```text
//! cargo run --release --example sim -- --runs 2000              # seeds from the clock
//! cargo run --release --example sim -- --runs 2000 --seed 42    # seeds 42, 43, … 2041
//! cargo run --release --example sim -- --runs 1 --seed 1337 -v  # replay one seed, with detail
//! ```
//!
//! Runs are spread over the machine's cores, each on its own current-thread runtime with paused
//! time; a run depends on its seed alone, so a failing seed replays exactly (its folder is kept
//! under the scratch folder, and the digest printed with `-v` is the same every time). The last
//! line is always `runs=N violations=V seed=S`; the exit code is 1 when any run broke an
//! invariant.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ccpayout::sim::{self, Options, RunReport};

/// Wall time after which a run counts as stuck. A run takes well under a second in a release
/// build and a few in a debug build.
const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

struct Args {
    runs: u64,
    seed: Option<u64>,
    threads: usize,
    max_rows: u64,
    scratch: PathBuf,
    verbose: bool,
    keep: bool,
}

fn usage() -> ! {
    eprintln!("usage: sim [--runs N] [--seed S] [--threads T] [--max-rows R] [--scratch DIR] [--keep] [-v]");
    std::process::exit(2)
}

fn parse() -> Args {
    let default_scratch = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
    .join(format!("ccpayout-sim-{}", std::process::id()));
    let mut args = Args {
        runs: 100,
        seed: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        max_rows: 40,
        scratch: default_scratch,
        verbose: false,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--runs" => args.runs = value().parse().unwrap_or_else(|_| usage()),
            "--seed" => args.seed = Some(value().parse().unwrap_or_else(|_| usage())),
            "--threads" => args.threads = value().parse().unwrap_or_else(|_| usage()),
            "--max-rows" => args.max_rows = value().parse().unwrap_or_else(|_| usage()),
            "--scratch" => args.scratch = PathBuf::from(value()),
            "--keep" => args.keep = true,
            "-v" | "--verbose" => args.verbose = true,
            _ => usage(),
        }
    }
    args
}

fn main() {
    let args = parse();
    let base = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let options = Options {
        max_rows: args.max_rows,
        scratch: args.scratch.clone(),
        keep: args.keep,
    };
    let next = Arc::new(AtomicU64::new(0));
    let reports: Arc<Mutex<Vec<RunReport>>> = Arc::default();
    let started = Instant::now();
    // A run lives on paused time, which moves only while every task waits: a task that spins
    // never lets it move, and the run would never end. The watchdog names such a seed and stops.
    let running: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
    {
        let running = running.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let stuck = running.lock().ok().and_then(|r| {
                    r.iter()
                        .find(|(_, since)| since.elapsed() > STUCK_AFTER)
                        .map(|(seed, _)| *seed)
                });
                if let Some(seed) = stuck {
                    println!(
                        "seed={seed} has run for {} s of wall time without finishing: a task spins and virtual time cannot move (replay with --runs 1 --seed {seed} -v)",
                        STUCK_AFTER.as_secs()
                    );
                    println!("failing seeds (replay with --runs 1 --seed S -v): {seed}");
                    std::process::exit(1);
                }
            }
        });
    }
    let threads: Vec<_> = (0..args.threads.max(1))
        .map(|_| {
            let (next, reports, options, running) = (next.clone(), reports.clone(), options.clone(), running.clone());
            let (runs, verbose) = (args.runs, args.verbose);
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= runs {
                        return;
                    }
                    let seed = base.wrapping_add(i);
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .start_paused(true)
                        .build()
                        .expect("a current-thread runtime");
                    if verbose {
                        // The scenario first: a run that never returns still shows what it was.
                        let scenario = sim::scenario::Scenario::draw(seed, options.max_rows);
                        println!("seed={seed} scenario: {scenario:?}");
                    }
                    if let Ok(mut r) = running.lock() {
                        r.insert(seed, Instant::now());
                    }
                    let report = runtime.block_on(sim::run(seed, &options));
                    if let Ok(mut r) = running.lock() {
                        r.remove(&seed);
                    }
                    if verbose || !report.violations.is_empty() {
                        print_run(&report, &options);
                    }
                    if let Ok(mut all) = reports.lock() {
                        all.push(report);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        if thread.join().is_err() {
            eprintln!("a simulation thread panicked");
        }
    }
    let reports = reports.lock().map(|r| r.clone()).unwrap_or_default();
    let failed: Vec<&RunReport> = reports.iter().filter(|r| !r.violations.is_empty()).collect();
    let sum = |f: fn(&RunReport) -> u64| reports.iter().map(f).sum::<u64>();
    println!(
        "covered: {} batches, {} orders, {} payouts, {} crashes, {} requests ({} answered 11004, {} 11009), {} injected faults on creates, {:.1} h of virtual time",
        sum(|r| r.batches as u64),
        sum(|r| r.orders as u64),
        sum(|r| r.payouts as u64),
        sum(|r| u64::from(r.crashes)),
        sum(|r| r.requests),
        sum(|r| r.rate_limited),
        sum(|r| r.daily_limited),
        sum(|r| r.faults as u64),
        sum(|r| r.virtual_ms as u64) as f64 / 3_600_000.0
    );
    println!(
        "took {:.1} s on {} threads",
        started.elapsed().as_secs_f64(),
        args.threads.max(1)
    );
    if failed.is_empty() && !args.keep {
        let _ = std::fs::remove_dir_all(&args.scratch);
    }
    let violations: usize = failed.iter().map(|r| r.violations.len()).sum();
    if !failed.is_empty() {
        let seeds: Vec<String> = failed.iter().map(|r| r.seed.to_string()).collect();
        println!("failing seeds (replay with --runs 1 --seed S -v): {}", seeds.join(" "));
    }
    println!("runs={} violations={violations} seed={base}", reports.len());
    if violations > 0 || reports.len() as u64 != args.runs {
        std::process::exit(1);
    }
}

fn print_run(r: &RunReport, options: &Options) {
    println!(
        "seed={} batches={} orders={} payouts={} crashes={} requests={} 11004={} 11009={} faults={} virtual={:.1}s digest={} violations={}",
        r.seed,
        r.batches,
        r.orders,
        r.payouts,
        r.crashes,
        r.requests,
        r.rate_limited,
        r.daily_limited,
        r.faults,
        r.virtual_ms as f64 / 1000.0,
        r.digest,
        r.violations.len()
    );
    for v in &r.violations {
        println!("  violation: {v}");
    }
    if !r.violations.is_empty() {
        println!(
            "  kept: {}",
            options.scratch.join(format!("run-{:016x}", r.seed)).display()
        );
    }
}
