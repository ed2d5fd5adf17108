//! Authentication over the raw body bytes, in CCPayment's order: headers (11001), IP
//! whitelist (12002), app id (12001), timestamp window (11006), signature (11005). A request
//! that fails never reaches the world: it costs nothing, is not a create attempt and is not
//! counted in the statistics.

use std::net::IpAddr;

use axum::http::HeaderMap;

use super::shared::Shared;
use crate::api::sign::{fingerprint, verify_v1, verify_v2};
use crate::sandbox::world::Route;

/// The checks before a request may cost anything, in CCPayment's order. Everything is
/// verified over the raw body bytes exactly as received.
pub(super) fn authenticate(
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use crate::api::sign::sign_v2;
    use crate::api::types::method;
    use crate::sandbox::server::testkit::*;
    use crate::sandbox::{DEMO_APP_ID, SandboxConfig};
    use crate::util::clock::Clock;

    /// (name, Appid, Timestamp, Sign, body, expected code)
    type AuthCase<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str, i64);

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
        let empty_sign = sign_v2(DEMO_APP_ID, &secret(), &ts, b"");
        let cases: Vec<AuthCase> = vec![
            ("good", Some(DEMO_APP_ID), Some(&ts), Some(&good), body, 10000),
            // A parameter-less call with an empty body is signed over appId + timestamp alone.
            ("empty body", Some(DEMO_APP_ID), Some(&ts), Some(&empty_sign), "", 10000),
            (
                "signed {} sent empty",
                Some(DEMO_APP_ID),
                Some(&ts),
                Some(&good),
                "",
                11005,
            ),
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
}
