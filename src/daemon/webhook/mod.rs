//! The daemon's optional webhook listener: CCPayment pushes a signed notice when a withdrawal
//! changes status, and a verified notice makes the engine query that record at once instead of
//! waiting for its next polling round.
//!
//! # A hint, never the truth
//!
//! A webhook only says "look at order X now". The engine answers a [`Hint`] by querying the
//! record (`getAppWithdrawRecord` / v1 `bill/info`) and acts on what the query says, never on the
//! webhook's `status`. So a lost, late, duplicated or re-ordered webhook changes nothing but
//! latency, and polling always runs as well: Cwallet payouts get no webhook at all (ccpayment-api
//! §2.3), v1 sends only the final one, and CCPayment itself advises polling when a webhook is
//! missing.
//!
//! # What is verified, in this order
//!
//! 1. **Size**: bodies above [`WebhookSettings::max_body_bytes`] (default 64 KiB; real webhooks
//!    are a few hundred bytes) are refused with 413 before the signature is computed, from the
//!    `Content-Length` header when there is one and by [`DefaultBodyLimit`](axum::extract::DefaultBodyLimit) while reading.
//! 2. **Headers**: `Appid` (any case, so also `AppId`), `Timestamp` and `Sign` must be present and
//!    non-empty (400 otherwise).
//! 3. **App id**: must be this account's (401).
//! 4. **Timestamp**: exactly 10 ASCII digits (Unix seconds; a 13-digit millisecond value is
//!    refused) within ±[`WebhookSettings::window`] (default 120 s, CCPayment's "valid for 2
//!    minutes") of the injected clock (401). This bounds how long a captured webhook can be
//!    replayed; CCPayment's retries carry a fresh timestamp and signature.
//! 5. **Signature** over the **exact raw body bytes**, never a re-serialisation, with the
//!    account's formula ([`ApiGeneration`](crate::model::ApiGeneration)): v2 `hex(HMAC-SHA256(appSecret, appId + timestamp +
//!    body))`, v1 `hex(SHA-256(appId + appSecret + timestamp + body))`, compared in constant time
//!    by [`crate::api::sign`] (401).
//! 6. Only then is the body parsed as JSON. v2: `{"type":"ApiWithdrawal","msg":{"recordId",
//!    "orderId","coinId","coinSymbol","status"}}`. v1: the flat body with `order_type` `"API
//!    Withdrawal"`, `merchant_order_id` (our orderId; v1's `order_id` is CCPayment's own id),
//!    `record_id` and `pay_status` (`success`/`failed`, reported as `Success`/`Failed`).
//!
//! # Replies
//!
//! CCPayment counts a delivery as done on HTTP 200 with `success` in the body, and re-pushes up to
//! 6 times otherwise. Every verified webhook is answered `200`, `Content-Type: text/plain;
//! charset=utf-8`, body `success`: withdrawal notices, other types (`ApiDeposit`,
//! `DirectDeposit`, …, acknowledged and ignored) and signed bodies that cannot be read as a
//! webhook ([`Refusal::BadJson`], logged at warn), because re-pushing them cannot help. Refusals
//! get 400 (missing header), 401 (app id, timestamp, signature) or 413 (too large) with a short
//! plain-text reason, and a warn line with the reason and the remote address. Log lines and
//! [`Refusal`] texts never contain the secret, and show at most an 8-character
//! [fingerprint](crate::api::sign::fingerprint) of a received `Sign`. Other paths answer 404,
//! other methods 405.
//!
//! # Duplicates
//!
//! CCPayment may deliver one webhook several times (retries after a lost reply, manual resends).
//! Every copy is acknowledged, but the listener remembers the last [`DEDUP_CAPACITY`] (recordId,
//! status) pairs it passed on for [`DEDUP_TTL`] (10 minutes), and a copy seen again within that
//! time does not call the hint callback again, so a burst of re-pushes costs one record query.
//! The memory is bounded and lost on restart; as the engine treats hints idempotently, a copy that
//! slips through only costs one more query. A `Processing` then a `Success` notice for the same
//! record are different pairs and both pass.
//!
//! # Exposing it
//!
//! The listener speaks plain HTTP/1.1 and by default binds to loopback
//! ([`DEFAULT_LISTEN`]). Put it behind a reverse proxy that terminates TLS (CCPayment needs an
//! `https://` URL), forwards only the webhook path, and ideally admits only CCPayment's documented
//! sender addresses (ccpayment-api §2.5: 54.150.123.157, 35.72.150.75, 18.176.186.244). The
//! signature check is what makes a notice trustworthy; the address filter only keeps noise out.
//! Behind a proxy the logged remote address is the proxy's.
//!
//! # Counters
//!
//! [`WebhookStats::snapshot`] gives the counters for metrics: `accepted` (verified withdrawal
//! notices, duplicates included), `duplicate` (of those, the ones de-duplicated), `ignored`
//! (verified other types), `unreadable` (verified but not a readable webhook) and one
//! `refused_<reason>` per [`Refusal`] cause.
//!
//! # Where the code is
//!
//! This file holds the settings and names the public items; `verify.rs` checks a webhook and
//! reads it into a [`Hint`], `counters.rs` counts the outcomes, `dedup.rs` remembers the pairs
//! recently passed on, and `http.rs` is the listener: the route, the replies and [`serve`].

mod counters;
mod dedup;
mod http;
mod verify;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use self::counters::WebhookStats;
pub use self::dedup::{DEDUP_CAPACITY, DEDUP_TTL};
pub use self::http::{SHUTDOWN_GRACE, router, serve};
pub use self::verify::{Hint, KIND_WITHDRAWAL, Refusal, Verifier};

/// The default path CCPayment posts to.
pub const DEFAULT_PATH: &str = "/ccpayment/webhook";
/// The default body limit: 64 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// The default timestamp window: ±120 s.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);
/// The default listen address: loopback only, for a reverse proxy in front.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8787);

/// Where and how the listener runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The address to bind. Default [`DEFAULT_LISTEN`].
    pub listen: SocketAddr,
    /// The one path that accepts webhooks (exact match). Default [`DEFAULT_PATH`].
    pub path: String,
    /// Larger bodies answer 413. Default [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// Accepted `|Timestamp − now|`. Default [`DEFAULT_WINDOW`].
    pub window: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            listen: DEFAULT_LISTEN,
            path: DEFAULT_PATH.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            window: DEFAULT_WINDOW,
        }
    }
}
