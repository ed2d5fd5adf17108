//! Request and response signatures of the CCPayment API, as pure functions over exact bytes.
//!
//! - v2: `Sign = hex(HMAC-SHA256(key = appSecret, appId + timestamp + body))`.
//! - v1: `Sign = hex(SHA-256(appId + appSecret + timestamp + body))`; v1 success replies and v1
//!   webhooks are signed the same way.
//!
//! `body` is always the exact byte string sent or received, never a re-serialisation: CCPayment
//! and every correct client sign what is on the wire, and re-formatted JSON is the most common
//! signing bug seen in public clients. Verification compares in constant time.
//!
//! This module does no I/O.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The v2 signature: lowercase hex HMAC-SHA256 keyed with the app secret over
/// `appId + timestamp + body`. An empty body signs `appId + timestamp` alone.
pub fn sign_v2(app_id: &str, secret: &SecretString, timestamp: &str, body: &[u8]) -> String {
    hex::encode(v2_mac(app_id, secret, timestamp, body).finalize().into_bytes())
}

/// The v1 signature: lowercase hex SHA-256 over `appId + appSecret + timestamp + body`.
pub fn sign_v1(app_id: &str, secret: &SecretString, timestamp: &str, body: &[u8]) -> String {
    hex::encode(v1_digest(app_id, secret, timestamp, body))
}

/// The signature of a notice ccpayout sends (`X-Ccpayout-Signature: sha256=<this>`): lowercase
/// hex HMAC-SHA256 keyed with the target's secret over the exact body. The v2 MAC with an empty
/// app id and timestamp is exactly that, so the secret is exposed in one place still.
pub fn sign_notice(secret: &SecretString, body: &[u8]) -> String {
    sign_v2("", secret, "", body)
}

/// Checks a v2 signature (hex, either case) in constant time.
pub fn verify_v2(app_id: &str, secret: &SecretString, timestamp: &str, body: &[u8], sign: &str) -> bool {
    let Some(given) = decode_sha256_hex(sign) else {
        return false;
    };
    // `verify_slice` compares in constant time.
    v2_mac(app_id, secret, timestamp, body).verify_slice(&given).is_ok()
}

/// Checks a v1 signature (hex, either case) in constant time.
pub fn verify_v1(app_id: &str, secret: &SecretString, timestamp: &str, body: &[u8], sign: &str) -> bool {
    let Some(given) = decode_sha256_hex(sign) else {
        return false;
    };
    constant_time_eq(&v1_digest(app_id, secret, timestamp, body), &given)
}

fn v2_mac(app_id: &str, secret: &SecretString, timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(app_id.as_bytes());
    mac.update(timestamp.as_bytes());
    mac.update(body);
    mac
}

fn v1_digest(app_id: &str, secret: &SecretString, timestamp: &str, body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(app_id.as_bytes());
    hasher.update(secret.expose_secret().as_bytes());
    hasher.update(timestamp.as_bytes());
    hasher.update(body);
    hasher.finalize().into()
}

fn decode_sha256_hex(sign: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(sign.trim(), &mut out).ok()?;
    Some(out)
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A short, non-reversible fingerprint of a signature for log lines: the first 8 hex digits.
/// Full signatures are never logged.
pub fn fingerprint(sign: &str) -> &str {
    sign.get(..8).unwrap_or(sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The self-computed vectors of ccpayment-api.md §3.2 (appId `demo_app_id`, secret
    // `demo_app_secret`, timestamp 1677152720), cross-checked there with Python and openssl.
    const APP_ID: &str = "demo_app_id";
    const TS: &str = "1677152720";
    const WITHDRAW: &str = r#"{"coinId":1280,"chain":"POLYGON","address":"0xBb9C4e7F3687aca1AE2828c18f9E3ae067F569FE","orderId":"payout-0001","amount":"0.001"}"#;
    const WEBHOOK: &str = r#"{"type":"ApiWithdrawal","msg":{"recordId":"20240313120722176788","orderId":"payout-0001","coinId":1280,"coinSymbol":"USDT","status":"Success"}}"#;

    const VECTORS: [(&str, &str, &str); 4] = [
        (
            "",
            "01451881ff5e4eae2aaceb81ef95de8c8d27ff99fe6477210fface2ab66788a9",
            "bfaa9ccc5df08f26c6a6ad874d268e352e8654828ab4979c6b7e3f41a61ec5a7",
        ),
        (
            "{}",
            "52e2a723e45955e9466a0cdf1deba8d4cc0801e8c79173da15e76fcf5e44c260",
            "8f2c2efd14bfe043cbf82f04a14f584fb79e93d4aa79d53943da6a48eb9b843d",
        ),
        (
            WITHDRAW,
            "057989d9a3414cd813271457abb8b9820ad18d1a60b3bca04153bc3797bbccb8",
            "cde3dad5a6e787a9709e8126f75861e9be253819b15fd0aeb58c0f60dff92641",
        ),
        (
            WEBHOOK,
            "e60b4e99593fe368de36b33451ca8a5518fe30aec6b83e88a3278389bdd90733",
            "3d485f6ea2f6eac7750d77733feadd29d7da8f76109a3feeef449eab67963e01",
        ),
    ];

    fn secret() -> SecretString {
        SecretString::from("demo_app_secret")
    }

    #[test]
    fn v2_signatures_match_the_reference_vectors() {
        for (body, v2, _) in VECTORS {
            assert_eq!(sign_v2(APP_ID, &secret(), TS, body.as_bytes()), v2, "body {body:?}");
            assert!(verify_v2(APP_ID, &secret(), TS, body.as_bytes(), v2));
            assert!(verify_v2(APP_ID, &secret(), TS, body.as_bytes(), &v2.to_uppercase()));
        }
    }

    #[test]
    fn v1_signatures_match_the_reference_vectors() {
        for (body, _, v1) in VECTORS {
            assert_eq!(sign_v1(APP_ID, &secret(), TS, body.as_bytes()), v1, "body {body:?}");
            assert!(verify_v1(APP_ID, &secret(), TS, body.as_bytes(), v1));
        }
    }

    #[test]
    fn any_change_to_the_signed_input_breaks_verification() {
        let (body, v2, v1) = VECTORS[2];
        let wrong = SecretString::from("demo_app_secreT");
        assert!(!verify_v2(APP_ID, &wrong, TS, body.as_bytes(), v2));
        assert!(!verify_v1(APP_ID, &wrong, TS, body.as_bytes(), v1));
        assert!(!verify_v2("demo_app_iD", &secret(), TS, body.as_bytes(), v2));
        assert!(!verify_v2(APP_ID, &secret(), "1677152721", body.as_bytes(), v2));
        // Re-formatting the JSON (one added space) is a different body.
        let reformatted = body.replacen(':', ": ", 1);
        assert!(!verify_v2(APP_ID, &secret(), TS, reformatted.as_bytes(), v2));
        assert!(!verify_v1(APP_ID, &secret(), TS, reformatted.as_bytes(), v1));
        // The two schemes are not interchangeable.
        assert!(!verify_v1(APP_ID, &secret(), TS, body.as_bytes(), v2));
    }

    #[test]
    fn malformed_signatures_are_rejected() {
        let (body, v2, _) = VECTORS[1];
        for bad in ["", "xyz", &v2[..63], &format!("{v2}00"), "g".repeat(64).as_str()] {
            assert!(!verify_v2(APP_ID, &secret(), TS, body.as_bytes(), bad), "{bad:?}");
            assert!(!verify_v1(APP_ID, &secret(), TS, body.as_bytes(), bad), "{bad:?}");
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn fingerprint_is_a_prefix() {
        assert_eq!(fingerprint(VECTORS[0].1), "01451881");
        assert_eq!(fingerprint("abc"), "abc");
    }
}
