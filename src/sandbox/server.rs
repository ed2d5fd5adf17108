//! The sandbox's HTTP edge: the axum router, authentication over the raw body bytes, the
//! transport side of faults (dropped connections, HTTP 502, held replies), the `/sandbox/*`
//! debug endpoints, the background settlement task, and the [`Sandbox`] handle that owns it
//! all and stops it on drop.
//!
//! The request checks run in CCPayment's order: headers (11001), IP whitelist (12002), app id
//! (12001), timestamp window (11006), signature (11005). Only then does the request reach the
//! [`World`], under one mutex, which applies limits, forced errors and faults and runs the
//! endpoint. No lock is held across an `.await`.
//!
//! With a state file ([`SandboxConfig::persist_path`]) every handler that changed durable
//! state (a create, or settlements it triggered) waits, off the async workers, until the file
//! holds that change before it replies; see [`super::persist`].

use std::io;
use std::net::{IpAddr, SocketAddr};

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::SecretString;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::notifier::WebhookSender;
use super::persist::{self, Persister};
use super::world::{Handled, Route, Transport, World, error_body};
use super::{Faults, Ledger, SandboxConfig, SandboxStats, WebhookDelivery};
use crate::api::sign::{fingerprint, sign_v1, verify_v1, verify_v2};
use crate::util::clock::SharedClock;

/// The body of the simulated gateway error, as a reverse proxy in front of an API writes it.
const BAD_GATEWAY_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\
<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// How long [`Sandbox::shutdown`] waits for in-flight requests before aborting the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The longest the settlement task sleeps, so that a manual clock moved forward by a test is
/// noticed within a second without polling in a busy loop.
const MAX_SETTLE_SLEEP_MS: i64 = 1000;

/// State shared by the handlers, the settlement task and the [`Sandbox`] handle.
struct Shared {
    world: Mutex<World>,
    clock: SharedClock,
    app_id: String,
    secret: SecretString,
    window_secs: i64,
    ip_whitelist: Option<Vec<IpAddr>>,
    webhooks: WebhookSender,
    /// Wakes the settlement task when a payout is created (its next due time may be earlier).
    wake: Notify,
    /// Writes the state file, when there is one.
    persister: Option<Persister>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock is a sandbox bug; the state is still the best there
        // is, and refusing every later request would hide the original panic.
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the world at the clock's current time, after settling what is due, then
    /// hands the webhooks it produced to the sender (outside the lock). Also returns the world's
    /// generation when durable state changed, for [`Shared::save`]: the caller must save it.
    fn with_world_tracked<R>(&self, f: impl FnOnce(&mut World, i64) -> R) -> (R, Option<u64>) {
        let now_ms = self.clock.now_ms();
        let (result, jobs, changed) = {
            let mut world = self.lock();
            let before = world.generation();
            world.settle_due(now_ms);
            let result = f(&mut world, now_ms);
            let after = world.generation();
            (result, world.take_webhooks(), (after != before).then_some(after))
        };
        for job in jobs {
            self.webhooks.dispatch(job);
        }
        (result, changed)
    }

    /// [`Shared::with_world_tracked`], then a blocking save of what changed: for the
    /// synchronous controls of the [`Sandbox`] handle.
    fn with_world<R>(&self, f: impl FnOnce(&mut World, i64) -> R) -> R {
        let (result, changed) = self.with_world_tracked(f);
        if let Some(generation) = changed
            && let Some(persister) = &self.persister
            && let Err(e) = persister.save(&self.world, generation)
        {
            tracing::error!(error = %e, "sandbox state not saved");
        }
        result
    }

    /// Makes sure the state file (if any) holds generation `generation` or later; the write
    /// runs on the blocking pool.
    async fn save(self: &Arc<Self>, generation: u64) -> io::Result<()> {
        if self.persister.is_none() {
            return Ok(());
        }
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || match &shared.persister {
            Some(persister) => persister.save(&shared.world, generation),
            None => Ok(()),
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Writes the state file (if any) as the world is now.
    async fn save_now(self: &Arc<Self>) -> io::Result<()> {
        if self.persister.is_none() {
            return Ok(());
        }
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || match &shared.persister {
            Some(persister) => persister.save_now(&shared.world),
            None => Ok(()),
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// A running sandbox server. Dropping it stops the server, the settlement task and the
/// webhook tasks.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    server: Option<JoinHandle<()>>,
    stopped: watch::Receiver<bool>,
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .field("app_id", &self.shared.app_id)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Starts a sandbox on `127.0.0.1` with a free port.
    ///
    /// # Errors
    ///
    /// The port could not be bound, or the configuration is invalid (bad balance override,
    /// `InvalidInput`), or the state file cannot be read or restored (`InvalidData`) or
    /// written.
    pub async fn start(config: SandboxConfig, clock: SharedClock) -> io::Result<Sandbox> {
        Sandbox::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config, clock).await
    }

    /// Starts a sandbox on `addr`. With [`SandboxConfig::persist_path`], restores the state
    /// saved there (if the file exists) and writes it back at once.
    ///
    /// # Errors
    ///
    /// The address could not be bound, the configuration is invalid (`InvalidInput`), or the
    /// state file cannot be read or restored (`InvalidData`, naming the file) or written.
    pub async fn start_on(addr: SocketAddr, config: SandboxConfig, clock: SharedClock) -> io::Result<Sandbox> {
        let mut world = World::new(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let persister = match &config.persist_path {
            None => None,
            Some(path) => {
                if let Some(snapshot) = persist::load(path)? {
                    let payouts = snapshot.payouts.len();
                    world.restore(snapshot).map_err(|e| persist::invalid_state(path, e))?;
                    tracing::info!(path = %path.display(), payouts, "sandbox state restored");
                }
                Some(Persister::new(path)?)
            }
        };
        let cancel = CancellationToken::new();
        let webhooks = WebhookSender::new(
            config.app_id.clone(),
            config.app_secret.clone(),
            Arc::clone(&clock),
            config.webhook_time_scale,
            cancel.clone(),
        )
        .map_err(io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        world.start_stats(clock.now_ms());
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            clock,
            app_id: config.app_id.clone(),
            secret: config.app_secret.clone(),
            window_secs: i64::try_from(config.timestamp_window.as_secs()).unwrap_or(i64::MAX),
            ip_whitelist: config.ip_whitelist.clone(),
            webhooks,
            wake: Notify::new(),
            persister,
        });
        // A state file is written at once: an unwritable path fails here, not at the first
        // create, and a fresh file exists from the start.
        shared.save_now().await?;

        let settle = tokio::spawn(settle_loop(Arc::clone(&shared), cancel.clone()));
        let service = router(Arc::clone(&shared)).into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, service).with_graceful_shutdown(cancel.clone().cancelled_owned());
        let (stopped_tx, stopped) = watch::channel(false);
        let server_cancel = cancel.clone();
        let server = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "sandbox server stopped with an error");
            }
            // Whatever stopped the server stops the background work too.
            server_cancel.cancel();
            let _ = settle.await;
            let _ = stopped_tx.send(true);
        });
        tracing::info!(%addr, "sandbox listening");
        Ok(Sandbox {
            addr,
            shared,
            cancel: cancel.clone(),
            server: Some(server),
            stopped,
            _stop_on_drop: cancel.drop_guard(),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, the API base URL to give a client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The app id requests must carry.
    pub fn app_id(&self) -> &str {
        &self.shared.app_id
    }

    /// The app secret requests must be signed with.
    pub fn app_secret(&self) -> &SecretString {
        &self.shared.secret
    }

    /// The ledger, after settling every payout that is due.
    pub fn ledger(&self) -> Ledger {
        self.shared.with_world(|w, _| w.ledger())
    }

    /// The request statistics: what `GET /sandbox/stats` answers.
    pub fn stats(&self) -> SandboxStats {
        self.shared.lock().stats()
    }

    /// Replaces the fault probabilities.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.with_world(|w, _| w.set_faults(faults));
    }

    /// Sets a coin's balance.
    ///
    /// # Panics
    ///
    /// On an unknown coin symbol or an amount that is not a plain non-negative decimal: this
    /// is a test and demo control, and a typo there must not pass silently.
    pub fn set_balance(&self, coin_symbol: &str, amount: &str) {
        if let Err(e) = self.try_set_balance(coin_symbol, amount) {
            panic!("Sandbox::set_balance: {e}");
        }
    }

    /// Sets a coin's balance; the error names an unknown coin or an amount that is not a plain
    /// non-negative decimal.
    pub fn try_set_balance(&self, coin_symbol: &str, amount: &str) -> Result<(), String> {
        self.shared.with_world(|w, _| w.set_balance(coin_symbol, amount))
    }

    /// A coin's balance as a decimal string (`"0"` for an unknown symbol).
    pub fn balance(&self, coin_symbol: &str) -> String {
        self.shared
            .with_world(|w, _| w.balance(coin_symbol))
            .unwrap_or_else(|| "0".to_owned())
    }

    /// Sets a chain's status: `Normal` or `Maintenance`.
    ///
    /// # Panics
    ///
    /// On an unknown chain (a test and demo control; a typo must not pass silently).
    pub fn set_chain_status(&self, chain: &str, status: &str) {
        if let Err(e) = self.shared.with_world(|w, _| w.set_chain_status(chain, status)) {
            panic!("Sandbox::set_chain_status: {e}");
        }
    }

    /// The next `times` signed calls of `method` (a v2 method name, `v1/withdraw` or
    /// `v1/bill/info`) answer `code` with `msg`, committing nothing.
    pub fn force_error(&self, method: &str, code: i64, msg: &str, times: u32) {
        self.shared.with_world(|w, _| w.force_error(method, code, msg, times));
    }

    /// Settles every payout whose due time has passed on the clock.
    pub fn settle_due(&self) {
        self.shared.with_world(|_, _| ());
    }

    /// Every webhook delivery attempt so far.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared.webhooks.deliveries()
    }

    /// The v1 token id of (coin, chain).
    pub fn v1_token_id(&self, coin_symbol: &str, chain: &str) -> Option<String> {
        self.shared.lock().v1_token_id(coin_symbol, chain)
    }

    /// The state file, if the sandbox keeps one.
    pub fn persist_path(&self) -> Option<&std::path::Path> {
        self.shared.persister.as_ref().map(Persister::path)
    }

    /// Stops the server gracefully: in-flight requests get up to 5 s to finish. Then writes
    /// the state file, if there is one (a failure is logged).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err()
        {
            tracing::warn!("sandbox did not stop in time; aborting it");
            server.abort();
        }
        if let Err(e) = self.shared.save_now().await {
            tracing::error!(error = %e, "sandbox state not saved at shutdown");
        }
    }

    /// Resolves when the server has stopped.
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        // An error means the server task is gone, which is "stopped" as well.
        let _ = stopped.wait_for(|s| *s).await;
    }
}

/// Settles payouts at their due time (so webhooks go out without any request arriving).
/// With nothing pending it sleeps until a payout is created; otherwise it sleeps until the next
/// due time, at most a second at a time so a manual clock moved forward is noticed.
async fn settle_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let now_ms = shared.clock.now_ms();
        let next_due = shared.lock().next_due_ms();
        match next_due {
            None => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = shared.wake.notified() => {}
                }
            }
            Some(due) if due > now_ms => {
                let wait_ms = (due - now_ms).min(MAX_SETTLE_SLEEP_MS);
                let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = shared.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Some(_) if cancel.is_cancelled() => return,
            Some(_) => {}
        }
        let ((), changed) = shared.with_world_tracked(|_, _| ());
        if let Some(generation) = changed
            && let Err(e) = shared.save(generation).await
        {
            tracing::error!(error = %e, "sandbox state not saved after settling");
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ccpayment/v2/{method}", post(v2_call))
        .route("/ccpayment/v1/withdraw", post(v1_withdraw))
        .route("/ccpayment/v1/bill/info", post(v1_bill_info))
        .route("/sandbox/ledger", get(ledger))
        .route("/sandbox/stats", get(stats))
        .route("/sandbox/health", get(health))
        .fallback(not_found)
        .with_state(shared)
}

async fn v2_call(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Unknown methods look like the Go router CCPayment runs behind: a plain-text 404.
    match Route::v2(&method) {
        Some(route) => api_call(shared, peer, route, headers, body).await,
        None => not_found().await,
    }
}

async fn v1_withdraw(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api_call(shared, peer, Route::V1Withdraw, headers, body).await
}

async fn v1_bill_info(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api_call(shared, peer, Route::V1BillInfo, headers, body).await
}

async fn ledger(State(shared): State<Arc<Shared>>) -> Response {
    let (ledger, changed) = shared.with_world_tracked(|w, _| w.ledger());
    if let Some(generation) = changed
        && let Err(e) = shared.save(generation).await
    {
        tracing::error!(error = %e, "sandbox state not saved after settling");
    }
    match serde_json::to_vec(&ledger) {
        Ok(bytes) => json_response(bytes),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.lock().stats();
    match serde_json::to_vec(&stats) {
        Ok(bytes) => json_response(bytes),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found",
    )
        .into_response()
}

/// Releases a held orderId when the slow reply is done, or when the connection went away and
/// the handler future was dropped mid-sleep.
struct InFlightGuard {
    shared: Arc<Shared>,
    order_id: String,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.shared.lock().release_in_flight(&self.order_id);
    }
}

async fn api_call(shared: Arc<Shared>, peer: SocketAddr, route: Route, headers: HeaderMap, body: Bytes) -> Response {
    if let Err((code, msg)) = authenticate(&shared, peer.ip(), route, &headers, &body) {
        tracing::info!(method = route.name(), code, %peer, "sandbox refused an unauthenticated request");
        return json_response(error_body(code, &msg));
    }
    let (mut handled, changed): (Handled, _) = shared.with_world_tracked(|w, now_ms| w.handle(route, &body, now_ms));
    if handled.created.is_some() {
        // The settlement task may be sleeping past this payout's due time.
        shared.wake.notify_one();
    }
    // Releases a held orderId even if the client goes away while the state is being saved.
    let _in_flight = handled.in_flight.clone().map(|order_id| InFlightGuard {
        shared: Arc::clone(&shared),
        order_id,
    });
    // No reply before the state it reflects is in the file.
    if let Some(generation) = changed
        && let Err(e) = shared.save(generation).await
    {
        tracing::error!(error = %e, order_id = %handled.order_id, "sandbox state not saved");
        if handled.created.is_some() {
            // Never tell the client about a payout that would not survive a restart.
            handled.transport = Transport::Drop;
        }
    }
    tracing::debug!(
        method = route.name(),
        order_id = %handled.order_id,
        code = handled.code,
        record_id = handled.created.as_deref().unwrap_or(""),
        transport = ?handled.transport,
        "sandbox request handled"
    );
    match handled.transport {
        Transport::Reply => api_response(&shared, route, handled),
        Transport::Slow(delay) => {
            tokio::time::sleep(delay).await;
            api_response(&shared, route, handled)
        }
        Transport::Drop => dropped_connection(),
        Transport::BadGateway => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            BAD_GATEWAY_HTML,
        )
            .into_response(),
    }
}

/// The checks before a request may cost anything, in CCPayment's order. Everything is
/// verified over the raw body bytes exactly as received.
fn authenticate(
    shared: &Shared,
    peer: IpAddr,
    route: Route,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), (i64, String)> {
    let header = |name: &str| -> Result<&str, (i64, String)> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| (11001, format!("HeaderInvalidArgument: {name} is missing")))
    };
    let app_id = header("Appid")?;
    let timestamp = header("Timestamp")?;
    let sign = header("Sign")?;
    if timestamp.len() != 10 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err((
            11001,
            "HeaderInvalidArgument: Timestamp must be 10-digit Unix seconds".to_owned(),
        ));
    }
    if let Some(allowed) = &shared.ip_whitelist {
        let peer = peer.to_canonical();
        if !allowed.iter().any(|ip| ip.to_canonical() == peer) {
            return Err((12002, "IpNotInWhitelist".to_owned()));
        }
    }
    if app_id != shared.app_id {
        return Err((12001, "MerchantNotFound".to_owned()));
    }
    // Ten ASCII digits always fit an i64.
    let ts: i64 = timestamp.parse().unwrap_or(0);
    if (shared.clock.now_secs() - ts).abs() > shared.window_secs {
        return Err((11006, "ReqExpired".to_owned()));
    }
    let valid = if route.is_v1() {
        verify_v1(app_id, &shared.secret, timestamp, body, sign)
    } else {
        verify_v2(app_id, &shared.secret, timestamp, body, sign)
    };
    if !valid {
        // Only a fingerprint of the signature is logged, never the whole of it.
        tracing::debug!(
            method = route.name(),
            sign = fingerprint(sign),
            "sandbox signature mismatch"
        );
        return Err((11005, "VerifySignFailed".to_owned()));
    }
    Ok(())
}

fn json_response(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The API reply; v1 success replies are signed over the exact bytes sent, as CCPayment does.
fn api_response(shared: &Shared, route: Route, handled: Handled) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if route.is_v1() && handled.code == crate::api::codes::SUCCESS {
        let timestamp = shared.clock.now_secs().to_string();
        let sign = sign_v1(&shared.app_id, &shared.secret, &timestamp, &handled.body);
        // The app id came from the configuration; one that is not a valid header value
        // leaves the reply unsigned, which the client reports as a signature problem.
        for (name, value) in [
            ("appid", shared.app_id.as_str()),
            ("timestamp", &timestamp),
            ("sign", &sign),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
    (headers, handled.body).into_response()
}

/// A 200 whose body fails on its first chunk: hyper aborts the connection, so the client sees
/// an incomplete response, not a reply.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "sandbox fault: connection dropped",
        ))
    });
    Response::new(Body::from_stream(failing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sign::sign_v2;
    use crate::api::types::method;
    use crate::sandbox::{AttemptOutcome, DEMO_APP_ID, DEMO_APP_SECRET, SandboxStats};
    use crate::util::clock::{Clock, ManualClock};
    use serde_json::Value;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    /// (name, Appid, Timestamp, Sign, body, expected code)
    type AuthCase<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str, i64);

    const T0: i64 = 1_700_000_000_000;
    const TRX_ADDR: &str = "TPSFu3gV4D7SwHS3HkXs3S8QZauZpyQtWH";

    struct Harness {
        sandbox: Sandbox,
        clock: Arc<ManualClock>,
        http: reqwest::Client,
    }

    async fn harness(config: SandboxConfig) -> Harness {
        harness_at(config, ManualClock::new(T0)).await
    }

    async fn harness_at(config: SandboxConfig, clock: Arc<ManualClock>) -> Harness {
        crate::api::ensure_crypto_provider();
        let sandbox = Sandbox::start(config, clock.clone()).await.expect("sandbox starts");
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        Harness { sandbox, clock, http }
    }

    fn secret() -> SecretString {
        SecretString::from(DEMO_APP_SECRET)
    }

    impl Harness {
        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.sandbox.base_url())
        }

        /// POSTs `body` with the given header values (None leaves a header out).
        async fn post_raw(
            &self,
            path: &str,
            body: &str,
            app_id: Option<&str>,
            timestamp: Option<&str>,
            sign: Option<&str>,
        ) -> reqwest::Result<reqwest::Response> {
            let mut request = self
                .http
                .post(self.url(path))
                .header("Content-Type", "application/json")
                .body(body.to_owned());
            for (name, value) in [("Appid", app_id), ("Timestamp", timestamp), ("Sign", sign)] {
                if let Some(value) = value {
                    request = request.header(name, value);
                }
            }
            request.send().await
        }

        async fn post_v2(&self, method: &str, body: &str) -> reqwest::Result<reqwest::Response> {
            let ts = self.clock.now_secs().to_string();
            let sign = sign_v2(DEMO_APP_ID, &secret(), &ts, body.as_bytes());
            self.post_raw(
                &format!("/ccpayment/v2/{method}"),
                body,
                Some(DEMO_APP_ID),
                Some(&ts),
                Some(&sign),
            )
            .await
        }

        async fn call_v2(&self, method: &str, body: &str) -> Value {
            let response = self.post_v2(method, body).await.expect("reply");
            assert_eq!(response.status(), 200);
            let bytes = response.bytes().await.expect("body");
            serde_json::from_slice(&bytes).expect("JSON")
        }
    }

    fn withdraw_body(order: &str, address: &str) -> String {
        format!(r#"{{"orderId":"{order}","coinId":1280,"chain":"TRX","address":"{address}","amount":"5"}}"#)
    }

    #[tokio::test]
    async fn a_correctly_signed_request_succeeds() {
        let h = harness(SandboxConfig::default()).await;
        let response = h.post_v2(method::GET_COIN_LIST, "{}").await.expect("reply");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let reply: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
        assert_eq!(reply["code"], 10000);
        assert_eq!(reply["msg"], "success");
        assert!(reply["data"]["coins"].as_array().is_some_and(|c| !c.is_empty()));
        // An empty body is signed as nothing and read as {}.
        let reply = h.call_v2(method::GET_APP_COIN_ASSET_LIST, "").await;
        assert_eq!(reply["code"], 10000);
        let reply = h
            .call_v2(
                method::APPLY_APP_WITHDRAW_TO_NETWORK,
                &withdraw_body("srv-ok-1", TRX_ADDR),
            )
            .await;
        assert_eq!(reply["code"], 10000, "{reply}");
        assert_eq!(h.sandbox.balance("USDT"), "999995");
    }

    #[tokio::test]
    async fn authentication_failures_get_their_codes() {
        let h = harness(SandboxConfig::default()).await;
        let path = "/ccpayment/v2/getCoinList";
        let body = "{}";
        let ts = h.clock.now_secs().to_string();
        let good = sign_v2(DEMO_APP_ID, &secret(), &ts, body.as_bytes());
        let old_ts = (h.clock.now_secs() - 600).to_string();
        let old_sign = sign_v2(DEMO_APP_ID, &secret(), &old_ts, body.as_bytes());
        let wrong_app_sign = sign_v2("someone-else", &secret(), &ts, body.as_bytes());
        let ms_ts = h.clock.now_ms().to_string();
        let bad = "0".repeat(64);
        let cases: Vec<AuthCase> = vec![
            ("good", Some(DEMO_APP_ID), Some(&ts), Some(&good), body, 10000),
            ("bad sign", Some(DEMO_APP_ID), Some(&ts), Some(&bad), body, 11005),
            ("body changed", Some(DEMO_APP_ID), Some(&ts), Some(&good), "{ }", 11005),
            (
                "600 s old",
                Some(DEMO_APP_ID),
                Some(&old_ts),
                Some(&old_sign),
                body,
                11006,
            ),
            ("missing Sign", Some(DEMO_APP_ID), Some(&ts), None, body, 11001),
            ("missing Appid", None, Some(&ts), Some(&good), body, 11001),
            ("empty Timestamp", Some(DEMO_APP_ID), Some(""), Some(&good), body, 11001),
            (
                "millisecond Timestamp",
                Some(DEMO_APP_ID),
                Some(&ms_ts),
                Some(&good),
                body,
                11001,
            ),
            (
                "wrong app id",
                Some("someone-else"),
                Some(&ts),
                Some(&wrong_app_sign),
                body,
                12001,
            ),
        ];
        for (name, app_id, timestamp, sign, body, code) in cases {
            let response = h.post_raw(path, body, app_id, timestamp, sign).await.expect("reply");
            assert_eq!(response.status(), 200, "{name}");
            let reply: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
            assert_eq!(reply["code"], code, "{name}: {reply}");
        }
        // Header names are case-insensitive.
        let response = h
            .http
            .post(h.url(path))
            .header("appid", DEMO_APP_ID)
            .header("TIMESTAMP", &ts)
            .header("sign", &good)
            .body(body)
            .send()
            .await
            .expect("reply");
        let reply: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
        assert_eq!(reply["code"], 10000);
        // The window is ±120 s: 120 s late is still accepted.
        h.clock.advance(Duration::from_secs(120));
        let response = h
            .post_raw(path, body, Some(DEMO_APP_ID), Some(&ts), Some(&good))
            .await
            .expect("reply");
        let reply: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
        assert_eq!(reply["code"], 10000);
        // Authentication failures are not create attempts.
        let response = h
            .post_raw(
                "/ccpayment/v2/applyAppWithdrawToNetwork",
                &withdraw_body("srv-auth-1", TRX_ADDR),
                Some(DEMO_APP_ID),
                Some(&ts),
                Some(&bad),
            )
            .await
            .expect("reply");
        assert_eq!(response.status(), 200);
        assert!(h.sandbox.ledger().attempts.is_empty());
    }

    #[tokio::test]
    async fn ip_whitelist_refuses_other_peers() {
        let config = SandboxConfig {
            ip_whitelist: Some(vec!["10.1.2.3".parse().expect("ip")]),
            ..SandboxConfig::default()
        };
        let h = harness(config).await;
        assert_eq!(h.call_v2(method::GET_COIN_LIST, "{}").await["code"], 12002);
        let config = SandboxConfig {
            ip_whitelist: Some(vec!["127.0.0.1".parse().expect("ip")]),
            ..SandboxConfig::default()
        };
        let h = harness(config).await;
        assert_eq!(h.call_v2(method::GET_COIN_LIST, "{}").await["code"], 10000);
    }

    #[tokio::test]
    async fn unknown_methods_and_debug_endpoints() {
        let h = harness(SandboxConfig::default()).await;
        let response = h.post_v2("getEverything", "{}").await.expect("reply");
        assert_eq!(response.status(), 404);
        assert_eq!(response.text().await.expect("text"), "404 page not found");
        let health = h.http.get(h.url("/sandbox/health")).send().await.expect("reply");
        assert_eq!(health.text().await.expect("text"), "ok");
        h.call_v2(
            method::APPLY_APP_WITHDRAW_TO_NETWORK,
            &withdraw_body("srv-ledger-1", TRX_ADDR),
        )
        .await;
        let response = h.http.get(h.url("/sandbox/ledger")).send().await.expect("reply");
        let ledger: Ledger = serde_json::from_slice(&response.bytes().await.expect("body")).expect("ledger");
        assert_eq!(ledger, h.sandbox.ledger());
        assert_eq!(ledger.payouts_for("srv-ledger-1").len(), 1);

        // The 404 above never reached the world; a request that fails authentication is not
        // counted either.
        let path = format!("/ccpayment/v2/{}", method::GET_COIN_LIST);
        h.post_raw(&path, "{}", None, None, None).await.expect("reply");
        let response = h.http.get(h.url("/sandbox/stats")).send().await.expect("reply");
        let stats: SandboxStats = serde_json::from_slice(&response.bytes().await.expect("body")).expect("stats");
        assert_eq!(stats, h.sandbox.stats());
        let counts: Vec<_> = stats
            .requests
            .iter()
            .map(|r| (r.endpoint.as_str(), r.code, r.count))
            .collect();
        assert_eq!(counts, [(method::APPLY_APP_WITHDRAW_TO_NETWORK, 0, 1)]);
        assert_eq!(stats.per_second.start_sec, T0 / 1000);
        assert_eq!(
            (stats.per_second.accepted, stats.per_second.rate_limited),
            (vec![1], vec![0])
        );
    }

    #[tokio::test]
    async fn v1_success_replies_are_signed_and_errors_are_not() {
        let h = harness(SandboxConfig::default()).await;
        let token = h.sandbox.v1_token_id("USDT", "TRX").expect("token");
        let body =
            format!(r#"{{"merchant_order_id":"srv-v1-1","address":"{TRX_ADDR}","token_id":"{token}","value":"10"}}"#);
        let ts = h.clock.now_secs().to_string();
        let sign = sign_v1(DEMO_APP_ID, &secret(), &ts, body.as_bytes());
        let response = h
            .post_raw(
                "/ccpayment/v1/withdraw",
                &body,
                Some(DEMO_APP_ID),
                Some(&ts),
                Some(&sign),
            )
            .await
            .expect("reply");
        let header =
            |r: &reqwest::Response, name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let reply_app = header(&response, "Appid").expect("Appid");
        let reply_ts = header(&response, "Timestamp").expect("Timestamp");
        let reply_sign = header(&response, "Sign").expect("Sign");
        let bytes = response.bytes().await.expect("body");
        assert!(verify_v1(&reply_app, &secret(), &reply_ts, &bytes, &reply_sign));
        let reply: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(reply["code"], 10000);
        assert_eq!(reply["data"]["net_receivable"], "9");
        // A v2 signature on a v1 route does not verify.
        let v2_sign = sign_v2(DEMO_APP_ID, &secret(), &ts, body.as_bytes());
        let response = h
            .post_raw(
                "/ccpayment/v1/withdraw",
                &body,
                Some(DEMO_APP_ID),
                Some(&ts),
                Some(&v2_sign),
            )
            .await
            .expect("reply");
        assert!(response.headers().get("Sign").is_none());
        let reply: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
        assert_eq!(reply["code"], 11005);
        // A duplicate is an (unsigned) error.
        let response = h
            .post_raw(
                "/ccpayment/v1/withdraw",
                &body,
                Some(DEMO_APP_ID),
                Some(&ts),
                Some(&sign),
            )
            .await
            .expect("reply");
        assert!(response.headers().get("Sign").is_none());
        let reply: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
        assert_eq!(reply["code"], 11011);
        // bill/info finds it.
        let body = r#"{"merchant_order_ids":["srv-v1-1"]}"#;
        let sign = sign_v1(DEMO_APP_ID, &secret(), &ts, body.as_bytes());
        let response = h
            .post_raw(
                "/ccpayment/v1/bill/info",
                body,
                Some(DEMO_APP_ID),
                Some(&ts),
                Some(&sign),
            )
            .await
            .expect("reply");
        assert!(response.headers().get("Sign").is_some());
        let reply: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
        assert_eq!(reply["data"][0]["order_detail"]["merchant_order_id"], "srv-v1-1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_duplicate_creates_make_exactly_one_payout() {
        let h = Arc::new(harness(SandboxConfig::default()).await);
        let body = withdraw_body("srv-race-1", TRX_ADDR);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let h = Arc::clone(&h);
                let body = body.clone();
                tokio::spawn(async move {
                    h.call_v2(method::APPLY_APP_WITHDRAW_TO_NETWORK, &body).await["code"]
                        .as_i64()
                        .unwrap_or(0)
                })
            })
            .collect();
        let mut codes = Vec::new();
        for task in tasks {
            codes.push(task.await.expect("task"));
        }
        assert_eq!(codes.iter().filter(|&&c| c == 10000).count(), 1, "{codes:?}");
        assert!(codes.iter().all(|&c| c == 10000 || c == 11011), "{codes:?}");
        let ledger = h.sandbox.ledger();
        assert_eq!(ledger.payouts_for("srv-race-1").len(), 1);
        assert_eq!(ledger.attempts_for("srv-race-1").len(), 16);
        assert_eq!(h.sandbox.balance("USDT"), "999995");
    }

    /// Sends a create and reads the whole body: the outcome the client sees.
    async fn create_outcome(h: &Harness, order: &str) -> Result<(u16, Vec<u8>), reqwest::Error> {
        let response = h
            .post_v2(method::APPLY_APP_WITHDRAW_TO_NETWORK, &withdraw_body(order, TRX_ADDR))
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?.to_vec()))
    }

    #[tokio::test]
    async fn drop_after_commit_loses_the_reply_but_not_the_payout() {
        let h = harness(SandboxConfig::default()).await;
        h.sandbox.set_faults(Faults {
            drop_after_commit: 1.0,
            ..Faults::default()
        });
        let outcome = create_outcome(&h, "srv-drop-1").await;
        assert!(
            outcome.is_err(),
            "the client must see a transport error, got {outcome:?}"
        );
        let ledger = h.sandbox.ledger();
        assert_eq!(ledger.payouts_for("srv-drop-1").len(), 1);
        let outcomes: Vec<_> = ledger
            .attempts_for("srv-drop-1")
            .iter()
            .map(|a| a.outcome.clone())
            .collect();
        assert!(matches!(outcomes[0], AttemptOutcome::Created { .. }));
        assert_eq!(
            outcomes[1],
            AttemptOutcome::Fault {
                fault: "drop_after_commit".into()
            }
        );
        // The server is still healthy for the next request on a fresh connection.
        h.sandbox.set_faults(Faults::default());
        let reply = h
            .call_v2(method::GET_APP_WITHDRAW_RECORD, r#"{"orderId":"srv-drop-1"}"#)
            .await;
        assert_eq!(reply["data"]["record"]["status"], "Processing");
    }

    #[tokio::test]
    async fn faults_before_commit_leave_nothing_behind() {
        let h = harness(SandboxConfig::default()).await;
        h.sandbox.set_faults(Faults {
            drop_before_commit: 1.0,
            ..Faults::default()
        });
        assert!(create_outcome(&h, "srv-fault-1").await.is_err());
        h.sandbox.set_faults(Faults {
            http_5xx: 1.0,
            ..Faults::default()
        });
        let (status, body) = create_outcome(&h, "srv-fault-1").await.expect("reply");
        assert_eq!(status, 502);
        assert!(String::from_utf8_lossy(&body).contains("502 Bad Gateway"));
        h.sandbox.set_faults(Faults {
            internal_11002: 1.0,
            ..Faults::default()
        });
        let (_, body) = create_outcome(&h, "srv-fault-1").await.expect("reply");
        let reply: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(reply["code"], 11002);
        assert!(h.sandbox.ledger().payouts.is_empty());
        assert_eq!(h.sandbox.ledger().attempts_for("srv-fault-1").len(), 3);
        assert_eq!(h.sandbox.balance("USDT"), "1000000");
    }

    #[tokio::test]
    async fn a_duplicate_during_a_slow_reply_is_a_repeated_submit() {
        let h = Arc::new(harness(SandboxConfig::default()).await);
        h.sandbox.set_faults(Faults {
            slow: 1.0,
            slow_delay_ms: 60_000,
            ..Faults::default()
        });
        let slow = {
            let h = Arc::clone(&h);
            tokio::spawn(async move { create_outcome(&h, "srv-slow-1").await })
        };
        // Wait (bounded) until the slow create has committed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.sandbox.ledger().payouts_for("srv-slow-1").is_empty() {
            assert!(Instant::now() < deadline, "the slow create never committed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        h.sandbox.set_faults(Faults::default());
        let reply = h
            .call_v2(
                method::APPLY_APP_WITHDRAW_TO_NETWORK,
                &withdraw_body("srv-slow-1", TRX_ADDR),
            )
            .await;
        assert_eq!(reply["code"], 11007);
        // Abandoning the slow request (the client gave up) releases the orderId.
        slow.abort();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = h
                .call_v2(
                    method::APPLY_APP_WITHDRAW_TO_NETWORK,
                    &withdraw_body("srv-slow-1", TRX_ADDR),
                )
                .await;
            if reply["code"] == 11011 {
                break;
            }
            assert_eq!(reply["code"], 11007);
            assert!(Instant::now() < deadline, "the orderId was never released");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn webhooks_are_signed_and_retried_until_accepted() {
        // A receiver that answers 500 first, then "success", and keeps what it got.
        #[derive(Default)]
        struct Receiver {
            calls: AtomicU32,
            seen: Mutex<Vec<(HeaderMap, Bytes)>>,
        }
        let receiver = Arc::new(Receiver::default());
        let app = Router::new()
            .route(
                "/hook",
                post(
                    |State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes| async move {
                        r.seen
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((headers, body));
                        if r.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                            (StatusCode::INTERNAL_SERVER_ERROR, "try later")
                        } else {
                            (StatusCode::OK, "success")
                        }
                    },
                ),
            )
            .with_state(Arc::clone(&receiver));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hook_addr = listener.local_addr().expect("addr");
        let receiver_task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let config = SandboxConfig {
            webhook_url: Some(format!("http://{hook_addr}/hook")),
            webhook_time_scale: 0.001,
            ..SandboxConfig::default()
        };
        let h = harness(config).await;
        let reply = h
            .call_v2(
                method::APPLY_APP_WITHDRAW_TO_NETWORK,
                &withdraw_body("srv-hook-1", TRX_ADDR),
            )
            .await;
        assert_eq!(reply["code"], 10000);
        // Let the payout come due; the background task settles it and sends the final webhook
        // without any further API request.
        h.clock.advance(Duration::from_secs(3));
        let deadline = Instant::now() + Duration::from_secs(15);
        let deliveries = loop {
            let deliveries = h.sandbox.webhook_deliveries();
            if deliveries.iter().filter(|d| d.accepted).count() == 2 {
                break deliveries;
            }
            assert!(Instant::now() < deadline, "webhooks not delivered: {deliveries:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let processing: Vec<_> = deliveries
            .iter()
            .filter(|d| d.status == crate::api::types::RecordStatus::Processing)
            .collect();
        // The first attempt got the 500 and was retried (attempt 1) after the scaled 30 s.
        assert_eq!(processing.len(), 2, "{deliveries:?}");
        assert_eq!(processing[0].http_status, Some(500));
        assert!(!processing[0].accepted);
        assert_eq!((processing[1].attempt, processing[1].accepted), (1, true));
        assert!(
            deliveries
                .iter()
                .any(|d| d.status == crate::api::types::RecordStatus::Success && d.accepted)
        );
        // Every webhook verifies with the v2 scheme over the exact body.
        let seen = receiver.seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(seen.len(), 3);
        for (headers, body) in &seen {
            let get = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            assert_eq!(get("appid"), DEMO_APP_ID);
            assert!(verify_v2(
                &get("appid"),
                &secret(),
                &get("timestamp"),
                body,
                &get("sign")
            ));
            let event: crate::api::types::WebhookEvent = serde_json::from_slice(body).expect("event");
            assert_eq!(event.kind, "ApiWithdrawal");
            assert_eq!(event.msg.order_id, "srv-hook-1");
        }
        receiver_task.abort();
    }

    #[tokio::test]
    async fn settle_due_follows_the_manual_clock() {
        let h = harness(SandboxConfig::default()).await;
        h.call_v2(
            method::APPLY_APP_WITHDRAW_TO_NETWORK,
            &withdraw_body("srv-settle-1", crate::sandbox::DEMO_FAILING_ADDRESS),
        )
        .await;
        assert_eq!(h.sandbox.balance("USDT"), "999995");
        h.clock.advance(Duration::from_millis(1999));
        h.sandbox.settle_due();
        assert_eq!(
            h.sandbox.ledger().payouts[0].status,
            crate::api::types::RecordStatus::Processing
        );
        h.clock.advance(Duration::from_millis(1));
        h.sandbox.settle_due();
        let ledger = h.sandbox.ledger();
        assert_eq!(ledger.payouts[0].status, crate::api::types::RecordStatus::Failed);
        assert_eq!(h.sandbox.balance("USDT"), "1000000");
    }

    #[tokio::test]
    async fn shutdown_stops_the_server() {
        let h = harness(SandboxConfig::default()).await;
        let url = h.url("/sandbox/health");
        assert!(h.http.get(&url).send().await.is_ok());
        h.sandbox.shutdown().await;
        let fresh = reqwest::Client::builder().no_proxy().build().expect("client");
        assert!(fresh.get(&url).send().await.is_err());
    }

    #[tokio::test]
    async fn stopped_resolves_after_drop_of_the_token() {
        let h = harness(SandboxConfig::default()).await;
        h.sandbox.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), h.sandbox.stopped())
            .await
            .expect("stopped resolves");
    }

    #[tokio::test]
    async fn invalid_config_is_an_invalid_input_error() {
        let config = SandboxConfig {
            balances: vec![("NOPE".into(), "1".into())],
            ..SandboxConfig::default()
        };
        let err = Sandbox::start(config, ManualClock::new(T0)).await.expect_err("invalid");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    // -- the state file ------------------------------------------------------------------------

    fn persisted(path: &std::path::Path) -> SandboxConfig {
        SandboxConfig {
            persist_path: Some(path.to_owned()),
            // The PRNG decides some outcomes, so its continuation across a restart is tested too.
            fail_rate: 0.5,
            seed: 11,
            ..SandboxConfig::default()
        }
    }

    fn on_file(path: &std::path::Path) -> crate::sandbox::persist::Snapshot {
        crate::sandbox::persist::load(path)
            .expect("the state file reads")
            .expect("the state file exists")
    }

    fn record_body(key: &str, value: &str) -> String {
        serde_json::json!({ key: value }).to_string()
    }

    /// Everything both lives of the persisted sandbox do after the restart, also done by the
    /// never-restarted control: three duplicates, one new create, settling on the clock.
    async fn after_restart(h: &Harness) -> Vec<i64> {
        let mut codes = Vec::new();
        for order in ["pst-1", "pst-3", "pst-4"] {
            let reply = h
                .call_v2(method::APPLY_APP_WITHDRAW_TO_NETWORK, &withdraw_body(order, TRX_ADDR))
                .await;
            codes.push(reply["code"].as_i64().unwrap_or(0));
        }
        let reply = h
            .call_v2(method::APPLY_APP_WITHDRAW_TO_NETWORK, &withdraw_body("pst-5", TRX_ADDR))
            .await;
        codes.push(reply["code"].as_i64().unwrap_or(0));
        codes
    }

    /// Before the restart: two payouts settled, two still Processing (one to the failing
    /// address), a balance set by hand.
    async fn before_restart(h: &Harness) {
        for (order, address) in [("pst-1", TRX_ADDR), ("pst-2", crate::sandbox::DEMO_FAILING_ADDRESS)] {
            let reply = h
                .call_v2(method::APPLY_APP_WITHDRAW_TO_NETWORK, &withdraw_body(order, address))
                .await;
            assert_eq!(reply["code"], 10000, "{reply}");
        }
        h.clock.advance(Duration::from_secs(2));
        h.sandbox.settle_due();
        for (order, address) in [("pst-3", TRX_ADDR), ("pst-4", crate::sandbox::DEMO_FAILING_ADDRESS)] {
            let reply = h
                .call_v2(method::APPLY_APP_WITHDRAW_TO_NETWORK, &withdraw_body(order, address))
                .await;
            assert_eq!(reply["code"], 10000, "{reply}");
        }
        h.sandbox.set_balance("MATIC", "42.5");
    }

    #[tokio::test]
    async fn a_restarted_sandbox_keeps_serving_refusing_and_settling_its_payouts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sandbox-state.json");

        // First life.
        let first = harness(persisted(&path)).await;
        assert_eq!(first.sandbox.persist_path(), Some(path.as_path()));
        before_restart(&first).await;
        let ledger_before = first.sandbox.ledger();
        let record_id_3 = ledger_before.payouts_for("pst-3")[0].record_id.clone();
        let by_order = first
            .call_v2(method::GET_APP_WITHDRAW_RECORD, &record_body("orderId", "pst-3"))
            .await;
        let by_record = first
            .call_v2(method::GET_APP_WITHDRAW_RECORD, &record_body("recordId", &record_id_3))
            .await;
        assert_eq!(by_order["data"]["record"]["status"], "Processing");
        let balances_before = (first.sandbox.balance("USDT"), first.sandbox.balance("MATIC"));
        let list_before = first
            .call_v2(
                method::GET_APP_WITHDRAW_RECORD_LIST,
                r#"{"orderIds":["pst-1","pst-2","pst-3","pst-4"]}"#,
            )
            .await;
        first.sandbox.shutdown().await;

        // Second life, on the same file and at the same time.
        let second = harness_at(persisted(&path), ManualClock::new(T0 + 2000)).await;
        assert_eq!(second.sandbox.ledger(), ledger_before);
        assert_eq!(
            second
                .call_v2(method::GET_APP_WITHDRAW_RECORD, &record_body("orderId", "pst-3"))
                .await,
            by_order
        );
        assert_eq!(
            second
                .call_v2(method::GET_APP_WITHDRAW_RECORD, &record_body("recordId", &record_id_3))
                .await,
            by_record
        );
        assert_eq!(
            second
                .call_v2(
                    method::GET_APP_WITHDRAW_RECORD_LIST,
                    r#"{"orderIds":["pst-1","pst-2","pst-3","pst-4"]}"#
                )
                .await,
            list_before
        );
        assert_eq!(
            (second.sandbox.balance("USDT"), second.sandbox.balance("MATIC")),
            balances_before
        );
        assert_eq!(after_restart(&second).await, [11011, 11011, 11011, 10000]);
        // The record-id sequence goes on: pst-5 is the fifth payout ever.
        let ledger = second.sandbox.ledger();
        let new_id = &ledger.payouts_for("pst-5")[0].record_id;
        assert!(new_id.ends_with("000004"), "{new_id}");
        assert!(ledger_before.payouts.iter().all(|p| &p.record_id != new_id));
        // The restored Processing payouts settle at their original due time, not before.
        second.clock.set_ms(T0 + 3999);
        second.sandbox.settle_due();
        let statuses = |l: &Ledger| {
            l.payouts
                .iter()
                .map(|p| p.status.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(statuses(&second.sandbox.ledger())[2..4], ["Processing", "Processing"]);
        second.clock.set_ms(T0 + 4000);
        second.sandbox.settle_due();
        let ledger_after = second.sandbox.ledger();
        assert_eq!(ledger_after.payouts_for("pst-4")[0].status.as_str(), "Failed");
        assert_eq!(ledger_after.payouts_for("pst-3")[0].settled_ms, Some(T0 + 4000));

        // A control that never restarted, doing the same, ends with the same ledger and
        // balances: same outcomes, same record ids, same transaction ids, same refunds.
        let control = harness(SandboxConfig {
            persist_path: None,
            ..persisted(&path)
        })
        .await;
        before_restart(&control).await;
        assert_eq!(after_restart(&control).await, [11011, 11011, 11011, 10000]);
        control.clock.set_ms(T0 + 4000);
        control.sandbox.settle_due();
        assert_eq!(ledger_after, control.sandbox.ledger());
        for coin in ["USDT", "MATIC"] {
            assert_eq!(second.sandbox.balance(coin), control.sandbox.balance(coin), "{coin}");
        }
        // The settlements are in the file too.
        let snapshot = on_file(&path);
        assert_eq!(snapshot.payouts.len(), 5);
        assert!(snapshot.payouts[..4].iter().all(|p| p.ledger.settled_ms.is_some()));
    }

    #[tokio::test]
    async fn saves_follow_balance_changes_and_settlements() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state").join("sandbox.json");
        let h = harness(persisted(&path)).await;
        // A fresh file is written at start.
        let snapshot = on_file(&path);
        assert_eq!(snapshot.version, 1);
        assert!(snapshot.payouts.is_empty());
        h.sandbox.set_balance("USDT", "100");
        assert_eq!(on_file(&path).balances.get(&1280).map(String::as_str), Some("100"));
        let reply = h
            .call_v2(
                method::APPLY_APP_WITHDRAW_TO_NETWORK,
                &withdraw_body("save-1", crate::sandbox::DEMO_FAILING_ADDRESS),
            )
            .await;
        assert_eq!(reply["code"], 10000);
        assert_eq!(on_file(&path).balances.get(&1280).map(String::as_str), Some("95"));
        // A refused create is written with the next save.
        let reply = h
            .call_v2(
                method::APPLY_APP_WITHDRAW_TO_NETWORK,
                &withdraw_body("save-1", TRX_ADDR),
            )
            .await;
        assert_eq!(reply["code"], 11011);
        // The background task settles on the clock and saves the settlement and refund.
        h.clock.advance(Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let snapshot = on_file(&path);
            if snapshot.payouts[0].ledger.settled_ms.is_some() {
                assert_eq!(snapshot.payouts[0].ledger.status.as_str(), "Failed");
                assert_eq!(snapshot.balances.get(&1280).map(String::as_str), Some("100"));
                assert_eq!(snapshot.attempts.len(), 2);
                break;
            }
            assert!(Instant::now() < deadline, "the settlement never reached the file");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_corrupt_state_file_fails_start_and_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sandbox-state.json");
        for content in ["{\"version\": 1, \"payouts\": [", "{\"version\": 9}", ""] {
            std::fs::write(&path, content).expect("write");
            let err = Sandbox::start(persisted(&path), ManualClock::new(T0))
                .await
                .expect_err("a corrupt file must not start an empty sandbox");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{content:?}: {err}");
            assert!(err.to_string().contains("sandbox-state.json"), "{err}");
            assert_eq!(std::fs::read_to_string(&path).expect("read"), content);
        }
        // An inconsistent snapshot (one orderId paid twice) is refused the same way.
        let h = harness(persisted(&path.with_file_name("good.json"))).await;
        for order in ["dup-a", "dup-b"] {
            h.call_v2(method::APPLY_APP_WITHDRAW_TO_NETWORK, &withdraw_body(order, TRX_ADDR))
                .await;
        }
        h.sandbox.shutdown().await;
        let mut snapshot = on_file(&path.with_file_name("good.json"));
        snapshot.payouts[1].ledger.order_id = "dup-a".into();
        std::fs::write(&path, serde_json::to_vec(&snapshot).expect("json")).expect("write");
        let err = Sandbox::start(persisted(&path), ManualClock::new(T0))
            .await
            .expect_err("inconsistent");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("dup-a"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_create_is_in_the_file_when_its_reply_arrives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sandbox-state.json");
        let h = Arc::new(harness(persisted(&path)).await);
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let h = Arc::clone(&h);
                let path = path.clone();
                tokio::spawn(async move {
                    let order = format!("race-{i}");
                    let reply = h
                        .call_v2(method::APPLY_APP_WITHDRAW_TO_NETWORK, &withdraw_body(&order, TRX_ADDR))
                        .await;
                    assert_eq!(reply["code"], 10000, "{reply}");
                    // Read the file the moment the reply is in.
                    let snapshot = on_file(&path);
                    let on_disk = snapshot.payouts.iter().find(|p| p.ledger.order_id == order);
                    assert_eq!(
                        on_disk.map(|p| p.ledger.record_id.as_str()),
                        reply["data"]["recordId"].as_str(),
                        "{order} is not in the file after its reply"
                    );
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        // A committed create whose reply is dropped is in the file by the time the client sees
        // the dropped connection.
        h.sandbox.set_faults(Faults {
            drop_after_commit: 1.0,
            ..Faults::default()
        });
        assert!(create_outcome(&h, "race-dropped").await.is_err());
        assert_eq!(on_file(&path).payouts.len(), 25);
        assert!(
            on_file(&path)
                .payouts
                .iter()
                .any(|p| p.ledger.order_id == "race-dropped")
        );
    }
}
