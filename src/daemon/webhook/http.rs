//! The listener over HTTP: the one route, the replies CCPayment expects, passing new withdrawal
//! hints on, and serving with a graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use super::WebhookSettings;
use super::counters::Counter;
use super::dedup::{DEDUP_CAPACITY, DEDUP_TTL, Dedup};
use super::verify::{Hint, Refusal, Verifier};

/// How long [`serve`] waits for open connections after cancellation before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

type OnHint = Arc<dyn Fn(Hint) + Send + Sync>;

/// The handler's state: what every request needs, shared by all of them.
struct Receiver {
    verifier: Arc<Verifier>,
    on_hint: OnHint,
    path: String,
    max_body_bytes: usize,
    dedup: Mutex<Dedup>,
}

/// The listener's routes: `POST settings.path` verifies a webhook and, for a new withdrawal
/// notice, calls `on_hint` (synchronously, so it should only queue the hint); every other path
/// answers 404 and other methods 405. Serve it with [`serve`], which supplies the remote address
/// for log lines.
pub fn router(verifier: Arc<Verifier>, settings: &WebhookSettings, on_hint: Arc<dyn Fn(Hint) + Send + Sync>) -> Router {
    let receiver = Arc::new(Receiver {
        verifier,
        on_hint,
        path: settings.path.clone(),
        max_body_bytes: settings.max_body_bytes,
        dedup: Mutex::new(Dedup::new(DEDUP_CAPACITY, DEDUP_TTL)),
    });
    // One fallback handler matching the path itself: a configured path is compared exactly and
    // can never make the router panic the way an invalid route pattern would.
    Router::new()
        .fallback(receive)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .with_state(receiver)
}

/// Serves `router` on `listener` until `cancel` fires, then stops accepting, lets open requests
/// finish for up to [`SHUTDOWN_GRACE`] and returns.
///
/// # Errors
///
/// The server failed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(cancel.clone().cancelled_owned());
    tokio::select! {
        result = std::future::IntoFuture::into_future(server) => result,
        () = async {
            cancel.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("webhook listener: connections still open after the grace period, dropped");
            Ok(())
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT_PLAIN)], text).into_response()
}

fn refused(status: StatusCode, refusal: &Refusal) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT_PLAIN)], refusal.to_string()).into_response()
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

async fn receive(State(rx): State<Arc<Receiver>>, request: Request) -> Response {
    if request.uri().path() != rx.path {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    if request.method() != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string());
    let headers = request.headers().clone();
    // Like `fingerprint`, but by characters, so even a garbage header is never logged whole.
    let sign_fp = headers
        .get("Sign")
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(8)
                .collect::<String>()
        })
        .unwrap_or_default();

    // Size first: from the declared length before reading, then by the body limit while reading.
    let limit = u64::try_from(rx.max_body_bytes).unwrap_or(u64::MAX);
    let too_large = declared_length(&headers).is_some_and(|n| n > limit);
    let body = if too_large {
        None
    } else {
        match Bytes::from_request(request, &()).await {
            Ok(body) => Some(body),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => None,
            Err(rejection) => {
                tracing::warn!(%remote, error = %rejection, "webhook refused: body could not be read");
                return plain(StatusCode::BAD_REQUEST, "body could not be read");
            }
        }
    };
    let Some(body) = body else {
        rx.verifier.stats.count(Counter::RefusedTooLarge);
        let refusal = Refusal::TooLarge;
        tracing::warn!(%remote, reason = %refusal, limit = rx.max_body_bytes, "webhook refused");
        return refused(refusal.http_status(), &refusal);
    };

    match rx.verifier.verify(&headers, &body) {
        Ok(hint) if hint.is_withdrawal() => {
            pass_on(&rx, hint);
            plain(StatusCode::OK, "success")
        }
        Ok(hint) => {
            tracing::debug!(%remote, kind = ?hint.kind, "webhook verified and ignored: not a withdrawal");
            plain(StatusCode::OK, "success")
        }
        Err(refusal) if refusal.is_verified() => {
            tracing::warn!(%remote, reason = %refusal, "webhook verified but not readable; acknowledged and ignored");
            plain(StatusCode::OK, "success")
        }
        Err(refusal) => {
            tracing::warn!(%remote, reason = %refusal, sign = ?sign_fp, "webhook refused");
            refused(refusal.http_status(), &refusal)
        }
    }
}

/// Calls the hint callback unless the same (record, status) was passed on recently.
fn pass_on(rx: &Receiver, hint: Hint) {
    let id = hint
        .record_id
        .clone()
        .or_else(|| hint.order_id.clone())
        .unwrap_or_default();
    let key = (id, hint.status.clone().unwrap_or_default());
    let now_ms = rx.verifier.clock.now_ms();
    let first = rx
        .dedup
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .first_sighting(key, now_ms);
    if !first {
        rx.verifier.stats.count(Counter::Duplicate);
        tracing::debug!(order_id = ?hint.order_id, record_id = ?hint.record_id, status = ?hint.status,
            "webhook repeated; acknowledged, hint already passed on");
        return;
    }
    tracing::debug!(order_id = ?hint.order_id, record_id = ?hint.record_id, status = ?hint.status, "webhook hint");
    (rx.on_hint)(hint);
}
