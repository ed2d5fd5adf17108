//! The deterministic simulation of the engine: exactly-once proved far beyond what killing a
//! process can reach, in the manner of TigerBeetle's VOPR.
//!
//! One run, from one seed: a [`scenario::Scenario`] draws the batches, ccpayout's settings, the
//! API's limits (a rate limit equal to or below ours, a daily cap on short days), the faults the
//! sandbox knows (replies lost before and after commit, HTTP 5xx, 11002, slow replies; 11004 and
//! 11009 come from the limits), the network's latency and where the crashes fall. Then ccpayout
//! runs *in process*, the very code of `ccpayout run`: the store on disk, [`crate::app::wire`]d
//! to a client whose [`crate::api::Transport`] is the sandbox's world
//! ([`crate::sandbox::direct`]), ingesting the files through the preflight, reconciling, paying
//! every batch at once as the daemon does. A crash drops that whole future at a seeded poll —
//! any await point: mid-preflight, between an intent's commit and its request, with a request on
//! the wire, with a committed reply on its way back — together with every task it spawned; the
//! store is closed and opened again from disk, as after a restart, and the next life begins.
//! The last life runs to the end. Then [`check`] holds the invariants:
//!
//! - no orderId was paid twice, and nothing outside the batches was paid;
//! - every batch is done and every accepted row final; refused rows were never sent;
//! - the store agrees with the world's ledger (paid ⇔ success or failed, with the same record);
//! - every report row agrees with the ledger;
//! - the audit chain verifies.
//!
//! Everything runs on tokio's paused time on one thread: the clocks, the pacing's quotas and
//! gates, the engine's sleeps and the network's latency all read tokio's virtual time, the
//! engine's `select!`s are biased and every random draw is seeded, so a seed replays exactly —
//! the run's [`RunReport::digest`] says so. The caller provides the runtime (a current-thread
//! runtime with paused time: see `examples/sim.rs`), because only test and example builds have
//! tokio's test utilities.

pub mod check;
pub mod scenario;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use self::scenario::Scenario;
use crate::api::{Client, ClientConfig};
use crate::app::{self, Ingested, Reconcile, Reports};
use crate::config::Config;
use crate::engine::{NoProgress, RunEnd};
use crate::model::record::BatchRecord;
use crate::sandbox::direct::Direct;
use crate::sandbox::world::World;
use crate::sandbox::{DEMO_APP_ID, DEMO_APP_SECRET, SandboxConfig};
use crate::store::Store;
use crate::util::clock::{SharedClock, TokioClock};

/// The virtual time a run may take before it counts as never finishing.
const HORIZON: Duration = Duration::from_secs(3 * 24 * 60 * 60);

/// The simulated wall clock starts here (2026-12-01T00:00:00Z), whatever the real date.
const EPOCH_MS: i64 = 1_796_083_200_000;

/// How the runs are shaped.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most rows a batch of a run has.
    pub max_rows: u64,
    /// Where each run's state and files go (a subfolder per run, removed after a clean run).
    pub scratch: PathBuf,
    /// Keep a run's folder even when it had no violation.
    pub keep: bool,
}

/// What one run did and found.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub seed: u64,
    /// Lives that ended in a crash.
    pub crashes: u32,
    /// Batches and accepted orders.
    pub batches: usize,
    pub orders: usize,
    /// Payouts in the world's ledger, and create attempts that met an injected fault.
    pub payouts: usize,
    pub faults: usize,
    /// Requests the world answered, and of those 11004 and 11009.
    pub requests: u64,
    pub rate_limited: u64,
    pub daily_limited: u64,
    /// Virtual time the run took.
    pub virtual_ms: i64,
    /// Every broken invariant, in words.
    pub violations: Vec<String>,
    /// A digest of the outcome (ledger, order states, requests): the same seed gives the same
    /// digest, run after run.
    pub digest: String,
}

/// Runs the simulation of `seed`. Call it on a current-thread runtime with paused time.
pub async fn run(seed: u64, options: &Options) -> RunReport {
    let scenario = Scenario::draw(seed, options.max_rows);
    let dir = options.scratch.join(format!("run-{seed:016x}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut report = RunReport {
        seed,
        batches: scenario.batches.len(),
        orders: scenario.accepted().count(),
        ..RunReport::default()
    };
    let started = tokio::time::Instant::now();
    match simulate(&scenario, &dir, &mut report).await {
        Ok(world) => check::all(&scenario, &dir, &world, &mut report),
        Err(e) => report.violations.push(e),
    }
    report.virtual_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    if report.violations.is_empty() && !options.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    report
}

/// What every life of a run shares: the world (CCPayment survives ccpayout's crashes), the
/// clock, the configuration, the files.
struct Ctx {
    world: Arc<Mutex<World>>,
    direct: Arc<Direct>,
    clock: SharedClock,
    config: Config,
    client_config: ClientConfig,
    state_dir: PathBuf,
    reports_dir: PathBuf,
    files: Vec<PathBuf>,
}

/// The lives of a run: crashed ones, then one that finishes. Returns the world for the checks.
async fn simulate(scenario: &Scenario, dir: &Path, report: &mut RunReport) -> Result<Arc<Mutex<World>>, String> {
    let ctx = setup(scenario, dir)?;
    for (life, polls) in scenario.crashes.iter().enumerate() {
        let seed = scenario.seed.wrapping_add(life as u64);
        match (Crash {
            fut: Box::pin(live(&ctx, seed)),
            polls_left: *polls,
        })
        .await
        {
            Crashed::Yes => report.crashes += 1,
            Crashed::No(Err(e)) => return Err(format!("life {life}: {e}")),
            Crashed::No(Ok(())) => {}
        }
        // Let the aborted tasks of the dead life be dropped, then restart a little later.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(scenario.restart_delay).await;
    }
    let last = live(&ctx, scenario.seed.wrapping_add(1_000));
    match tokio::time::timeout(HORIZON, last).await {
        Ok(Ok(())) => Ok(ctx.world.clone()),
        Ok(Err(e)) => Err(format!("last life: {e}")),
        Err(_) => Err(format!(
            "the batches did not finish within {} h of virtual time",
            HORIZON.as_secs() / 3600
        )),
    }
}

fn setup(scenario: &Scenario, dir: &Path) -> Result<Ctx, String> {
    let io = |what: &str, e: std::io::Error| format!("cannot {what}: {e}");
    std::fs::create_dir_all(dir).map_err(|e| io("create the run's folder", e))?;
    let mut files = Vec::new();
    for batch in &scenario.batches {
        let path = dir.join(&batch.name);
        std::fs::write(&path, batch.csv(scenario.generation)).map_err(|e| io("write a batch file", e))?;
        files.push(path);
    }
    let config_path = dir.join("ccpayout.toml");
    std::fs::write(&config_path, config_text(scenario)).map_err(|e| io("write the config", e))?;
    let env = |key: &str| match key {
        crate::config::ENV_APP_SECRET => Some(DEMO_APP_SECRET.to_owned()),
        _ => None,
    };
    let config = Config::load(Some(&config_path), &env).map_err(|e| format!("the config: {e}"))?;
    let client_config = config.client_config().map_err(|e| format!("the client config: {e}"))?;

    let clock: SharedClock = TokioClock::new(EPOCH_MS);
    let sandbox = SandboxConfig {
        seed: scenario.seed,
        settle_delay: scenario.settle_delay,
        fail_rate: scenario.fail_rate,
        rate_limit: scenario.api_rate,
        daily_request_limit: scenario.daily_requests,
        day_length: scenario.day_length,
        faults: scenario.faults.clone(),
        readings: scenario.readings,
        balances: vec![
            ("USDT".into(), "100000000".into()),
            ("USDC".into(), "100000000".into()),
            ("MATIC".into(), "100000".into()),
        ],
        ..SandboxConfig::default()
    };
    let world = Arc::new(Mutex::new(World::new(&sandbox)?));
    let direct = Arc::new(
        Direct::new(
            world.clone(),
            clock.clone(),
            DEMO_APP_ID.to_owned(),
            SecretString::from(DEMO_APP_SECRET),
            scenario.latency,
            scenario.seed ^ 0x5eed,
        )
        .with_timeout(client_config.request_timeout),
    );
    Ok(Ctx {
        world,
        direct,
        clock,
        config,
        client_config,
        state_dir: dir.join("state"),
        reports_dir: dir.join("reports"),
        files,
    })
}

/// The configuration a run's ccpayout reads.
fn config_text(s: &Scenario) -> String {
    format!(
        r#"[api]
version = "{version}"
app_id = "{DEMO_APP_ID}"
base_url = "http://ccpayment.sim"
v1_base_url = "http://ccpayment.sim"
connect_timeout_ms = 1000
request_timeout_ms = {timeout}
{api_batch}
[preflight]
remote_checks = "{remote}"

[limits]
rate_per_second = {rate}
burst = {burst}
read_rate_per_second = {rate}
concurrency = {concurrency}
max_attempts = 8
day_length_secs = {day}
track_first_check_secs = 2
track_max_interval_secs = 60
not_found_confirm_secs = {confirm}
{batch_mode}"#,
        version = s.generation,
        remote = if s.remote_checks { "always" } else { "never" },
        rate = s.rate,
        burst = s.burst,
        concurrency = s.concurrency,
        day = s.day_length.as_secs(),
        timeout = s.request_timeout_ms,
        confirm = s.not_found_confirm_secs,
        api_batch = match s.batch_mode {
            None => String::new(),
            Some((execution, delay)) => format!(
                "withdraw_mode = \"batch\"\nbatch_execution = \"{}\"\nbatch_confirm_delay_secs = {delay}\n",
                execution.as_str()
            ),
        },
        batch_mode = if s.batch_mode.is_some() {
            // A task cannot say who pays the fee: rows go into batches only when the merchant does.
            "\n[batch]\ndefault_merchant_pays_fee = true\n"
        } else {
            ""
        },
    )
}

/// One life of ccpayout: open the store, wire the engine to the world, take every file in (a
/// file already stored is recognised), reconcile, and pay every batch at once, as the daemon
/// does, until all are done.
async fn live(ctx: &Ctx, seed: u64) -> Result<(), String> {
    std::fs::create_dir_all(&ctx.state_dir).map_err(|e| format!("cannot create the state folder: {e}"))?;
    let store = Arc::new(Store::open(&ctx.state_dir).map_err(|e| format!("the store does not open: {e}"))?);
    let client = Client::with_transport(ctx.client_config.clone(), ctx.clock.clone(), ctx.direct.clone());
    let wired =
        app::wire(&ctx.config, &store, client, ctx.clock.clone(), true, seed).map_err(|e| format!("wiring: {e}"))?;
    let mut batches: Vec<BatchRecord> = Vec::new();
    for file in &ctx.files {
        if let Some(batch) = take_in(&wired.client, &ctx.config, &store, file, &ctx.clock).await? {
            batches.push(batch);
        }
    }
    let engine = &wired.engine;
    let cancel = CancellationToken::new();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    loop {
        if !engine
            .reconcile_pending(&cancel, &NoProgress)
            .await
            .map_err(|e| err(&e))?
        {
            return Err("reconciliation was interrupted".into());
        }
        let runs = batches.iter().map(|batch| {
            app::pay(
                engine,
                batch,
                Reconcile::AlreadyDone,
                true,
                &ctx.reports_dir,
                Reports::WhenFinished,
                &cancel,
                &NoProgress,
            )
        });
        let mut done = true;
        for paid in futures_util::future::join_all(runs).await {
            let paid = paid.map_err(|e| err(&e))?;
            match paid.end {
                RunEnd::Finished => {}
                // Sending stopped on a code every order would meet: the daemon tries again
                // a minute later, and so does the simulation.
                RunEnd::Stopped { .. } => done = false,
                other => return Err(format!("batch {} ended {other:?}", paid.batch.name)),
            }
        }
        if done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// Takes a file in, trying again later while CCPayment cannot answer the preflight; `None` when
/// no row of it is payable (nothing is stored).
async fn take_in(
    client: &Client,
    config: &Config,
    store: &Arc<Store>,
    file: &Path,
    clock: &SharedClock,
) -> Result<Option<BatchRecord>, String> {
    loop {
        match app::ingest(client, config, store, file, clock.now_ms()).await {
            Ok(Ingested::Created { batch, .. } | Ingested::Known(batch)) => return Ok(Some(batch)),
            Ok(Ingested::NothingPayable { .. }) => return Ok(None),
            Ok(other) => return Err(format!("{} was not taken in: {other:?}", file.display())),
            Err(e) if e.retry_later() => tokio::time::sleep(Duration::from_secs(30)).await,
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
    }
}

/// Whether a life was crashed.
enum Crashed<T> {
    Yes,
    No(T),
}

/// Polls `fut` at most `polls_left` times; then drops it where it stands, with every task it
/// spawned (their `JoinSet`s abort them): a crash at that await point.
struct Crash<F: Future> {
    fut: std::pin::Pin<Box<F>>,
    polls_left: u64,
}

impl<F: Future> Future for Crash<F> {
    type Output = Crashed<F::Output>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls_left == 0 {
            return Poll::Ready(Crashed::Yes);
        }
        self.polls_left -= 1;
        match self.fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Crashed::No(out)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::state::{OrderState, StateKind};
    use crate::store::Change;

    /// A run without crashes or faults, kept for the tampering below.
    async fn clean_run(dir: &Path) -> (Scenario, Arc<Mutex<World>>) {
        let mut scenario = Scenario::draw(7, 12);
        scenario.crashes.clear();
        scenario.faults = crate::sandbox::Faults::default();
        let mut report = RunReport::default();
        let world = simulate(&scenario, dir, &mut report).await.expect("the run finishes");
        check::all(&scenario, dir, &world, &mut report);
        assert_eq!(report.violations, Vec::<String>::new());
        assert!(report.payouts > 0, "the run paid something");
        (scenario, world)
    }

    /// Checks the run again and asserts a violation mentioning `what` was found.
    fn assert_caught(scenario: &Scenario, dir: &Path, world: &Arc<Mutex<World>>, what: &str) {
        let mut report = RunReport::default();
        check::all(scenario, dir, world, &mut report);
        assert!(
            report.violations.iter().any(|v| v.contains(what)),
            "{:?}",
            report.violations
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_checks_catch_a_report_that_lies() {
        let dir = tempfile::tempdir().unwrap();
        let (scenario, world) = clean_run(dir.path()).await;
        let reports = dir.path().join("reports");
        let file = std::fs::read_dir(&reports)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".result.json"))
            .expect("a result report");
        let text = std::fs::read_to_string(&file).unwrap();
        let lie = text.replacen(r#""status":"success""#, r#""status":"rejected""#, 1);
        assert_ne!(lie, text, "the report has a success row to falsify");
        std::fs::write(&file, lie).unwrap();
        assert_caught(&scenario, dir.path(), &world, "is rejected but the ledger has payout");
    }

    #[tokio::test(start_paused = true)]
    async fn the_checks_catch_a_store_that_calls_a_paid_order_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (scenario, world) = clean_run(dir.path()).await;
        {
            let store = Store::open(&dir.path().join("state")).unwrap();
            let batch = store.batches().unwrap().remove(0);
            let mut order = store
                .batch_orders(&batch.batch_id)
                .unwrap()
                .into_iter()
                .find(|o| o.kind() == StateKind::Success)
                .expect("a paid order");
            order.state = OrderState::Rejected {
                code: Some(14001),
                reason: "forged".into(),
            };
            store
                .commit(&[Change {
                    order,
                    from: Some(StateKind::Success),
                    event: "forged",
                    detail: None,
                }])
                .unwrap();
        }
        assert_caught(&scenario, dir.path(), &world, "ended rejected, but the ledger's payout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_at_every_poll_of_a_small_run_still_pays_each_row_once() {
        // Small enough to crash at each of its first polls in turn: every await point of the
        // start (store open, preflight requests, intents, the first sends) is hit at least once.
        let dir = tempfile::tempdir().unwrap();
        let mut scenario = Scenario::draw(11, 3);
        scenario.faults = crate::sandbox::Faults::default();
        scenario.crashes = (1..=40).collect();
        let mut report = RunReport::default();
        match simulate(&scenario, dir.path(), &mut report).await {
            Ok(world) => check::all(&scenario, dir.path(), &world, &mut report),
            Err(e) => report.violations.push(e),
        }
        assert_eq!(report.violations, Vec::<String>::new());
        assert!(report.crashes >= 10, "lives crashed: {}", report.crashes);
    }
}
