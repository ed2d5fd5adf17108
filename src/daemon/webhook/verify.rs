//! Verifying a webhook: size, headers, app id, timestamp window and signature over the raw body,
//! in that order, then reading the body into a [`Hint`] or saying why not with a [`Refusal`].

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use secrecy::SecretString;
use serde_json::{Map, Value};

use super::WebhookSettings;
use super::counters::{Counter, WebhookStats};
use crate::api::sign::{verify_v1, verify_v2};
use crate::api::types::v1_status;
use crate::model::ApiGeneration;
use crate::util::clock::SharedClock;

/// The `type` of a v2 withdrawal webhook, and the [`Hint::kind`] of every withdrawal hint (v1
/// ones included).
pub const KIND_WITHDRAWAL: &str = "ApiWithdrawal";

/// What a verified webhook says. Only a hint: the engine queries the record for the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// Our orderId (v2 `msg.orderId`, v1 `merchant_order_id`); `None` for ignored types.
    pub order_id: Option<String>,
    /// CCPayment's record id, when given.
    pub record_id: Option<String>,
    /// The status the webhook claims, in the v2 spelling (`Processing`, `Success`, `Failed`, …).
    pub status: Option<String>,
    /// [`KIND_WITHDRAWAL`] for withdrawals; otherwise the webhook's own type, verbatim.
    pub kind: String,
}

impl Hint {
    /// Whether this names one of our withdrawals (and so is passed to the engine).
    pub fn is_withdrawal(&self) -> bool {
        self.order_id.is_some()
    }

    fn ignored(kind: &str) -> Hint {
        Hint {
            order_id: None,
            record_id: None,
            status: None,
            kind: kind.to_owned(),
        }
    }
}

/// Why a webhook was not taken. The texts are for logs and replies; none contains the secret or
/// a received signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A required header is absent or empty: `Appid`, `Timestamp` or `Sign`.
    #[error("missing or empty {0} header")]
    MissingHeader(&'static str),
    /// `Appid` is not this account's.
    #[error("app id does not match this account")]
    WrongAppId,
    /// `Timestamp` is not 10 ASCII digits (Unix seconds).
    #[error("Timestamp header is not 10-digit Unix seconds")]
    BadTimestamp,
    /// `Timestamp` is outside the window; `skew_secs` is timestamp − now (negative: in the past).
    #[error("Timestamp is {skew_secs:+} s from now, outside the accepted window")]
    Stale { skew_secs: i64 },
    /// The signature does not match the body, timestamp and credentials.
    #[error("signature does not match")]
    BadSignature,
    /// The body is larger than the limit.
    #[error("body larger than the limit")]
    TooLarge,
    /// Correctly signed, but not JSON or not a readable webhook of its type. Answered with 200
    /// `success` all the same: it came from CCPayment, and re-pushing it cannot help.
    #[error("signed body is not a readable webhook")]
    BadJson,
}

impl Refusal {
    /// The HTTP status the listener answers with: 400, 401, 413, or 200 for [`Refusal::BadJson`].
    pub fn http_status(&self) -> StatusCode {
        match self {
            Refusal::MissingHeader(_) => StatusCode::BAD_REQUEST,
            Refusal::WrongAppId | Refusal::BadTimestamp | Refusal::Stale { .. } | Refusal::BadSignature => {
                StatusCode::UNAUTHORIZED
            }
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadJson => StatusCode::OK,
        }
    }

    /// Whether the signature was checked and correct (only [`Refusal::BadJson`]).
    pub fn is_verified(&self) -> bool {
        matches!(self, Refusal::BadJson)
    }

    fn counter(&self) -> Counter {
        match self {
            Refusal::MissingHeader(_) => Counter::RefusedMissingHeader,
            Refusal::WrongAppId => Counter::RefusedAppId,
            Refusal::BadTimestamp => Counter::RefusedTimestamp,
            Refusal::Stale { .. } => Counter::RefusedStale,
            Refusal::BadSignature => Counter::RefusedSignature,
            Refusal::TooLarge => Counter::RefusedTooLarge,
            Refusal::BadJson => Counter::Unreadable,
        }
    }
}

/// How old a webhook's timestamp may be and the webhook still be taken as a hint: CCPayment's
/// retries run for about an hour (30 s … 31.5 min apart); two hours covers them with room.
pub const RETRY_HORIZON_SECS: i64 = 2 * 60 * 60;

/// Checks webhooks for one account: app id, timestamp window, signature, then the body.
pub struct Verifier {
    app_id: String,
    secret: SecretString,
    generation: ApiGeneration,
    window_secs: i64,
    max_body_bytes: usize,
    // The listener reads the clock for de-duplication and counts what it refuses before
    // verification, so these two are shared with `http.rs`.
    pub(super) clock: SharedClock,
    pub(super) stats: Arc<WebhookStats>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of debug output.
        f.debug_struct("Verifier")
            .field("app_id", &self.app_id)
            .field("generation", &self.generation)
            .field("window_secs", &self.window_secs)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for this account, with the window and body limit of `settings`, reading the
    /// time from `clock`.
    pub fn new(
        app_id: impl Into<String>,
        secret: SecretString,
        generation: ApiGeneration,
        settings: &WebhookSettings,
        clock: SharedClock,
    ) -> Verifier {
        Verifier {
            app_id: app_id.into(),
            secret,
            generation,
            window_secs: i64::try_from(settings.window.as_secs()).unwrap_or(i64::MAX),
            max_body_bytes: settings.max_body_bytes,
            clock,
            stats: Arc::new(WebhookStats::default()),
        }
    }

    /// The counters of everything this verifier (and the router built on it) saw.
    pub fn stats(&self) -> Arc<WebhookStats> {
        Arc::clone(&self.stats)
    }

    /// Verifies one webhook over its exact raw `body` and reads it (see the [module
    /// documentation](super) for the order of the checks). `Ok` with [`Hint::is_withdrawal`] false
    /// means verified and ignored. Counts the outcome in [`Verifier::stats`].
    ///
    /// # Errors
    ///
    /// The [`Refusal`] that stopped it; [`Refusal::BadJson`] only after a correct signature.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Hint, Refusal> {
        let result = self.check(headers, body);
        self.stats.count(match &result {
            Ok(hint) if hint.is_withdrawal() => Counter::Accepted,
            Ok(_) => Counter::Ignored,
            Err(refusal) => refusal.counter(),
        });
        result
    }

    fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<Hint, Refusal> {
        if body.len() > self.max_body_bytes {
            return Err(Refusal::TooLarge);
        }
        let app_id = required(headers, "Appid")?;
        let timestamp = required(headers, "Timestamp")?;
        let sign = required(headers, "Sign")?;

        if app_id != self.app_id.as_bytes() {
            return Err(Refusal::WrongAppId);
        }
        let (timestamp, ts_secs) = parse_timestamp(timestamp).ok_or(Refusal::BadTimestamp)?;
        let skew_secs = ts_secs - self.clock.now_secs();
        // A timestamp ahead of the window is refused. One behind it may be a retry that kept its
        // first attempt's timestamp and signature (ccpayment-api.md §5, R11: CCPayment retries
        // for about an hour and does not say whether it signs retries afresh); verified, it is
        // still a fine hint — it only makes the engine ask for a record sooner, and repeats are
        // dropped — so it is accepted up to RETRY_HORIZON_SECS old.
        if skew_secs > self.window_secs || skew_secs < -self.window_secs.max(RETRY_HORIZON_SECS) {
            return Err(Refusal::Stale { skew_secs });
        }
        let sign = std::str::from_utf8(sign).map_err(|_| Refusal::BadSignature)?;
        let valid = match self.generation {
            ApiGeneration::V2 => verify_v2(&self.app_id, &self.secret, timestamp, body, sign),
            ApiGeneration::V1 => verify_v1(&self.app_id, &self.secret, timestamp, body, sign),
        };
        if !valid {
            return Err(Refusal::BadSignature);
        }
        match self.generation {
            ApiGeneration::V2 => parse_v2(body),
            ApiGeneration::V1 => parse_v1(body),
        }
    }
}

/// A header's bytes, refused when absent or empty. `HeaderMap` lookups ignore case.
fn required<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h [u8], Refusal> {
    headers
        .get(name)
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty())
        .ok_or(Refusal::MissingHeader(name))
}

/// Exactly 10 ASCII digits: the text (as signed) and its value.
fn parse_timestamp(raw: &[u8]) -> Option<(&str, i64)> {
    if raw.len() != 10 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?;
    Some((text, text.parse().ok()?))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Refusal::BadJson),
    }
}

/// A non-empty string field; ids sent as JSON numbers are taken as their decimal text.
fn text_field(object: &Map<String, Value>, name: &str) -> Option<String> {
    match object.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_v2(body: &[u8]) -> Result<Hint, Refusal> {
    let event = parse_object(body)?;
    let Some(Value::String(kind)) = event.get("type") else {
        return Err(Refusal::BadJson);
    };
    if kind != KIND_WITHDRAWAL {
        return Ok(Hint::ignored(kind));
    }
    let Some(Value::Object(msg)) = event.get("msg") else {
        return Err(Refusal::BadJson);
    };
    let Some(Value::String(order_id)) = msg.get("orderId").filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) else {
        return Err(Refusal::BadJson);
    };
    Ok(Hint {
        order_id: Some(order_id.clone()),
        record_id: text_field(msg, "recordId"),
        status: text_field(msg, "status"),
        kind: KIND_WITHDRAWAL.to_owned(),
    })
}

fn parse_v1(body: &[u8]) -> Result<Hint, Refusal> {
    let event = parse_object(body)?;
    let Some(Value::String(order_type)) = event.get("order_type") else {
        return Err(Refusal::BadJson);
    };
    if !order_type.eq_ignore_ascii_case("API Withdrawal") {
        return Ok(Hint::ignored(order_type));
    }
    // v1's `order_id` is CCPayment's own id; ours is `merchant_order_id`.
    let Some(Value::String(order_id)) = event
        .get("merchant_order_id")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    else {
        return Err(Refusal::BadJson);
    };
    Ok(Hint {
        order_id: Some(order_id.clone()),
        record_id: text_field(&event, "record_id"),
        status: text_field(&event, "pay_status").map(|s| v1_status(&s).as_str().to_owned()),
        kind: KIND_WITHDRAWAL.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sign::{sign_v1, sign_v2};
    use crate::util::clock::ManualClock;

    const APP_ID: &str = "test_app";
    const SECRET: &str = "s3cret-webhook-key-XYZ";
    const NOW_MS: i64 = 1_700_000_000_250;
    const NOW_SECS: i64 = 1_700_000_000;
    const V2_BODY: &str = r#"{"type":"ApiWithdrawal","msg":{"recordId":"20240313120722176788","orderId":"payout-0001","coinId":1280,"coinSymbol":"USDT","status":"Success"}}"#;
    const V1_BODY: &str = r#"{"pay_status":"success","order_type":"API Withdrawal","order_id":"202403131207221767","record_id":"20240313120722176788","withdraw_amount":"5","net_receivable":"4","network_fee":"1","network_fee_crypto":"USDT","network_coin_id":"1280","network_fee_value":"1","chain":"TRX","contract":"TR7","crypto":"USDT","to_address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t","memo":"","txid":"abc","merchant_order_id":"payout-0002","merchant_pays_fee":false}"#;

    fn secret() -> SecretString {
        SecretString::from(SECRET)
    }

    fn verifier(generation: ApiGeneration) -> Verifier {
        Verifier::new(
            APP_ID,
            secret(),
            generation,
            &WebhookSettings::default(),
            ManualClock::new(NOW_MS),
        )
    }

    fn headers(app_id: &str, ts: &str, sign: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Appid", app_id.parse().unwrap());
        h.insert("Timestamp", ts.parse().unwrap());
        h.insert("Sign", sign.parse().unwrap());
        h
    }

    fn signed_v2(body: &str, ts: i64) -> HeaderMap {
        let ts = ts.to_string();
        headers(APP_ID, &ts, &sign_v2(APP_ID, &secret(), &ts, body.as_bytes()))
    }

    fn signed_v1(body: &str, ts: i64) -> HeaderMap {
        let ts = ts.to_string();
        headers(APP_ID, &ts, &sign_v1(APP_ID, &secret(), &ts, body.as_bytes()))
    }

    #[test]
    fn a_signed_v2_withdrawal_gives_its_hint() {
        let v = verifier(ApiGeneration::V2);
        let hint = v.verify(&signed_v2(V2_BODY, NOW_SECS), V2_BODY.as_bytes()).unwrap();
        assert_eq!(
            hint,
            Hint {
                order_id: Some("payout-0001".into()),
                record_id: Some("20240313120722176788".into()),
                status: Some("Success".into()),
                kind: KIND_WITHDRAWAL.into(),
            }
        );
        assert_eq!(v.stats().snapshot()["accepted"], 1);
    }

    #[test]
    fn the_app_id_header_is_case_insensitive() {
        let v = verifier(ApiGeneration::V2);
        let ts = NOW_SECS.to_string();
        let mut h = HeaderMap::new();
        h.insert("AppId", APP_ID.parse().unwrap());
        h.insert("TIMESTAMP", ts.parse().unwrap());
        h.insert(
            "sign",
            sign_v2(APP_ID, &secret(), &ts, V2_BODY.as_bytes()).parse().unwrap(),
        );
        assert!(v.verify(&h, V2_BODY.as_bytes()).unwrap().is_withdrawal());
    }

    #[test]
    fn a_signed_v1_withdrawal_gives_our_order_id_and_v2_status() {
        let v = verifier(ApiGeneration::V1);
        let hint = v.verify(&signed_v1(V1_BODY, NOW_SECS), V1_BODY.as_bytes()).unwrap();
        assert_eq!(
            hint,
            Hint {
                order_id: Some("payout-0002".into()),
                record_id: Some("20240313120722176788".into()),
                status: Some("Success".into()),
                kind: KIND_WITHDRAWAL.into(),
            }
        );
        // A v2 signature does not pass a v1 account, nor the other way round.
        assert_eq!(
            v.verify(&signed_v2(V1_BODY, NOW_SECS), V1_BODY.as_bytes()),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verifier(ApiGeneration::V2).verify(&signed_v1(V2_BODY, NOW_SECS), V2_BODY.as_bytes()),
            Err(Refusal::BadSignature)
        );
        let failed = V1_BODY.replace(r#""pay_status":"success""#, r#""pay_status":"failed""#);
        let hint = v.verify(&signed_v1(&failed, NOW_SECS), failed.as_bytes()).unwrap();
        assert_eq!(hint.status.as_deref(), Some("Failed"));
    }

    #[test]
    fn forged_webhooks_are_refused() {
        let v = verifier(ApiGeneration::V2);
        let good = signed_v2(V2_BODY, NOW_SECS);
        // One byte of the body changed.
        let tampered = V2_BODY.replace("payout-0001", "payout-0002");
        assert_eq!(v.verify(&good, tampered.as_bytes()), Err(Refusal::BadSignature));
        // Re-formatted JSON is a different body.
        let reformatted = V2_BODY.replacen(':', ": ", 1);
        assert_eq!(v.verify(&good, reformatted.as_bytes()), Err(Refusal::BadSignature));
        // One character of the signature changed.
        let sign = good["Sign"].to_str().unwrap().to_owned();
        let flipped = format!("{}{}", if sign.starts_with('0') { '1' } else { '0' }, &sign[1..]);
        let ts = NOW_SECS.to_string();
        assert_eq!(
            v.verify(&headers(APP_ID, &ts, &flipped), V2_BODY.as_bytes()),
            Err(Refusal::BadSignature)
        );
        // Not hex, or truncated.
        for bad in ["zz", &sign[..63]] {
            assert_eq!(
                v.verify(&headers(APP_ID, &ts, bad), V2_BODY.as_bytes()),
                Err(Refusal::BadSignature)
            );
        }
        // Signed with another secret.
        let other = sign_v2(APP_ID, &SecretString::from("another-secret"), &ts, V2_BODY.as_bytes());
        assert_eq!(
            v.verify(&headers(APP_ID, &ts, &other), V2_BODY.as_bytes()),
            Err(Refusal::BadSignature)
        );
        // Signed for another timestamp than the header says.
        let mut moved = good.clone();
        moved.insert("Timestamp", (NOW_SECS + 1).to_string().parse().unwrap());
        assert_eq!(v.verify(&moved, V2_BODY.as_bytes()), Err(Refusal::BadSignature));
        assert_eq!(v.stats().snapshot()["refused_signature"], 7);
        assert_eq!(v.stats().snapshot()["accepted"], 0);
    }

    #[test]
    fn the_timestamp_window_is_two_minutes_ahead_and_the_retry_horizon_behind() {
        let v = verifier(ApiGeneration::V2);
        // R11: a retry may keep its first attempt's timestamp, up to about an hour old.
        for offset in [-119, -1, 0, 1, 119, 120, -120, -121, -1890, -3600, -RETRY_HORIZON_SECS] {
            let ts = NOW_SECS + offset;
            assert!(
                v.verify(&signed_v2(V2_BODY, ts), V2_BODY.as_bytes()).is_ok(),
                "{offset} s accepted"
            );
        }
        for offset in [121, -RETRY_HORIZON_SECS - 1, 86_400, -86_400] {
            let ts = NOW_SECS + offset;
            assert_eq!(
                v.verify(&signed_v2(V2_BODY, ts), V2_BODY.as_bytes()),
                Err(Refusal::Stale { skew_secs: offset }),
                "{offset} s refused"
            );
        }
        assert_eq!(v.stats().snapshot()["refused_stale"], 4);
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        let v = verifier(ApiGeneration::V2);
        let ms = (NOW_MS).to_string();
        let sign = sign_v2(APP_ID, &secret(), &ms, V2_BODY.as_bytes());
        assert_eq!(
            v.verify(&headers(APP_ID, &ms, &sign), V2_BODY.as_bytes()),
            Err(Refusal::BadTimestamp),
            "milliseconds"
        );
        for bad in [
            "17000000x0",
            "+700000000",
            "-170000000",
            "1700000000.5",
            "170000000",
            " 1700000000",
        ] {
            let sign = sign_v2(APP_ID, &secret(), bad, V2_BODY.as_bytes());
            assert_eq!(
                v.verify(&headers(APP_ID, bad, &sign), V2_BODY.as_bytes()),
                Err(Refusal::BadTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_wrong_app_id_is_refused_before_the_signature() {
        let v = verifier(ApiGeneration::V2);
        let ts = NOW_SECS.to_string();
        let sign = sign_v2("other_app", &secret(), &ts, V2_BODY.as_bytes());
        assert_eq!(
            v.verify(&headers("other_app", &ts, &sign), V2_BODY.as_bytes()),
            Err(Refusal::WrongAppId)
        );
        assert_eq!(
            v.verify(&headers("TEST_APP", &ts, &sign), V2_BODY.as_bytes()),
            Err(Refusal::WrongAppId)
        );
        assert_eq!(v.stats().snapshot()["refused_app_id"], 2);
    }

    #[test]
    fn every_header_is_required() {
        let v = verifier(ApiGeneration::V2);
        for name in ["Appid", "Timestamp", "Sign"] {
            let mut h = signed_v2(V2_BODY, NOW_SECS);
            h.remove(name);
            assert_eq!(v.verify(&h, V2_BODY.as_bytes()), Err(Refusal::MissingHeader(name)));
            let mut h = signed_v2(V2_BODY, NOW_SECS);
            h.insert(name, "".parse().unwrap());
            assert_eq!(v.verify(&h, V2_BODY.as_bytes()), Err(Refusal::MissingHeader(name)));
        }
        assert_eq!(v.stats().snapshot()["refused_missing_header"], 6);
    }

    #[test]
    fn too_large_bodies_are_refused_first() {
        let settings = WebhookSettings {
            max_body_bytes: 100,
            ..WebhookSettings::default()
        };
        let v = Verifier::new(APP_ID, secret(), ApiGeneration::V2, &settings, ManualClock::new(NOW_MS));
        let body = "x".repeat(101);
        assert_eq!(v.verify(&HeaderMap::new(), body.as_bytes()), Err(Refusal::TooLarge));
        let small = r#"{"type":"ApiDeposit","msg":{}}"#;
        assert!(v.verify(&signed_v2(small, NOW_SECS), small.as_bytes()).is_ok());
        assert_eq!(Refusal::TooLarge.http_status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn other_types_are_verified_and_ignored() {
        let v = verifier(ApiGeneration::V2);
        for body in [
            r#"{"type":"ApiDeposit","msg":{"recordId":"1","orderId":"dep-1","coinId":1280,"status":"Success"}}"#,
            r#"{"type":"DirectDeposit","msg":{"recordId":"2"}}"#,
            r#"{"type":"UserWithdrawal","msg":{"recordId":"3","orderId":"u-1","userId":"9"}}"#,
        ] {
            let hint = v.verify(&signed_v2(body, NOW_SECS), body.as_bytes()).unwrap();
            assert!(!hint.is_withdrawal(), "{body}");
            assert_eq!(hint.order_id, None);
            assert_ne!(hint.kind, KIND_WITHDRAWAL);
        }
        assert_eq!(v.stats().snapshot()["ignored"], 3);
        // A forged deposit notice is still refused.
        let body = r#"{"type":"ApiDeposit","msg":{}}"#;
        let h = signed_v2(body, NOW_SECS);
        assert_eq!(
            v.verify(&h, br#"{"type":"ApiDeposit","msg":{ }}"#),
            Err(Refusal::BadSignature)
        );

        let v1 = verifier(ApiGeneration::V1);
        let deposit = V1_BODY.replace("API Withdrawal", "API Deposit");
        let hint = v1.verify(&signed_v1(&deposit, NOW_SECS), deposit.as_bytes()).unwrap();
        assert_eq!((hint.order_id, hint.kind.as_str()), (None, "API Deposit"));
    }

    #[test]
    fn signed_but_unreadable_bodies_are_acknowledged() {
        let v = verifier(ApiGeneration::V2);
        for body in [
            "not json",
            "",
            "[1,2]",
            r#"{"msg":{"orderId":"x"}}"#,
            r#"{"type":"ApiWithdrawal"}"#,
            r#"{"type":"ApiWithdrawal","msg":{"recordId":"1","status":"Success"}}"#,
            r#"{"type":"ApiWithdrawal","msg":{"orderId":""}}"#,
            r#"{"type":"ApiWithdrawal","msg":"{\"orderId\":\"x\"}"}"#,
        ] {
            let refusal = v.verify(&signed_v2(body, NOW_SECS), body.as_bytes()).unwrap_err();
            assert_eq!(refusal, Refusal::BadJson, "{body:?}");
            assert!(refusal.is_verified());
            assert_eq!(refusal.http_status(), StatusCode::OK);
        }
        assert_eq!(v.stats().snapshot()["unreadable"], 8);
        // Unsigned garbage is refused, not acknowledged.
        assert_eq!(
            v.verify(&signed_v2("x", NOW_SECS), b"not json"),
            Err(Refusal::BadSignature)
        );
        let v1 = verifier(ApiGeneration::V1);
        let no_order = V1_BODY.replace("payout-0002", "");
        assert_eq!(
            v1.verify(&signed_v1(&no_order, NOW_SECS), no_order.as_bytes()),
            Err(Refusal::BadJson)
        );
    }

    #[test]
    fn refusal_statuses() {
        assert_eq!(Refusal::MissingHeader("Sign").http_status(), StatusCode::BAD_REQUEST);
        for r in [
            Refusal::WrongAppId,
            Refusal::BadTimestamp,
            Refusal::Stale { skew_secs: -121 },
            Refusal::BadSignature,
        ] {
            assert_eq!(r.http_status(), StatusCode::UNAUTHORIZED, "{r}");
            assert!(!r.is_verified());
        }
        assert_eq!(
            Refusal::Stale { skew_secs: -121 }.to_string(),
            "Timestamp is -121 s from now, outside the accepted window"
        );
        assert_eq!(
            Refusal::Stale { skew_secs: 121 }.to_string(),
            "Timestamp is +121 s from now, outside the accepted window"
        );
    }

    #[test]
    fn the_secret_never_appears_in_refusals_or_debug_output() {
        let v = verifier(ApiGeneration::V2);
        let ts = NOW_SECS.to_string();
        let sign = sign_v2(APP_ID, &secret(), &ts, V2_BODY.as_bytes());
        let mut refusals = vec![
            Refusal::MissingHeader("Sign"),
            Refusal::WrongAppId,
            Refusal::BadTimestamp,
            Refusal::Stale { skew_secs: 500 },
            Refusal::BadSignature,
            Refusal::TooLarge,
            Refusal::BadJson,
        ];
        // Refusals produced by real checks, including a signature that contains the secret.
        for (app, sign) in [
            (APP_ID, SECRET.to_owned()),
            ("x", sign.clone()),
            (APP_ID, format!("{sign}0")),
        ] {
            refusals.push(v.verify(&headers(app, &ts, &sign), b"tampered").unwrap_err());
        }
        for r in &refusals {
            for text in [r.to_string(), format!("{r:?}")] {
                assert!(!text.contains(SECRET), "{text}");
                assert!(!text.contains(&sign), "{text}");
                assert!(!text.contains(&sign[..16]), "{text}");
            }
        }
        let debug = format!("{v:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains(APP_ID));
    }
}
