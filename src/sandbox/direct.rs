//! The sandbox's world in the same process: a [`Transport`] that hands the client's signed bytes
//! straight to [`World::handle`], with no sockets and no HTTP, on the caller's clock.
//!
//! This is what the deterministic simulation (`crate::sim`) runs the engine against. Everything
//! the world decides (balances, orderId uniqueness, settlement, the rate-limit bucket, the daily
//! caps, seeded faults) is decided exactly as over HTTP; what the HTTP server does around it is
//! done here too: the signature is verified over the exact bytes, payouts due are settled before
//! each request, a reply held back keeps its orderId busy until it is out or abandoned, v1
//! success replies are signed. On top, the network is modelled: each request takes a seeded
//! latency on the way in and on the way back, on tokio's time. A caller that is dropped while
//! its request travels (the simulation's crash) loses the request before it reached the world
//! or the reply after the world committed it — the two cases a real crash or a cut connection
//! produces.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::SecretString;

use super::world::{NOT_FOUND_BODY, Route, Transport as Delivery, WebhookJob, World, error_body};
use crate::api::CallError;
use crate::api::client::{ApiVersion, Endpoint, RawReply, Transport};
use crate::api::codes::SUCCESS;
use crate::api::sign::{sign_v1, verify_v1, verify_v2};
use crate::util::clock::SharedClock;

/// Network latency, one way, drawn uniformly from `min..=max` for each leg of each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    pub min: Duration,
    pub max: Duration,
}

impl Latency {
    /// No latency: replies in zero time.
    pub const NONE: Latency = Latency {
        min: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// Whether there is any.
    pub fn is_none(&self) -> bool {
        self.max.is_zero()
    }

    /// One draw, uniform in `min..=max`, advancing the seeded `state`.
    pub fn draw(&self, state: &mut u64) -> Duration {
        let spread = self.max.saturating_sub(self.min);
        if spread.is_zero() {
            return self.min;
        }
        let spread_us = u64::try_from(spread.as_micros()).unwrap_or(u64::MAX).max(1);
        self.min + Duration::from_micros(splitmix(state) % (spread_us + 1))
    }
}

/// The world and what its transport needs, shared by every clone of the client.
#[derive(Debug)]
pub struct Direct {
    world: Arc<Mutex<World>>,
    clock: SharedClock,
    app_id: String,
    secret: SecretString,
    latency: Latency,
    /// Draws the latencies; seeded, so a run replays exactly.
    rng: Mutex<u64>,
    /// Webhooks the world produced, for the caller to deliver (or not).
    webhooks: Mutex<Vec<WebhookJob>>,
    /// The client's request timeout: a reply held back longer is never seen.
    timeout: Option<Duration>,
}

impl Direct {
    /// A transport into `world`, which authenticates `app_id` and `secret`.
    pub fn new(
        world: Arc<Mutex<World>>,
        clock: SharedClock,
        app_id: String,
        secret: SecretString,
        latency: Latency,
        seed: u64,
    ) -> Direct {
        Direct {
            world,
            clock,
            app_id,
            secret,
            latency,
            rng: Mutex::new(seed),
            webhooks: Mutex::new(Vec::new()),
            timeout: None,
        }
    }

    /// Replies held back longer than `timeout` (a slow fault) time out, as with the HTTP
    /// client's request timeout: the request is then ambiguous.
    pub fn with_timeout(mut self, timeout: Duration) -> Direct {
        self.timeout = Some(timeout);
        self
    }

    /// The world.
    pub fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// The webhooks the world produced so far, taken out.
    pub fn take_webhooks(&self) -> Vec<WebhookJob> {
        std::mem::take(&mut *self.webhooks.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// One leg's latency.
    fn leg(&self) -> Duration {
        if self.latency.max.saturating_sub(self.latency.min).is_zero() {
            return self.latency.min;
        }
        let mut state = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        self.latency.draw(&mut state)
    }

    async fn travel(&self) {
        let leg = self.leg();
        if !leg.is_zero() {
            tokio::time::sleep(leg).await;
        }
    }

    /// The checks the HTTP server makes before a request costs anything: the app id, then the
    /// signature over the exact bytes (the timestamp window is the world's clock's, the same).
    fn authenticate(&self, route: Route, headers: &HeaderMap, body: &[u8]) -> Result<(), (i64, &'static str)> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let (app_id, timestamp, sign) = (header("Appid"), header("Timestamp"), header("Sign"));
        if app_id.is_empty() || timestamp.is_empty() || sign.is_empty() {
            return Err((11001, "HeaderInvalidArgument"));
        }
        if app_id != self.app_id {
            return Err((12001, "MerchantNotFound"));
        }
        let ts: i64 = timestamp.parse().unwrap_or(0);
        if (self.clock.now_secs() - ts).abs() > 120 {
            return Err((11006, "ReqExpired"));
        }
        let valid = if route.is_v1() {
            verify_v1(app_id, &self.secret, timestamp, body, sign)
        } else {
            verify_v2(app_id, &self.secret, timestamp, body, sign)
        };
        if valid {
            Ok(())
        } else {
            Err((11005, "VerifySignFailed"))
        }
    }

    fn reply(&self, route: Route, code: i64, body: Vec<u8>) -> RawReply {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if route.is_v1() && code == SUCCESS {
            // v1 success replies are signed over the exact bytes sent, as CCPayment does.
            let timestamp = self.clock.now_secs().to_string();
            let sign = sign_v1(&self.app_id, &self.secret, &timestamp, &body);
            for (name, value) in [
                ("appid", self.app_id.as_str()),
                ("timestamp", &timestamp),
                ("sign", &sign),
            ] {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.insert(HeaderName::from_static(name), value);
                }
            }
        }
        RawReply {
            http_status: 200,
            headers,
            body: Bytes::from(body),
        }
    }
}

impl Transport for Direct {
    fn post<'a>(
        &'a self,
        endpoint: Endpoint<'a>,
        _url: String,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<RawReply, CallError>> {
        Box::pin(async move {
            let label = endpoint.label();
            let route = match endpoint.version {
                ApiVersion::V2 => Route::v2(endpoint.name),
                ApiVersion::V1 => Route::v1(endpoint.name),
            };
            // The request travels; a caller dropped now never reached the world.
            self.travel().await;
            // An unknown method, or a route this account does not have (`no-batch-withdraw`):
            // the router's 404, before authentication.
            let Some(route) = route.filter(|route| lock(&self.world).offers(*route)) else {
                return Ok(not_found());
            };
            if let Err((code, msg)) = self.authenticate(route, &headers, &body) {
                self.travel().await;
                return Ok(self.reply(route, code, error_body(code, msg)));
            }
            // The world decides (and commits) under its lock, at the clock's time.
            let handled = {
                let mut world = lock(&self.world);
                let now_ms = self.clock.now_ms();
                world.settle_due(now_ms);
                let handled = world.handle(route, &body, now_ms);
                self.webhooks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(world.take_webhooks());
                handled
            };
            // A held-back reply keeps its orderId busy (11007 to duplicates) until it is out or
            // abandoned: the guard releases it either way.
            let _in_flight = handled.in_flight.clone().map(|order_id| InFlight {
                world: self.world.clone(),
                order_id,
            });
            match handled.transport {
                Delivery::Reply => {}
                Delivery::Slow(delay) => match self.timeout {
                    Some(timeout) if delay >= timeout => {
                        tokio::time::sleep(timeout).await;
                        return Err(CallError::Ambiguous {
                            endpoint: label,
                            detail: format!("timed out after {} ms", timeout.as_millis()),
                        });
                    }
                    _ => tokio::time::sleep(delay).await,
                },
                Delivery::Drop => {
                    return Err(CallError::Ambiguous {
                        endpoint: label,
                        detail: "sandbox fault: connection dropped".into(),
                    });
                }
                Delivery::NotFound => {
                    self.travel().await;
                    return Ok(not_found());
                }
                Delivery::BadGateway => {
                    self.travel().await;
                    return Ok(RawReply {
                        http_status: 502,
                        headers: HeaderMap::new(),
                        body: Bytes::from_static(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
                    });
                }
            }
            // The reply travels; a caller dropped now lost a reply the world committed.
            self.travel().await;
            Ok(self.reply(route, handled.code, handled.body))
        })
    }
}

/// The plain-text 404 of an unknown method, as the HTTP server sends it.
fn not_found() -> RawReply {
    RawReply {
        http_status: 404,
        headers: HeaderMap::new(),
        body: Bytes::from_static(NOT_FOUND_BODY),
    }
}

/// Releases a held orderId when its reply is out or abandoned.
struct InFlight {
    world: Arc<Mutex<World>>,
    order_id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.world).release_in_flight(&self.order_id);
    }
}

fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    // A panic while holding the lock is a bug elsewhere; the world is still the best there is.
    world.lock().unwrap_or_else(PoisonError::into_inner)
}

/// splitmix64: a small, good, seedable generator.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::sign::sign_v2;
    use crate::api::types::method;
    use crate::api::{Client, ClientConfig};
    use crate::sandbox::{DEMO_APP_ID, DEMO_APP_SECRET, Readings, SandboxConfig};
    use crate::util::clock::{Clock, ManualClock};

    const PARAMETERLESS: [&str; 4] = [
        method::GET_COIN_LIST,
        method::GET_APP_COIN_ASSET_LIST,
        method::GET_FIAT_LIST,
        method::GET_SWAP_COIN_LIST,
    ];

    /// A client whose transport is a [`Direct`] into a demo world taking `readings`.
    fn direct_client(readings: Readings) -> (Client, Arc<Direct>, Arc<ManualClock>) {
        let config = SandboxConfig {
            readings,
            ..SandboxConfig::default()
        };
        let world = Arc::new(Mutex::new(World::new(&config).expect("demo world")));
        let clock = ManualClock::new(1_700_000_000_000);
        let direct = Arc::new(Direct::new(
            world,
            clock.clone(),
            DEMO_APP_ID.to_owned(),
            SecretString::from(DEMO_APP_SECRET),
            Latency::NONE,
            1,
        ));
        let client_config = ClientConfig {
            v2_base_url: "http://direct.invalid".to_owned(),
            v1_base_url: "http://direct.invalid".to_owned(),
            app_id: DEMO_APP_ID.to_owned(),
            app_secret: SecretString::from(DEMO_APP_SECRET),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        };
        let transport: Arc<dyn Transport> = direct.clone();
        (
            Client::with_transport(client_config, clock.clone(), transport),
            direct,
            clock,
        )
    }

    fn code(reply: &RawReply) -> i64 {
        let value: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
        value["code"].as_i64().expect("a code")
    }

    #[tokio::test]
    async fn an_empty_body_is_verified_over_app_id_and_timestamp_and_accepted_like_braces() {
        let (client, direct, clock) = direct_client(Readings::NONE);
        for name in PARAMETERLESS {
            for body in [Vec::new(), b"{}".to_vec()] {
                let reply = client.send_raw(Endpoint::v2(name), body.clone()).await.expect("reply");
                assert_eq!(code(&reply), SUCCESS, "{name} {body:?}");
            }
        }
        // The signature covers the exact bytes: one made over `{}` does not pass an empty body.
        let timestamp = clock.now_secs().to_string();
        let secret = SecretString::from(DEMO_APP_SECRET);
        let sign = sign_v2(DEMO_APP_ID, &secret, &timestamp, b"{}");
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("appid", DEMO_APP_ID),
            ("timestamp", timestamp.as_str()),
            ("sign", sign.as_str()),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).expect("header"),
            );
        }
        let endpoint = Endpoint::v2(method::GET_COIN_LIST);
        let reply = direct
            .post(endpoint, String::new(), headers, Vec::new())
            .await
            .expect("reply");
        assert_eq!(code(&reply), 11005);
    }

    #[tokio::test]
    async fn empty_body_only_refuses_braces_through_the_direct_transport() {
        let (client, _, _) = direct_client(Readings::parse("empty-body-only").expect("reading"));
        for name in PARAMETERLESS {
            let empty = client.send_raw(Endpoint::v2(name), Vec::new()).await.expect("reply");
            assert_eq!(code(&empty), SUCCESS, "{name}");
            let braces = client
                .send_raw(Endpoint::v2(name), b"{}".to_vec())
                .await
                .expect("reply");
            assert_eq!(code(&braces), 11000, "{name}");
        }
    }

    /// `no-address-batch-check`: the batch address check is the plain 404 of an unknown method,
    /// as over HTTP, and never reaches the world; the single check still answers.
    #[tokio::test]
    async fn no_address_batch_check_answers_the_batch_check_as_an_unknown_method() {
        use crate::api::types::{CheckWithdrawAddressRequest, WithdrawAddress};
        let req = CheckWithdrawAddressRequest {
            chain: "TRX".to_owned(),
            address_info_list: vec![WithdrawAddress {
                address: crate::sandbox::DEMO_ADDRESSES[0].1.to_owned(),
                memo: String::new(),
                seq: 1,
            }],
        };
        let (client, _, _) = direct_client(Readings::NONE);
        let results = client
            .check_withdraw_address_if_routed(&req)
            .await
            .expect("an answer")
            .expect("the route");
        assert_eq!(results.len(), 1);
        let (client, direct, _) = direct_client(Readings::parse("no-address-batch-check").expect("reading"));
        assert_eq!(client.check_withdraw_address_if_routed(&req).await, Ok(None));
        let reply = client
            .send_raw(Endpoint::v2(method::CHECK_WITHDRAW_ADDRESS), b"{}".to_vec())
            .await
            .expect("a reply");
        assert_eq!((reply.http_status, &reply.body[..]), (404, &b"404 page not found"[..]));
        assert!(
            client
                .check_withdrawal_address_validity("TRX", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")
                .await
                .expect("the single check")
        );
        let stats = lock(&direct.world).stats();
        assert_eq!(stats.to_endpoint(method::CHECK_WITHDRAW_ADDRESS), 0, "{stats:?}");
        assert_eq!(
            stats.to_endpoint(method::CHECK_WITHDRAWAL_ADDRESS_VALIDITY),
            1,
            "{stats:?}"
        );
    }

    /// The client's batch calls decode what the sandbox answers, end to end.
    #[tokio::test]
    async fn the_clients_batch_calls_round_trip_through_the_world() {
        use crate::api::types::{
            AbortBatchWithdrawRequest, AppendBatchWithdrawRequest, ApplyBatchWithdrawRequest, BatchOrderQuery,
            BatchRecordListQuery, BatchTask, ConfirmBatchWithdrawRequest, TaskStatus,
        };
        let (client, direct, clock) = direct_client(Readings::NONE);
        let task = |seq: u32| BatchTask {
            seq,
            address: "TPSFu3gV4D7SwHS3HkXs3S8QZauZpyQtWH".into(),
            amount: "5".into(),
            remark: format!("row-{seq}"),
            ..BatchTask::default()
        };
        let applied = client
            .apply_batch_withdraw(&ApplyBatchWithdrawRequest {
                batch_order_id: "direct-batch-1".into(),
                coin_id: 1280,
                chain: "TRX".into(),
                orders: vec![task(1), task(2)],
                mode: "Single".into(),
                ..ApplyBatchWithdrawRequest::default()
            })
            .await
            .expect("applied")
            .expect("the route");
        assert_eq!(applied.batch_order_id, "direct-batch-1");
        client
            .append_batch_withdraw(&AppendBatchWithdrawRequest {
                batch_order_id: "direct-batch-1".into(),
                orders: vec![task(3)],
            })
            .await
            .expect("appended");
        let aborted = client
            .abort_batch_withdraw(&AbortBatchWithdrawRequest {
                batch_order_id: "direct-batch-1".into(),
                seqs: vec![3],
            })
            .await
            .expect("aborted");
        assert_eq!((aborted.canceled_seqs, aborted.ignored_seqs), (vec![3], vec![]));
        let confirmed = client
            .confirm_batch_withdraw(&ConfirmBatchWithdrawRequest {
                batch_order_id: "direct-batch-1".into(),
                delay_seconds: 0,
            })
            .await
            .expect("confirmed");
        assert_eq!(
            (confirmed.bill_id.as_str(), confirmed.status.as_str()),
            (applied.bill_id.as_str(), "Processing")
        );
        clock.advance(Duration::from_secs(5));
        let query = BatchOrderQuery {
            batch_order_id: "direct-batch-1".into(),
            verbose: 0,
        };
        let order = client.get_batch_withdraw_order(&query).await.expect("the batch");
        assert_eq!(order.status, "Completed");
        assert_eq!(
            (order.stats.total, order.stats.succeeded, order.stats.canceled),
            (3, 2, 1)
        );
        let page = client
            .get_batch_withdraw_order_record_list(&BatchRecordListQuery {
                batch_order_id: "direct-batch-1".into(),
                ..BatchRecordListQuery::default()
            })
            .await
            .expect("the tasks");
        let seen: Vec<(u32, &str, TaskStatus)> = page
            .records
            .iter()
            .map(|t| (t.seq, t.remark.as_str(), TaskStatus::of(&t.status)))
            .collect();
        assert_eq!(
            seen,
            [
                (1, "row-1", TaskStatus::Succeeded),
                (2, "row-2", TaskStatus::Succeeded),
                (3, "row-3", TaskStatus::Canceled)
            ]
        );
        assert!(page.next_id.is_empty());
        assert_eq!(direct.world().ledger().tasks_of("direct-batch-1").len(), 2);
        // Unknown: the API's 11003.
        let unknown = BatchOrderQuery {
            batch_order_id: "direct-batch-2".into(),
            verbose: 0,
        };
        let err = client.get_batch_withdraw_order(&unknown).await.expect_err("unknown");
        assert!(
            matches!(&err, crate::api::CallError::Api(e) if e.code == 11003),
            "{err}"
        );
    }

    #[tokio::test]
    async fn without_the_batch_routes_the_direct_transport_answers_404() {
        let (client, direct, _) = direct_client(Readings::parse("no-batch-withdraw").expect("reading"));
        let body = br#"{"batchOrderId":"direct-nb-1"}"#.to_vec();
        let reply = client
            .send_raw(Endpoint::v2(method::GET_BATCH_WITHDRAW_ORDER), body)
            .await
            .expect("a reply");
        assert_eq!((reply.http_status, &reply.body[..]), (404, &b"404 page not found"[..]));
        // Unsigned too: the route is gone before the signature is looked at.
        let reply = direct
            .post(
                Endpoint::v2(method::APPLY_BATCH_WITHDRAW),
                String::new(),
                HeaderMap::new(),
                b"{}".to_vec(),
            )
            .await
            .expect("a reply");
        assert_eq!(reply.http_status, 404);
        assert_eq!(direct.world().stats().total(), 0, "nothing reached the API");
    }
}
