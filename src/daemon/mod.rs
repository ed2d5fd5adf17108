//! `ccpayout run`: the unattended service.
//!
//! One process holds the state store and runs these tasks, each named so that a failure says
//! which one died (and takes the daemon down with exit code 2, for the supervisor to restart):
//!
//! - **batches** — at start, every Submitting/Unknown order of every batch is reconciled by
//!   orderId; only then is anything sent. Every open batch in the store is resumed. Batches are
//!   paid by [`batches::Batches`], sharing one engine (one rate limit, one pause gate).
//! - **inbox DIR** — one per inbox ([`intake::watch`]): events plus rescans, atomic claims.
//! - **intake** — claimed files into the store, one at a time ([`intake::run`]).
//! - **job NAME** — one per scheduled job ([`crate::jobs`]): fires on its cron schedule in its
//!   time zone, catches up a missed run once (or skips it), never overlaps itself.
//! - **control socket** — `status`, `approve`, `cancel`, `pause`, `resume`, `report` from the
//!   CLI ([`control`]).
//! - **metrics** — Prometheus text on a loopback port ([`crate::daemon::metrics`]).
//! - **webhook** — optional; a verified webhook is a hint that triggers a record query.
//! - **watchdog** — `WATCHDOG=1` to systemd while the runtime is alive.
//!
//! Lifecycle: READY=1 once the store is open and every listener is bound; on SIGTERM or SIGINT,
//! STOPPING=1, nothing new is sent, in-flight requests finish and are recorded, and the process
//! exits 0 — at the latest after `daemon.drain_secs` (anything still in flight was recorded as
//! Submitting before it left, and is reconciled at the next start). A second signal exits at once.

pub mod batches;
pub mod intake;
pub mod metrics;
pub mod socket;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::Client;
use crate::app::{self, Reply};
use crate::config::Config;
use crate::engine::runner::{Engine, META_PAUSE, NoProgress};
use crate::inbox::{Finish, Inbox};
use crate::jobs::{self, Job};
use crate::model::record::BatchState;
use crate::model::state::StateKind;
use crate::store::Store;
use crate::util::clock::SharedClock;

use self::batches::Batches;
use self::intake::InboxSpec;
use self::socket::Request;

/// What `ccpayout run` was asked to do beyond the config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Inboxes given on the command line (`--inbox DIR`), added to the config's.
    pub inboxes: Vec<PathBuf>,
    /// The client talks to the built-in sandbox: shorter first status checks.
    pub sandbox: bool,
}

/// Why the daemon stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A configuration problem (jobs, inboxes): exit 78.
    #[error("{0}")]
    Config(String),
    /// Could not start: the message says what to fix.
    #[error("{0}")]
    Start(String),
    /// A task died; the daemon stopped.
    #[error("task {task} failed: {error}")]
    Task { task: String, error: String },
}

/// Reports task failures to the supervisor loop.
#[derive(Clone)]
pub(crate) struct Fatal(mpsc::UnboundedSender<(String, String)>);

impl Fatal {
    pub(crate) fn report(&self, task: &str, error: &anyhow::Error) {
        tracing::error!(task, "task failed: {error:#}");
        let _ = self.0.send((task.to_owned(), format!("{error:#}")));
    }
}

/// Counters the daemon keeps for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    inbox: Mutex<BTreeMap<String, u64>>,
    job_runs: Mutex<BTreeMap<(String, String), u64>>,
    job_last_run: Mutex<BTreeMap<String, i64>>,
    batches_finished: AtomicU64,
}

impl Stats {
    fn count_inbox(&self, result: &str) {
        if let Ok(mut m) = self.inbox.lock() {
            *m.entry(result.to_owned()).or_insert(0) += 1;
        }
    }

    fn count_job(&self, job: &str, ok: bool, at_ms: i64) {
        if let Ok(mut m) = self.job_runs.lock() {
            let result = if ok { "ok" } else { "failed" };
            *m.entry((job.to_owned(), result.to_owned())).or_insert(0) += 1;
        }
        if let Ok(mut m) = self.job_last_run.lock() {
            m.insert(job.to_owned(), at_ms);
        }
    }
}

/// What every task shares.
pub struct Shared {
    pub store: Arc<Store>,
    pub client: Client,
    pub engine: Arc<Engine>,
    pub clock: SharedClock,
    pub config: Arc<Config>,
    pub state_dir: PathBuf,
    pub inboxes: Vec<InboxSpec>,
    pub jobs: Vec<Arc<Job>>,
    pub stats: Stats,
    started_ms: i64,
    /// Batch id → the inbox and claimed file it came from, until the file is archived.
    origins: Mutex<HashMap<String, (usize, PathBuf)>>,
    batches: OnceLock<Arc<Batches>>,
    webhook_stats: OnceLock<Arc<crate::daemon::webhook::WebhookStats>>,
}

impl Shared {
    fn batches(&self) -> &Arc<Batches> {
        self.batches
            .get()
            .expect("the batch runner is set before any task starts")
    }

    fn register_origin(&self, batch_id: &str, spec: usize, path: &Path) -> anyhow::Result<()> {
        if let Ok(mut origins) = self.origins.lock() {
            origins.insert(batch_id.to_owned(), (spec, path.to_path_buf()));
        }
        Ok(())
    }

    fn has_origin(&self, batch_id: &str) -> bool {
        self.origins.lock().map(|o| o.contains_key(batch_id)).unwrap_or(false)
    }

    /// A batch is done: its reports are written, and its inbox file (if any) moves to `done/`
    /// with a copy of the reports beside it.
    fn batch_finished(&self, batch_id: &str) -> anyhow::Result<()> {
        let Some(mut batch) = self.store.batch(batch_id)? else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let paths = app::write_reports(
            &app::reports_dir(&self.config, &self.state_dir),
            &self.store,
            &batch,
            now,
        )?;
        let counts = self.store.counts(Some(batch_id))?;
        let summary: Vec<String> = counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        tracing::info!(
            batch = %batch.name,
            refused_rows = batch.refused.len(),
            report = %paths.result_csv.display(),
            "batch finished: {}",
            summary.join(", ")
        );
        self.stats.batches_finished.fetch_add(1, Ordering::Relaxed);
        // Whoever takes the origin out archives the file, exactly once.
        let origin = self.origins.lock().ok().and_then(|mut o| o.remove(batch_id));
        if let Some((spec, path)) = origin
            && path.exists()
        {
            let inbox: &Inbox = &self.inboxes[spec].inbox;
            // Reports first: once the file is in done/, its reports are beside it.
            app::write_reports(&inbox.dir().join(crate::inbox::DONE), &self.store, &batch, now)?;
            let archived = inbox.finish(&path, Finish::Done)?;
            batch.source = archived.display().to_string();
            batch.updated_ms = now;
            self.store.put_batch(&batch)?;
            self.stats.count_inbox("done");
            tracing::info!(file = %archived.display(), "archived with its reports");
        }
        Ok(())
    }

    /// The `status` screen: the store's view plus what only the daemon knows.
    fn status(&self, target: Option<&str>) -> anyhow::Result<Reply> {
        use std::fmt::Write as _;
        let now = self.clock.now_ms();
        let mut reply = app::status(&self.store, &self.state_dir.display().to_string(), target, now)?;
        if target.is_some() || reply.exit != 0 {
            return Ok(reply);
        }
        let mut out = String::new();
        let uptime = Duration::from_millis(u64::try_from(now - self.started_ms).unwrap_or(0));
        let _ = writeln!(
            out,
            "daemon: up {}, pid {}, state {}",
            human_duration(uptime),
            std::process::id(),
            self.state_dir.display()
        );
        let (_, pause) = self.engine.gate().snapshot();
        if let Some(reason) = pause {
            let _ = writeln!(out, "sending held: {reason}");
        }
        if let Some(rate) = self.engine.gate().allowed_rate() {
            let _ = writeln!(out, "rate limited by CCPayment: sending at about {rate:.1}/s");
        }
        let stats = self.client.request_stats();
        match stats.last_success_ms {
            Some(t) => {
                let _ = writeln!(out, "last successful API call: {}", crate::util::time::rfc3339_ms(t));
            }
            None => {
                let _ = writeln!(out, "last successful API call: none yet");
            }
        }
        let running = self.batches().running();
        if !running.is_empty() {
            let _ = writeln!(out, "batches being paid: {}", running.len());
        }
        for spec in &self.inboxes {
            let _ = writeln!(
                out,
                "inbox {}{}",
                spec.inbox.dir().display(),
                spec.job.as_ref().map(|j| format!(" (job {j})")).unwrap_or_default()
            );
        }
        for job in &self.jobs {
            let _ = writeln!(out, "job {}", jobs::describe(job, now));
        }
        reply.text = out + &reply.text;
        Ok(reply)
    }

    /// The metrics snapshot.
    fn snapshot(&self) -> crate::daemon::metrics::Snapshot {
        let now = self.clock.now_ms();
        let counts = self.store.counts(None).unwrap_or_default();
        let count = |k| counts.get(&k).copied().unwrap_or(0);
        let mut batches_by_state: BTreeMap<String, u64> = [("open".to_owned(), 0), ("done".to_owned(), 0)].into();
        if let Ok(batches) = self.store.batches() {
            for b in batches {
                let state = match b.state {
                    BatchState::Open => "open",
                    BatchState::Done => "done",
                };
                *batches_by_state.entry(state.to_owned()).or_insert(0) += 1;
            }
        }
        let (persisted, held) = self.engine.gate().snapshot();
        let pauses = self.engine.gate().pause_counts();
        let requests = self.client.request_stats();
        crate::daemon::metrics::Snapshot {
            orders_by_state: StateKind::ALL
                .iter()
                .map(|k| (k.as_str().to_owned(), count(*k)))
                .collect(),
            batches_by_state,
            queue_depth: count(StateKind::Queued) + count(StateKind::Deferred),
            requests: requests.by_endpoint_and_code,
            rate_limit_pauses: pauses.rate_limit,
            daily_limit_pauses: pauses.daily_limit,
            paused: held.is_some(),
            kill_switch: persisted.kill_switch,
            last_success_ms: requests.last_success_ms,
            webhooks: self.webhook_stats.get().map(|s| s.snapshot()).unwrap_or_default(),
            inbox_files: self.stats.inbox.lock().map(|m| m.clone()).unwrap_or_default(),
            job_runs: self.stats.job_runs.lock().map(|m| m.clone()).unwrap_or_default(),
            job_last_run_ms: self.stats.job_last_run.lock().map(|m| m.clone()).unwrap_or_default(),
            started_ms: self.started_ms,
            now_ms: now,
            build_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// Answers control-socket requests.
struct ControlHandler {
    shared: Arc<Shared>,
}

impl socket::Handler for ControlHandler {
    async fn handle(&self, request: Request) -> Reply {
        match self.answer(request).await {
            Ok(reply) => reply,
            Err(e) => Reply::error(format!("{e:#}")),
        }
    }
}

impl ControlHandler {
    async fn answer(&self, request: Request) -> anyhow::Result<Reply> {
        let shared = &self.shared;
        let store = &shared.store;
        let where_ = shared.state_dir.display().to_string();
        let now = shared.clock.now_ms();
        match request {
            Request::Status { target } => shared.status(target.as_deref()),
            Request::Approve { batch, digest } => {
                let batch = match app::find_batch(store, &where_, &batch)? {
                    Ok(b) => b,
                    Err(reply) => return Ok(reply),
                };
                let id = batch.batch_id.clone();
                let reply = app::approve(store, batch, &digest, now, "the daemon sends them now")?;
                if reply.exit == 0 {
                    shared.batches().launch(&id);
                }
                Ok(reply)
            }
            Request::Cancel { batch } => {
                let batch = match app::find_batch(store, &where_, &batch)? {
                    Ok(b) => b,
                    Err(reply) => return Ok(reply),
                };
                // Stop its sends first (the requests in flight are recorded), so the cancel and
                // the engine never change the same orders at once; then follow the rest.
                shared.batches().hold(&batch.batch_id).await;
                let reply = app::cancel(store, &batch, now);
                shared.batches().release(&batch.batch_id);
                Ok(reply?)
            }
            Request::Pause { reason } => {
                let persisted = shared.engine.gate().set_kill_switch(true, reason);
                store.meta_put(META_PAUSE, &persisted)?;
                tracing::warn!("submission paused by an operator");
                Ok(Reply::ok(app::kill_switch_text(true)))
            }
            Request::Resume => {
                let persisted = shared.engine.gate().set_kill_switch(false, None);
                store.meta_put(META_PAUSE, &persisted)?;
                tracing::info!("submission resumed by an operator");
                Ok(Reply::ok(app::kill_switch_text(false)))
            }
            Request::Report { batch } => {
                let batch = match app::find_batch(store, &where_, &batch)? {
                    Ok(b) => b,
                    Err(reply) => return Ok(reply),
                };
                let paths =
                    app::write_reports(&app::reports_dir(&shared.config, &shared.state_dir), store, &batch, now)?;
                Ok(Reply::ok(format!(
                    "reports of batch {}:\n  {}\n  {}\n  {}\n",
                    batch.name,
                    paths.result_csv.display(),
                    paths.result_json.display(),
                    paths.summary_json.display()
                )))
            }
        }
    }
}

/// A systemd notification; nothing happens outside systemd.
fn sd_notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Runs the daemon until a signal (`Ok`) or a task failure (`Err`). The store must have been
/// opened by the caller (so a second daemon fails before anything else happens).
pub async fn run(
    config: Config,
    store: Arc<Store>,
    state_dir: &Path,
    client: Client,
    clock: SharedClock,
    options: Options,
) -> Result<(), DaemonError> {
    let start = |e: String| DaemonError::Start(e);
    let config = Arc::new(config);

    // Jobs and inboxes.
    let jobs: Vec<Arc<Job>> = match &config.daemon.jobs_dir {
        Some(dir) => jobs::load_jobs(dir, &config.policy)
            .map_err(|e| DaemonError::Config(e.to_string()))?
            .into_iter()
            .filter(|j| j.enabled)
            .map(Arc::new)
            .collect(),
        None => Vec::new(),
    };
    let mut inboxes = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut add = |dir: &Path, job: Option<String>, config: Arc<Config>, settle: Duration| -> Result<(), DaemonError> {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if seen.contains(&key) {
            return Err(DaemonError::Config(format!(
                "the inbox {} is listed twice (config, --inbox or a job); each folder may feed one inbox",
                dir.display()
            )));
        }
        let inbox =
            Inbox::open(dir, settle).map_err(|e| start(format!("cannot use the inbox {}: {e}", dir.display())))?;
        seen.push(std::fs::canonicalize(dir).unwrap_or(key));
        inboxes.push(InboxSpec { inbox, job, config });
        Ok(())
    };
    for dir in config.daemon.inboxes.iter().chain(&options.inboxes) {
        add(dir, None, config.clone(), config.daemon.settle)?;
    }
    for job in &jobs {
        let mut job_config = (*config).clone();
        job_config.policy = job.policy.clone();
        add(
            &job.inbox,
            Some(job.name.clone()),
            Arc::new(job_config),
            job.settle.unwrap_or(config.daemon.settle),
        )?;
    }
    if inboxes.is_empty() && jobs.is_empty() {
        tracing::warn!("no inbox and no job configured: the daemon only resumes stored batches and answers commands");
    }

    let engine = Arc::new(
        app::build_engine(&config, &store, client.clone(), clock.clone(), options.sandbox)
            .map_err(|e| start(e.to_string()))?,
    );
    let shared = Arc::new(Shared {
        store: store.clone(),
        client,
        engine: engine.clone(),
        clock: clock.clone(),
        config: config.clone(),
        state_dir: state_dir.to_path_buf(),
        inboxes,
        jobs,
        stats: Stats::default(),
        started_ms: clock.now_ms(),
        origins: Mutex::new(HashMap::new()),
        batches: OnceLock::new(),
        webhook_stats: OnceLock::new(),
    });

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
    let fatal = Fatal(fatal_tx);
    let (reconciled_tx, reconciled_rx) = watch::channel(false);
    let batches = Batches::new(
        shared.clone(),
        config.daemon.max_active_batches as usize,
        reconciled_rx,
        tracker.clone(),
        shutdown.clone(),
        fatal.clone(),
    );
    let _ = shared.batches.set(batches.clone());

    // Listeners are bound before READY, so a port in use is a start-up error, not a dead task.
    let socket = socket::bind(state_dir, config.daemon.socket_mode)
        .await
        .map_err(|e| start(format!("control socket: {e}")))?;
    let metrics_listener = match config.daemon.metrics_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            start(format!(
                "cannot serve metrics on {addr}: {e} (set daemon.metrics_listen)"
            ))
        })?),
        None => None,
    };
    let webhook_listener = if config.webhook.enabled {
        let addr = config.webhook.listen;
        Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            start(format!(
                "cannot listen for webhooks on {addr}: {e} (set webhook.listen)"
            ))
        })?)
    } else {
        None
    };

    let spawn = |name: String, fut: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>| {
        let fatal = fatal.clone();
        tracker.spawn(async move {
            if let Err(e) = fut.await {
                fatal.report(&name, &e);
            }
        });
    };

    // The control socket.
    {
        let handler = Arc::new(ControlHandler { shared: shared.clone() });
        let path = socket::socket_path(state_dir);
        let cancel = shutdown.clone();
        spawn(
            "control socket".into(),
            Box::pin(async move { Ok(socket::serve(socket, path, handler, cancel).await?) }),
        );
    }
    // Metrics.
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr().map_err(|e| start(e.to_string()))?;
        tracing::info!("metrics on http://{addr}/metrics");
        let source_shared = shared.clone();
        let router = crate::daemon::metrics::router(Arc::new(move || source_shared.snapshot()));
        let cancel = shutdown.clone();
        spawn(
            "metrics".into(),
            Box::pin(async move { Ok(crate::daemon::metrics::serve(listener, router, cancel).await?) }),
        );
    }
    // Webhooks.
    if let Some(listener) = webhook_listener {
        // The account the client signs for (the sandbox's under --sandbox) signs the webhooks.
        let (app_id, secret) = (shared.client.app_id().to_owned(), shared.client.app_secret().clone());
        let settings = crate::daemon::webhook::WebhookSettings {
            listen: config.webhook.listen,
            path: config.webhook.path.clone(),
            max_body_bytes: config.webhook.max_body_bytes,
            window: config.webhook.window,
        };
        let verifier = Arc::new(crate::daemon::webhook::Verifier::new(
            app_id,
            secret,
            config.api.generation,
            &settings,
            clock.clone(),
        ));
        let _ = shared.webhook_stats.set(verifier.stats());
        let hint_engine = engine.clone();
        let on_hint: Arc<dyn Fn(crate::daemon::webhook::Hint) + Send + Sync> = Arc::new(move |hint| {
            if let Some(order_id) = &hint.order_id {
                hint_engine.hint(order_id);
            }
        });
        let router = crate::daemon::webhook::router(verifier, &settings, on_hint);
        tracing::info!(
            "webhook listener on http://{}{}",
            listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            settings.path
        );
        let cancel = shutdown.clone();
        spawn(
            "webhook".into(),
            Box::pin(async move { Ok(crate::daemon::webhook::serve(listener, router, cancel).await?) }),
        );
    }

    // The signal handlers are in place before READY=1: a SIGTERM right after it stops the daemon
    // cleanly instead of killing it with the default disposition.
    let stop_signal = shutdown_signal();
    sd_notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("reconciling"),
    ]);
    tracing::info!(
        state = %state_dir.display(),
        inboxes = shared.inboxes.len(),
        jobs = shared.jobs.len(),
        "ccpayout daemon ready"
    );

    // Watchdog pings while the runtime is responsive.
    if let Some(period) = sd_notify::watchdog_enabled() {
        let cancel = shutdown.clone();
        spawn(
            "watchdog".into(),
            Box::pin(async move {
                let mut tick = tokio::time::interval(period / 2);
                loop {
                    tokio::select! {
                        _ = tick.tick() => sd_notify(&[sd_notify::NotifyState::Watchdog]),
                        _ = cancel.cancelled() => return Ok(()),
                    }
                }
            }),
        );
    }

    // Reconcile, then resume every open batch.
    {
        let shared = shared.clone();
        let cancel = shutdown.clone();
        let batches = batches.clone();
        spawn(
            "reconcile".into(),
            Box::pin(async move {
                if !shared.engine.reconcile_pending(&cancel, &NoProgress).await? {
                    return Ok(());
                }
                let _ = reconciled_tx.send(true);
                sd_notify(&[sd_notify::NotifyState::Status("running")]);
                let open: Vec<String> = shared
                    .store
                    .batches()?
                    .into_iter()
                    .filter(|b| b.state == BatchState::Open)
                    .map(|b| b.batch_id)
                    .collect();
                if !open.is_empty() {
                    tracing::info!(batches = open.len(), "resuming open batches");
                }
                for id in open {
                    batches.launch(&id);
                }
                // Keep the sender alive so batch tasks never see the channel closed.
                cancel.cancelled().await;
                drop(reconciled_tx);
                Ok(())
            }),
        );
    }

    // Inboxes and the intake.
    let (claim_tx, claim_rx) = mpsc::channel(1024);
    {
        let shared2 = shared.clone();
        let cancel = shutdown.clone();
        let tx = claim_tx.clone();
        spawn(
            "intake".into(),
            Box::pin(async move { intake::run(shared2, claim_rx, tx, cancel).await }),
        );
    }
    for index in 0..shared.inboxes.len() {
        let name = format!("inbox {}", shared.inboxes[index].inbox.dir().display());
        let shared2 = shared.clone();
        let tx = claim_tx.clone();
        let cancel = shutdown.clone();
        let rescan = config.daemon.rescan;
        spawn(
            name,
            Box::pin(async move { intake::watch(shared2, index, rescan, tx, cancel).await }),
        );
    }
    drop(claim_tx);

    // Jobs.
    let runs: Arc<dyn jobs::LastRuns> = store.clone();
    for job in shared.jobs.iter().filter(|j| j.schedule.is_some()) {
        let stats_shared = shared.clone();
        let fire: jobs::FireFn = Arc::new(move |job: Arc<Job>, scheduled_ms: i64| {
            let shared = stats_shared.clone();
            Box::pin(async move {
                let result = jobs::fire::execute(&job, scheduled_ms).await;
                shared.stats.count_job(&job.name, result.is_ok(), shared.clock.now_ms());
                result
            })
        });
        let job = job.clone();
        let name = format!("job {}", job.name);
        let clock = clock.clone();
        let runs = runs.clone();
        let cancel = shutdown.clone();
        spawn(
            name,
            Box::pin(async move { Ok(jobs::run_job(job, clock, runs, fire, cancel).await?) }),
        );
    }

    // Wait for a signal or a failure.
    let result = tokio::select! {
        _ = stop_signal => {
            tracing::info!("stopping: nothing new is sent; waiting for the requests in flight (a second signal quits at once)");
            Ok(())
        }
        Some((task, error)) = fatal_rx.recv() => Err(DaemonError::Task { task, error }),
    };
    sd_notify(&[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
    tracker.close();
    tokio::spawn(async {
        shutdown_signal().await;
        eprintln!("second signal: quitting at once; the next start reconciles what was in flight");
        std::process::exit(130);
    });
    let drain = config.daemon.drain;
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(
            "drain deadline of {} s reached; requests still in flight were recorded before they left and are reconciled at the next start",
            drain.as_secs()
        );
    }
    if let Err(e) = app::save_budget(&store, &engine) {
        tracing::warn!(error = %e, "cannot save the daily budget counter");
    }
    if result.is_ok() {
        tracing::info!("stopped");
    }
    result
}

/// Installs the SIGTERM and SIGINT (Ctrl-C) handlers now, and returns a future that resolves on
/// the first of them. Installing at the call, not at the first poll, means a signal that arrives
/// before anyone awaits the future is still caught (once caught, the process is never again
/// killed by the default disposition). Must be called within the tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}
