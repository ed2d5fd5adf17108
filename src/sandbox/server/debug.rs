//! The `/sandbox/*` debug endpoints, unsigned: `GET /sandbox/ledger` (the
//! [`Ledger`](crate::sandbox::Ledger), after settling what is due), `GET /sandbox/stats` (the
//! [`SandboxStats`](crate::sandbox::SandboxStats)) and `GET /sandbox/health`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::reply::json_response;
use super::shared::Shared;

/// `GET /sandbox/ledger`: settles what is due (and saves it) first, so the view is current.
pub(super) async fn ledger(State(shared): State<Arc<Shared>>) -> Response {
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

/// `GET /sandbox/stats`.
pub(super) async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.stats();
    match serde_json::to_vec(&stats) {
        Ok(bytes) => json_response(bytes),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /sandbox/health`.
pub(super) async fn health() -> &'static str {
    "ok"
}

#[cfg(test)]
mod tests {
    use crate::api::types::method;
    use crate::sandbox::server::testkit::*;
    use crate::sandbox::{Ledger, SandboxConfig, SandboxStats};

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
}
