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
}

impl Route {
    /// The endpoint of a v2 method name, if the sandbox knows it.
    pub fn v2(name: &str) -> Option<Route> {
        method::ALL.iter().find(|m| **m == name).map(|m| Route::V2(m))
    }

    /// The name used in the ledger, in logs and by [`World::force_error`](super::World::force_error).
    pub fn name(self) -> &'static str {
        match self {
            Route::V2(m) => m,
            Route::V1Withdraw => "v1/withdraw",
            Route::V1BillInfo => "v1/bill/info",
        }
    }

    /// Whether this call creates a payout.
    pub fn is_create(self) -> bool {
        match self {
            Route::V2(m) => method::creates_payout(m),
            Route::V1Withdraw => true,
            Route::V1BillInfo => false,
        }
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
    /// The recordId a create committed, for logging.
    pub created: Option<String>,
    /// The orderId of a create (best effort, for logging); empty for reads.
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
