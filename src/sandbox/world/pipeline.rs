//! The request pipeline: [`World::handle`] takes one authenticated request through the route
//! gate of `no-batch-withdraw`, settling what is due, the version gate of `v1-only`, the rate
//! limit, the daily caps, forced errors and faults, then parses the body and runs the endpoint,
//! applies the `string-ids` transform to the reply bytes, and counts the result.
//!
//! The order of those steps is the simulated API's behaviour (which code a request gets when
//! several apply), so it lives in one place: [`World::handle`] and the `respond` it calls.

use std::time::Duration;

use serde_json::Value;

use super::World;
use super::faults::Fault;
use super::parse::CHECK_ADDRESS_FIELDS;
use super::parse::{
    ABORT_BATCH_FIELDS, ADDRESS_FIELDS, APPEND_BATCH_FIELDS, APPLY_BATCH_FIELDS, BATCH_ORDER_FIELDS,
    BATCH_RECORDS_FIELDS, CHAIN_LIST_FIELDS, COIN_ID_FIELDS, CONFIRM_BATCH_FIELDS, CWALLET_FIELDS, CWALLET_USER_FIELDS,
    FEE_FIELDS, LIST_FIELDS, NETWORK_FIELDS, PRICE_FIELDS, RECORD_FIELDS, V1_BILL_FIELDS, V1_WITHDRAW_FIELDS, parse,
};
use super::readings::quote_data_numbers;
use super::reply::{Handled, Refusal, Route, Transport, answer, error_body};
use super::v1::{V1_ASSETS_FIELDS, V1_FEE_FIELDS, V1_TOKEN_FIELDS, V1_USER_FIELDS};
use crate::api::codes;
use crate::api::types::{
    AbortBatchWithdrawRequest, AppendBatchWithdrawRequest, ApplyBatchWithdrawRequest, CoinList,
    ConfirmBatchWithdrawRequest, CwalletWithdrawRequest, Empty, FiatList, NetworkWithdrawRequest, SwapCoinList,
    V1WithdrawRequest, method,
};
use crate::sandbox::{AttemptOutcome, CreateAttempt, STATS_NO_REPLY, STATS_SUCCESS};

impl World {
    /// Handles one authenticated request: settles what is due, then applies the version gate,
    /// the rate limit, the daily caps, forced errors and faults, and finally the body; counts
    /// the result.
    pub fn handle(&mut self, route: Route, body: &[u8], now_ms: i64) -> Handled {
        // `no-batch-withdraw` (R14): the route does not exist on this account. The transports
        // ask [`World::offers`] before they authenticate, as a router answers before the API;
        // this is the same answer for whoever calls the world directly. Not counted: it never
        // reached the API.
        if !self.offers(route) {
            return Handled {
                code: 0,
                body: NOT_FOUND_BODY.to_vec(),
                transport: Transport::NotFound,
                in_flight: None,
                created: None,
                order_id: String::new(),
            };
        }
        let mut handled = self.respond(route, body, now_ms);
        // R4, last so that it covers every endpoint, v1 included (whose success replies are
        // signed over these bytes by the transport, after this).
        if self.readings.string_ids && handled.code == codes::SUCCESS && !handled.body.is_empty() {
            handled.body = quote_data_numbers(&handled.body);
        }
        let code = match handled.transport {
            Transport::Drop | Transport::BadGateway | Transport::NotFound => STATS_NO_REPLY,
            Transport::Reply | Transport::Slow(_) if handled.code == codes::SUCCESS => STATS_SUCCESS,
            Transport::Reply | Transport::Slow(_) => handled.code,
        };
        self.requests.count(route.name(), code, now_ms);
        handled
    }

    /// Whether this account has the route: every known one, except the six batch routes under
    /// `no-batch-withdraw`, which answer as an unknown method does.
    pub fn offers(&self, route: Route) -> bool {
        !(self.readings.no_batch_withdraw && route.is_batch()) && self.has_route(route)
    }

    fn respond(&mut self, route: Route, body: &[u8], now_ms: i64) -> Handled {
        self.settle_due(now_ms);
        let is_create = route.is_create();
        // Best effort, only for the attempt log: the body has not been validated yet.
        let peeked_order = if is_create {
            peek_order_id(route, body)
        } else {
            String::new()
        };

        // R15: an account that can only use v1 refuses every v2 route before the request costs
        // anything (no token, no daily count, no fault); a refused create is still an attempt.
        if self.readings.v1_only && !route.is_v1() {
            return self.refuse(route, peeked_order, now_ms, Refusal::code(11013));
        }
        if !self.take_token(now_ms) {
            return self.refuse(route, peeked_order, now_ms, Refusal::code(11004));
        }
        self.roll_day(now_ms);
        let over_requests = self.daily_request_limit.is_some_and(|limit| self.day.requests >= limit);
        let over_creates = is_create && self.daily_create_limit.is_some_and(|limit| self.day.creates >= limit);
        if over_requests || over_creates {
            return self.refuse(route, peeked_order, now_ms, Refusal::code(11009));
        }
        self.day.requests += 1;
        if is_create {
            self.day.creates += 1;
        }

        if let Some(forced) = self.forced.get_mut(route.name()) {
            let error = Refusal::msg(forced.code, forced.msg.clone());
            forced.remaining -= 1;
            if forced.remaining == 0 {
                self.forced.remove(route.name());
            }
            return self.refuse(route, peeked_order, now_ms, error);
        }

        let fault = if is_create || self.faults.on_reads {
            self.draw_fault()
        } else {
            None
        };
        let mut handled = match fault {
            Some(Fault::DropBeforeCommit) => Handled {
                code: 0,
                body: Vec::new(),
                transport: Transport::Drop,
                in_flight: None,
                created: None,
                order_id: String::new(),
            },
            Some(Fault::Http5xx) => Handled {
                code: 0,
                body: Vec::new(),
                transport: Transport::BadGateway,
                in_flight: None,
                created: None,
                order_id: String::new(),
            },
            Some(Fault::Internal11002) => {
                let error = Refusal::code(11002);
                Handled {
                    code: error.code,
                    body: error_body(error.code, &error.msg),
                    transport: Transport::Reply,
                    in_flight: None,
                    created: None,
                    order_id: String::new(),
                }
            }
            Some(Fault::DropAfterCommit) | Some(Fault::Slow) | None => {
                self.dispatch(route, body, &peeked_order, now_ms)
            }
        };
        if let Some(fault) = fault {
            if is_create {
                self.record_attempt(
                    route,
                    &peeked_order,
                    now_ms,
                    AttemptOutcome::Fault {
                        fault: fault.name().to_owned(),
                    },
                );
            }
            match fault {
                Fault::DropAfterCommit => {
                    handled.transport = Transport::Drop;
                    if self.readings.batch_partial_apply && route == Route::V2(method::APPLY_BATCH_WITHDRAW) {
                        self.keep_first_half_of_last_apply(body);
                    }
                }
                Fault::Slow => {
                    handled.transport = Transport::Slow(Duration::from_millis(self.faults.slow_delay_ms));
                    // Until the held reply is out, a duplicate of this orderId is "repeated
                    // submission" rather than "order exists". (A batchOrderId is another
                    // namespace, and a reused one is 11007 anyway unless a reading says not.)
                    if handled.created.is_some() && !peeked_order.is_empty() && !route.is_batch() {
                        self.in_flight.insert(peeked_order.clone());
                        handled.in_flight = Some(peeked_order.clone());
                    }
                }
                _ => {}
            }
        }
        if is_create && handled.order_id.is_empty() {
            handled.order_id = peeked_order;
        }
        handled
    }

    fn refuse(&mut self, route: Route, order_id: String, now_ms: i64, error: Refusal) -> Handled {
        if route.is_create() {
            self.record_attempt(route, &order_id, now_ms, AttemptOutcome::Refused { code: error.code });
        }
        Handled {
            code: error.code,
            body: error_body(error.code, &error.msg),
            transport: Transport::Reply,
            in_flight: None,
            created: None,
            order_id,
        }
    }

    fn record_attempt(&mut self, route: Route, order_id: &str, at_ms: i64, outcome: AttemptOutcome) {
        self.attempts.push(CreateAttempt {
            order_id: order_id.to_owned(),
            endpoint: route.name().to_owned(),
            at_ms,
            outcome,
        });
    }

    /// Parses the body and runs the endpoint.
    fn dispatch(&mut self, route: Route, body: &[u8], peeked: &str, now_ms: i64) -> Handled {
        let mut created = None;
        let (code, bytes) = match route {
            Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK) => {
                let parsed = parse::<NetworkWithdrawRequest>(body, NETWORK_FIELDS);
                let order_id = parsed
                    .as_ref()
                    .map_or_else(|_| peeked.to_owned(), |r| r.order_id.clone());
                let result = parsed.and_then(|r| self.apply_network(r, now_ms));
                created = self.log_create(route, &order_id, now_ms, &result, |r| &r.record_id);
                answer(result)
            }
            Route::V2(method::APPLY_APP_WITHDRAW_TO_CWALLET) => {
                let parsed = parse::<CwalletWithdrawRequest>(body, CWALLET_FIELDS);
                let order_id = parsed
                    .as_ref()
                    .map_or_else(|_| peeked.to_owned(), |r| r.order_id.clone());
                let result = parsed.and_then(|r| self.apply_cwallet(r, now_ms));
                created = self.log_create(route, &order_id, now_ms, &result, |r| &r.record_id);
                answer(result)
            }
            Route::V1Withdraw => {
                let parsed = parse::<V1WithdrawRequest>(body, V1_WITHDRAW_FIELDS);
                let order_id = parsed
                    .as_ref()
                    .map_or_else(|_| peeked.to_owned(), |r| r.merchant_order_id.clone());
                let result = parsed.and_then(|r| self.v1_withdraw(r, now_ms));
                created = self.log_create(route, &order_id, now_ms, &result, |r| &r.record_id);
                answer(result)
            }
            Route::V1BillInfo => answer(parse(body, V1_BILL_FIELDS).and_then(|r| self.v1_bill_info(&r, now_ms))),
            Route::V1CoinAll | Route::V1SupportToken => answer(parse::<Empty>(body, &[]).map(|_| self.v1_coin_list())),
            Route::V1TokenChain => answer(parse(body, V1_TOKEN_FIELDS).and_then(|q| self.v1_token_chain(&q))),
            Route::V1NetworkFee => answer(parse(body, V1_FEE_FIELDS).and_then(|q| self.v1_network_fee(&q))),
            Route::V1Assets => answer(parse(body, V1_ASSETS_FIELDS).and_then(|q| self.v1_assets(&q))),
            Route::V1CheckUser => answer(parse(body, V1_USER_FIELDS).and_then(|q| self.v1_check_user(&q))),
            Route::V2(method::GET_APP_WITHDRAW_RECORD) => {
                answer(parse(body, RECORD_FIELDS).and_then(|q| self.get_record(&q, now_ms)))
            }
            Route::V2(method::GET_APP_WITHDRAW_RECORD_LIST) => {
                answer(parse(body, LIST_FIELDS).and_then(|q| self.list_records(&q, now_ms)))
            }
            Route::V2(method::GET_APP_COIN_ASSET) => {
                answer(parse(body, COIN_ID_FIELDS).and_then(|q| self.coin_asset(&q)))
            }
            Route::V2(method::GET_APP_COIN_ASSET_LIST) => answer(self.no_params(body).map(|_| self.coin_asset_list())),
            Route::V2(method::GET_COIN_LIST) => answer(self.no_params(body).map(|_| CoinList {
                coins: self.catalogue.coins.clone(),
            })),
            Route::V2(method::GET_COIN) => answer(parse(body, COIN_ID_FIELDS).and_then(|q| self.coin(&q))),
            Route::V2(method::GET_COIN_USDT_PRICE) => answer(parse(body, PRICE_FIELDS).map(|q| self.prices(&q))),
            Route::V2(method::GET_WITHDRAW_FEE) => answer(parse(body, FEE_FIELDS).and_then(|q| self.withdraw_fee(&q))),
            Route::V2(method::CHECK_WITHDRAWAL_ADDRESS_VALIDITY) => {
                answer(parse(body, ADDRESS_FIELDS).and_then(|q| self.address_validity(&q)))
            }
            Route::V2(method::CHECK_WITHDRAW_ADDRESS) => {
                answer(parse(body, CHECK_ADDRESS_FIELDS).and_then(|q| self.check_withdraw_address(&q)))
            }
            Route::V2(method::GET_CWALLET_USER_ID) => {
                answer(parse(body, CWALLET_USER_FIELDS).and_then(|q| self.cwallet_user(&q)))
            }
            Route::V2(method::GET_CHAIN_LIST) => answer(parse(body, CHAIN_LIST_FIELDS).map(|q| self.chain_list(&q))),
            Route::V2(method::GET_FIAT_LIST) => answer(self.no_params(body).map(|_| FiatList {
                fiats: self.catalogue.fiats.clone(),
            })),
            Route::V2(method::GET_SWAP_COIN_LIST) => answer(self.no_params(body).map(|_| SwapCoinList {
                coins: self.catalogue.swap_coins.clone(),
            })),
            Route::V2(method::APPLY_BATCH_WITHDRAW) => {
                let parsed = parse::<ApplyBatchWithdrawRequest>(body, APPLY_BATCH_FIELDS);
                let id = parsed
                    .as_ref()
                    .map_or_else(|_| peeked.to_owned(), |r| r.batch_order_id.clone());
                let result = parsed.and_then(|r| self.apply_batch(r, now_ms));
                created = self.log_create(route, &id, now_ms, &result, |r| &r.bill_id);
                answer(result)
            }
            Route::V2(method::APPEND_BATCH_WITHDRAW) => {
                let parsed = parse::<AppendBatchWithdrawRequest>(body, APPEND_BATCH_FIELDS);
                let id = parsed
                    .as_ref()
                    .map_or_else(|_| peeked.to_owned(), |r| r.batch_order_id.clone());
                let result = parsed.and_then(|r| self.append_batch(r, now_ms));
                created = self.log_create(route, &id, now_ms, &result, |bill_id| bill_id);
                // The reply has no fields (`AppendBatchWithdrawReply`).
                answer(result.map(|_| Empty {}))
            }
            Route::V2(method::CONFIRM_BATCH_WITHDRAW) => {
                let parsed = parse::<ConfirmBatchWithdrawRequest>(body, CONFIRM_BATCH_FIELDS);
                let id = parsed
                    .as_ref()
                    .map_or_else(|_| peeked.to_owned(), |r| r.batch_order_id.clone());
                let result = parsed.and_then(|r| self.confirm_batch(r, now_ms));
                created = self.log_create(route, &id, now_ms, &result, |r| &r.bill_id);
                answer(result)
            }
            Route::V2(method::ABORT_BATCH_WITHDRAW) => answer(
                parse::<AbortBatchWithdrawRequest>(body, ABORT_BATCH_FIELDS).and_then(|r| self.abort_batch(r, now_ms)),
            ),
            Route::V2(method::GET_BATCH_WITHDRAW_ORDER) => {
                answer(parse(body, BATCH_ORDER_FIELDS).and_then(|q| self.get_batch(&q, now_ms)))
            }
            Route::V2(method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST) => {
                answer(parse(body, BATCH_RECORDS_FIELDS).and_then(|q| self.list_batch_records(&q, now_ms)))
            }
            Route::V2(other) => answer::<Empty>(Err(Refusal::invalid(format!("method {other} is not simulated")))),
        };
        Handled {
            code,
            body: bytes,
            transport: Transport::Reply,
            in_flight: None,
            created,
            order_id: String::new(),
        }
    }

    fn log_create<T>(
        &mut self,
        route: Route,
        order_id: &str,
        now_ms: i64,
        result: &Result<T, Refusal>,
        record_of: impl Fn(&T) -> &String,
    ) -> Option<String> {
        let (outcome, created) = match result {
            Ok(reply) => {
                let record_id = record_of(reply).clone();
                (
                    AttemptOutcome::Created {
                        record_id: record_id.clone(),
                    },
                    Some(record_id),
                )
            }
            Err(e) => (AttemptOutcome::Refused { code: e.code }, None),
        };
        self.record_attempt(route, order_id, now_ms, outcome);
        created
    }

    /// The held reply of this orderId is out (or abandoned): duplicates now get 11011.
    pub fn release_in_flight(&mut self, order_id: &str) {
        self.in_flight.remove(order_id);
    }
}

/// The body the router answers an unknown method with.
pub const NOT_FOUND_BODY: &[u8] = b"404 page not found";

/// The orderId (a batch route's batchOrderId) of a create body, if it has one, without
/// validating anything else.
fn peek_order_id(route: Route, body: &[u8]) -> String {
    let key = if route.is_v1() {
        "merchant_order_id"
    } else if route.is_batch() {
        "batchOrderId"
    } else {
        "orderId"
    };
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get(key).and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sandbox::world::testkit::*;

    #[test]
    fn concurrent_creates_with_one_order_id_make_one_payout() {
        use std::sync::{Arc, Mutex};
        let w = Arc::new(Mutex::new(world()));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let w = Arc::clone(&w);
                std::thread::spawn(move || {
                    let body = net("race-1", 1280, "TRX", TRX_ADDR, "5").to_string();
                    let mut w = w.lock().expect("lock");
                    w.handle(Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK), body.as_bytes(), T0)
                        .code
                })
            })
            .collect();
        let codes: Vec<i64> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
        assert_eq!(codes.iter().filter(|&&c| c == 10000).count(), 1);
        assert_eq!(codes.iter().filter(|&&c| c == 11011).count(), 15);
        let w = w.lock().expect("lock");
        assert_eq!(w.ledger().payouts.len(), 1);
        assert_eq!(bal(&w, "USDT"), "999995");
    }
}
