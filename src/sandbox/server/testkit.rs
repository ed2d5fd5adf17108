//! What the server's tests share: a sandbox on a manual clock with an HTTP client, signed
//! requests, and the state-file helpers.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::Value;

use super::Sandbox;
use crate::api::sign::sign_v2;
use crate::api::types::method;
use crate::sandbox::{DEMO_APP_ID, DEMO_APP_SECRET, SandboxConfig};
use crate::util::clock::{Clock, ManualClock};

/// 2023-11-14T22:13:20Z, where the manual clock starts.
pub(super) const T0: i64 = 1_700_000_000_000;
/// A valid TRX payee address.
pub(super) const TRX_ADDR: &str = "TPSFu3gV4D7SwHS3HkXs3S8QZauZpyQtWH";

/// A running sandbox, its manual clock and an HTTP client without proxies.
pub(super) struct Harness {
    pub(super) sandbox: Sandbox,
    pub(super) clock: Arc<ManualClock>,
    pub(super) http: reqwest::Client,
}

/// A sandbox with this configuration, its clock at [`T0`].
pub(super) async fn harness(config: SandboxConfig) -> Harness {
    harness_at(config, ManualClock::new(T0)).await
}

/// A sandbox with this configuration on this clock.
pub(super) async fn harness_at(config: SandboxConfig, clock: Arc<ManualClock>) -> Harness {
    crate::api::ensure_crypto_provider();
    let sandbox = Sandbox::start(config, clock.clone()).await.expect("sandbox starts");
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    Harness { sandbox, clock, http }
}

/// The demo app secret, to sign requests with.
pub(super) fn secret() -> SecretString {
    SecretString::from(DEMO_APP_SECRET)
}

impl Harness {
    /// The URL of `path` on the sandbox.
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    /// POSTs `body` with the given header values (None leaves a header out).
    pub(super) async fn post_raw(
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

    /// POSTs `body` to a v2 method, signed now with the demo account.
    pub(super) async fn post_v2(&self, method: &str, body: &str) -> reqwest::Result<reqwest::Response> {
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

    /// [`Harness::post_v2`], expecting HTTP 200 and a JSON reply.
    pub(super) async fn call_v2(&self, method: &str, body: &str) -> Value {
        let response = self.post_v2(method, body).await.expect("reply");
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }
}

/// The body of a 5 USDT TRX withdrawal.
pub(super) fn withdraw_body(order: &str, address: &str) -> String {
    format!(r#"{{"orderId":"{order}","coinId":1280,"chain":"TRX","address":"{address}","amount":"5"}}"#)
}

/// Sends a create and reads the whole body: the outcome the client sees.
pub(super) async fn create_outcome(h: &Harness, order: &str) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let response = h
        .post_v2(method::APPLY_APP_WITHDRAW_TO_NETWORK, &withdraw_body(order, TRX_ADDR))
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.bytes().await?.to_vec()))
}

/// A configuration that keeps its state in `path`.
pub(super) fn persisted(path: &std::path::Path) -> SandboxConfig {
    SandboxConfig {
        persist_path: Some(path.to_owned()),
        // The PRNG decides some outcomes, so its continuation across a restart is tested too.
        fail_rate: 0.5,
        seed: 11,
        ..SandboxConfig::default()
    }
}

/// The snapshot in the state file, which must exist and read.
pub(super) fn on_file(path: &std::path::Path) -> crate::sandbox::persist::Snapshot {
    crate::sandbox::persist::load(path)
        .expect("the state file reads")
        .expect("the state file exists")
}
