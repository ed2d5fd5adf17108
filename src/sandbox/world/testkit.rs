//! What the world's unit tests share: a demo world, request bodies and calls through
//! [`World::handle`].

use serde_json::Value;

use super::{Route, World};
use crate::api::types::method;
use crate::sandbox::SandboxConfig;

/// 2023-11-14T22:13:20Z, the time most tests run at.
pub(super) const T0: i64 = 1_700_000_000_000;
// A valid payee address on each address family the tests use.
pub(super) const TRX_ADDR: &str = "TPSFu3gV4D7SwHS3HkXs3S8QZauZpyQtWH";
pub(super) const EVM_ADDR: &str = "0x93b748adfd258333e5d1243d1e2160ee0c169afe";
pub(super) const XRP_ADDR: &str = "rN7stzJku7zV8f4Q67t9XHSGeowEbeWgVJ";
pub(super) const BTC_ADDR: &str = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa";

/// The demo world with the default configuration.
pub(super) fn world() -> World {
    World::new(&SandboxConfig::default()).expect("demo world")
}

/// The demo world with the default configuration changed by `f`.
pub(super) fn world_with(f: impl FnOnce(&mut SandboxConfig)) -> World {
    let mut config = SandboxConfig::default();
    f(&mut config);
    World::new(&config).expect("world")
}

/// The body of a v2 network withdrawal.
pub(super) fn net(order: &str, coin: u64, chain: &str, address: &str, amount: &str) -> Value {
    serde_json::json!({
        "orderId": order, "coinId": coin, "chain": chain, "address": address, "amount": amount,
    })
}

/// Sends `body` to the endpoint with this name (a v2 method, or `v1/` and a v1 path) and
/// returns the code and the parsed reply.
pub(super) fn call(w: &mut World, endpoint: &str, body: &Value, now_ms: i64) -> (i64, Value) {
    let route = match endpoint.strip_prefix("v1/") {
        Some(path) => Route::v1(path).expect("known v1 path"),
        None => Route::v2(endpoint).expect("known method"),
    };
    let handled = w.handle(route, body.to_string().as_bytes(), now_ms);
    let reply: Value = serde_json::from_slice(&handled.body).expect("JSON reply");
    assert_eq!(reply["code"], handled.code);
    (handled.code, reply)
}

/// A v2 network withdrawal at [`T0`].
pub(super) fn create(w: &mut World, body: Value) -> (i64, Value) {
    call(w, method::APPLY_APP_WITHDRAW_TO_NETWORK, &body, T0)
}

/// A 5 USDT TRX withdrawal with this orderId at `now_ms`; returns the code.
pub(super) fn create_at(w: &mut World, order: &str, now_ms: i64) -> i64 {
    let body = net(order, 1280, "TRX", TRX_ADDR, "5").to_string();
    w.handle(
        Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK),
        body.as_bytes(),
        now_ms,
    )
    .code
}

/// A coin's balance.
pub(super) fn bal(w: &World, symbol: &str) -> String {
    w.balance(symbol).expect("known coin")
}
