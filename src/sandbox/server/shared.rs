//! What the handlers, the settlement task and the [`Sandbox`](super::Sandbox) handle share: the
//! one [`World`] behind its mutex, the clock, the account, the webhook sender and the state
//! file; running a change on the world and saving what it changed; and the background task that
//! settles payouts at their due time.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::sandbox::notifier::WebhookSender;
use crate::sandbox::persist::Persister;
use crate::sandbox::world::World;
use crate::util::clock::SharedClock;

/// The longest the settlement task sleeps, so that a manual clock moved forward by a test is
/// noticed within a second without polling in a busy loop.
const MAX_SETTLE_SLEEP_MS: i64 = 1000;

/// State shared by the handlers, the settlement task and the [`Sandbox`](super::Sandbox) handle.
pub(super) struct Shared {
    /// The one world; every request and control runs on it under this lock.
    pub(super) world: Mutex<World>,
    pub(super) clock: SharedClock,
    /// The account requests must be signed for.
    pub(super) app_id: String,
    pub(super) secret: SecretString,
    /// Requests with a timestamp further from now than this answer 11006.
    pub(super) window_secs: i64,
    /// `Some`: only these peers get past 12002.
    pub(super) ip_whitelist: Option<Vec<IpAddr>>,
    pub(super) webhooks: WebhookSender,
    /// Wakes the settlement task when a payout is created (its next due time may be earlier).
    pub(super) wake: Notify,
    /// Writes the state file, when there is one.
    pub(super) persister: Option<Persister>,
    /// Added to every API request (round trip), and the seeded state of its draws.
    pub(super) latency: crate::sandbox::direct::Latency,
    pub(super) latency_rng: Mutex<u64>,
    /// TCP connections accepted.
    pub(super) connections: Arc<std::sync::atomic::AtomicU64>,
}

impl Shared {
    /// One leg (half the round trip) of the latency added to an API request.
    pub(super) fn latency_leg(&self) -> std::time::Duration {
        if self.latency.is_none() {
            return std::time::Duration::ZERO;
        }
        let mut state = self.latency_rng.lock().unwrap_or_else(PoisonError::into_inner);
        self.latency.draw(&mut state) / 2
    }

    /// The request statistics, with the connections accepted.
    pub(super) fn stats(&self) -> crate::sandbox::SandboxStats {
        let mut stats = self.lock().stats();
        stats.connections = self.connections.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }

    /// The world, locked.
    pub(super) fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock is a sandbox bug; the state is still the best there
        // is, and refusing every later request would hide the original panic.
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the world at the clock's current time, after settling what is due, then
    /// hands the webhooks it produced to the sender (outside the lock). Also returns the world's
    /// generation when durable state changed, for [`Shared::save`]: the caller must save it.
    pub(super) fn with_world_tracked<R>(&self, f: impl FnOnce(&mut World, i64) -> R) -> (R, Option<u64>) {
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
    /// synchronous controls of the [`Sandbox`](super::Sandbox) handle.
    pub(super) fn with_world<R>(&self, f: impl FnOnce(&mut World, i64) -> R) -> R {
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
    pub(super) async fn save(self: &Arc<Self>, generation: u64) -> io::Result<()> {
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
    pub(super) async fn save_now(self: &Arc<Self>) -> io::Result<()> {
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

/// Settles payouts at their due time (so webhooks go out without any request arriving).
/// With nothing pending it sleeps until a payout is created; otherwise it sleeps until the next
/// due time, at most a second at a time so a manual clock moved forward is noticed.
pub(super) async fn settle_loop(shared: Arc<Shared>, cancel: CancellationToken) {
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use crate::api::sign::verify_v2;
    use crate::api::types::method;
    use crate::sandbox::server::testkit::*;
    use crate::sandbox::{DEMO_APP_ID, SandboxConfig};

    #[tokio::test]
    async fn saves_follow_balance_changes_and_settlements() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state").join("sandbox.json");
        let h = harness(persisted(&path)).await;
        // A fresh file is written at start.
        let snapshot = on_file(&path);
        assert_eq!(snapshot.version, crate::sandbox::persist::SNAPSHOT_VERSION);
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
}
