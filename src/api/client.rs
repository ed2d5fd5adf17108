//! The HTTP client of the CCPayment API: builds, signs and sends requests, and turns replies
//! into typed data or a [`CallError`].
//!
//! Every attempt is signed afresh with the current timestamp over the exact bytes it sends;
//! nothing here retries, because only the engine knows whether a retry is safe (it owns the
//! orderId and the state). Connections are pooled and reused by one `reqwest::Client`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codes::SUCCESS;
use super::error::{ApiError, CallError};
use super::sign;
use super::types::*;
use crate::clock::SharedClock;

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

    /// A v1 path (`withdraw`, `bill/info`).
    pub fn v1(name: &'a str) -> Self {
        Endpoint {
            version: ApiVersion::V1,
            name,
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

/// The CCPayment API client. Cheap to clone; clones share the connection pool and the request
/// counts.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    clock: SharedClock,
    sent: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Client {
    /// A client for `config`, taking timestamps from `clock`.
    pub fn new(config: ClientConfig, clock: SharedClock) -> anyhow::Result<Client> {
        super::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("ccpayout/", env!("CARGO_PKG_VERSION")))
            // Keep idle connections long enough to be reused between batched calls.
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            config,
            clock,
            sent: Arc::default(),
        })
    }

    /// The app id requests are signed for.
    pub fn app_id(&self) -> &str {
        &self.config.app_id
    }

    /// Requests sent so far (by this client and its clones), per endpoint label.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.sent.lock().map(|m| m.clone()).unwrap_or_default()
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
    /// Only transport failures are errors here; the envelope is not looked at.
    pub async fn send_raw(&self, endpoint: Endpoint<'_>, body: Vec<u8>) -> Result<RawReply, CallError> {
        let label = endpoint.label();
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
        if let Ok(mut sent) = self.sent.lock() {
            *sent.entry(label.clone()).or_insert(0) += 1;
        }
        let started = Instant::now();
        let response = self
            .http
            .post(self.url(endpoint))
            .headers(header_map)
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
        tracing::debug!(
            endpoint = %label,
            http_status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            sign = sign::fingerprint(&signature),
            "reply received"
        );
        tracing::trace!(endpoint = %label, body = %String::from_utf8_lossy(&body), "reply body");
        Ok(RawReply {
            http_status,
            headers,
            body,
        })
    }

    /// Sends a typed request and decodes the `data` of a successful reply.
    pub async fn call<Req, Resp>(&self, endpoint: Endpoint<'_>, request: &Req) -> Result<Resp, CallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body = serde_json::to_vec(request).map_err(|e| CallError::NotSent {
            endpoint: endpoint.label(),
            detail: format!("cannot encode the request: {e}"),
        })?;
        let reply = self.send_raw(endpoint, body).await?;
        self.interpret(endpoint, &reply)
    }

    /// Interprets a raw reply: the envelope's code, the v1 reply signature, then the data.
    pub fn interpret<Resp: DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        reply: &RawReply,
    ) -> Result<Resp, CallError> {
        let label = endpoint.label();
        let ambiguous = |detail: String| CallError::Ambiguous {
            endpoint: label.clone(),
            detail,
        };
        let envelope: Envelope<serde_json::Value> = match serde_json::from_slice(&reply.body) {
            Ok(envelope) => envelope,
            Err(_) if reply.http_status != 200 => {
                return Err(ambiguous(format!(
                    "HTTP {} without a CCPayment reply",
                    reply.http_status
                )));
            }
            Err(e) => return Err(ambiguous(format!("the reply is not a CCPayment envelope: {e}"))),
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
            .call(Endpoint::v2(method::GET_APP_COIN_ASSET_LIST), &Empty {})
            .await?;
        Ok(data.assets)
    }

    /// The coins enabled for the merchant, with their networks.
    pub async fn get_coin_list(&self) -> Result<Vec<Coin>, CallError> {
        let data: CoinList = self.call(Endpoint::v2(method::GET_COIN_LIST), &Empty {}).await?;
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
        let data: FiatList = self.call(Endpoint::v2(method::GET_FIAT_LIST), &Empty {}).await?;
        Ok(data.fiats)
    }

    /// Coins available for swaps.
    pub async fn get_swap_coin_list(&self) -> Result<Vec<SwapCoin>, CallError> {
        let data: SwapCoinList = self.call(Endpoint::v2(method::GET_SWAP_COIN_LIST), &Empty {}).await?;
        Ok(data.coins)
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
        self.call(Endpoint::v1(method::V1_BILL_INFO), &query).await
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
    use crate::clock::ManualClock;

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

        // A success code whose data does not fit the method is not success.
        let err = c
            .interpret::<WithdrawReceipt>(ep, &reply(200, r#"{"code":10000,"data":{"recordId":5}}"#))
            .unwrap_err();
        assert!(err.is_ambiguous(), "{err}");
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
    }
}
