//! The sandbox's webhook sender: signs each webhook the [`World`](super::world::World) produced
//! and POSTs it, retrying on CCPayment's documented schedule (30 s, 90 s, 210 s, 450 s, 930 s,
//! 1890 s after the first attempt), scaled by [`SandboxConfig::webhook_time_scale`] so tests
//! can run the whole schedule in milliseconds.
//!
//! Every attempt is recorded as a [`WebhookDelivery`]. A delivery failure never touches the API
//! state: webhooks are hints, the records are the truth. Each webhook is its own task, stopped
//! by the sandbox's cancellation token. Retries carry a fresh timestamp and signature, or under
//! the `old-webhook-timestamps` reading (R11, [`RetrySignature::Original`]) the first attempt's.
//!
//! [`SandboxConfig::webhook_time_scale`]: super::SandboxConfig::webhook_time_scale

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::WebhookDelivery;
use super::world::{WebhookJob, WebhookScheme};
use crate::api::sign::{sign_v1, sign_v2};
use crate::util::clock::SharedClock;

/// The documented intervals between the first attempt and each of the 6 retries.
pub const RETRY_INTERVALS: [Duration; 6] = [
    Duration::from_secs(30),
    Duration::from_secs(90),
    Duration::from_secs(210),
    Duration::from_secs(450),
    Duration::from_secs(930),
    Duration::from_secs(1890),
];

/// What timestamp and signature a webhook retry carries: CCPayment does not say (R11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RetrySignature {
    /// The time of the retry, and a signature made with it.
    #[default]
    Fresh,
    /// The first attempt's timestamp and signature, however long ago that was.
    Original,
}

/// The `Timestamp` and `Sign` headers of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signed {
    timestamp: String,
    sign: String,
}

/// How long one delivery attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause before retry number `retry` (0-based), scaled. A non-finite or negative scale
/// counts as 0 (retry at once) rather than panicking in `Duration::mul_f64`.
pub fn retry_delay(retry: usize, time_scale: f64) -> Option<Duration> {
    let base = RETRY_INTERVALS.get(retry)?;
    let scale = if time_scale.is_finite() && time_scale > 0.0 {
        time_scale
    } else {
        0.0
    };
    Some(base.mul_f64(scale))
}

/// CCPayment counts a webhook as delivered on HTTP 200 with `success` in the body; the
/// documentation shows both `success` and `Success`, so the match ignores case.
pub fn is_accepted(http_status: u16, body: &[u8]) -> bool {
    http_status == 200 && String::from_utf8_lossy(body).to_ascii_lowercase().contains("success")
}

struct Inner {
    client: reqwest::Client,
    app_id: String,
    secret: SecretString,
    clock: SharedClock,
    time_scale: f64,
    retry_signature: RetrySignature,
    deliveries: Mutex<Vec<WebhookDelivery>>,
    cancel: CancellationToken,
}

/// Sends webhooks in background tasks. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSender {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of debug output.
        f.debug_struct("WebhookSender")
            .field("app_id", &self.inner.app_id)
            .field("time_scale", &self.inner.time_scale)
            .finish_non_exhaustive()
    }
}

impl WebhookSender {
    /// A sender signing with these credentials; its tasks stop when `cancel` fires.
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built.
    pub fn new(
        app_id: String,
        secret: SecretString,
        clock: SharedClock,
        time_scale: f64,
        retry_signature: RetrySignature,
        cancel: CancellationToken,
    ) -> Result<WebhookSender, reqwest::Error> {
        crate::api::ensure_crypto_provider();
        // No proxy: sandbox webhooks go to local receivers, and an HTTP_PROXY in the
        // environment must not swallow them.
        let client = reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).no_proxy().build()?;
        Ok(WebhookSender {
            inner: Arc::new(Inner {
                client,
                app_id,
                secret,
                clock,
                time_scale,
                retry_signature,
                deliveries: Mutex::new(Vec::new()),
                cancel,
            }),
        })
    }

    /// Starts delivering `job` in its own task. Must be called inside a tokio runtime.
    pub fn dispatch(&self, job: WebhookJob) {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move { deliver(inner, job).await });
    }

    /// Every attempt so far, in the order they finished.
    pub fn deliveries(&self) -> Vec<WebhookDelivery> {
        self.inner
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn deliver(inner: Arc<Inner>, job: WebhookJob) {
    let mut first: Option<Signed> = None;
    for attempt in 0..=RETRY_INTERVALS.len() {
        let signed = match (&first, inner.retry_signature) {
            (Some(first), RetrySignature::Original) => first.clone(),
            _ => sign(&inner, &job, inner.clock.now_secs()),
        };
        if first.is_none() {
            first = Some(signed.clone());
        }
        let (http_status, accepted) = tokio::select! {
            _ = inner.cancel.cancelled() => return,
            outcome = attempt_once(&inner, &job, &signed) => outcome,
        };
        let delivery = WebhookDelivery {
            record_id: job.record_id.clone(),
            order_id: job.order_id.clone(),
            status: job.status.clone(),
            url: job.url.clone(),
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            at_ms: inner.clock.now_ms(),
            http_status,
            accepted,
        };
        tracing::debug!(
            record_id = %job.record_id,
            order_id = %job.order_id,
            status = %job.status,
            attempt,
            http_status,
            accepted,
            "sandbox webhook attempt"
        );
        inner
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(delivery);
        if accepted {
            return;
        }
        let Some(delay) = retry_delay(attempt, inner.time_scale) else {
            tracing::info!(record_id = %job.record_id, "sandbox webhook given up after 6 retries");
            return;
        };
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The headers of a webhook signed at `now_secs`, with the scheme's signature.
fn sign(inner: &Inner, job: &WebhookJob, now_secs: i64) -> Signed {
    let timestamp = now_secs.to_string();
    let sign = match job.scheme {
        WebhookScheme::V2 => sign_v2(&inner.app_id, &inner.secret, &timestamp, &job.body),
        WebhookScheme::V1 => sign_v1(&inner.app_id, &inner.secret, &timestamp, &job.body),
    };
    Signed { timestamp, sign }
}

/// One signed POST; (HTTP status, accepted).
async fn attempt_once(inner: &Inner, job: &WebhookJob, signed: &Signed) -> (Option<u16>, bool) {
    let sent = inner
        .client
        .post(&job.url)
        .header("Appid", &inner.app_id)
        .header("Timestamp", &signed.timestamp)
        .header("Sign", &signed.sign)
        .header("Content-Type", "application/json")
        .body(job.body.clone())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(url = %job.url, error = %e, "sandbox webhook not delivered");
            return (None, false);
        }
    };
    let status = response.status().as_u16();
    match response.bytes().await {
        Ok(body) => (Some(status), is_accepted(status, &body)),
        Err(_) => (Some(status), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_is_the_documented_one_scaled() {
        let secs: Vec<u64> = (0..6).map(|i| retry_delay(i, 1.0).map_or(0, |d| d.as_secs())).collect();
        assert_eq!(secs, [30, 90, 210, 450, 930, 1890]);
        assert_eq!(retry_delay(0, 0.001), Some(Duration::from_millis(30)));
        assert_eq!(retry_delay(6, 1.0), None);
        assert_eq!(retry_delay(1, f64::NAN), Some(Duration::ZERO));
        assert_eq!(retry_delay(1, -2.0), Some(Duration::ZERO));
    }

    #[test]
    fn acceptance_needs_200_and_success_in_any_case() {
        assert!(is_accepted(200, b"success"));
        assert!(is_accepted(200, b"{\"msg\":\"Success\"}"));
        assert!(is_accepted(200, b"SUCCESS"));
        assert!(!is_accepted(200, b"ok"));
        assert!(!is_accepted(201, b"success"));
        assert!(!is_accepted(500, b"success"));
    }
}
