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
//!
//! # Layout
//!
//! This file holds the [`Sandbox`] handle (start, the operator's controls, shutdown) and the
//! router.
//!
//! - `shared.rs`: the state every handler shares (the world behind its mutex, the clock, the
//!   account, the state file), saving, and the background settlement task.
//! - `auth.rs`: authentication over the raw body bytes.
//! - `calls.rs`: the API routes, from an authenticated request to the outcome the world
//!   decided.
//! - `reply.rs`: delivering that outcome: the reply (signed for v1), held, dropped or a 502.
//! - `debug.rs`: `GET /sandbox/ledger`, `/sandbox/stats` and `/sandbox/health`.
//! - `testkit.rs`: the harness the tests share (test builds only).

mod auth;
mod calls;
mod debug;
mod reply;
mod shared;
#[cfg(test)]
mod testkit;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use secrecy::SecretString;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use self::shared::{Shared, settle_loop};
use super::notifier::{RetrySignature, WebhookSender};
use super::persist::{self, Persister};
use super::world::World;
use super::{Faults, Ledger, SandboxConfig, SandboxStats, WebhookDelivery};
use crate::util::clock::SharedClock;

/// How long [`Sandbox::shutdown`] waits for in-flight requests before aborting the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
            if config.readings.old_webhook_timestamps {
                RetrySignature::Original
            } else {
                RetrySignature::Fresh
            },
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
            latency: config.latency,
            latency_rng: std::sync::Mutex::new(config.seed ^ 0x1a7e_4c79),
            connections: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        });
        // A state file is written at once: an unwritable path fails here, not at the first
        // create, and a fresh file exists from the start.
        shared.save_now().await?;

        let settle = tokio::spawn(settle_loop(Arc::clone(&shared), cancel.clone()));
        let service = router(Arc::clone(&shared)).into_make_service_with_connect_info::<SocketAddr>();
        let connections = Arc::clone(&shared.connections);
        let listener = axum::serve::ListenerExt::tap_io(listener, move |_io: &mut tokio::net::TcpStream| {
            connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
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
        tracing::info!(%addr, readings = %config.readings, "sandbox listening");
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
        self.shared.stats()
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

    /// From now on CCPayment refuses `address` although it is well-formed: both address checks
    /// say it is not valid (`checkWithdrawAddress` with 14002 AddressNotActive), and a create to
    /// it answers 14002. Not persisted.
    pub fn refuse_address(&self, address: &str) {
        self.shared.with_world(|w, _| w.refuse_address(address));
    }

    /// The next `times` signed calls of `method` (a v2 method name, or `v1/` and a v1 path such
    /// as `v1/withdraw`) answer `code` with `msg`, committing nothing.
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

/// Every route the sandbox answers; anything else is the plain-text 404.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ccpayment/v2/{method}", post(calls::v2_call))
        .route("/ccpayment/v1/{*path}", post(calls::v1_call))
        .route("/sandbox/ledger", get(debug::ledger))
        .route("/sandbox/stats", get(debug::stats))
        .route("/sandbox/health", get(debug::health))
        .fallback(reply::not_found)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), travel))
        .layer(axum::middleware::map_response_with_state(shared.clone(), stamp_date))
        .with_state(shared)
}

/// The network between ccpayout and a CCPayment far away: half the configured latency before an
/// API request is handled, half before its reply leaves (`SandboxConfig::latency`).
async fn travel(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !request.uri().path().starts_with("/ccpayment/") || shared.latency.is_none() {
        return next.run(request).await;
    }
    tokio::time::sleep(shared.latency_leg()).await;
    let response = next.run(request).await;
    tokio::time::sleep(shared.latency_leg()).await;
    response
}

/// Every reply carries a `Date` header from the sandbox's own clock (as a real server's comes
/// from its clock), so a sandbox whose clock is off shows it the way CCPayment would: in the
/// header `ccpayout doctor` compares, and in 11006 for timestamps outside its window.
async fn stamp_date(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    mut response: axum::response::Response,
) -> axum::response::Response {
    let date = chrono::DateTime::from_timestamp_millis(shared.clock.now_ms())
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(value) = axum::http::HeaderValue::from_str(&date) {
        response.headers_mut().insert(axum::http::header::DATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::types::method;
    use crate::sandbox::server::testkit::*;
    use crate::util::clock::ManualClock;

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
}
