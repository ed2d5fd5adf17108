//! The web console: pages for the people who review and approve payouts, served by the daemon
//! (`[console] enabled = true`), and the four things they may do there — approve, cancel a
//! batch, pause and resume sending — through the one operator, with the same rules as the CLI.
//!
//! - **Who is looking** ([`auth`]): `ccpayout console` asks the daemon through the control socket
//!   for a one-time sign-in link for the OS user who ran it (peer credentials); redeeming it
//!   starts a session (cookie `HttpOnly; SameSite=Strict`, idle timeout). Behind an
//!   authenticating reverse proxy, `trusted_user_header` names the user, accepted only from
//!   `trusted_proxies`.
//! - **What they see** (`routes`, rendered by `view`): the overview, the batch list, a batch
//!   with its rows, verdicts, fees, held recipients, deny-list hits, the diff to the previous
//!   batch, the plan digest and its progress, an order, and the reports to download.
//! - **Safe by construction**: the pages are `maud` templates compiled into the binary, which
//!   escape every value; the one script and the one stylesheet are served from the binary too;
//!   every response carries a strict Content-Security-Policy (no inline script or style can
//!   run); every form carries a CSRF token; nothing secret is ever on a page.
//!
//! The console knows the running daemon only through two narrow traits: [`Act`] (the one
//! operator) and [`Live`] (what the daemon knows now, and the paced client's balances and fee
//! quotes), so it never sees the engine or a batch task.

pub mod auth;
mod routes;
mod view;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

use crate::app::operator::{Operator, Reply, Request, Runtime};
use crate::config::ConsoleConfig;
use crate::store::Store;
use crate::util::clock::SharedClock;

pub use auth::Auth;

/// The one operator, as the console calls it.
pub trait Act: Send + Sync {
    /// Answers `request` as `caller` (the signed-in user).
    fn act<'a>(&'a self, request: Request, caller: &'a str) -> BoxFuture<'a, Reply>;
}

impl<R: Runtime + 'static> Act for Operator<R> {
    fn act<'a>(&'a self, request: Request, caller: &'a str) -> BoxFuture<'a, Reply> {
        Box::pin(self.handle_from(request, caller))
    }
}

/// What the running daemon knows now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Why sending is held now (a rate-limit backoff, the daily limit, the kill switch).
    pub held: Option<String>,
    /// The rate CCPayment's 11004s leave us, when they lowered it (requests a second).
    pub limited_rate: Option<f64>,
    /// The configured rate (`limits.rate_per_second`).
    pub configured_rate: f64,
    /// API requests in flight now, and how many may be.
    pub in_flight: u64,
    pub in_flight_limit: u64,
    /// When CCPayment last answered with success (Unix ms).
    pub last_success_ms: Option<i64>,
    /// Batches being paid now.
    pub batches_paying: usize,
    /// When the daemon started (Unix ms).
    pub started_ms: i64,
}

/// A coin's balance at CCPayment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub coin: String,
    pub available: Decimal,
}

/// A fee quote: the amount, and the coin it is charged in (`None`: the withdrawn coin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeQuote {
    pub amount: Decimal,
    pub coin_id: Option<u64>,
}

/// The running daemon, as the console sees it. Balances and fee quotes are asked of CCPayment
/// through the daemon's one paced client; the console keeps each answer for a while.
pub trait Live: Send + Sync {
    fn facts(&self) -> Facts;
    fn balances(&self) -> BoxFuture<'_, Result<Vec<Balance>, String>>;
    fn fee(&self, coin_id: u64, chain: String) -> BoxFuture<'_, Result<FeeQuote, String>>;
}

/// How long the console keeps CCPayment's answers about balances and fees.
const BALANCES_KEPT_MS: i64 = 60_000;
const FEES_KEPT_MS: i64 = 5 * 60_000;
/// How long the console keeps what a batch's unsent orders need while the batch's counts by
/// state stay the same (an order that leaves the unsent states changes them).
const UNSENT_KEPT_MS: i64 = 30_000;

/// The console's counters, for the daemon's metrics.
#[derive(Debug, Default)]
pub struct Stats {
    sign_ins: Mutex<BTreeMap<String, u64>>,
    actions: Mutex<BTreeMap<(String, String), u64>>,
}

impl Stats {
    fn sign_in(&self, result: &str) {
        let mut m = self.sign_ins.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(result.to_owned()).or_insert(0) += 1;
    }

    fn action(&self, action: &str, result: &str) {
        let mut m = self.actions.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((action.to_owned(), result.to_owned())).or_insert(0) += 1;
    }
}

/// What the console adds to the daemon's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleMetrics {
    /// Sessions signed in and not idle.
    pub sessions: u64,
    /// Sign-in attempts by result: `ok`, `unknown`, `used`, `expired`, `limited`.
    pub sign_ins: BTreeMap<String, u64>,
    /// Actions by (action: `approve`, `cancel`, `pause`, `resume`; result: `done`, `refused`,
    /// `failed`, `forbidden` for a missing or wrong CSRF token).
    pub actions: BTreeMap<(String, String), u64>,
}

/// An answer of CCPayment's, with when it was asked (Unix ms).
type Kept<T> = (i64, Result<T, String>);

/// The console of one daemon.
pub struct Console {
    settings: ConsoleConfig,
    pub auth: Auth,
    store: Arc<Store>,
    clock: SharedClock,
    operator: Arc<dyn Act>,
    live: Arc<dyn Live>,
    reports_dir: PathBuf,
    /// `policy.diff_warn_percent`, for the diff to the previous batch.
    warn_percent: Decimal,
    /// What sign-in links start with: `public_url`, or `http://` and the address bound.
    base_url: Mutex<String>,
    stats: Stats,
    /// What an action said, by session key, shown once by the page the browser is sent to
    /// next (each action answers with a redirect, so a reload never sends a form again).
    flashes: Mutex<HashMap<String, view::Flash>>,
    /// Amount totals per coin of each batch (they never change once it is stored).
    totals: Mutex<HashMap<String, BTreeMap<String, Decimal>>>,
    balances: tokio::sync::Mutex<Option<Kept<Vec<Balance>>>>,
    fees: tokio::sync::Mutex<HashMap<(u64, String), Kept<FeeQuote>>>,
    /// What each open batch's unsent orders need, with when it was summed and the counts by
    /// state it was summed at.
    unsent: Mutex<HashMap<String, UnsentKept>>,
}

type UnsentKept = (i64, BTreeMap<crate::model::state::StateKind, u64>, Arc<routes::Unsent>);

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("listen", &self.settings.listen)
            .finish_non_exhaustive()
    }
}

/// Everything a console is built from.
pub struct Parts {
    pub settings: ConsoleConfig,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub operator: Arc<dyn Act>,
    pub live: Arc<dyn Live>,
    pub reports_dir: PathBuf,
    pub warn_percent: Decimal,
}

impl Console {
    pub fn new(parts: Parts) -> Console {
        let base = parts
            .settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", parts.settings.listen));
        Console {
            auth: Auth::new(parts.settings.idle_timeout),
            settings: parts.settings,
            store: parts.store,
            clock: parts.clock,
            operator: parts.operator,
            live: parts.live,
            reports_dir: parts.reports_dir,
            warn_percent: parts.warn_percent,
            base_url: Mutex::new(base),
            stats: Stats::default(),
            flashes: Mutex::new(HashMap::new()),
            totals: Mutex::new(HashMap::new()),
            balances: tokio::sync::Mutex::new(None),
            fees: tokio::sync::Mutex::new(HashMap::new()),
            unsent: Mutex::new(HashMap::new()),
        }
    }

    /// The listener is bound at `addr` (with port 0, the port the system chose): the links
    /// name it unless `public_url` is set.
    pub fn bound(&self, addr: SocketAddr) {
        if self.settings.public_url.is_none() {
            *self.base_url.lock().unwrap_or_else(|e| e.into_inner()) = format!("http://{addr}");
        }
    }

    /// A one-time sign-in link for `user`, valid for five minutes.
    pub fn sign_in_link(&self, user: &str) -> String {
        let token = self.auth.issue_link(user, self.clock.now_ms());
        tracing::info!(user, "console: sign-in link issued");
        format!(
            "{}/sign-in?token={token}",
            self.base_url.lock().unwrap_or_else(|e| e.into_inner())
        )
    }

    /// Keeps `flash` for the next page `session` opens.
    fn keep_flash(&self, session: &auth::Session, flash: view::Flash) {
        let mut flashes = self.flashes.lock().unwrap_or_else(|e| e.into_inner());
        if flashes.len() > 10_000 {
            // Sessions that never came back: forget their messages.
            flashes.clear();
        }
        flashes.insert(session.key().to_owned(), flash);
    }

    /// The message an action left for `session`, once.
    fn take_flash(&self, session: &auth::Session) -> Option<view::Flash> {
        self.flashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session.key())
    }

    /// The console's figures for the metrics.
    pub fn metrics(&self) -> ConsoleMetrics {
        ConsoleMetrics {
            sessions: self.auth.active_sessions(self.clock.now_ms()),
            sign_ins: self.stats.sign_ins.lock().map(|m| m.clone()).unwrap_or_default(),
            actions: self.stats.actions.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }

    /// The balances at CCPayment, asked at most once a minute.
    async fn balances(&self) -> Result<Vec<Balance>, String> {
        let now = self.clock.now_ms();
        let mut kept = self.balances.lock().await;
        if let Some((at, answer)) = kept.as_ref()
            && now - at < BALANCES_KEPT_MS
        {
            return answer.clone();
        }
        let answer = self.live.balances().await;
        *kept = Some((now, answer.clone()));
        answer
    }

    /// What `batch_id`'s unsent orders still need. Summed off the async threads (a batch may have
    /// a million orders) and kept while the batch's counts by state stay the same, for at most
    /// 30 s: the overview of a big batch waiting for approval does not read it again each time.
    async fn unsent(&self, batch_id: &str) -> Result<Arc<routes::Unsent>, crate::store::StoreError> {
        let counts = self.store.counts(Some(batch_id))?;
        let now = self.clock.now_ms();
        {
            let kept = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, at_counts, unsent)) = kept.get(batch_id)
                && *at_counts == counts
                && now - at < UNSENT_KEPT_MS
            {
                return Ok(unsent.clone());
            }
        }
        let (store, id) = (self.store.clone(), batch_id.to_owned());
        let unsent = tokio::task::spawn_blocking(move || routes::unsent_of(&store, &id))
            .await
            .map_err(|e| crate::store::StoreError::Db(format!("summing the unsent orders failed: {e}")))??;
        let unsent = Arc::new(unsent);
        let mut kept = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
        // Batches that finished or went away are forgotten as they age.
        kept.retain(|_, (at, _, _)| now - *at < 10 * UNSENT_KEPT_MS);
        kept.insert(batch_id.to_owned(), (now, counts, unsent.clone()));
        Ok(unsent)
    }

    /// CCPayment's fee for withdrawing `coin_id` on `chain`, asked at most once in five minutes.
    async fn fee(&self, coin_id: u64, chain: &str) -> Result<FeeQuote, String> {
        let now = self.clock.now_ms();
        let key = (coin_id, chain.to_owned());
        if let Some((at, answer)) = self.fees.lock().await.get(&key)
            && now - at < FEES_KEPT_MS
        {
            return answer.clone();
        }
        let answer = self.live.fee(coin_id, chain.to_owned()).await;
        self.fees.lock().await.insert(key, (now, answer.clone()));
        answer
    }
}

/// The console's routes over `console`.
pub fn router(console: Arc<Console>) -> axum::Router {
    routes::router(console)
}

/// Serves `router` on `listener` until `cancel`; the client's address reaches the handlers
/// (sign-in limits, the trusted proxy).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}
