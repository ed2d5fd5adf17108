//! The client of the CCPayment API: builds, paces, signs and sends requests, and turns replies
//! into typed data or a [`CallError`].
//!
//! Every attempt passes the client's [`Pacing`] (when it has one: every client the product
//! builds does) and is then signed afresh, with the timestamp of the moment it leaves, over the
//! exact bytes it sends; nothing here retries, because only the engine knows whether a retry is
//! safe (it owns the orderId and the state). The bytes travel through a [`Transport`]: HTTP with
//! one pooled `reqwest::Client` ([`HttpTransport`]), or the sandbox's world in the same process
//! (`crate::sandbox::direct`, for the deterministic simulation).
//!
//! # Request statistics
//!
//! The client counts every request it sends, once, by endpoint label and outcome
//! ([`Client::request_stats`]), for the daemon's metrics. The outcome is
//!
//! - the `code` of the reply's CCPayment envelope (`"10000"`, `"11004"` …) when the reply is
//!   one, whatever the HTTP status;
//! - `http_<status>` when the reply is not a CCPayment envelope (a gateway's HTML error page,
//!   or a body that is not the envelope even with HTTP 200);
//! - [`OUTCOME_TRANSPORT`] when no reply came: the connection failed, the request or the reply
//!   timed out or was cut off, or the caller dropped the call while it was in flight.
//!
//! A request is counted where its outcome becomes known: in [`Client::call`] (and so in every
//! typed method) from the envelope it decodes anyway, and in [`Client::send_raw`], which reads
//! the envelope for the count because nothing else there does. [`Client::interpret`] does not
//! count, so `send_raw` followed by `interpret` is one request, as it is on the wire. Requests
//! that never left (the body or a header could not be built) are not counted, here or in
//! [`Client::request_counts`]; once nothing is in flight, the outcomes of an endpoint add up to
//! its `request_counts`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::SecretString;
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::codes::SUCCESS;
use super::error::{ApiError, CallError};
use super::pacing::Pacing;
use super::pacing::limiter::CallKind;
use super::sign;
use super::types::*;
use crate::util::clock::SharedClock;

/// The default v2 base URL.
pub const DEFAULT_V2_BASE_URL: &str = "https://ccpayment.com";
/// The default v1 base URL.
pub const DEFAULT_V1_BASE_URL: &str = "https://admin.ccpayment.com";

/// Which API generation an endpoint belongs to; they sign differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `/ccpayment/v2/<method>`, HMAC-SHA256, unsigned replies.
    V2,
    /// `/ccpayment/v1/<path>`, SHA-256 with the secret inside, signed success replies.
    V1,
}

/// An endpoint: the version and the method or path after `/ccpayment/vN/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint<'a> {
    pub version: ApiVersion,
    pub name: &'a str,
}

impl<'a> Endpoint<'a> {
    /// A v2 method.
    pub fn v2(name: &'a str) -> Self {
        Endpoint {
            version: ApiVersion::V2,
            name,
        }
    }

    /// A v1 path (`withdraw`, `bill/info`, `coin/all` …).
    pub fn v1(name: &'a str) -> Self {
        Endpoint {
            version: ApiVersion::V1,
            name,
        }
    }

    /// Whether this call creates a withdrawal (it takes the pacing's turn for creates).
    pub fn creates_payout(&self) -> bool {
        match self.version {
            ApiVersion::V2 => method::creates_payout(self.name),
            ApiVersion::V1 => self.name == method::V1_WITHDRAW,
        }
    }

    /// The label used in errors and logs: `getCoinList`, `v1/withdraw`.
    pub fn label(&self) -> String {
        match self.version {
            ApiVersion::V2 => self.name.to_owned(),
            ApiVersion::V1 => format!("v1/{}", self.name),
        }
    }
}

/// Everything the client needs to know. Built from the configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `scheme://host[:port]` of the v2 API.
    pub v2_base_url: String,
    /// `scheme://host[:port]` of the v1 API.
    pub v1_base_url: String,
    pub app_id: String,
    pub app_secret: SecretString,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, connection to last byte of the reply.
    pub request_timeout: Duration,
}

/// A reply as it came off the wire, before interpretation. Used by `ccpayout api`.
#[derive(Debug, Clone)]
pub struct RawReply {
    pub http_status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The outcome of a request that got no reply (see "Request statistics" in the module
/// documentation).
pub const OUTCOME_TRANSPORT: &str = "transport";

/// What the client has counted so far (by itself and its clones). See "Request statistics" in
/// the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestStats {
    /// Requests by (endpoint label, outcome): `("getCoinList", "10000")`,
    /// `("v1/withdraw", "11004")`, `("getCoin", "http_502")`, `("getCoin", "transport")`.
    pub by_endpoint_and_code: BTreeMap<(String, String), u64>,
    /// When (Unix ms, by the client's clock) the last success reply (code 10000) arrived.
    /// Only a success the client accepts counts: HTTP 200, a valid reply signature on v1, and
    /// (for a typed call) data of the expected shape; `None` until the first.
    pub last_success_ms: Option<i64>,
    /// Round trips of the replies received, by upper bound in seconds ([`LATENCY_BOUNDS_SECS`]),
    /// not cumulative; the last count is above the last bound.
    pub latency_buckets: Vec<u64>,
    /// The sum of those round trips, in milliseconds.
    pub latency_sum_ms: u64,
    /// Requests sent whose outcome is not known yet.
    pub in_flight: u64,
}

impl Default for RequestStats {
    /// What a client that has sent nothing reports: every bucket present and empty.
    fn default() -> RequestStats {
        RequestStats {
            by_endpoint_and_code: BTreeMap::new(),
            last_success_ms: None,
            latency_buckets: vec![0; LATENCY_BOUNDS_SECS.len() + 1],
            latency_sum_ms: 0,
            in_flight: 0,
        }
    }
}

/// The upper bounds of the round-trip histogram, in seconds.
pub const LATENCY_BOUNDS_SECS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The counters behind [`Client::request_counts`] and [`Client::request_stats`].
#[derive(Debug, Default)]
struct Counters {
    /// Requests sent, by endpoint label: counted as they go out.
    sent: BTreeMap<String, u64>,
    /// Requests by (endpoint label, outcome): counted when the outcome is known.
    outcomes: BTreeMap<(String, String), u64>,
    last_success_ms: Option<i64>,
    /// See [`RequestStats::latency_buckets`]: one more than the bounds.
    latency_buckets: [u64; LATENCY_BOUNDS_SECS.len() + 1],
    latency_sum_ms: u64,
    in_flight: u64,
}

impl Counters {
    fn observe_latency(&mut self, elapsed_ms: i64) {
        let ms = elapsed_ms.max(0) as u64;
        let secs = ms as f64 / 1000.0;
        let bucket = LATENCY_BOUNDS_SECS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BOUNDS_SECS.len());
        self.latency_buckets[bucket] += 1;
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(ms);
    }
}

type SharedCounters = Arc<Mutex<Counters>>;

fn lock_counters(counters: &Mutex<Counters>) -> MutexGuard<'_, Counters> {
    // Counters are consistent after every statement; a panic elsewhere must not stop counting.
    counters.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One request between going out and its outcome being known. Dropped unfinished (a transport
/// error returned with `?`, or the caller's future dropped mid-flight) it counts as
/// [`OUTCOME_TRANSPORT`], so every request sent is counted exactly once.
struct InFlight {
    counters: SharedCounters,
    clock: SharedClock,
    label: String,
    finished: bool,
}

impl InFlight {
    /// Counts the request under `outcome`; `success` records the time as the last success.
    fn finish(mut self, outcome: String, success: bool) {
        self.finished = true;
        self.record(outcome, success);
    }

    fn record(&self, outcome: String, success: bool) {
        let now_ms = success.then(|| self.clock.now_ms());
        let mut counters = lock_counters(&self.counters);
        counters.in_flight = counters.in_flight.saturating_sub(1);
        *counters.outcomes.entry((self.label.clone(), outcome)).or_insert(0) += 1;
        if now_ms.is_some() {
            counters.last_success_ms = now_ms;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.record(OUTCOME_TRANSPORT.to_owned(), false);
        }
    }
}

/// The outcome label of a reply: its envelope's code, else `http_<status>`.
/// A request's JSON body; a request that cannot be encoded is never sent.
fn encode<Req: Serialize + ?Sized>(endpoint: Endpoint<'_>, request: &Req) -> Result<Vec<u8>, CallError> {
    serde_json::to_vec(request).map_err(|e| CallError::NotSent {
        endpoint: endpoint.label(),
        detail: format!("cannot encode the request: {e}"),
    })
}

fn outcome_label(code: Option<i64>, http_status: u16) -> String {
    match code {
        Some(code) => code.to_string(),
        None => format!("http_{http_status}"),
    }
}

/// The body of a call that takes no parameters (`getCoinList`, `getAppCoinAssetList`,
/// `getFiatList`, `getSwapCoinList`). CCPayment's own examples send an empty body, signed over
/// `appId + timestamp` with nothing after it, and its Go SDK posts nothing; one generated example
/// sends `{}` (ccpayment-api.md §5, R5). The empty body is the default; `ccpayout doctor` finds
/// out which form the account accepts and the store remembers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoParams {
    /// No bytes at all.
    #[default]
    Empty,
    /// `{}`.
    Braces,
}

impl NoParams {
    /// The bytes sent (and signed).
    pub fn body(self) -> Vec<u8> {
        match self {
            NoParams::Empty => Vec::new(),
            NoParams::Braces => b"{}".to_vec(),
        }
    }
}

/// Where a signed request goes and its reply comes from.
///
/// The client hands over the URL, the signed headers and the exact body; the transport returns
/// the reply as it came, or a [`CallError`] that says whether the request may have been
/// processed (`Ambiguous`) or certainly was not (`NotSent`). It never retries.
pub trait Transport: Send + Sync + fmt::Debug {
    fn post<'a>(
        &'a self,
        endpoint: Endpoint<'a>,
        url: String,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<RawReply, CallError>>;
}

/// The real transport: HTTPS with rustls, pooled connections, connect and total timeouts.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    http: reqwest::Client,
}

impl HttpTransport {
    /// A transport with `config`'s timeouts.
    pub fn new(config: &ClientConfig) -> anyhow::Result<HttpTransport> {
        super::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("ccpayout/", env!("CARGO_PKG_VERSION")))
            // Keep idle connections long enough to be reused between batched calls. HTTP/2 is
            // offered in the TLS handshake (ALPN, the `http2` feature) and used where the server
            // takes it; otherwise HTTP/1.1 with keep-alive, one connection per request in flight.
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(HttpTransport { http })
    }
}

impl Transport for HttpTransport {
    fn post<'a>(
        &'a self,
        endpoint: Endpoint<'a>,
        url: String,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<RawReply, CallError>> {
        Box::pin(async move {
            let label = endpoint.label();
            let response = self
                .http
                .post(url)
                .headers(headers)
                .body(body)
                .send()
                .await
                .map_err(|e| transport_error(&label, &e))?;
            let http_status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|e| CallError::Ambiguous {
                endpoint: label.clone(),
                detail: format!("reading the reply failed: {}", error_chain(&e)),
            })?;
            Ok(RawReply {
                http_status,
                headers,
                body,
            })
        })
    }
}

/// The CCPayment API client. Cheap to clone; clones share the transport (its connection pool),
/// the pacing and the request counts.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
    config: Arc<ClientConfig>,
    clock: SharedClock,
    counters: SharedCounters,
    pacing: Option<Arc<Pacing>>,
    /// The body of parameter-less calls.
    no_params: NoParams,
    /// Ends a wait at the pacing's gate (an 11009 pause can last hours); see [`Client::with_cancel`].
    cancel: Option<CancellationToken>,
}

impl Client {
    /// An HTTP client for `config`, taking timestamps from `clock`, without pacing (tests and
    /// diagnostics; the product paces every client with [`Client::paced`]).
    pub fn new(config: ClientConfig, clock: SharedClock) -> anyhow::Result<Client> {
        let transport = Arc::new(HttpTransport::new(&config)?);
        Ok(Client::with_transport(config, clock, transport))
    }

    /// A client that sends through `transport`.
    pub fn with_transport(config: ClientConfig, clock: SharedClock, transport: Arc<dyn Transport>) -> Client {
        Client {
            transport,
            config: Arc::new(config),
            clock,
            counters: Arc::default(),
            pacing: None,
            no_params: NoParams::Empty,
            cancel: None,
        }
    }

    /// This client with every request passing `pacing` first (see [`crate::api::pacing`]).
    /// Clones share it.
    pub fn paced(mut self, pacing: Arc<Pacing>) -> Client {
        self.pacing = Some(pacing);
        self
    }

    /// A clone whose waits at the pacing's gate end when `cancel` fires: the request is then
    /// not sent (`CallError::NotSent`). A request that has passed the gate is never abandoned
    /// by this: its answer decides what happened.
    pub fn with_cancel(&self, cancel: CancellationToken) -> Client {
        Client {
            cancel: Some(cancel),
            ..self.clone()
        }
    }

    /// The pacing every request of this client passes, if it has one.
    pub fn pacing(&self) -> Option<&Arc<Pacing>> {
        self.pacing.as_ref()
    }

    /// The app id requests are signed for.
    pub fn app_id(&self) -> &str {
        &self.config.app_id
    }

    /// The app secret, for verifying what CCPayment signs with it (webhooks). Never printed.
    pub fn app_secret(&self) -> &secrecy::SecretString {
        &self.config.app_secret
    }

    /// Requests sent so far (by this client and its clones), per endpoint label.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        lock_counters(&self.counters).sent.clone()
    }

    /// Requests answered so far (by this client and its clones), per endpoint label and
    /// outcome, and the time of the last success. See "Request statistics" in the module
    /// documentation.
    pub fn request_stats(&self) -> RequestStats {
        let counters = lock_counters(&self.counters);
        RequestStats {
            by_endpoint_and_code: counters.outcomes.clone(),
            last_success_ms: counters.last_success_ms,
            latency_buckets: counters.latency_buckets.to_vec(),
            latency_sum_ms: counters.latency_sum_ms,
            in_flight: counters.in_flight,
        }
    }

    /// The URL of an endpoint.
    pub fn url(&self, endpoint: Endpoint<'_>) -> String {
        let (base, version) = match endpoint.version {
            ApiVersion::V2 => (&self.config.v2_base_url, "v2"),
            ApiVersion::V1 => (&self.config.v1_base_url, "v1"),
        };
        format!("{}/ccpayment/{version}/{}", base.trim_end_matches('/'), endpoint.name)
    }

    /// Signs `body` with a fresh timestamp and sends it; returns the reply as received.
    /// Only transport failures are errors here. The envelope is read only to count the request
    /// by its outcome (see "Request statistics" in the module documentation).
    pub async fn send_raw(&self, endpoint: Endpoint<'_>, body: Vec<u8>) -> Result<RawReply, CallError> {
        let (reply, in_flight) = self.send(endpoint, body).await?;
        let (code, accepted) = self.interpret_envelope::<IgnoredAny>(endpoint, &reply);
        self.heard(endpoint, code);
        in_flight.finish(outcome_label(code, reply.http_status), accepted.is_ok());
        Ok(reply)
    }

    /// Paces, signs and sends; returns the reply and the request's [`InFlight`] count, which the
    /// caller finishes with the outcome. Transport errors drop it, which counts them.
    async fn send(&self, endpoint: Endpoint<'_>, body: Vec<u8>) -> Result<(RawReply, InFlight), CallError> {
        let label = endpoint.label();
        if let Some(pacing) = &self.pacing {
            let kind = if endpoint.creates_payout() {
                CallKind::Withdraw
            } else {
                CallKind::Read
            };
            pacing.admit(kind, self.cancel.as_ref(), &label).await?;
        }
        // Signed after the wait at the pacing: the timestamp is the moment the request leaves.
        let timestamp = self.clock.now_secs().to_string();
        let signature = match endpoint.version {
            ApiVersion::V2 => sign::sign_v2(&self.config.app_id, &self.config.app_secret, &timestamp, &body),
            ApiVersion::V1 => sign::sign_v1(&self.config.app_id, &self.config.app_secret, &timestamp, &body),
        };
        let not_sent = |detail: String| CallError::NotSent {
            endpoint: label.clone(),
            detail,
        };
        let headers = [
            ("Appid", self.config.app_id.as_str()),
            ("Timestamp", timestamp.as_str()),
            ("Sign", signature.as_str()),
        ];
        let mut header_map = HeaderMap::new();
        header_map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| not_sent(format!("the {name} header contains characters HTTP does not allow")))?;
            header_map.insert(name, value);
        }

        tracing::trace!(endpoint = %label, body = %String::from_utf8_lossy(&body), "sending");
        {
            let mut counters = lock_counters(&self.counters);
            *counters.sent.entry(label.clone()).or_insert(0) += 1;
            counters.in_flight += 1;
        }
        let in_flight = InFlight {
            counters: Arc::clone(&self.counters),
            clock: Arc::clone(&self.clock),
            label: label.clone(),
            finished: false,
        };
        let sent_ms = self.clock.now_ms();
        let reply = self
            .transport
            .post(endpoint, self.url(endpoint), header_map, body)
            .await;
        let reply = reply?;
        // The round trip, on the client's clock (so the simulation replays), sets how many
        // requests the pacing keeps in flight.
        let elapsed_ms = self.clock.now_ms() - sent_ms;
        lock_counters(&self.counters).observe_latency(elapsed_ms);
        if let Some(pacing) = &self.pacing {
            pacing.observe_latency(elapsed_ms);
        }
        tracing::debug!(
            endpoint = %label,
            http_status = reply.http_status,
            elapsed_ms,
            sign = sign::fingerprint(&signature),
            "reply received"
        );
        tracing::trace!(endpoint = %label, body = %String::from_utf8_lossy(&reply.body), "reply body");
        Ok((reply, in_flight))
    }

    /// Tells the pacing what CCPayment answered (`None`: no envelope came back), for every
    /// sender: 11004 slows everyone, 11009 closes the gate until the reset.
    fn heard(&self, endpoint: Endpoint<'_>, code: Option<i64>) {
        if let Some(pacing) = &self.pacing {
            pacing.on_answer(code);
            if endpoint.creates_payout() && code.is_some() {
                pacing.note_create_answered();
            }
        }
    }

    /// Sends a typed request and decodes the `data` of a successful reply.
    pub async fn call<Req, Resp>(&self, endpoint: Endpoint<'_>, request: &Req) -> Result<Resp, CallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call_body(endpoint, encode(endpoint, request)?).await
    }

    /// Calls a method that takes no parameters, with the body the client sends for those (an
    /// empty one unless told otherwise, see [`NoParams`]), signed over exactly those bytes.
    pub async fn call_no_params<Resp: DeserializeOwned>(&self, endpoint: Endpoint<'_>) -> Result<Resp, CallError> {
        self.call_body(endpoint, self.no_params.body()).await
    }

    /// [`Client::call`] for a method an account may not have: `Ok(None)` when the reply is an
    /// HTTP 404 without a CCPayment envelope, which is how the router CCPayment runs behind
    /// answers a method it does not know ([`Client::call`] reads that reply as ambiguous, as it
    /// does any reply that is not an envelope). Paced, signed and counted as any call.
    pub async fn call_if_routed<Req, Resp>(
        &self,
        endpoint: Endpoint<'_>,
        request: &Req,
    ) -> Result<Option<Resp>, CallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let (routed, result) = self.exchange(endpoint, encode(endpoint, request)?).await?;
        if !routed {
            return Ok(None);
        }
        result.map(Some)
    }

    /// Sends `body` and decodes the `data` of a successful reply.
    async fn call_body<Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        body: Vec<u8>,
    ) -> Result<Resp, CallError> {
        self.exchange(endpoint, body).await?.1
    }

    /// Sends `body`, tells the pacing and the statistics what came back, and decodes it. The
    /// flag is false for an HTTP 404 without a CCPayment envelope: the method is not routed.
    async fn exchange<Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        body: Vec<u8>,
    ) -> Result<(bool, Result<Resp, CallError>), CallError> {
        let (reply, in_flight) = self.send(endpoint, body).await?;
        let (code, result) = self.interpret_envelope(endpoint, &reply);
        self.heard(endpoint, code);
        in_flight.finish(outcome_label(code, reply.http_status), result.is_ok());
        let routed = code.is_some() || reply.http_status != 404;
        Ok((routed, result))
    }

    /// This client with parameter-less calls sent as `form` (what `ccpayout doctor` found the
    /// account accepts). Clones share it.
    pub fn sending_no_params_as(mut self, form: NoParams) -> Client {
        self.no_params = form;
        self
    }

    /// How this client sends parameter-less calls.
    pub fn no_params(&self) -> NoParams {
        self.no_params
    }

    /// Interprets a raw reply: the envelope's code, the v1 reply signature, then the data.
    /// Counts nothing: [`Client::send_raw`] counted the request already.
    pub fn interpret<Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        reply: &RawReply,
    ) -> Result<Resp, CallError> {
        self.interpret_envelope(endpoint, reply).1
    }

    /// [`Client::interpret`], also returning the envelope's code when the reply is an envelope:
    /// one parse serves the caller and the request statistics.
    fn interpret_envelope<Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        reply: &RawReply,
    ) -> (Option<i64>, Result<Resp, CallError>) {
        let label = endpoint.label();
        let ambiguous = |detail: String| CallError::Ambiguous {
            endpoint: label.clone(),
            detail,
        };
        let envelope: Envelope<serde_json::Value> = match serde_json::from_slice(&reply.body) {
            Ok(envelope) => envelope,
            Err(_) if reply.http_status != 200 => {
                return (
                    None,
                    Err(ambiguous(format!(
                        "HTTP {} without a CCPayment reply",
                        reply.http_status
                    ))),
                );
            }
            Err(e) => {
                return (
                    None,
                    Err(ambiguous(format!("the reply is not a CCPayment envelope: {e}"))),
                );
            }
        };
        (Some(envelope.code), self.decode_envelope(endpoint, reply, envelope))
    }

    /// The second half of [`Client::interpret`]: the code, the status, the v1 signature, the data.
    fn decode_envelope<Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        reply: &RawReply,
        envelope: Envelope<serde_json::Value>,
    ) -> Result<Resp, CallError> {
        let label = endpoint.label();
        let ambiguous = |detail: String| CallError::Ambiguous {
            endpoint: label.clone(),
            detail,
        };
        if envelope.code != SUCCESS {
            return Err(ApiError::new(label, envelope.code, envelope.msg).into());
        }
        if reply.http_status != 200 {
            // A success code with an HTTP error status is contradictory: trust neither.
            return Err(ambiguous(format!("HTTP {} with a success code", reply.http_status)));
        }
        if endpoint.version == ApiVersion::V1 {
            self.verify_v1_reply(reply).map_err(ambiguous)?;
        }
        // Endpoints without data (none today) decode from `null`.
        let data = envelope.data.unwrap_or(serde_json::Value::Null);
        serde_json::from_value(data).map_err(|e| ambiguous(format!("the reply data is not what {label} returns: {e}")))
    }

    /// v1 success replies are signed over the raw body with the v1 formula and the reply's own
    /// timestamp. A reply that does not verify is not trusted.
    fn verify_v1_reply(&self, reply: &RawReply) -> Result<(), String> {
        let header = |name: &str| reply.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let (sign, timestamp) = (header("Sign"), header("Timestamp"));
        if sign.is_empty() || timestamp.is_empty() {
            return Err("the v1 reply has no Sign or Timestamp header".into());
        }
        if !sign::verify_v1(
            &self.config.app_id,
            &self.config.app_secret,
            timestamp,
            &reply.body,
            sign,
        ) {
            return Err("the v1 reply signature does not verify".into());
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Typed v2 methods
    // -----------------------------------------------------------------------------------------

    /// Creates a withdrawal to a chain address.
    pub async fn apply_app_withdraw_to_network(
        &self,
        req: &NetworkWithdrawRequest,
    ) -> Result<WithdrawReceipt, CallError> {
        self.call(Endpoint::v2(method::APPLY_APP_WITHDRAW_TO_NETWORK), req)
            .await
    }

    /// Creates a transfer to a Cwallet account.
    pub async fn apply_app_withdraw_to_cwallet(
        &self,
        req: &CwalletWithdrawRequest,
    ) -> Result<WithdrawReceipt, CallError> {
        self.call(Endpoint::v2(method::APPLY_APP_WITHDRAW_TO_CWALLET), req)
            .await
    }

    /// One withdrawal record by recordId or orderId.
    pub async fn get_app_withdraw_record(&self, query: &WithdrawRecordQuery) -> Result<WithdrawRecord, CallError> {
        let data: WithdrawRecordData = self.call(Endpoint::v2(method::GET_APP_WITHDRAW_RECORD), query).await?;
        Ok(data.record)
    }

    /// One page of withdrawal records.
    pub async fn get_app_withdraw_record_list(
        &self,
        query: &WithdrawRecordListQuery,
    ) -> Result<WithdrawRecordPage, CallError> {
        self.call(Endpoint::v2(method::GET_APP_WITHDRAW_RECORD_LIST), query)
            .await
    }

    /// The balance of one coin.
    pub async fn get_app_coin_asset(&self, coin_id: u64) -> Result<CoinAsset, CallError> {
        let data: CoinAssetData = self
            .call(Endpoint::v2(method::GET_APP_COIN_ASSET), &CoinIdQuery { coin_id })
            .await?;
        Ok(data.asset)
    }

    /// The balances of every coin.
    pub async fn get_app_coin_asset_list(&self) -> Result<Vec<CoinAsset>, CallError> {
        let data: CoinAssetList = self
            .call_no_params(Endpoint::v2(method::GET_APP_COIN_ASSET_LIST))
            .await?;
        Ok(data.assets)
    }

    /// The coins enabled for the merchant, with their networks.
    pub async fn get_coin_list(&self) -> Result<Vec<Coin>, CallError> {
        let data: CoinList = self.call_no_params(Endpoint::v2(method::GET_COIN_LIST)).await?;
        Ok(data.coins)
    }

    /// One coin.
    pub async fn get_coin(&self, coin_id: u64) -> Result<Coin, CallError> {
        let data: CoinData = self
            .call(Endpoint::v2(method::GET_COIN), &CoinIdQuery { coin_id })
            .await?;
        Ok(data.coin)
    }

    /// USDT prices, keyed by coin id as a string.
    pub async fn get_coin_usdt_price(
        &self,
        coin_ids: &[u64],
    ) -> Result<std::collections::BTreeMap<String, String>, CallError> {
        let query = CoinPriceQuery {
            coin_ids: coin_ids.to_vec(),
        };
        let data: CoinPrices = self.call(Endpoint::v2(method::GET_COIN_USDT_PRICE), &query).await?;
        Ok(data.prices)
    }

    /// The network fee quote for a coin on a chain.
    pub async fn get_withdraw_fee(&self, coin_id: u64, chain: &str) -> Result<WithdrawFeeData, CallError> {
        let query = WithdrawFeeQuery {
            coin_id,
            chain: chain.to_owned(),
        };
        self.call(Endpoint::v2(method::GET_WITHDRAW_FEE), &query).await
    }

    /// Whether CCPayment accepts `address` on `chain`.
    pub async fn check_withdrawal_address_validity(&self, chain: &str, address: &str) -> Result<bool, CallError> {
        let query = AddressValidityQuery {
            chain: chain.to_owned(),
            address: address.to_owned(),
        };
        let data: AddressValidity = self
            .call(Endpoint::v2(method::CHECK_WITHDRAWAL_ADDRESS_VALIDITY), &query)
            .await?;
        Ok(data.addr_is_valid)
    }

    /// The Cwallet user behind an id.
    pub async fn get_cwallet_user_id(&self, cwallet_user_id: &str) -> Result<CwalletUser, CallError> {
        let query = CwalletUserQuery {
            cwallet_user_id: cwallet_user_id.to_owned(),
        };
        self.call(Endpoint::v2(method::GET_CWALLET_USER_ID), &query).await
    }

    /// Chain statuses and explorers; an empty filter means every chain.
    pub async fn get_chain_list(&self, chains: &[String]) -> Result<Vec<ChainInfo>, CallError> {
        let query = ChainListQuery {
            chains: chains.to_vec(),
        };
        let data: ChainList = self.call(Endpoint::v2(method::GET_CHAIN_LIST), &query).await?;
        Ok(data.chains)
    }

    /// Fiat currencies and their USD rates.
    pub async fn get_fiat_list(&self) -> Result<Vec<Fiat>, CallError> {
        let data: FiatList = self.call_no_params(Endpoint::v2(method::GET_FIAT_LIST)).await?;
        Ok(data.fiats)
    }

    /// Coins available for swaps.
    pub async fn get_swap_coin_list(&self) -> Result<Vec<SwapCoin>, CallError> {
        let data: SwapCoinList = self.call_no_params(Endpoint::v2(method::GET_SWAP_COIN_LIST)).await?;
        Ok(data.coins)
    }

    // -----------------------------------------------------------------------------------------
    // Batch withdrawals (ccpayment-api.md §2.8)
    // -----------------------------------------------------------------------------------------

    /// Checks up to 500 addresses of one chain at once: a result per seq, with CCPayment's codes
    /// for what is wrong (none: nothing found wrong).
    pub async fn check_withdraw_address(
        &self,
        req: &CheckWithdrawAddressRequest,
    ) -> Result<Vec<WithdrawAddressResult>, CallError> {
        let data: CheckWithdrawAddressReply = self.call(Endpoint::v2(method::CHECK_WITHDRAW_ADDRESS), req).await?;
        Ok(data.address_info_results)
    }

    /// [`Client::check_withdraw_address`] on an account that may not have the route: `Ok(None)`
    /// when the answer is the plain HTTP 404 of an unknown method (see [`Client::call_if_routed`]).
    pub async fn check_withdraw_address_if_routed(
        &self,
        req: &CheckWithdrawAddressRequest,
    ) -> Result<Option<Vec<WithdrawAddressResult>>, CallError> {
        let data: Option<CheckWithdrawAddressReply> = self
            .call_if_routed(Endpoint::v2(method::CHECK_WITHDRAW_ADDRESS), req)
            .await?;
        Ok(data.map(|d| d.address_info_results))
    }

    /// Creates a batch withdrawal (not yet run) with its first tasks. `Ok(None)`: the account
    /// does not have the route (HTTP 404 without a CCPayment envelope), so nothing was created.
    pub async fn apply_batch_withdraw(
        &self,
        req: &ApplyBatchWithdrawRequest,
    ) -> Result<Option<ApplyBatchWithdrawReply>, CallError> {
        self.call_if_routed(Endpoint::v2(method::APPLY_BATCH_WITHDRAW), req)
            .await
    }

    /// Adds tasks to a batch not yet confirmed.
    pub async fn append_batch_withdraw(&self, req: &AppendBatchWithdrawRequest) -> Result<(), CallError> {
        let _: IgnoredAny = self.call(Endpoint::v2(method::APPEND_BATCH_WITHDRAW), req).await?;
        Ok(())
    }

    /// Runs a batch (after its delay).
    pub async fn confirm_batch_withdraw(
        &self,
        req: &ConfirmBatchWithdrawRequest,
    ) -> Result<BatchWithdrawOrder, CallError> {
        self.call(Endpoint::v2(method::CONFIRM_BATCH_WITHDRAW), req).await
    }

    /// Cancels tasks of a batch that have not run.
    pub async fn abort_batch_withdraw(
        &self,
        req: &AbortBatchWithdrawRequest,
    ) -> Result<AbortBatchWithdrawReply, CallError> {
        self.call(Endpoint::v2(method::ABORT_BATCH_WITHDRAW), req).await
    }

    /// A batch by its batchOrderId.
    pub async fn get_batch_withdraw_order(&self, query: &BatchOrderQuery) -> Result<BatchWithdrawOrder, CallError> {
        self.call(Endpoint::v2(method::GET_BATCH_WITHDRAW_ORDER), query).await
    }

    /// One page of a batch's tasks.
    pub async fn get_batch_withdraw_order_record_list(
        &self,
        query: &BatchRecordListQuery,
    ) -> Result<BatchRecordPage, CallError> {
        self.call(Endpoint::v2(method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST), query)
            .await
    }

    // -----------------------------------------------------------------------------------------
    // v1
    // -----------------------------------------------------------------------------------------

    /// Creates a v1 withdrawal (chain address or Cwallet user, selected by `token_id`).
    pub async fn v1_withdraw(&self, req: &V1WithdrawRequest) -> Result<V1WithdrawReceipt, CallError> {
        self.call(Endpoint::v1(method::V1_WITHDRAW), req).await
    }

    /// v1 bills by merchant order id (at most 100 per call).
    pub async fn v1_bill_info(&self, merchant_order_ids: &[String]) -> Result<Vec<V1Bill>, CallError> {
        let query = V1BillInfoRequest {
            merchant_order_ids: merchant_order_ids.to_vec(),
        };
        // One bill that does not decode must not hide the others (R4).
        let bills: super::lenient::Each<V1Bill> = self.call(Endpoint::v1(method::V1_BILL_INFO), &query).await?;
        Ok(bills.0)
    }

    /// The coins of "tokens for your business", each with its tokens (`/v1/coin/all`).
    pub async fn v1_coin_all(&self) -> Result<Vec<V1Coin>, CallError> {
        let data: V1CoinList = self.call(Endpoint::v1(method::V1_COIN_ALL), &Empty {}).await?;
        Ok(data.list)
    }

    /// The same list under its other documented path (`/v1/support/token`).
    pub async fn v1_support_token(&self) -> Result<Vec<V1Coin>, CallError> {
        let data: V1CoinList = self.call(Endpoint::v1(method::V1_SUPPORT_TOKEN), &Empty {}).await?;
        Ok(data.list)
    }

    /// The networks of the coin `token_id` belongs to, with each network's fee coin.
    pub async fn v1_token_chain(&self, token_id: &str) -> Result<Vec<V1Token>, CallError> {
        let query = V1TokenQuery {
            token_id: token_id.to_owned(),
        };
        let data: V1TokenList = self.call(Endpoint::v1(method::V1_TOKEN_CHAIN), &query).await?;
        Ok(data.list)
    }

    /// The network fee of one withdrawal of a token (to `address`, when given: an internal
    /// address pays none).
    pub async fn v1_network_fee(&self, query: &V1NetworkFeeQuery) -> Result<V1NetworkFee, CallError> {
        self.call(Endpoint::v1(method::V1_NETWORK_FEE), query).await
    }

    /// Balances: one coin's (by its UUID), or every coin's.
    pub async fn v1_assets(&self, coin_id: Option<&str>) -> Result<Vec<V1Asset>, CallError> {
        let query = V1AssetsQuery {
            coin_id: coin_id.map(str::to_owned),
        };
        let data: V1AssetList = self.call(Endpoint::v1(method::V1_ASSETS), &query).await?;
        Ok(data.list)
    }

    /// The Cwallet user behind a Cwallet ID.
    pub async fn v1_check_user(&self, c_id: &str) -> Result<V1CwalletUser, CallError> {
        let query = V1UserQuery { c_id: c_id.to_owned() };
        self.call(Endpoint::v1(method::V1_CHECK_USER), &query).await
    }
}

/// Sorts a reqwest failure into "certainly not sent" and "may have been processed".
fn transport_error(endpoint: &str, e: &reqwest::Error) -> CallError {
    let detail = error_chain(e);
    // A connect error (refused, DNS, TLS handshake, connect timeout) happens before any byte of
    // the request is written; so does failing to build the request. Everything else (a timeout
    // or reset after the connection was up) may have reached the server.
    if e.is_connect() || e.is_builder() {
        CallError::NotSent {
            endpoint: endpoint.to_owned(),
            detail,
        }
    } else {
        let detail = if e.is_timeout() {
            format!("timed out: {detail}")
        } else {
            detail
        };
        CallError::Ambiguous {
            endpoint: endpoint.to_owned(),
            detail,
        }
    }
}

/// The error and its sources in one line. reqwest errors name the URL, which holds no secret.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::clock::ManualClock;

    fn client(v2: &str) -> Client {
        let config = ClientConfig {
            v2_base_url: v2.into(),
            v1_base_url: "https://admin.example/".into(),
            app_id: "app".into(),
            app_secret: SecretString::from("secret"),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        };
        Client::new(config, ManualClock::new(1_677_152_720_000)).unwrap()
    }

    fn reply(status: u16, body: &str) -> RawReply {
        RawReply {
            http_status: status,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn urls_append_the_documented_paths() {
        let c = client("http://127.0.0.1:9/");
        assert_eq!(
            c.url(Endpoint::v2("getCoinList")),
            "http://127.0.0.1:9/ccpayment/v2/getCoinList"
        );
        assert_eq!(
            c.url(Endpoint::v1("bill/info")),
            "https://admin.example/ccpayment/v1/bill/info"
        );
    }

    #[test]
    fn interpret_sorts_replies() {
        let c = client("http://127.0.0.1:9");
        let ep = Endpoint::v2(method::GET_APP_COIN_ASSET);
        let ok: CoinAssetData = c
            .interpret(ep, &reply(200, r#"{"code":10000,"msg":"Success","data":{"asset":{"coinId":1280,"coinSymbol":"USDT","available":"5.1"}}}"#))
            .unwrap();
        assert_eq!(ok.asset.available, "5.1");

        let err = c
            .interpret::<CoinAssetData>(ep, &reply(200, r#"{"code":11004,"msg":"RateLimit"}"#))
            .unwrap_err();
        assert_eq!(err.class(), Some(crate::api::ErrorClass::RateLimited));

        // A gateway error page may come after the request was processed.
        let err = c
            .interpret::<CoinAssetData>(ep, &reply(502, "<html>Bad Gateway</html>"))
            .unwrap_err();
        assert!(err.is_ambiguous(), "{err}");

        // So may a reply we cannot read, even with HTTP 200.
        let err = c
            .interpret::<CoinAssetData>(ep, &reply(200, "{\"code\":100"))
            .unwrap_err();
        assert!(err.is_ambiguous(), "{err}");

        // A success code whose data does not fit the method is not success. (An id sent as a
        // number fits: ids are read from numbers and strings alike, R4.)
        let err = c
            .interpret::<WithdrawReceipt>(ep, &reply(200, r#"{"code":10000,"data":{"recordId":{"id":5}}}"#))
            .unwrap_err();
        assert!(err.is_ambiguous(), "{err}");
        let receipt: WithdrawReceipt = c
            .interpret(ep, &reply(200, r#"{"code":10000,"data":{"recordId":5}}"#))
            .unwrap();
        assert_eq!(receipt.record_id, "5");
    }

    #[test]
    fn v1_success_replies_must_be_signed() {
        let c = client("http://127.0.0.1:9");
        let ep = Endpoint::v1(method::V1_BILL_INFO);
        let body = r#"{"code":10000,"msg":"success","data":[]}"#;
        let err = c.interpret::<Vec<V1Bill>>(ep, &reply(200, body)).unwrap_err();
        assert!(err.is_ambiguous(), "{err}");

        let mut signed = reply(200, body);
        let sig = sign::sign_v1("app", &SecretString::from("secret"), "1677152720", body.as_bytes());
        signed
            .headers
            .insert("Timestamp", HeaderValue::from_static("1677152720"));
        signed.headers.insert("Sign", HeaderValue::from_str(&sig).unwrap());
        let bills: Vec<V1Bill> = c.interpret(ep, &signed).unwrap();
        assert!(bills.is_empty());

        // v1 error replies are not signed and still map to their code.
        let err = c
            .interpret::<Vec<V1Bill>>(
                ep,
                &reply(200, r#"{"code":224066,"msg":"service err, please try again"}"#),
            )
            .unwrap_err();
        assert_eq!(err.code(), Some(224066));
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent() {
        // Port 9 (discard) on loopback is closed on any sane test machine; bind and drop a
        // listener to get a port that is certainly closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = client(&format!("http://127.0.0.1:{port}"));
        let err = c.get_coin_list().await.unwrap_err();
        assert!(matches!(err, CallError::NotSent { .. }), "{err}");
        // Counted once, as a transport failure, and not as a success.
        let stats = c.request_stats();
        assert_eq!(stats.by_endpoint_and_code, counts(&[("getCoinList", "transport", 1)]));
        assert_eq!(stats.last_success_ms, None);
        assert_eq!(c.request_counts(), BTreeMap::from([("getCoinList".to_owned(), 1)]));
    }

    fn counts(entries: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
        entries
            .iter()
            .map(|&(endpoint, code, n)| ((endpoint.to_owned(), code.to_owned()), n))
            .collect()
    }

    /// Per endpoint, the outcomes add up to the requests sent.
    fn assert_outcomes_add_up(c: &Client) {
        let mut answered: BTreeMap<String, u64> = BTreeMap::new();
        for ((endpoint, _), n) in c.request_stats().by_endpoint_and_code {
            *answered.entry(endpoint).or_insert(0) += n;
        }
        assert_eq!(answered, c.request_counts());
    }

    #[tokio::test]
    async fn an_unsigned_v1_success_counts_under_its_code_but_is_no_success() {
        // A server that answers every request with an unsigned success envelope.
        let app = axum::Router::new().fallback(|| async { r#"{"code":10000,"msg":"success","data":[]}"# });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut c = client(&format!("http://{addr}"));
        std::sync::Arc::make_mut(&mut c.config).v1_base_url = format!("http://{addr}");

        let err = c.v1_bill_info(&["a".to_owned()]).await.unwrap_err();
        assert!(err.is_ambiguous(), "{err}");
        let reply = c
            .send_raw(Endpoint::v1(method::V1_BILL_INFO), b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(reply.http_status, 200);
        let stats = c.request_stats();
        assert_eq!(stats.by_endpoint_and_code, counts(&[("v1/bill/info", "10000", 2)]));
        assert_eq!(stats.last_success_ms, None);

        // The same envelope is a success on v2, which does not sign replies.
        let _: serde_json::Value = c.call(Endpoint::v2("anything"), &Empty {}).await.unwrap();
        assert_eq!(c.request_stats().last_success_ms, Some(1_677_152_720_000));
        server.abort();
    }

    /// A method the account does not have is the router's plain 404, told apart from every other
    /// reply; anything else reads as `call` reads it.
    #[tokio::test]
    async fn a_plain_404_is_a_method_the_account_does_not_have() {
        use axum::http::StatusCode;
        let app = axum::Router::new()
            .route(
                "/ccpayment/v2/checkWithdrawAddress",
                axum::routing::post(|| async { (StatusCode::NOT_FOUND, "404 page not found") }),
            )
            .route(
                "/ccpayment/v2/enveloped404",
                axum::routing::post(|| async { (StatusCode::NOT_FOUND, r#"{"code":11003,"msg":"NotFound"}"#) }),
            )
            .route(
                "/ccpayment/v2/gateway",
                axum::routing::post(|| async { (StatusCode::BAD_GATEWAY, "<html>Bad Gateway</html>") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let c = client(&format!("http://{addr}"));
        let req = CheckWithdrawAddressRequest {
            chain: "TRX".into(),
            address_info_list: vec![WithdrawAddress {
                address: "T".into(),
                memo: String::new(),
                seq: 1,
            }],
        };
        assert_eq!(c.check_withdraw_address_if_routed(&req).await, Ok(None));
        // `call` reads the same reply as ambiguous.
        let err = c.check_withdraw_address(&req).await.unwrap_err();
        assert!(err.is_ambiguous(), "{err}");
        let err = c
            .call_if_routed::<_, serde_json::Value>(Endpoint::v2("enveloped404"), &Empty {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(11003));
        let err = c
            .call_if_routed::<_, serde_json::Value>(Endpoint::v2("gateway"), &Empty {})
            .await
            .unwrap_err();
        assert!(err.is_ambiguous(), "{err}");
        assert_eq!(
            c.request_stats().by_endpoint_and_code,
            counts(&[
                ("checkWithdrawAddress", "http_404", 2),
                ("enveloped404", "11003", 1),
                ("gateway", "http_502", 1)
            ])
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_call_dropped_in_flight_counts_as_transport() {
        // A listener that accepts connections (the kernel does) but never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = client(&format!("http://{}", listener.local_addr().unwrap()));
        let call = tokio::time::timeout(Duration::from_millis(200), c.get_coin_list()).await;
        assert!(call.is_err(), "the silent server answered: {call:?}");
        assert_eq!(
            c.request_stats().by_endpoint_and_code,
            counts(&[("getCoinList", "transport", 1)])
        );
        // Without the caller's timeout the client's own request timeout (1 s) ends it.
        let err = c.get_coin_list().await.unwrap_err();
        assert!(err.is_ambiguous(), "{err}");
        assert_eq!(
            c.request_stats().by_endpoint_and_code,
            counts(&[("getCoinList", "transport", 2)])
        );
        assert_outcomes_add_up(&c);
        drop(listener);
    }

    #[test]
    fn outcome_labels() {
        assert_eq!(outcome_label(Some(10000), 200), "10000");
        assert_eq!(outcome_label(Some(11004), 429), "11004");
        assert_eq!(outcome_label(None, 502), "http_502");
        assert_eq!(outcome_label(None, 200), "http_200");
    }
}
