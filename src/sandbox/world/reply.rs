//! What one request to the world comes to: the [`Route`] it came in on, the [`Refusal`] the
//! world may answer instead, and the [`Handled`] outcome: the exact reply bytes plus the
//! [`Transport`] that tells the server (or any other transport) how to deliver them.
//!
//! Replies are serialised here, once, from the client's own wire types, and those bytes are
//! what gets sent.

use std::time::Duration;

use serde::Serialize;

use crate::api::codes;
use crate::api::types::{Empty, Envelope, method};

/// The API route a request came in on. Named apart from the client's `api::Endpoint`, which
/// is the address a client sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/ccpayment/v2/{method}` with one of [`method::ALL`].
    V2(&'static str),
    /// `/ccpayment/v1/withdraw`.
    V1Withdraw,
    /// `/ccpayment/v1/bill/info`.
    V1BillInfo,
    /// `/ccpayment/v1/coin/all`.
    V1CoinAll,
    /// `/ccpayment/v1/support/token`.
    V1SupportToken,
    /// `/ccpayment/v1/token/chain`.
    V1TokenChain,
    /// `/ccpayment/v1/network/fee`.
    V1NetworkFee,
    /// `/ccpayment/v1/assets`.
    V1Assets,
    /// `/ccpayment/v1/check/user`.
    V1CheckUser,
}

impl Route {
    /// The endpoint of a v2 method name, if the sandbox knows it.
    pub fn v2(name: &str) -> Option<Route> {
        method::ALL.iter().find(|m| **m == name).map(|m| Route::V2(m))
    }

    /// The endpoint of a v1 path (after `/ccpayment/v1/`), if the sandbox knows it.
    pub fn v1(path: &str) -> Option<Route> {
        Some(match path {
            method::V1_WITHDRAW => Route::V1Withdraw,
            method::V1_BILL_INFO => Route::V1BillInfo,
            method::V1_COIN_ALL => Route::V1CoinAll,
            method::V1_SUPPORT_TOKEN => Route::V1SupportToken,
            method::V1_TOKEN_CHAIN => Route::V1TokenChain,
            method::V1_NETWORK_FEE => Route::V1NetworkFee,
            method::V1_ASSETS => Route::V1Assets,
            method::V1_CHECK_USER => Route::V1CheckUser,
            _ => return None,
        })
    }

    /// The name used in the ledger, in logs and by [`World::force_error`](super::World::force_error):
    /// the v2 method, or `v1/` and the path, as the client labels its requests.
    pub fn name(self) -> &'static str {
        match self {
            Route::V2(m) => m,
            Route::V1Withdraw => "v1/withdraw",
            Route::V1BillInfo => "v1/bill/info",
            Route::V1CoinAll => "v1/coin/all",
            Route::V1SupportToken => "v1/support/token",
            Route::V1TokenChain => "v1/token/chain",
            Route::V1NetworkFee => "v1/network/fee",
            Route::V1Assets => "v1/assets",
            Route::V1CheckUser => "v1/check/user",
        }
    }

    /// Whether this call creates a payout.
    pub fn is_create(self) -> bool {
        match self {
            Route::V2(m) => method::creates_payout(m),
            Route::V1Withdraw => true,
            Route::V1BillInfo
            | Route::V1CoinAll
            | Route::V1SupportToken
            | Route::V1TokenChain
            | Route::V1NetworkFee
            | Route::V1Assets
            | Route::V1CheckUser => false,
        }
    }

    /// Whether this is one of the six batch withdrawal routes (apply, append, confirm, abort,
    /// the batch, its task list): what `no-batch-withdraw` takes away.
    pub fn is_batch(self) -> bool {
        matches!(
            self,
            Route::V2(
                method::APPLY_BATCH_WITHDRAW
                    | method::APPEND_BATCH_WITHDRAW
                    | method::CONFIRM_BATCH_WITHDRAW
                    | method::ABORT_BATCH_WITHDRAW
                    | method::GET_BATCH_WITHDRAW_ORDER
                    | method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST
            )
        )
    }

    /// Whether this is a v1 route (v1 signatures, signed success replies).
    pub fn is_v1(self) -> bool {
        !matches!(self, Route::V2(_))
    }
}

/// What the transport does with a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Send the body now.
    Reply,
    /// Hold the body for this long, then send it.
    Slow(Duration),
    /// Close the connection without a reply.
    Drop,
    /// Answer HTTP 502 with an HTML body instead of the API reply.
    BadGateway,
    /// Answer as an unknown method: the router's plain-text HTTP 404 (a route the account does
    /// not have, under `no-batch-withdraw`).
    NotFound,
}

/// The outcome of one authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The envelope code (0 when there is no API reply: dropped or 502).
    pub code: i64,
    /// The exact reply bytes.
    pub body: Vec<u8>,
    pub transport: Transport,
    /// The orderId whose reply is held back; the server calls [`World::release_in_flight`](super::World::release_in_flight)
    /// once the reply is out (or abandoned), and duplicates answer 11007 until then.
    pub in_flight: Option<String>,
    /// The recordId a create committed (for the batch routes: the batch's billId when the
    /// apply, append or confirm stored something), for logging; the server also wakes its
    /// settlement task on it and never replies about a commit it could not save.
    pub created: Option<String>,
    /// The orderId of a create (the batchOrderId of a batch route; best effort, for logging);
    /// empty for reads.
    pub order_id: String,
}

/// Why the world said no: the error code and message of the envelope it answers with. Named
/// apart from the client's `api::ApiError`, which is what a client makes of such a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i64,
    pub msg: String,
}

impl Refusal {
    /// An error with CCPayment's name for the code as its message.
    pub fn code(code: i64) -> Refusal {
        Refusal {
            code,
            msg: codes::name(code).to_owned(),
        }
    }

    /// An error with a specific message.
    pub fn msg(code: i64, msg: impl Into<String>) -> Refusal {
        Refusal { code, msg: msg.into() }
    }

    /// 11000 (invalid argument) with a message saying what is wrong.
    pub(super) fn invalid(msg: impl Into<String>) -> Refusal {
        Refusal::msg(11000, msg)
    }
}

/// The reply bytes of an error envelope (no `data`).
pub fn error_body(code: i64, msg: &str) -> Vec<u8> {
    envelope_bytes::<Empty>(code, msg, None)
}

fn envelope_bytes<T: Serialize>(code: i64, msg: &str, data: Option<T>) -> Vec<u8> {
    let envelope = Envelope {
        code,
        msg: msg.to_owned(),
        data,
    };
    // The wire types are plain structs and string-keyed maps: serialising them cannot fail.
    serde_json::to_vec(&envelope).expect("wire types always serialise to JSON")
}

pub(super) fn answer<T: Serialize>(result: Result<T, Refusal>) -> (i64, Vec<u8>) {
    match result {
        Ok(data) => (codes::SUCCESS, envelope_bytes(codes::SUCCESS, "success", Some(data))),
        Err(e) => (e.code, error_body(e.code, &e.msg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sandbox counts and forces errors by the label the client gives its requests.
    #[test]
    fn every_v1_path_has_a_route_named_as_the_client_labels_it() {
        for path in method::V1_ALL {
            let route = Route::v1(path).expect("a route");
            assert_eq!(route.name(), crate::api::Endpoint::v1(path).label());
            assert!(route.is_v1());
            assert_eq!(route.is_create(), *path == method::V1_WITHDRAW, "{path}");
        }
        assert_eq!(Route::v1("getCoinList"), None);
        let batch: Vec<&str> = method::ALL
            .iter()
            .filter(|m| Route::V2(m).is_batch())
            .copied()
            .collect();
        assert_eq!(
            batch,
            [
                method::APPLY_BATCH_WITHDRAW,
                method::APPEND_BATCH_WITHDRAW,
                method::CONFIRM_BATCH_WITHDRAW,
                method::ABORT_BATCH_WITHDRAW,
                method::GET_BATCH_WITHDRAW_ORDER,
                method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST,
            ]
        );
        assert!(Route::v2(method::APPLY_BATCH_WITHDRAW).is_some_and(Route::is_create));
        assert!(Route::v2(method::CONFIRM_BATCH_WITHDRAW).is_some_and(Route::is_create));
        assert!(Route::v2(method::ABORT_BATCH_WITHDRAW).is_some_and(|r| !r.is_create()));
        assert_eq!(Route::v1("withdrawal"), None);
    }
}
