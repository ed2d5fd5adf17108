//! What the readings of [`Readings`](crate::sandbox::Readings) change in the world that has no
//! better home: which payouts a read sees (`lookup-lag`), every payout of an orderId
//! (`no-order-uniqueness`), the answer to an unknown orderId (`empty-record`, `other-record`),
//! the body of the parameter-less calls (`empty-body-only`) and the `string-ids` transform of
//! the reply bytes.
//!
//! The other readings are one line where they act: the orderId check in `payouts.rs`, the
//! version gate in `pipeline.rs`, the coin status in `World::new` and the webhook signatures in
//! the notifier. Like the rest of the world, nothing here does I/O or reads a clock.

use std::collections::hash_map::Entry;

use serde::Serialize;

use super::World;
use super::parse::parse;
use super::reply::{Refusal, Route};
use crate::api::types::{Empty, WithdrawRecordData, method};
use crate::sandbox::UnknownOrder;

/// What `getAppWithdrawRecord` answers with code 10000.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum RecordAnswer {
    /// A record: the one asked for, or another order's under `other-record`.
    Found(Box<WithdrawRecordData>),
    /// `{"record":{}}`: every field absent, so empty or zero to a lenient reader.
    Empty { record: Empty },
}

impl RecordAnswer {
    fn empty() -> RecordAnswer {
        RecordAnswer::Empty { record: Empty {} }
    }
}

impl World {
    /// Files payout `idx` under its orderId: the first payout of an orderId in `by_order`, any
    /// later one (only `no-order-uniqueness` commits those) in `repeats`.
    pub(super) fn index_order(&mut self, order_id: &str, idx: usize) {
        match self.by_order.entry(order_id.to_owned()) {
            Entry::Vacant(slot) => {
                slot.insert(idx);
            }
            Entry::Occupied(_) => self.repeats.entry(order_id.to_owned()).or_default().push(idx),
        }
    }

    /// Every payout of an orderId, in creation order.
    pub(super) fn order_payouts<'w>(&'w self, order_id: &str) -> impl Iterator<Item = usize> + use<'w> {
        let first = self.by_order.get(order_id).copied();
        let later = self.repeats.get(order_id).map_or(&[][..], Vec::as_slice);
        first.into_iter().chain(later.iter().copied())
    }

    /// Whether record reads see payout `idx` at `now_ms`: always, except under `lookup-lag`
    /// until its creation plus the lag. Creates always see every payout.
    pub(super) fn visible(&self, idx: usize, now_ms: i64) -> bool {
        self.readings.lookup_lag.is_none()
            || now_ms
                >= self.payouts[idx]
                    .ledger
                    .created_ms
                    .saturating_add(self.readings.lookup_lag_ms())
    }

    /// The answer to `getAppWithdrawRecord` by an orderId with no visible payout: 11003, or
    /// (R1) 10000 with an empty record or with the latest visible record of another orderId.
    pub(super) fn unknown_order(&self, order_id: &str, now_ms: i64) -> Result<RecordAnswer, Refusal> {
        match self.readings.unknown_order {
            UnknownOrder::NotFound => Err(Refusal::code(11003)),
            UnknownOrder::EmptyRecord => Ok(RecordAnswer::empty()),
            UnknownOrder::OtherRecord => {
                let other = (0..self.payouts.len()).rev().find(|&i| {
                    let ledger = &self.payouts[i].ledger;
                    !ledger.is_batch_task() && ledger.order_id != order_id && self.visible(i, now_ms)
                });
                Ok(other.map_or_else(RecordAnswer::empty, |i| {
                    RecordAnswer::Found(Box::new(WithdrawRecordData {
                        record: self.to_record(&self.payouts[i]),
                    }))
                }))
            }
        }
    }

    /// Whether the account has `route`: every route but `checkWithdrawAddress` under
    /// `no-address-batch-check`, which the server and the in-process transport answer as they
    /// answer an unknown method (the router's plain-text HTTP 404) before the world sees it.
    pub fn has_route(&self, route: Route) -> bool {
        !(self.readings.no_address_batch_check && route == Route::V2(method::CHECK_WITHDRAW_ADDRESS))
    }

    /// The body of a parameter-less v2 call. By default an empty body (the official examples,
    /// signed over appId + timestamp alone) and `{}` both do; under `empty-body-only` (R5) only
    /// the empty one does.
    pub(super) fn no_params(&self, body: &[u8]) -> Result<Empty, Refusal> {
        if self.readings.empty_body_only && !body.is_empty() {
            return Err(Refusal::invalid(
                "this method takes no parameters: the body must be empty",
            ));
        }
        parse::<Empty>(body, &[])
    }
}

/// `string-ids` (R4): the reply bytes with every JSON number inside the envelope's `data` put in
/// quotes (`"coinId":1280` → `"coinId":"1280"`); everything else, the envelope's own `code`
/// included, byte for byte as it was.
///
/// A number is inside `data` when it is nested in a container within the envelope (the envelope
/// has only `code`, `msg` and `data`, so that is `data`'s content) or is `data` itself. The
/// scan only has to tell strings (whose digits stay) from the rest, so it is one pass over bytes
/// the world serialised itself.
pub(super) fn quote_data_numbers(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    let mut depth = 0usize;
    // The last string read at the envelope's level: before a number there, that is its key.
    let mut key: &[u8] = b"";
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let end = string_end(body, i);
                if depth == 1 {
                    key = body.get(i + 1..end.saturating_sub(1)).unwrap_or_default();
                }
                out.extend_from_slice(&body[i..end]);
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                let end = body[i..]
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(body.len(), |n| i + n);
                let in_data = depth >= 2 || (depth == 1 && key == b"data");
                if in_data {
                    out.push(b'"');
                }
                out.extend_from_slice(&body[i..end]);
                if in_data {
                    out.push(b'"');
                }
                i = end;
            }
            b => {
                match b {
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The index just past the string that opens at `start` (a `"`), escapes included; the end of
/// the bytes for an unterminated string.
fn string_end(body: &[u8], start: usize) -> usize {
    let mut j = start + 1;
    while j < body.len() {
        match body[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::{Value, json};

    use crate::api::types::{RecordStatus, WithdrawRecordPage, method};
    use crate::sandbox::world::Route;
    use crate::sandbox::world::testkit::*;
    use crate::sandbox::{AttemptOutcome, Faults, Readings};

    fn world_reading(name: &str) -> World {
        world_with(|c| c.readings = Readings::parse(name).expect("a reading"))
    }

    fn lookup(w: &mut World, order: &str, now_ms: i64) -> (i64, Value) {
        call(w, method::GET_APP_WITHDRAW_RECORD, &json!({ "orderId": order }), now_ms)
    }

    fn listed(w: &mut World, orders: &[&str], now_ms: i64) -> Vec<String> {
        let (code, reply) = call(
            w,
            method::GET_APP_WITHDRAW_RECORD_LIST,
            &json!({ "orderIds": orders }),
            now_ms,
        );
        assert_eq!(code, 10000, "{reply}");
        let page: WithdrawRecordPage = serde_json::from_value(reply["data"].clone()).expect("page");
        page.records.into_iter().map(|r| r.order_id).collect()
    }

    fn bills(w: &mut World, orders: &[&str], now_ms: i64) -> usize {
        let (code, reply) = call(w, "v1/bill/info", &json!({ "merchant_order_ids": orders }), now_ms);
        assert_eq!(code, 10000, "{reply}");
        reply["data"].as_array().map_or(0, Vec::len)
    }

    #[test]
    fn lookup_lag_hides_a_payout_from_reads_but_not_from_creates() {
        let mut w = world_reading("lookup-lag=5000");
        let (code, reply) = create(&mut w, net("lag-1", 1280, "TRX", TRX_ADDR, "5"));
        assert_eq!(code, 10000);
        let record_id = reply["data"]["recordId"].as_str().expect("id").to_owned();
        let token = w.v1_token_id("USDT", "TRX").expect("token");
        let v1 = json!({"merchant_order_id": "lag-v1", "address": TRX_ADDR, "token_id": token, "value": "5"});
        assert_eq!(call(&mut w, "v1/withdraw", &v1, T0).0, 10000);
        for now in [T0, T0 + 4999] {
            assert_eq!(lookup(&mut w, "lag-1", now).0, 11003, "at {now}");
            let by_record = json!({ "recordId": record_id });
            assert_eq!(call(&mut w, method::GET_APP_WITHDRAW_RECORD, &by_record, now).0, 11003);
            assert!(listed(&mut w, &["lag-1"], now).is_empty());
            let (_, all) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &json!({}), now);
            assert_eq!(all["data"]["records"], json!([]));
            assert_eq!(bills(&mut w, &["lag-1", "lag-v1"], now), 0);
        }
        // Creates see it at once: the orderId is taken.
        assert_eq!(create(&mut w, net("lag-1", 1280, "TRX", TRX_ADDR, "5")).0, 11011);
        assert_eq!(call(&mut w, "v1/withdraw", &v1, T0 + 1).0, 11011);
        let later = T0 + 5000;
        let (code, reply) = lookup(&mut w, "lag-1", later);
        assert_eq!(code, 10000);
        assert_eq!(reply["data"]["record"]["recordId"], record_id.as_str());
        assert_eq!(listed(&mut w, &["lag-1", "lag-v1"], later), ["lag-1", "lag-v1"]);
        assert_eq!(bills(&mut w, &["lag-1", "lag-v1"], later), 2);
        // Without the reading a payout is visible at once.
        let mut plain = world();
        create(&mut plain, net("lag-1", 1280, "TRX", TRX_ADDR, "5"));
        assert_eq!(lookup(&mut plain, "lag-1", T0).0, 10000);
    }

    #[test]
    fn empty_record_answers_an_unknown_order_id_with_success() {
        let mut w = world_reading("empty-record");
        let handled = w.handle(
            Route::V2(method::GET_APP_WITHDRAW_RECORD),
            br#"{"orderId":"never-sent"}"#,
            T0,
        );
        assert_eq!(handled.code, 10000);
        assert_eq!(handled.body, br#"{"code":10000,"msg":"success","data":{"record":{}}}"#);
        // An unknown recordId, or no id at all, is not what R1 is about.
        assert_eq!(
            call(&mut w, method::GET_APP_WITHDRAW_RECORD, &json!({"recordId": "123"}), T0).0,
            11003
        );
        assert_eq!(call(&mut w, method::GET_APP_WITHDRAW_RECORD, &json!({}), T0).0, 11000);
        // A known orderId is still its own record.
        create(&mut w, net("known-1", 1280, "TRX", TRX_ADDR, "5"));
        assert_eq!(lookup(&mut w, "known-1", T0).1["data"]["record"]["orderId"], "known-1");
        // With a lag, a payout not yet visible looks like an unknown orderId.
        let mut w = world_reading("empty-record,lookup-lag");
        create(&mut w, net("known-1", 1280, "TRX", TRX_ADDR, "5"));
        let (code, reply) = lookup(&mut w, "known-1", T0);
        assert_eq!((code, &reply["data"]), (10000, &json!({"record": {}})));
    }

    #[test]
    fn other_record_answers_with_the_latest_record_of_another_order() {
        let mut w = world_reading("other-record");
        let (code, reply) = lookup(&mut w, "never-sent", T0);
        assert_eq!((code, &reply["data"]), (10000, &json!({"record": {}})), "no payout yet");
        create(&mut w, net("other-1", 1280, "TRX", TRX_ADDR, "5"));
        create(&mut w, net("other-2", 1280, "TRX", TRX_ADDR, "6"));
        let (code, reply) = lookup(&mut w, "never-sent", T0);
        assert_eq!(code, 10000);
        assert_eq!(reply["data"]["record"]["orderId"], "other-2");
        assert_eq!(reply["data"]["record"]["amount"], "6");
        // Under a lag, the other record is a visible one, and never the order asked for.
        let mut w = world_reading("other-record,lookup-lag=1000");
        create(&mut w, net("other-1", 1280, "TRX", TRX_ADDR, "5"));
        assert_eq!(create_at(&mut w, "other-2", T0 + 500), 10000);
        let (_, reply) = lookup(&mut w, "other-2", T0 + 1000);
        assert_eq!(reply["data"]["record"]["orderId"], "other-1");
        let (_, reply) = lookup(&mut w, "other-1", T0 + 1000);
        assert_eq!(reply["data"]["record"]["orderId"], "other-1", "its own, visible now");
        let (_, reply) = lookup(&mut w, "other-1", T0 + 999);
        assert_eq!(reply["data"], json!({"record": {}}), "no other visible payout");
    }

    #[test]
    fn no_order_uniqueness_pays_a_reused_order_id_again() {
        let mut w = world_reading("no-order-uniqueness");
        assert_eq!(create(&mut w, net("twice-1", 1280, "TRX", TRX_ADDR, "5")).0, 10000);
        assert_eq!(create(&mut w, net("twice-1", 1280, "TRX", TRX_ADDR, "5")).0, 10000);
        let token = w.v1_token_id("USDT", "TRX").expect("token");
        let v1 = json!({"merchant_order_id": "twice-1", "address": TRX_ADDR, "token_id": token, "value": "5"});
        assert_eq!(call(&mut w, "v1/withdraw", &v1, T0).0, 10000);
        // Not even a reply still held back refuses it (no 11007).
        w.set_faults(Faults {
            slow: 1.0,
            slow_delay_ms: 60_000,
            ..Faults::default()
        });
        let body = net("twice-1", 1280, "TRX", TRX_ADDR, "5").to_string();
        let held = w.handle(Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK), body.as_bytes(), T0);
        assert_eq!((held.code, held.in_flight.as_deref()), (10000, Some("twice-1")));
        w.set_faults(Faults::default());
        assert_eq!(create(&mut w, net("twice-1", 1280, "TRX", TRX_ADDR, "5")).0, 10000);
        let ledger = w.ledger();
        assert_eq!(ledger.payouts_for("twice-1").len(), 5, "the ledger shows every payment");
        assert_eq!(bal(&w, "USDT"), "999975");
        // Reads show every payout of the orderId; a lookup answers the first.
        assert_eq!(listed(&mut w, &["twice-1"], T0), vec!["twice-1"; 5]);
        assert_eq!(bills(&mut w, &["twice-1"], T0), 5);
        let (_, reply) = lookup(&mut w, "twice-1", T0);
        assert_eq!(
            reply["data"]["record"]["recordId"],
            ledger.payouts[0].record_id.as_str()
        );
        // A snapshot with the orderId twice restores under the reading, and only under it.
        let snapshot = w.snapshot();
        let mut again = world_reading("no-order-uniqueness");
        again.restore(snapshot.clone()).expect("restores");
        assert_eq!(listed(&mut again, &["twice-1"], T0).len(), 5);
        let err = world().restore(snapshot).expect_err("refused");
        assert!(err.contains("twice-1"), "{err}");
        // Without the reading the orderId is refused, as before.
        let mut plain = world();
        create(&mut plain, net("twice-1", 1280, "TRX", TRX_ADDR, "5"));
        assert_eq!(create(&mut plain, net("twice-1", 1280, "TRX", TRX_ADDR, "5")).0, 11011);
        let outcomes: Vec<_> = plain.ledger().attempts.into_iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes[1], AttemptOutcome::Refused { code: 11011 });
    }

    #[test]
    fn string_ids_quotes_every_number_in_the_data_of_success_replies() {
        let mut w = world_reading("string-ids");
        let handled = w.handle(Route::V2(method::GET_COIN_LIST), b"", T0);
        let text = String::from_utf8(handled.body).expect("utf-8");
        assert!(text.starts_with(r#"{"code":10000,"msg":"success","data":"#), "{text}");
        assert!(text.contains(r#""coinId":"1280""#), "{text}");
        assert!(text.contains(r#""precision":"6""#), "{text}");
        let reply: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(numbers_in(&reply["data"]), 0);
        // Every endpoint: records, fees, v1 bills; errors keep their numbers (there are none in
        // data) and their code.
        create(&mut w, net("str-1", 1280, "POLYGON", EVM_ADDR, "5"));
        let (_, reply) = lookup(&mut w, "str-1", T0);
        assert_eq!(reply["data"]["record"]["coinId"], "1280");
        assert_eq!(reply["data"]["record"]["fee"]["coinId"], "1329");
        assert_eq!(reply["code"], 10000);
        let (_, reply) = call(&mut w, "v1/bill/info", &json!({"merchant_order_ids": ["str-1"]}), T0);
        assert_eq!(reply["data"][0]["order_detail"]["created"], (T0 / 1000).to_string());
        let (code, reply) = lookup(&mut w, "nope", T0);
        assert_eq!((code, &reply["code"]), (11003, &json!(11003)));
        // Without the reading numbers stay numbers.
        let mut plain = world();
        let (_, reply) = call(&mut plain, method::GET_COIN_LIST, &json!({}), T0);
        assert!(numbers_in(&reply["data"]) > 10);
    }

    fn numbers_in(v: &Value) -> usize {
        match v {
            Value::Number(_) => 1,
            Value::Array(items) => items.iter().map(numbers_in).sum(),
            Value::Object(map) => map.values().map(numbers_in).sum(),
            _ => 0,
        }
    }

    #[test]
    fn the_number_transform_touches_data_numbers_only() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"code":10000,"msg":"success","data":{"a":1,"b":[2,-3.5e2],"c":"4","d":true,"e":null}}"#,
                r#"{"code":10000,"msg":"success","data":{"a":"1","b":["2","-3.5e2"],"c":"4","d":true,"e":null}}"#,
            ),
            (
                r#"{"code":10000,"msg":"a \"9\" and \\","data":[{"x":"y\"1","n":0}]}"#,
                r#"{"code":10000,"msg":"a \"9\" and \\","data":[{"x":"y\"1","n":"0"}]}"#,
            ),
            (
                r#"{"code":10000,"msg":"7","data":12}"#,
                r#"{"code":10000,"msg":"7","data":"12"}"#,
            ),
            (
                r#"{ "code" : 10000 , "data" : { "k" : 5 } }"#,
                r#"{ "code" : 10000 , "data" : { "k" : "5" } }"#,
            ),
            (r#"{"code":10000,"msg":"success"}"#, r#"{"code":10000,"msg":"success"}"#),
        ];
        for (input, expected) in cases {
            let got = quote_data_numbers(input.as_bytes());
            assert_eq!(String::from_utf8_lossy(&got), *expected, "{input}");
        }
    }

    #[test]
    fn parameterless_calls_take_an_empty_body_or_braces_unless_empty_body_only() {
        let parameterless = [
            method::GET_COIN_LIST,
            method::GET_APP_COIN_ASSET_LIST,
            method::GET_FIAT_LIST,
            method::GET_SWAP_COIN_LIST,
        ];
        let mut plain = world();
        let mut strict = world_reading("empty-body-only");
        for m in parameterless {
            let route = Route::v2(m).expect("a method");
            for body in [&b""[..], b"{}"] {
                assert_eq!(plain.handle(route, body, T0).code, 10000, "{m} {body:?}");
            }
            assert_eq!(strict.handle(route, b"", T0).code, 10000, "{m}");
            let refused = strict.handle(route, b"{}", T0);
            assert_eq!(refused.code, 11000, "{m}");
            let reply: Value = serde_json::from_slice(&refused.body).expect("JSON");
            assert_eq!(reply["msg"], "this method takes no parameters: the body must be empty");
        }
        // Calls with parameters are unchanged.
        let (code, _) = call(&mut strict, method::GET_COIN, &json!({"coinId": 1280}), T0);
        assert_eq!(code, 10000);
    }

    #[test]
    fn pre_delisting_lists_usdc_as_such_and_still_pays_it() {
        let mut w = world_reading("pre-delisting");
        let (_, reply) = call(&mut w, method::GET_COIN_LIST, &json!({}), T0);
        let status_of = |reply: &Value, symbol: &str| {
            reply["data"]["coins"]
                .as_array()
                .and_then(|coins| coins.iter().find(|c| c["symbol"] == symbol))
                .map(|c| c["status"].clone())
        };
        assert_eq!(status_of(&reply, "USDC"), Some(json!("Pre-delisting")));
        assert_eq!(status_of(&reply, "USDT"), Some(json!("Normal")));
        let (_, reply) = call(&mut w, method::GET_COIN, &json!({"coinId": 1276}), T0);
        assert_eq!(reply["data"]["coin"]["status"], "Pre-delisting");
        assert_eq!(create(&mut w, net("pd-1", 1276, "POLYGON", EVM_ADDR, "5")).0, 10000);
        let cwallet = json!({"orderId": "pd-2", "coinId": 1276, "cwalletUser": "9558861", "amount": "1"});
        assert_eq!(
            call(&mut w, method::APPLY_APP_WITHDRAW_TO_CWALLET, &cwallet, T0).0,
            10000
        );
        // Maintain still suspends withdrawals.
        let doge = net("pd-3", 1201, "DOGE", "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L", "10");
        assert_eq!(create(&mut w, doge).0, 13005);
        w.settle_due(T0 + 2000);
        assert_eq!(w.ledger().payouts_for("pd-1")[0].status, RecordStatus::Success);
        // Without the reading USDC is Normal.
        let mut plain = world();
        let (_, reply) = call(&mut plain, method::GET_COIN_LIST, &json!({}), T0);
        assert_eq!(status_of(&reply, "USDC"), Some(json!("Normal")));
    }

    #[test]
    fn v1_only_refuses_every_v2_method_before_it_costs_anything() {
        let mut w = world_with(|c| {
            c.readings = Readings::parse("v1-only").expect("reading");
            c.daily_request_limit = Some(2);
        });
        for m in method::ALL {
            let route = Route::v2(m).expect("a method");
            let handled = w.handle(route, b"{}", T0);
            assert_eq!(handled.code, 11013, "{m}");
            let reply: Value = serde_json::from_slice(&handled.body).expect("JSON");
            assert_eq!(reply["msg"], "NoSupportVersion");
        }
        // A refused create is an attempt; v1 works, within the daily cap the v2 calls did not
        // use up.
        assert_eq!(create(&mut w, net("v1o-1", 1280, "TRX", TRX_ADDR, "5")).0, 11013);
        assert_eq!(
            w.ledger().attempts_for("v1o-1")[0].outcome,
            AttemptOutcome::Refused { code: 11013 }
        );
        let token = w.v1_token_id("USDT", "TRX").expect("token");
        let v1 = json!({"merchant_order_id": "v1o-1", "address": TRX_ADDR, "token_id": token, "value": "5"});
        assert_eq!(call(&mut w, "v1/withdraw", &v1, T0).0, 10000);
        assert_eq!(bills(&mut w, &["v1o-1"], T0), 1);
        assert_eq!(
            w.stats().with_code(11013),
            u64::try_from(method::ALL.len() + 1).expect("small")
        );
    }
}
