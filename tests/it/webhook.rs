//! The webhook listener over real HTTP: refusals never reach the engine, a signed webhook gives
//! exactly one hint, duplicates are acknowledged and de-duplicated, and the sandbox's own signed
//! webhooks (v2 and v1) are accepted end to end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ccpayout::api::sign::sign_v2;
use ccpayout::api::types::{RecordStatus, V1WithdrawRequest};
use ccpayout::config::ApiGeneration;
use ccpayout::daemon::webhook::{self, Hint, Verifier, WebhookSettings, WebhookStats};
use ccpayout::sandbox::{DEMO_APP_ID, DEMO_APP_SECRET, SandboxConfig};
use ccpayout::util::clock::{Clock, SharedClock};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

const APP_ID: &str = "hook-test-app";
const SECRET: &str = "hook-test-secret";
const V2_BODY: &str = r#"{"type":"ApiWithdrawal","msg":{"recordId":"20240313120722176788","orderId":"payout-0001","coinId":1280,"coinSymbol":"USDT","status":"Success"}}"#;

/// A listener on 127.0.0.1:0 collecting the hints it passes on.
struct Listener {
    url: String,
    base: String,
    hints: Arc<Mutex<Vec<Hint>>>,
    stats: Arc<WebhookStats>,
    cancel: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Listener {
    async fn start(app_id: &str, secret: &str, generation: ApiGeneration, settings: WebhookSettings) -> Listener {
        let clock: SharedClock = ccpayout::util::clock::system();
        let verifier = Arc::new(Verifier::new(
            app_id,
            SecretString::from(secret.to_owned()),
            generation,
            &settings,
            clock,
        ));
        let stats = verifier.stats();
        let hints = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&hints);
        let on_hint: Arc<dyn Fn(Hint) + Send + Sync> = Arc::new(move |hint| sink.lock().unwrap().push(hint));
        let router = webhook::router(verifier, &settings, on_hint);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(webhook::serve(listener, router, cancel.clone()));
        Listener {
            url: format!("http://{addr}{}", settings.path),
            base: format!("http://{addr}"),
            hints,
            stats,
            cancel,
            task,
        }
    }

    async fn v2() -> Listener {
        Listener::start(APP_ID, SECRET, ApiGeneration::V2, WebhookSettings::default()).await
    }

    fn hints(&self) -> Vec<Hint> {
        self.hints.lock().unwrap().clone()
    }

    fn stats(&self) -> BTreeMap<String, u64> {
        self.stats.snapshot()
    }

    /// Waits (bounded) until a hint matching `pred` has arrived.
    async fn wait_for_hint(&self, pred: impl Fn(&Hint) -> bool) -> Hint {
        for _ in 0..100 {
            if let Some(hint) = self.hints().into_iter().find(&pred) {
                return hint;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no matching hint within 5 s; got {:?}", self.hints());
    }

    async fn stop(self) {
        self.cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve stops after cancellation")
            .expect("serve task does not panic");
        result.expect("serve ends without an error");
    }
}

fn http() -> reqwest::Client {
    ccpayout::api::ensure_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn now_secs() -> String {
    ccpayout::util::clock::SystemClock.now_secs().to_string()
}

/// POSTs `body` with the given headers; (status, content type, body text).
async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String, String) {
    let mut request = http().post(url).header("Content-Type", "application/json").body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let reply = request.send().await.expect("the listener answers");
    let status = reply.status().as_u16();
    let content_type = reply
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, reply.text().await.unwrap())
}

/// A v2 webhook signed now with `secret`.
async fn post_v2(url: &str, secret: &str, body: &str) -> (u16, String, String) {
    let ts = now_secs();
    let sign = sign_v2(APP_ID, &SecretString::from(secret.to_owned()), &ts, body.as_bytes());
    post(
        url,
        &[("Appid", APP_ID), ("Timestamp", &ts), ("Sign", &sign)],
        body.as_bytes().to_vec(),
    )
    .await
}

#[tokio::test]
async fn refused_requests_never_reach_the_engine() {
    let listener = Listener::v2().await;
    let url = listener.url.as_str();
    let secret = SecretString::from(SECRET);
    let ts = now_secs();
    let good_sign = sign_v2(APP_ID, &secret, &ts, V2_BODY.as_bytes());

    // Forged: signed with another secret, or a valid signature over another body.
    let (status, content_type, text) = post_v2(url, "not-the-secret", V2_BODY).await;
    assert_eq!((status, content_type.as_str()), (401, "text/plain; charset=utf-8"));
    assert!(text.contains("signature"), "{text}");
    assert!(!text.contains(SECRET));
    let tampered = V2_BODY.replace("payout-0001", "payout-0666");
    let headers = [
        ("Appid", APP_ID),
        ("Timestamp", ts.as_str()),
        ("Sign", good_sign.as_str()),
    ];
    assert_eq!(post(url, &headers, tampered.into_bytes()).await.0, 401);

    // Another app id, correctly signed for it.
    let other = sign_v2("other-app", &secret, &ts, V2_BODY.as_bytes());
    let headers = [
        ("Appid", "other-app"),
        ("Timestamp", ts.as_str()),
        ("Sign", other.as_str()),
    ];
    assert_eq!(post(url, &headers, V2_BODY.into()).await.0, 401);

    // Stale and future, correctly signed: beyond the retry horizon behind (a retry may keep its
    // first attempt's timestamp, R11) and the 120 s window ahead, by a margin that a slow, loaded
    // machine cannot eat up between signing and checking (the exact edges are a unit test of the
    // verifier, on a manual clock).
    for offset in [-(2 * 3600 + 10), 130] {
        let old = (ts.parse::<i64>().unwrap() + offset).to_string();
        let sign = sign_v2(APP_ID, &secret, &old, V2_BODY.as_bytes());
        let headers = [("Appid", APP_ID), ("Timestamp", old.as_str()), ("Sign", sign.as_str())];
        let (status, _, text) = post(url, &headers, V2_BODY.into()).await;
        assert_eq!(status, 401, "{offset}: {text}");
    }

    // A header missing.
    let headers = [("Appid", APP_ID), ("Timestamp", ts.as_str())];
    let (status, _, text) = post(url, &headers, V2_BODY.into()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Sign"), "{text}");

    // 1 MiB: refused as too large, before any signature is computed.
    let huge = vec![b' '; 1024 * 1024];
    let headers = [
        ("Appid", APP_ID),
        ("Timestamp", ts.as_str()),
        ("Sign", good_sign.as_str()),
    ];
    assert_eq!(post(url, &headers, huge).await.0, 413);

    // Another path, another method.
    let wrong_path = format!("{}/ccpayment/webhook2", listener.base);
    let headers = [
        ("Appid", APP_ID),
        ("Timestamp", ts.as_str()),
        ("Sign", good_sign.as_str()),
    ];
    assert_eq!(post(&wrong_path, &headers, V2_BODY.into()).await.0, 404);
    assert_eq!(post(&listener.base, &headers, V2_BODY.into()).await.0, 404);
    let reply = http().get(url).send().await.unwrap();
    assert_eq!(reply.status().as_u16(), 405);

    assert!(listener.hints().is_empty(), "{:?}", listener.hints());
    let stats = listener.stats();
    assert_eq!(stats["accepted"], 0);
    assert_eq!(stats["refused_signature"], 2);
    assert_eq!(stats["refused_app_id"], 1);
    assert_eq!(stats["refused_stale"], 2);
    assert_eq!(stats["refused_missing_header"], 1);
    assert_eq!(stats["refused_too_large"], 1);

    // The listener is still healthy after all that: a correct webhook goes through.
    assert_eq!(post_v2(url, SECRET, V2_BODY).await.0, 200);
    assert_eq!(listener.hints().len(), 1);
    listener.stop().await;
}

#[tokio::test]
async fn a_signed_webhook_gives_one_hint_and_duplicates_are_acknowledged_once() {
    let listener = Listener::v2().await;
    let url = listener.url.as_str();

    let (status, content_type, text) = post_v2(url, SECRET, V2_BODY).await;
    assert_eq!(
        (status, content_type.as_str(), text.as_str()),
        (200, "text/plain; charset=utf-8", "success")
    );
    assert_eq!(
        listener.hints(),
        [Hint {
            order_id: Some("payout-0001".into()),
            record_id: Some("20240313120722176788".into()),
            status: Some("Success".into()),
            kind: "ApiWithdrawal".into(),
        }]
    );

    // Re-pushed twice (fresh timestamp and signature each time, as CCPayment does): acknowledged,
    // but no second hint.
    for _ in 0..2 {
        let (status, _, text) = post_v2(url, SECRET, V2_BODY).await;
        assert_eq!((status, text.as_str()), (200, "success"));
    }
    assert_eq!(listener.hints().len(), 1);

    // The same record with another status is news.
    let processing = V2_BODY.replace("\"Success\"", "\"Processing\"");
    assert_eq!(post_v2(url, SECRET, &processing).await.2, "success");
    let hints = listener.hints();
    assert_eq!(hints.len(), 2);
    assert_eq!(hints[1].status.as_deref(), Some("Processing"));

    // Other types and unreadable signed bodies are acknowledged so CCPayment stops re-pushing,
    // and never reach the engine.
    let deposit = r#"{"type":"ApiDeposit","msg":{"recordId":"1","orderId":"dep-1","status":"Success"}}"#;
    assert_eq!(
        post_v2(url, SECRET, deposit).await,
        (200, "text/plain; charset=utf-8".into(), "success".into())
    );
    assert_eq!(post_v2(url, SECRET, "this is not json").await.2, "success");
    assert_eq!(listener.hints().len(), 2);

    let stats = listener.stats();
    assert_eq!(
        (
            stats["accepted"],
            stats["duplicate"],
            stats["ignored"],
            stats["unreadable"]
        ),
        (4, 2, 1, 1)
    );
    listener.stop().await;
}

#[tokio::test]
async fn a_custom_path_and_body_limit_are_honoured() {
    let settings = WebhookSettings {
        path: "/hooks/ccp-7f3a".into(),
        max_body_bytes: 512,
        ..WebhookSettings::default()
    };
    let listener = Listener::start(APP_ID, SECRET, ApiGeneration::V2, settings).await;
    assert!(listener.url.ends_with("/hooks/ccp-7f3a"));
    assert_eq!(post_v2(&listener.url, SECRET, V2_BODY).await.0, 200);
    let default_path = format!("{}/ccpayment/webhook", listener.base);
    assert_eq!(post_v2(&default_path, SECRET, V2_BODY).await.0, 404);
    // 600 bytes, correctly signed: still too large for this listener.
    let padded = format!("{}{}", V2_BODY, " ".repeat(600 - V2_BODY.len()));
    assert_eq!(post_v2(&listener.url, SECRET, &padded).await.0, 413);
    assert_eq!(listener.hints().len(), 1);
    listener.stop().await;
}

fn sandbox_with_webhooks(url: &str) -> SandboxConfig {
    SandboxConfig {
        webhook_url: Some(url.to_owned()),
        webhook_time_scale: 0.001,
        ..SandboxConfig::default()
    }
}

/// Waits (bounded) until the sandbox recorded an accepted delivery of `status` for `record_id`.
async fn wait_for_delivery(api: &TestApi, record_id: &str, status: RecordStatus) {
    for _ in 0..100 {
        let deliveries = api.sandbox.webhook_deliveries();
        if deliveries
            .iter()
            .any(|d| d.record_id == record_id && d.status == status && d.accepted)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no accepted {status:?} delivery for {record_id}: {:?}",
        api.sandbox.webhook_deliveries()
    );
}

#[tokio::test]
async fn sandbox_v2_webhooks_are_accepted_end_to_end() {
    let listener = Listener::start(
        DEMO_APP_ID,
        DEMO_APP_SECRET,
        ApiGeneration::V2,
        WebhookSettings::default(),
    )
    .await;
    let api = TestApi::start(sandbox_with_webhooks(&listener.url)).await;

    let receipt = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("hook-e2e-1", "10"))
        .await
        .unwrap();
    // The Processing notice comes on creation.
    let processing = listener
        .wait_for_hint(|h| h.order_id.as_deref() == Some("hook-e2e-1") && h.status.as_deref() == Some("Processing"))
        .await;
    assert_eq!(processing.record_id.as_deref(), Some(receipt.record_id.as_str()));

    api.settle(Duration::from_secs(3));
    let success = listener
        .wait_for_hint(|h| h.order_id.as_deref() == Some("hook-e2e-1") && h.status.as_deref() == Some("Success"))
        .await;
    assert_eq!(success.record_id.as_deref(), Some(receipt.record_id.as_str()));
    assert_eq!(success.kind, "ApiWithdrawal");

    wait_for_delivery(&api, &receipt.record_id, RecordStatus::Processing).await;
    wait_for_delivery(&api, &receipt.record_id, RecordStatus::Success).await;
    // Both accepted at the first attempt: no retries, no refusals.
    let deliveries = api.sandbox.webhook_deliveries();
    assert!(
        deliveries
            .iter()
            .all(|d| d.accepted && d.attempt == 0 && d.http_status == Some(200)),
        "{deliveries:?}"
    );
    assert_eq!(listener.hints().len(), 2);
    let stats = listener.stats();
    assert_eq!(stats["accepted"], 2);
    assert_eq!(
        stats
            .iter()
            .filter(|(k, _)| k.starts_with("refused"))
            .map(|(_, v)| v)
            .sum::<u64>(),
        0
    );

    api.sandbox.shutdown().await;
    listener.stop().await;
}

#[tokio::test]
async fn sandbox_v1_webhooks_are_accepted_by_a_v1_listener() {
    let listener = Listener::start(
        DEMO_APP_ID,
        DEMO_APP_SECRET,
        ApiGeneration::V1,
        WebhookSettings::default(),
    )
    .await;
    let api = TestApi::start(sandbox_with_webhooks(&listener.url)).await;
    let token_id = api
        .sandbox
        .v1_token_id("USDT", "TRX")
        .expect("USDT on TRX has a v1 token id");
    let receipt = api
        .client
        .v1_withdraw(&V1WithdrawRequest {
            merchant_order_id: "hook-v1-1".into(),
            address: TRON_ADDRESS.into(),
            token_id,
            value: "5".into(),
            memo: None,
            merchant_pays_fee: Some(false),
        })
        .await
        .unwrap();

    api.settle(Duration::from_secs(3));
    let hint = listener
        .wait_for_hint(|h| h.order_id.as_deref() == Some("hook-v1-1"))
        .await;
    assert_eq!(hint.record_id.as_deref(), Some(receipt.record_id.as_str()));
    assert_eq!(hint.status.as_deref(), Some("Success"));
    wait_for_delivery(&api, &receipt.record_id, RecordStatus::Success).await;
    assert_eq!(listener.hints().len(), 1, "v1 sends only the final notice");

    api.sandbox.shutdown().await;
    listener.stop().await;
}

#[tokio::test]
async fn a_listener_for_another_account_makes_the_sandbox_retry() {
    // Wrong secret: every delivery is refused with 401, so the sandbox retries on its (scaled)
    // schedule, and no hint ever reaches the engine.
    let listener = Listener::start(
        DEMO_APP_ID,
        "wrong-secret",
        ApiGeneration::V2,
        WebhookSettings::default(),
    )
    .await;
    let api = TestApi::start(sandbox_with_webhooks(&listener.url)).await;
    let receipt = api
        .client
        .apply_app_withdraw_to_network(&trx_withdraw("hook-bad-1", "10"))
        .await
        .unwrap();
    let mut attempts = Vec::new();
    for _ in 0..100 {
        attempts = api
            .sandbox
            .webhook_deliveries()
            .into_iter()
            .filter(|d| d.record_id == receipt.record_id)
            .collect();
        if attempts.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(attempts.len() >= 2, "retried: {attempts:?}");
    assert!(
        attempts.iter().all(|d| !d.accepted && d.http_status == Some(401)),
        "{attempts:?}"
    );
    assert!(listener.hints().is_empty());
    assert!(listener.stats()["refused_signature"] >= 2);

    api.sandbox.shutdown().await;
    listener.stop().await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_while_reading() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // No Content-Length: the limit must hold while the body is read.
    let listener = Listener::v2().await;
    let addr = listener.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let ts = now_secs();
    let head = format!(
        "POST /ccpayment/webhook HTTP/1.1\r\nHost: {addr}\r\nAppid: {APP_ID}\r\nTimestamp: {ts}\r\n\
         Sign: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        "0".repeat(64)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
    // 8 × 16 KiB = 128 KiB against a 64 KiB limit. The server may stop reading (and close) once
    // it has answered, so write errors are expected and ignored.
    for _ in 0..8 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(listener.hints().is_empty());
    assert_eq!(listener.stats()["refused_too_large"], 1);
    assert_eq!(listener.stats()["refused_signature"], 0, "refused before the signature");
    listener.stop().await;
}
