//! How a handled request reaches the client: the JSON reply (v1 success replies signed over
//! the exact bytes, as CCPayment signs them), held back by a slow fault, a dropped connection,
//! or a gateway's HTTP 502; and the plain-text 404 of unknown paths.

use std::io;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::shared::Shared;
use crate::api::sign::sign_v1;
use crate::sandbox::world::{Handled, Route, Transport};

/// The body of the simulated gateway error, as a reverse proxy in front of an API writes it.
const BAD_GATEWAY_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\
<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// Delivers what the world decided: the reply now, or after a delay (a slow fault), or a
/// dropped connection, or an HTTP 502 as a gateway in front of the API would send it.
pub(super) async fn deliver(shared: &Shared, route: Route, handled: Handled) -> Response {
    match handled.transport {
        Transport::Reply => api_response(shared, route, handled),
        Transport::Slow(delay) => {
            tokio::time::sleep(delay).await;
            api_response(shared, route, handled)
        }
        Transport::Drop => dropped_connection(),
        Transport::NotFound => not_found().await,
        Transport::BadGateway => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            BAD_GATEWAY_HTML,
        )
            .into_response(),
    }
}

/// A JSON body, sent as it is.
pub(super) fn json_response(bytes: Vec<u8>) -> Response {
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

/// The plain-text 404 of the Go router CCPayment runs behind: unknown v2 methods and any other
/// path.
pub(super) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    use crate::api::sign::{sign_v2, verify_v1};
    use crate::sandbox::server::testkit::*;
    use crate::sandbox::{DEMO_APP_ID, Faults, SandboxConfig};
    use crate::util::clock::Clock;

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
}
