//! `ccpayout run`: the unattended service.
//!
//! One process holds the state store and runs these tasks, each named so that a failure says
//! which one died (and takes the daemon down with exit code 2, for the supervisor to restart):
//!
//! - **batches** — at start, every Submitting/Unknown order of every batch is reconciled by
//!   orderId; only then is anything sent. Every open batch in the store is resumed. Batches are
//!   paid by [`batches::Batches`], sharing one engine (one pacing: one rate limit, one pause
//!   gate, one daily budget, shared with every preflight too).
//! - **inbox DIR** — one per inbox ([`intake::watch`]): events plus rescans, atomic claims.
//! - **intake** — claimed files into the store, one at a time ([`intake::run`]).
//! - **job NAME** — one per scheduled job ([`crate::jobs`]): fires on its cron schedule in its
//!   time zone, catches up a missed run once (or skips it), never overlaps itself.
//! - **control socket** — `status`, `approve`, `cancel`, `pause`, `resume`, `report` from the
//!   CLI ([`socket`]), answered by the one operator with the daemon's [`runtime::Live`].
//! - **metrics** — Prometheus text on a loopback port ([`metrics`]).
//! - **webhook** — optional; a verified webhook is a hint that triggers a record query.
//! - **watchdog** — `WATCHDOG=1` to systemd while the runtime is alive.
//!
//! Lifecycle: [`build`] loads the jobs and inboxes, wires the engine and binds every listener (a
//! port in use is a start-up error, not a dead task); [`Daemon::serve`] sends READY=1, runs the
//! tasks until its `shutdown` future resolves or a task fails, then STOPPING=1: nothing new is
//! sent, in-flight requests finish and are recorded, and it returns — at the latest after
//! `daemon.drain_secs` (anything still in flight was recorded as Submitting before it left, and
//! is reconciled at the next start). Shutdown is a parameter, as in mini-redis: the binary passes
//! SIGTERM/SIGINT (and quits at once on a second one), tests pass any future.

pub mod batches;
pub mod intake;
pub mod metrics;
pub mod runtime;
pub mod socket;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::Client;
use crate::app::{self, Operator};
use crate::config::Config;
use crate::engine::{Engine, NoProgress};
use crate::inbox::{Finish, Inbox};
use crate::jobs::{self, Job};
use crate::model::notice::NoticeEvent;
use crate::model::record::BatchState;
use crate::store::Store;
use crate::util::clock::SharedClock;

use self::batches::Batches;
use self::intake::InboxSpec;
use self::runtime::Live;

/// What `ccpayout run` was asked to do beyond the config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Inboxes given on the command line (`--inbox DIR`), added to the config's.
    pub inboxes: Vec<PathBuf>,
    /// The client talks to the built-in sandbox: shorter first status checks.
    pub sandbox: bool,
}

/// Why the daemon stopped other than by its shutdown signal.
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
    /// The client through the engine's pacing: every request of the process passes it.
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
    webhook_stats: OnceLock<Arc<webhook::WebhookStats>>,
    /// The web console, when `[console]` enables it.
    console: OnceLock<Arc<crate::console::Console>>,
}

impl Shared {
    fn batches(&self) -> &Arc<Batches> {
        self.batches
            .get()
            .expect("the batch runner is set before any task starts")
    }

    fn reports_dir(&self) -> PathBuf {
        app::reports_dir(&self.config, &self.state_dir)
    }

    /// The one operator with this daemon's live runtime: what the control socket and the
    /// console answer with.
    fn operator(self: &Arc<Self>) -> Operator<Live> {
        Operator::new(
            self.store.clone(),
            self.state_dir.clone(),
            self.reports_dir(),
            self.clock.clone(),
            Live::new(self.clone()),
        )
        .with_policy(self.config.policy.clone())
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

    /// A batch is done and its reports are written: its inbox file (if any) moves to `done/`
    /// with a copy of the reports beside it.
    fn batch_finished(&self, batch_id: &str, summary: &str, report: &Path) -> anyhow::Result<()> {
        let Some(mut batch) = self.store.batch(batch_id)? else {
            return Ok(());
        };
        tracing::info!(
            batch = %batch.name,
            refused_rows = batch.refused.len(),
            report = %report.display(),
            "batch finished: {summary}"
        );
        self.stats.batches_finished.fetch_add(1, Ordering::Relaxed);
        // Whoever takes the origin out archives the file, exactly once.
        let origin = self.origins.lock().ok().and_then(|mut o| o.remove(batch_id));
        if let Some((spec, path)) = origin
            && path.exists()
        {
            let now = self.clock.now_ms();
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
}

/// A systemd notification; nothing happens outside systemd.
fn sd_notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// A daemon that is built and bound, ready to [`Daemon::serve`].
pub struct Daemon {
    shared: Arc<Shared>,
    batches: Arc<Batches>,
    socket: Option<UnixListener>,
    metrics: Option<TcpListener>,
    webhook: Option<TcpListener>,
    console: Option<TcpListener>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    fatal: Fatal,
    fatal_rx: mpsc::UnboundedReceiver<(String, String)>,
    reconciled: watch::Sender<bool>,
    /// The notice dispatcher, when `[[notify]]` names a target.
    notices: Option<Arc<crate::notify::Dispatcher>>,
}

/// Loads the jobs and inboxes, wires the engine (one pacing for every request) and binds every
/// listener. The store must have been opened by the caller (so a second daemon fails before
/// anything else happens); `client` is not paced yet: the daemon paces it.
pub async fn build(
    config: Config,
    store: Arc<Store>,
    state_dir: &Path,
    client: Client,
    clock: SharedClock,
    options: Options,
) -> Result<Daemon, DaemonError> {
    let start = |e: String| DaemonError::Start(e);
    let config = Arc::new(config);
    let jobs = load_jobs(&config)?;
    let inboxes = inbox_specs(&config, &options, &jobs)?;
    if inboxes.is_empty() && jobs.is_empty() {
        tracing::warn!("no inbox and no job configured: the daemon only resumes stored batches and answers commands");
    }

    let wired = app::wire(
        &config,
        &store,
        client,
        clock.clone(),
        options.sandbox,
        app::wiring::entropy_seed(),
    )
    .map_err(|e| start(e.to_string()))?;
    let notices = app::wiring::notices(&config, &store, clock.clone()).map_err(|e| start(e.to_string()))?;
    let shared = Arc::new(Shared {
        store: store.clone(),
        client: wired.client,
        engine: wired.engine,
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
        console: OnceLock::new(),
    });

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
    let fatal = Fatal(fatal_tx);
    let (reconciled, reconciled_rx) = watch::channel(false);
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
    let metrics = match config.daemon.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
            start(format!(
                "cannot serve metrics on {addr}: {e} (set daemon.metrics_listen)"
            ))
        })?),
        None => None,
    };
    let webhook = if config.webhook.enabled {
        let addr = config.webhook.listen;
        Some(TcpListener::bind(addr).await.map_err(|e| {
            start(format!(
                "cannot listen for webhooks on {addr}: {e} (set webhook.listen)"
            ))
        })?)
    } else {
        None
    };
    let console = if config.console.enabled {
        let addr = config.console.listen;
        Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| start(format!("cannot serve the console on {addr}: {e} (set console.listen)")))?,
        )
    } else {
        None
    };
    Ok(Daemon {
        shared,
        batches,
        socket: Some(socket),
        metrics,
        webhook,
        console,
        shutdown,
        tracker,
        fatal,
        fatal_rx,
        reconciled,
        notices,
    })
}

/// [`build`], then [`Daemon::serve`] until `shutdown`.
pub async fn run(
    config: Config,
    store: Arc<Store>,
    state_dir: &Path,
    client: Client,
    clock: SharedClock,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    build(config, store, state_dir, client, clock, options)
        .await?
        .serve(shutdown)
        .await
}

/// The enabled jobs of `jobs_dir`.
fn load_jobs(config: &Config) -> Result<Vec<Arc<Job>>, DaemonError> {
    Ok(match &config.daemon.jobs_dir {
        Some(dir) => jobs::load_jobs(dir, &config.policy)
            .map_err(|e| DaemonError::Config(e.to_string()))?
            .into_iter()
            .filter(|j| j.enabled)
            .map(Arc::new)
            .collect(),
        None => Vec::new(),
    })
}

/// Every inbox — the config's, `--inbox` and each job's (with the job's policy) — opened, and
/// no folder listed twice.
fn inbox_specs(config: &Arc<Config>, options: &Options, jobs: &[Arc<Job>]) -> Result<Vec<InboxSpec>, DaemonError> {
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
        let inbox = Inbox::open(dir, settle)
            .map_err(|e| DaemonError::Start(format!("cannot use the inbox {}: {e}", dir.display())))?;
        seen.push(std::fs::canonicalize(dir).unwrap_or(key));
        inboxes.push(InboxSpec { inbox, job, config });
        Ok(())
    };
    for dir in config.daemon.inboxes.iter().chain(&options.inboxes) {
        add(dir, None, config.clone(), config.daemon.settle)?;
    }
    for job in jobs {
        let mut job_config = (**config).clone();
        job_config.policy = job.policy.clone();
        add(
            &job.inbox,
            Some(job.name.clone()),
            Arc::new(job_config),
            job.settle.unwrap_or(config.daemon.settle),
        )?;
    }
    Ok(inboxes)
}

/// How long a stopping daemon waits for its last notices.
const NOTICE_FLUSH_ON_STOP: Duration = Duration::from_secs(5);

type Task = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

impl Daemon {
    /// The address the metrics endpoint listens on, if it does.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    fn spawn(&self, name: String, task: Task) {
        let fatal = self.fatal.clone();
        self.tracker.spawn(async move {
            if let Err(e) = task.await {
                fatal.report(&name, &e);
            }
        });
    }

    /// Runs every task until `shutdown` resolves (`Ok`) or a task fails (`Err`), then drains.
    pub async fn serve(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<(), DaemonError> {
        self.serve_socket();
        self.serve_metrics();
        self.serve_webhook();
        self.serve_console();
        sd_notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("reconciling"),
        ]);
        let shared = self.shared.clone();
        tracing::info!(
            state = %shared.state_dir.display(),
            inboxes = shared.inboxes.len(),
            jobs = shared.jobs.len(),
            "ccpayout daemon ready"
        );
        self.watchdog();
        self.reconcile_then_resume();
        self.intake();
        self.jobs();
        // Notices run beside the tasks, outside their drain: the daemon's own "stopping" is
        // still sent once the batches have drained.
        let notices_stop = CancellationToken::new();
        let notices_task = self.notices.clone().map(|dispatcher| {
            let stop = notices_stop.clone();
            tokio::spawn(async move { dispatcher.run(stop).await })
        });
        self.daemon_notice(
            NoticeEvent::DaemonStarted,
            &format!(
                "ccpayout {} started: {} inbox(es), {} job(s)",
                env!("CARGO_PKG_VERSION"),
                shared.inboxes.len(),
                shared.jobs.len()
            ),
        );

        // Wait for the shutdown signal or a failure.
        let result = tokio::select! {
            biased;
            () = shutdown => {
                tracing::info!("stopping: nothing new is sent; waiting for the requests in flight");
                Ok(())
            }
            Some((task, error)) = self.fatal_rx.recv() => Err(DaemonError::Task { task, error }),
        };
        sd_notify(&[sd_notify::NotifyState::Stopping]);
        let why = match &result {
            Ok(()) => "stopping on a signal: nothing new is sent; requests in flight are recorded".to_owned(),
            Err(e) => format!("stopping because a task failed: {e}"),
        };
        self.daemon_notice(NoticeEvent::DaemonStopping, &why);
        self.shutdown.cancel();
        self.tracker.close();
        let drain = shared.config.daemon.drain;
        if tokio::time::timeout(drain, self.tracker.wait()).await.is_err() {
            tracing::warn!(
                "drain deadline of {} s reached; requests still in flight were recorded before they left and are reconciled at the next start",
                drain.as_secs()
            );
        }
        if let Err(e) = shared.engine.save_pacing(true) {
            tracing::warn!(error = %e, "cannot save the pause and the daily budget counter");
        }
        notices_stop.cancel();
        if let Some(task) = notices_task {
            let _ = task.await;
        }
        if let Some(dispatcher) = &self.notices {
            // A short last chance for "stopping" and anything else due; the rest waits in the
            // outbox for the next start.
            let left = dispatcher.flush(NOTICE_FLUSH_ON_STOP).await;
            for (target, (n, error)) in left.pending {
                tracing::warn!(
                    target = %target,
                    notices = n,
                    error = error.as_deref().unwrap_or(""),
                    "notices not yet delivered; they are sent after the next start"
                );
            }
        }
        if result.is_ok() {
            tracing::info!("stopped");
        }
        result
    }

    /// The control socket, answered by the one operator with the daemon's live runtime.
    /// Records "the daemon started" or "is stopping" in the outbox.
    fn daemon_notice(&self, event: NoticeEvent, detail: &str) {
        let Some(dispatcher) = &self.notices else {
            return;
        };
        let store = &self.shared.store;
        let open = store
            .batches()
            .map(|b| b.iter().filter(|b| b.state == BatchState::Open).count() as u64)
            .unwrap_or(0);
        let notice = crate::model::notice::daemon(event, dispatcher.host(), detail, open, self.shared.clock.now_ms());
        if let Err(e) = store.record_notices(&[notice]) {
            tracing::warn!(error = %e, event = %event, "cannot record a notice");
        }
    }

    fn serve_socket(&mut self) {
        let Some(listener) = self.socket.take() else { return };
        let shared = self.shared.clone();
        let operator = Arc::new(shared.operator());
        let path = socket::socket_path(&shared.state_dir);
        let cancel = self.shutdown.clone();
        self.spawn(
            "control socket".into(),
            Box::pin(async move { Ok(socket::serve(listener, path, operator, cancel).await?) }),
        );
    }

    /// The web console: pages over the store and the live daemon, actions through the one
    /// operator (with the daemon's live runtime, as the control socket).
    fn serve_console(&mut self) {
        let Some(listener) = self.console.take() else { return };
        let shared = self.shared.clone();
        let operator = Arc::new(shared.operator());
        let console = Arc::new(crate::console::Console::new(crate::console::Parts {
            settings: shared.config.console.clone(),
            store: shared.store.clone(),
            clock: shared.clock.clone(),
            operator,
            live: Arc::new(runtime::ConsoleLive { shared: shared.clone() }),
            reports_dir: shared.reports_dir(),
            warn_percent: shared.config.policy.diff_warn_percent,
        }));
        if let Ok(addr) = listener.local_addr() {
            console.bound(addr);
            tracing::info!("console on http://{addr}/ (sign in with `ccpayout console`)");
        }
        let _ = shared.console.set(console.clone());
        let router = crate::console::router(console);
        let cancel = self.shutdown.clone();
        self.spawn(
            "console".into(),
            Box::pin(async move { Ok(crate::console::serve(listener, router, cancel).await?) }),
        );
    }

    fn serve_metrics(&mut self) {
        let Some(listener) = self.metrics.take() else { return };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("metrics on http://{addr}/metrics");
        }
        let source = self.shared.clone();
        let router = metrics::router(Arc::new(move || runtime::snapshot(&source)));
        let cancel = self.shutdown.clone();
        self.spawn(
            "metrics".into(),
            Box::pin(async move { Ok(metrics::serve(listener, router, cancel).await?) }),
        );
    }

    fn serve_webhook(&mut self) {
        let Some(listener) = self.webhook.take() else { return };
        let shared = &self.shared;
        let config = &shared.config;
        // The account the client signs for (the sandbox's under --sandbox) signs the webhooks.
        let (app_id, secret) = (shared.client.app_id().to_owned(), shared.client.app_secret().clone());
        let settings = webhook::WebhookSettings {
            listen: config.webhook.listen,
            path: config.webhook.path.clone(),
            max_body_bytes: config.webhook.max_body_bytes,
            window: config.webhook.window,
        };
        let verifier = Arc::new(webhook::Verifier::new(
            app_id,
            secret,
            config.api.generation,
            &settings,
            shared.clock.clone(),
        ));
        let _ = shared.webhook_stats.set(verifier.stats());
        let hint_engine = shared.engine.clone();
        let on_hint: Arc<dyn Fn(webhook::Hint) + Send + Sync> = Arc::new(move |hint| {
            if let Some(order_id) = &hint.order_id {
                hint_engine.hint(order_id);
            }
        });
        let router = webhook::router(verifier, &settings, on_hint);
        tracing::info!(
            "webhook listener on http://{}{}",
            listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            settings.path
        );
        let cancel = self.shutdown.clone();
        self.spawn(
            "webhook".into(),
            Box::pin(async move { Ok(webhook::serve(listener, router, cancel).await?) }),
        );
    }

    /// Watchdog pings while the runtime is responsive.
    fn watchdog(&self) {
        let Some(period) = sd_notify::watchdog_enabled() else {
            return;
        };
        let cancel = self.shutdown.clone();
        self.spawn(
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

    /// Reconciles every unknown order of every batch, then resumes every open batch.
    fn reconcile_then_resume(&self) {
        let shared = self.shared.clone();
        let cancel = self.shutdown.clone();
        let batches = self.batches.clone();
        let reconciled = self.reconciled.clone();
        self.spawn(
            "reconcile".into(),
            Box::pin(async move {
                if !shared.engine.reconcile_pending(&cancel, &NoProgress).await? {
                    return Ok(());
                }
                let _ = reconciled.send(true);
                sd_notify(&[sd_notify::NotifyState::Status("running")]);
                let open: Vec<crate::model::ids::BatchId> = shared
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
                Ok(())
            }),
        );
    }

    /// One watcher per inbox and the one intake behind them.
    fn intake(&self) {
        let (claim_tx, claim_rx) = mpsc::channel(1024);
        {
            let shared = self.shared.clone();
            let cancel = self.shutdown.clone();
            let tx = claim_tx.clone();
            self.spawn(
                "intake".into(),
                Box::pin(async move { intake::run(shared, claim_rx, tx, cancel).await }),
            );
        }
        for index in 0..self.shared.inboxes.len() {
            let name = format!("inbox {}", self.shared.inboxes[index].inbox.dir().display());
            let shared = self.shared.clone();
            let tx = claim_tx.clone();
            let cancel = self.shutdown.clone();
            let rescan = self.shared.config.daemon.rescan;
            self.spawn(
                name,
                Box::pin(async move { intake::watch(shared, index, rescan, tx, cancel).await }),
            );
        }
    }

    /// One loop per scheduled job.
    fn jobs(&self) {
        let runs: Arc<dyn jobs::LastRuns> = self.shared.store.clone();
        for job in self.shared.jobs.iter().filter(|j| j.schedule.is_some()) {
            let stats_shared = self.shared.clone();
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
            let clock = self.shared.clock.clone();
            let runs = runs.clone();
            let cancel = self.shutdown.clone();
            self.spawn(
                name,
                Box::pin(async move { Ok(jobs::run_job(job, clock, runs, fire, cancel).await?) }),
            );
        }
    }
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
