//! The API routes (`/ccpayment/v2/{method}`, `/ccpayment/v1/{path}` for `withdraw`,
//! `bill/info` and the v1 reads): authenticate, hand the request to the world under its lock, wait
//! until the state file holds what that changed, then deliver the outcome. An orderId held by a
//! slow reply is released however the request ends.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::auth::authenticate;
use super::reply::{deliver, json_response, not_found};
use super::shared::Shared;
use crate::sandbox::world::{Handled, Route, Transport, error_body};

/// `POST /ccpayment/v2/{method}`.
pub(super) async fn v2_call(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Unknown methods look like the Go router CCPayment runs behind: a plain-text 404. So do
    // the routes this account does not have (the batch routes under `no-batch-withdraw`),
    // before authentication, as a router answers before the API does.
    match Route::v2(&method).filter(|route| shared.lock().offers(*route)) {
        Some(route) => api_call(shared, peer, route, headers, body).await,
        None => not_found().await,
    }
}

/// `POST /ccpayment/v1/{path}`: `withdraw`, `bill/info` and the v1 reads (`coin/all`,
/// `support/token`, `token/chain`, `network/fee`, `assets`, `check/user`).
pub(super) async fn v1_call(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match Route::v1(&path) {
        Some(route) => api_call(shared, peer, route, headers, body).await,
        None => not_found().await,
    }
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

/// One API request: authenticate it, run it on the world, save what it changed, then deliver
/// the outcome.
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
    deliver(&shared, route, handled).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::{Duration, Instant};

    use serde_json::Value;

    use crate::api::types::method;
    use crate::sandbox::server::testkit::*;
    use crate::sandbox::{AttemptOutcome, Faults, SandboxConfig};

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

    /// The body of a batch of `n` 5 USDT TRX tasks.
    fn batch_body(id: &str, n: u32) -> String {
        let orders: Vec<Value> = (1..=n)
            .map(|seq| serde_json::json!({"seq": seq, "address": TRX_ADDR, "amount": "5", "remark": format!("row-{seq}")}))
            .collect();
        serde_json::json!({"batchOrderId": id, "coinId": 1280, "chain": "TRX", "mode": "Single", "orders": orders})
            .to_string()
    }

    #[tokio::test]
    async fn a_batch_runs_on_the_servers_clock_and_every_step_reaches_the_state_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sandbox.json");
        let h = harness(SandboxConfig {
            persist_path: Some(path.clone()),
            ..SandboxConfig::default()
        })
        .await;
        let reply = h
            .call_v2(method::APPLY_BATCH_WITHDRAW, &batch_body("srv-batch-1", 2))
            .await;
        assert_eq!(reply["code"], 10000, "{reply}");
        let on_file = crate::sandbox::server::testkit::on_file(&path);
        assert_eq!((on_file.batches.len(), on_file.batches[0].tasks.len()), (1, 2));
        let reply = h
            .call_v2(
                method::CONFIRM_BATCH_WITHDRAW,
                r#"{"batchOrderId":"srv-batch-1","delaySeconds":1}"#,
            )
            .await;
        assert_eq!(reply["data"]["status"], "Pending", "{reply}");
        assert_eq!(
            crate::sandbox::server::testkit::on_file(&path).batches[0].status,
            "Pending"
        );
        // No request needed: the settlement task runs the batch on the clock, and saves.
        h.clock.advance(Duration::from_secs(4));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let on_file = crate::sandbox::server::testkit::on_file(&path);
            if on_file.batches[0].status == "Completed" {
                assert_eq!(on_file.payouts.len(), 2);
                assert!(on_file.payouts.iter().all(|p| p.ledger.batch_order_id == "srv-batch-1"));
                break;
            }
            assert!(Instant::now() < deadline, "the run never reached the file");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(h.sandbox.ledger().tasks_of("srv-batch-1").len(), 2);
        assert_eq!(h.sandbox.balance("USDT"), "999988");
    }

    #[tokio::test]
    async fn without_the_batch_routes_they_answer_404_before_authentication() {
        let h = harness(SandboxConfig {
            readings: crate::sandbox::Readings::parse("no-batch-withdraw").expect("reading"),
            ..SandboxConfig::default()
        })
        .await;
        let response = h
            .post_v2(method::APPLY_BATCH_WITHDRAW, &batch_body("srv-nb-1", 1))
            .await
            .expect("reply");
        assert_eq!(response.status(), 404);
        assert_eq!(response.text().await.expect("text"), "404 page not found");
        let path = format!("/ccpayment/v2/{}", method::GET_BATCH_WITHDRAW_ORDER);
        let unsigned = h.post_raw(&path, "{}", None, None, None).await.expect("reply");
        assert_eq!(unsigned.status(), 404, "before the headers are looked at");
        assert_eq!(h.sandbox.stats().total(), 0, "nothing reached the API");
        assert!(h.sandbox.ledger().attempts.is_empty());
        // The account's other routes answer as ever.
        let reply = h.call_v2(method::GET_COIN_LIST, "{}").await;
        assert_eq!(reply["code"], 10000);
        // With the routes, the same unsigned request is the API's: 11001.
        let plain = harness(SandboxConfig::default()).await;
        let unsigned = plain.post_raw(&path, "{}", None, None, None).await.expect("reply");
        assert_eq!(unsigned.status(), 200);
        let reply: Value = serde_json::from_slice(&unsigned.bytes().await.expect("body")).expect("JSON");
        assert_eq!(reply["code"], 11001);
    }
}
