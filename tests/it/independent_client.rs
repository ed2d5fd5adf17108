//! A client written from the CCPayment documentation alone, sharing no code with ccpayout's
//! client, must be accepted by the sandbox: HMAC-SHA256 keyed with the app secret over
//! appId + timestamp + body, as lowercase hex in the `Sign` header.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::helpers::TestApi;

/// Posts `body` to `/ccpayment/v2/{method}` signed as the docs describe, and returns the reply's
/// `code`.
async fn doc_style_call(base: &str, app_id: &str, secret: &str, timestamp: u64, method: &str, body: &str) -> i64 {
    let timestamp = timestamp.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{app_id}{timestamp}{body}").as_bytes());
    let sign: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();

    ccpayout::api::ensure_crypto_provider();
    let reply = reqwest::Client::new()
        .post(format!("{base}/ccpayment/v2/{method}"))
        .header("Content-Type", "application/json")
        .header("Appid", app_id)
        .header("Sign", sign)
        .header("Timestamp", timestamp)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "errors come back as HTTP 200 with a code");
    let json: serde_json::Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    json["code"].as_i64().unwrap()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn a_client_written_from_the_docs_is_accepted() {
    // The sandbox here runs on a manual clock that started at the real time, so real timestamps
    // are inside its window.
    let api = TestApi::demo().await;
    let base = api.sandbox.base_url();
    let (app_id, secret) = ("ccpayout-sandbox-app", "ccpayout-sandbox-secret");

    // Formatted JSON, an empty body and a compact body all verify: the sandbox checks the exact
    // bytes received.
    let pretty = "{\n  \"coinId\": 1280,\n  \"chain\": \"POLYGON\"\n}";
    assert_eq!(
        doc_style_call(&base, app_id, secret, now_secs(), "getWithdrawFee", pretty).await,
        10000
    );
    assert_eq!(
        doc_style_call(&base, app_id, secret, now_secs(), "getCoinList", "").await,
        10000
    );
    assert_eq!(
        doc_style_call(&base, app_id, secret, now_secs(), "getCoinList", "{}").await,
        10000
    );
    let withdraw = r#"{"coinId":1280,"chain":"POLYGON","address":"0xBb9C4e7F3687aca1AE2828c18f9E3ae067F569FE","orderId":"payout-0001","amount":"0.001"}"#;
    // 0.001 is below the POLYGON minimum of the demo catalogue: a signed, verified request that
    // the business rules refuse.
    assert_eq!(
        doc_style_call(&base, app_id, secret, now_secs(), "applyAppWithdrawToNetwork", withdraw).await,
        14005
    );
}

#[tokio::test]
async fn a_bad_signature_gets_11005_and_an_old_timestamp_11006() {
    let api = TestApi::demo().await;
    let base = api.sandbox.base_url();
    let app_id = "ccpayout-sandbox-app";
    assert_eq!(
        doc_style_call(&base, app_id, "wrong-secret", now_secs(), "getCoinList", "{}").await,
        11005
    );
    assert_eq!(
        doc_style_call(
            &base,
            app_id,
            "ccpayout-sandbox-secret",
            now_secs() - 600,
            "getCoinList",
            "{}"
        )
        .await,
        11006
    );
    // A timestamp in milliseconds (13 digits) is a malformed header.
    assert_eq!(
        doc_style_call(
            &base,
            app_id,
            "ccpayout-sandbox-secret",
            now_secs() * 1000,
            "getCoinList",
            "{}"
        )
        .await,
        11001
    );
}
