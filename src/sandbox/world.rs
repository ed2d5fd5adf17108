//! The sandbox's state machine: balances, payouts, the ledger, the rate-limit bucket, the daily
//! counters, forced errors, seeded faults and the webhook outbox.
//!
//! Everything here is pure: methods take the current time as `now_ms` and parsed (or raw)
//! input, and return the exact reply bytes plus what the transport should do with them. There
//! is no I/O, no tokio and no lock inside; the server wraps one [`World`] in one mutex, which is
//! what makes "check the orderId and insert the payout" atomic. Authentication (headers,
//! signature, timestamp, IP whitelist) is the server's job; [`World::handle`] starts where an
//! authenticated request begins to cost something.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::demo::{Catalogue, hot_wallet};
use super::persist::{DaySnapshot, DebitSnapshot, PayoutSnapshot, RngSnapshot, SNAPSHOT_VERSION, Snapshot};
use super::{
    AttemptOutcome, CreateAttempt, Faults, Ledger, LedgerPayout, PerSecond, RateLimit, RequestCount, STATS_NO_REPLY,
    STATS_SUCCESS, SandboxConfig, SandboxStats,
};
use crate::api::codes;
use crate::api::types::{
    AddressValidity, AddressValidityQuery, ChainList, ChainListQuery, CoinAsset, CoinAssetData, CoinAssetList,
    CoinData, CoinIdQuery, CoinList, CoinPriceQuery, CoinPrices, CwalletUserQuery, CwalletWithdrawRequest, Empty,
    Envelope, FeeAmount, FiatList, MAX_ORDER_IDS_PER_LIST_QUERY, NetworkWithdrawRequest, RECORD_LIST_PAGE_SIZE,
    RecordStatus, SwapCoinList, V1_MAX_ORDER_IDS_PER_QUERY, V1Bill, V1BillInfoRequest, V1OrderDetail, V1Trade,
    V1WithdrawReceipt, V1WithdrawRequest, V1WithdrawWebhook, WebhookEvent, WebhookWithdrawal, WithdrawFeeData,
    WithdrawFeeQuery, WithdrawReceipt, WithdrawRecord, WithdrawRecordData, WithdrawRecordListQuery, WithdrawRecordPage,
    WithdrawRecordQuery, method,
};
use crate::rules::address::{AddressFamily, check_address, parse_cwallet_recipient};

/// The reason a failed payout carries.
pub const FAILURE_REASON: &str = "the network rejected the transfer";
/// The chain name CCPayment gives Cwallet transfers.
pub const CWALLET_CHAIN: &str = "Cwallet OS";
/// The default and maximum window of `getAppWithdrawRecordList`.
const LIST_WINDOW_SECS: i64 = 90 * 24 * 60 * 60;
/// `notifyUrl` is at most this long.
const MAX_NOTIFY_URL_LEN: usize = 150;
/// The per-second request counters keep this many seconds (a day).
const STATS_SECONDS: usize = 24 * 60 * 60;

// ---------------------------------------------------------------------------------------------
// Endpoints, replies, transport

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

    /// The name used in the ledger, in logs and by [`World::force_error`].
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
    /// The orderId whose reply is held back; the server calls [`World::release_in_flight`]
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

    fn invalid(msg: impl Into<String>) -> Refusal {
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

fn answer<T: Serialize>(result: Result<T, Refusal>) -> (i64, Vec<u8>) {
    match result {
        Ok(data) => (codes::SUCCESS, envelope_bytes(codes::SUCCESS, "success", Some(data))),
        Err(e) => (e.code, error_body(e.code, &e.msg)),
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook outbox

/// Which signature and body shape a webhook uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookScheme {
    /// `{"type":"ApiWithdrawal","msg":{..}}`, HMAC-SHA256.
    V2,
    /// The flat v1 body, SHA-256 with the secret inside.
    V1,
}

/// A webhook to send: the server's dispatcher signs and delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookJob {
    pub scheme: WebhookScheme,
    pub url: String,
    pub record_id: String,
    pub order_id: String,
    pub status: RecordStatus,
    /// The exact body to send (and sign).
    pub body: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// PRNG

/// splitmix64: tiny, fast, and good enough for fault injection. Seeded, so a run replays.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    DropBeforeCommit,
    Http5xx,
    Internal11002,
    DropAfterCommit,
    Slow,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::DropBeforeCommit => "drop_before_commit",
            Fault::Http5xx => "http_5xx",
            Fault::Internal11002 => "internal_11002",
            Fault::DropAfterCommit => "drop_after_commit",
            Fault::Slow => "slow",
        }
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last_ms: i64,
}

#[derive(Debug, Clone, Default)]
struct DayCounters {
    day: i64,
    requests: u64,
    creates: u64,
}

/// The counters behind [`SandboxStats`]: one per (endpoint, result code), two per second.
#[derive(Debug, Clone, Default)]
struct RequestCounters {
    by_result: BTreeMap<(&'static str, i64), u64>,
    /// The Unix second of `seconds[0]`; set when the first second is counted.
    start_sec: Option<i64>,
    /// (accepted, answered 11004) per second, the last [`STATS_SECONDS`] at most.
    seconds: VecDeque<(u64, u64)>,
}

impl RequestCounters {
    /// Starts the per-second series at `now_ms`, if it has not started yet.
    fn start(&mut self, now_ms: i64) {
        self.start_sec.get_or_insert(now_ms.div_euclid(1000));
    }

    fn count(&mut self, endpoint: &'static str, code: i64, now_ms: i64) {
        *self.by_result.entry((endpoint, code)).or_default() += 1;
        let slot = self.second(now_ms.div_euclid(1000));
        if code == 11004 {
            slot.1 += 1;
        } else {
            slot.0 += 1;
        }
    }

    /// The counters of Unix second `sec`, dropping the oldest seconds past [`STATS_SECONDS`].
    /// A second before the start (a clock that stepped back) counts in the first one.
    fn second(&mut self, sec: i64) -> &mut (u64, u64) {
        let mut start = *self.start_sec.get_or_insert(sec);
        let window = STATS_SECONDS as i64;
        if sec - start >= window {
            let drop = usize::try_from(sec - start - window + 1).unwrap_or(usize::MAX);
            self.seconds.drain(..drop.min(self.seconds.len()));
            start = sec - window + 1;
            self.start_sec = Some(start);
        }
        let index = usize::try_from(sec - start).unwrap_or(0);
        if self.seconds.len() <= index {
            self.seconds.resize(index + 1, (0, 0));
        }
        &mut self.seconds[index]
    }

    fn stats(&self) -> SandboxStats {
        SandboxStats {
            requests: self
                .by_result
                .iter()
                .map(|(&(endpoint, code), &count)| RequestCount {
                    endpoint: endpoint.to_owned(),
                    code,
                    count,
                })
                .collect(),
            per_second: PerSecond {
                start_sec: self.start_sec.unwrap_or(0),
                accepted: self.seconds.iter().map(|s| s.0).collect(),
                rate_limited: self.seconds.iter().map(|s| s.1).collect(),
            },
        }
    }
}

#[derive(Debug, Clone)]
struct ForcedError {
    code: i64,
    msg: String,
    remaining: u32,
}

/// A committed payout and what the sandbox needs to settle, refund and report it.
#[derive(Debug, Clone)]
struct Payout {
    ledger: LedgerPayout,
    from_address: String,
    contract: String,
    /// CCPayment's own order id (v1 `order_id`).
    ccp_order_id: String,
    /// Everything debited on commit, refunded if the payout fails.
    debits: Vec<(u64, Decimal)>,
    due_ms: i64,
    /// Decided at commit so the outcome depends only on the seed and the order of creates.
    will_fail: bool,
    /// Where v2 webhooks for this payout go.
    webhook_url: Option<String>,
}

/// A validated withdrawal, ready to commit.
#[derive(Debug, Clone)]
struct NewPayout {
    api: &'static str,
    withdraw_type: &'static str,
    coin_id: u64,
    chain: String,
    to_address: String,
    memo: String,
    cwallet_user: String,
    amount: String,
    /// (fee coin id, fee amount).
    fee: Option<(u64, Decimal)>,
    receiver_gets: Decimal,
    merchant_pays_fee: bool,
    debits: Vec<(u64, Decimal)>,
    webhook_url: Option<String>,
}

/// The simulated CCPayment account.
#[derive(Debug)]
pub struct World {
    catalogue: Catalogue,
    settle_delay_ms: i64,
    fail_rate: f64,
    failing_recipients: HashSet<String>,
    rate_limit: Option<RateLimit>,
    daily_create_limit: Option<u64>,
    daily_request_limit: Option<u64>,
    day_length_ms: i64,
    reset_offset_ms: i64,
    webhook_url: Option<String>,
    faults: Faults,
    balances: BTreeMap<u64, Decimal>,
    /// In creation order; the index is the cursor of `getAppWithdrawRecordList`.
    payouts: Vec<Payout>,
    by_order: HashMap<String, usize>,
    by_record: HashMap<String, usize>,
    /// Unsettled payouts by due time, so settling costs O(settled · log n).
    due: BTreeSet<(i64, usize)>,
    in_flight: HashSet<String>,
    attempts: Vec<CreateAttempt>,
    bucket: Option<Bucket>,
    day: DayCounters,
    rng: SplitMix64,
    forced: HashMap<String, ForcedError>,
    outbox: Vec<WebhookJob>,
    requests: RequestCounters,
    next_seq: u64,
    fee_quotes: u64,
    /// The seed the PRNG started from (a restored PRNG state is kept only for the same seed).
    seed: u64,
    /// Counts changes that must reach the state file: commits, settlements, balance changes.
    generation: u64,
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn fmt_decimal(d: Decimal) -> String {
    d.normalize().to_string()
}

impl World {
    /// A world in its initial state: demo catalogue, demo balances with the configured
    /// overrides, no payouts.
    ///
    /// # Errors
    ///
    /// A balance override names an unknown coin or is not a plain non-negative decimal.
    pub fn new(config: &SandboxConfig) -> Result<World, String> {
        let catalogue = Catalogue::demo();
        let mut balances = BTreeMap::new();
        for (&coin_id, amount) in &catalogue.balances {
            let value = Decimal::from_str_exact(amount).map_err(|e| format!("demo balance {amount:?}: {e}"))?;
            balances.insert(coin_id, value);
        }
        let mut world = World {
            catalogue,
            settle_delay_ms: duration_ms(config.settle_delay),
            fail_rate: config.fail_rate,
            failing_recipients: config.failing_recipients.iter().cloned().collect(),
            rate_limit: config.rate_limit,
            daily_create_limit: config.daily_create_limit,
            daily_request_limit: config.daily_request_limit,
            day_length_ms: duration_ms(config.day_length).max(1),
            reset_offset_ms: duration_ms(config.daily_reset_offset),
            webhook_url: config.webhook_url.clone(),
            faults: config.faults.clone(),
            balances,
            payouts: Vec::new(),
            by_order: HashMap::new(),
            by_record: HashMap::new(),
            due: BTreeSet::new(),
            in_flight: HashSet::new(),
            attempts: Vec::new(),
            bucket: None,
            day: DayCounters::default(),
            rng: SplitMix64(config.seed),
            forced: HashMap::new(),
            outbox: Vec::new(),
            requests: RequestCounters::default(),
            next_seq: 0,
            fee_quotes: 0,
            seed: config.seed,
            generation: 0,
        };
        for (symbol, amount) in &config.balances {
            world.set_balance(symbol, amount)?;
        }
        Ok(world)
    }

    // -- operator controls ---------------------------------------------------------------------

    /// Replaces the fault probabilities.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Sets the balance of a coin.
    ///
    /// # Errors
    ///
    /// Unknown coin symbol, or an amount that is not a plain non-negative decimal.
    pub fn set_balance(&mut self, coin_symbol: &str, amount: &str) -> Result<(), String> {
        let coin_id = self
            .catalogue
            .coin_by_symbol(coin_symbol)
            .map(|c| c.coin_id)
            .ok_or_else(|| format!("unknown coin {coin_symbol:?}"))?;
        let value = parse_plain_decimal(amount).ok_or_else(|| format!("balance {amount:?} is not a plain decimal"))?;
        self.balances.insert(coin_id, value);
        self.generation += 1;
        Ok(())
    }

    /// The balance of a coin as a decimal string, if the coin exists.
    pub fn balance(&self, coin_symbol: &str) -> Option<String> {
        let coin = self.catalogue.coin_by_symbol(coin_symbol)?;
        Some(fmt_decimal(self.balance_of(coin.coin_id)))
    }

    /// Sets a chain's status (`Normal` or `Maintenance`).
    ///
    /// # Errors
    ///
    /// Unknown chain.
    pub fn set_chain_status(&mut self, chain: &str, status: &str) -> Result<(), String> {
        let info = self
            .catalogue
            .chain_mut(chain)
            .ok_or_else(|| format!("unknown chain {chain:?}"))?;
        info.status = status.to_owned();
        Ok(())
    }

    /// The next `times` requests to `endpoint_name` (v2 method name, `v1/withdraw` or
    /// `v1/bill/info`) that pass authentication and limits answer this code, committing nothing.
    pub fn force_error(&mut self, endpoint_name: &str, code: i64, msg: &str, times: u32) {
        if times == 0 {
            self.forced.remove(endpoint_name);
            return;
        }
        self.forced.insert(
            endpoint_name.to_owned(),
            ForcedError {
                code,
                msg: msg.to_owned(),
                remaining: times,
            },
        );
    }

    /// The v1 token id of (coin, chain).
    pub fn v1_token_id(&self, coin_symbol: &str, chain: &str) -> Option<String> {
        self.catalogue.v1_token_id(coin_symbol, chain)
    }

    /// The held reply of this orderId is out (or abandoned): duplicates now get 11011.
    pub fn release_in_flight(&mut self, order_id: &str) {
        self.in_flight.remove(order_id);
    }

    /// Webhooks produced since the last call.
    pub fn take_webhooks(&mut self) -> Vec<WebhookJob> {
        std::mem::take(&mut self.outbox)
    }

    /// When the next unsettled payout is due.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.due.first().map(|&(due, _)| due)
    }

    /// The ledger as it stands (call [`World::settle_due`] first for an up-to-date view).
    pub fn ledger(&self) -> Ledger {
        Ledger {
            payouts: self.payouts.iter().map(|p| p.ledger.clone()).collect(),
            attempts: self.attempts.clone(),
        }
    }

    /// Starts the per-second request series at `now_ms` (the server calls it when it starts;
    /// without it the series starts at the first request).
    pub fn start_stats(&mut self, now_ms: i64) {
        self.requests.start(now_ms);
    }

    /// Every authenticated request so far, by endpoint and result, and per second.
    pub fn stats(&self) -> SandboxStats {
        self.requests.stats()
    }

    // -- persistence ---------------------------------------------------------------------------

    /// Counts the changes that must reach the state file (commits, settlements, balance
    /// changes); it only ever grows.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The durable state: balances, payouts, create attempts, the record-id sequence, the
    /// PRNG and the daily counters. Not the rate-limit bucket, forced errors, held orderIds,
    /// the webhook outbox, faults or chain statuses: those belong to one run.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            next_seq: self.next_seq,
            fee_quotes: self.fee_quotes,
            rng: RngSnapshot {
                seed: self.seed,
                state: self.rng.0,
            },
            day: DaySnapshot {
                day: self.day.day,
                requests: self.day.requests,
                creates: self.day.creates,
            },
            balances: self
                .balances
                .iter()
                .map(|(&coin_id, &amount)| (coin_id, amount.to_string()))
                .collect(),
            payouts: self
                .payouts
                .iter()
                .map(|p| PayoutSnapshot {
                    ledger: p.ledger.clone(),
                    from_address: p.from_address.clone(),
                    contract: p.contract.clone(),
                    ccp_order_id: p.ccp_order_id.clone(),
                    debits: p
                        .debits
                        .iter()
                        .map(|&(coin_id, amount)| DebitSnapshot {
                            coin_id,
                            amount: amount.to_string(),
                        })
                        .collect(),
                    due_ms: p.due_ms,
                    will_fail: p.will_fail,
                    webhook_url: p.webhook_url.clone(),
                })
                .collect(),
            attempts: self.attempts.clone(),
        }
    }

    /// Replaces the durable state with a snapshot and rebuilds the indexes (by orderId, by
    /// recordId, the unsettled payouts by due time). The snapshot's balances replace the demo
    /// balances and the configured overrides. The PRNG continues from the snapshot when it was
    /// seeded like this world, else it keeps this world's seed. Nothing else changes.
    ///
    /// # Errors
    ///
    /// The snapshot is not a state this sandbox could have written: another version, an amount
    /// that is not a decimal, an orderId or recordId twice, a final payout without a settled
    /// time or an unsettled one with a final status. The world is unchanged then.
    pub fn restore(&mut self, snapshot: Snapshot) -> Result<(), String> {
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(format!(
                "version {} is not version {SNAPSHOT_VERSION}",
                snapshot.version
            ));
        }
        let decimal = |s: &str, what: &dyn std::fmt::Display| {
            Decimal::from_str_exact(s).map_err(|e| format!("{what}: {s:?} is not a decimal: {e}"))
        };
        let mut balances = BTreeMap::new();
        for (coin_id, amount) in &snapshot.balances {
            balances.insert(*coin_id, decimal(amount, &format_args!("balance of coin {coin_id}"))?);
        }
        let mut payouts = Vec::with_capacity(snapshot.payouts.len());
        let mut by_order = HashMap::with_capacity(snapshot.payouts.len());
        let mut by_record = HashMap::with_capacity(snapshot.payouts.len());
        let mut due = BTreeSet::new();
        // The sequence continues after the highest one in use, whatever next_seq says.
        let mut next_seq = snapshot.next_seq;
        for (idx, p) in snapshot.payouts.into_iter().enumerate() {
            let record_id = p.ledger.record_id.clone();
            let mut debits = Vec::with_capacity(p.debits.len());
            for d in &p.debits {
                debits.push((d.coin_id, decimal(&d.amount, &format_args!("a debit of {record_id}"))?));
            }
            if by_order.insert(p.ledger.order_id.clone(), idx).is_some() {
                return Err(format!("orderId {:?} has two payouts", p.ledger.order_id));
            }
            if by_record.insert(record_id.clone(), idx).is_some() {
                return Err(format!("recordId {record_id:?} is used twice"));
            }
            match (&p.ledger.status, p.ledger.settled_ms) {
                (RecordStatus::Processing, None) => {
                    due.insert((p.due_ms, idx));
                }
                (RecordStatus::Success | RecordStatus::Failed, Some(_)) => {}
                (status, settled) => {
                    return Err(format!(
                        "payout {record_id}: status {} with settled time {settled:?}",
                        status.as_str()
                    ));
                }
            }
            if let Some(seq) = record_id.get(14..).and_then(|s| s.parse::<u64>().ok()) {
                next_seq = next_seq.max(seq.saturating_add(1));
            }
            payouts.push(Payout {
                ledger: p.ledger,
                from_address: p.from_address,
                contract: p.contract,
                ccp_order_id: p.ccp_order_id,
                debits,
                due_ms: p.due_ms,
                will_fail: p.will_fail,
                webhook_url: p.webhook_url,
            });
        }
        self.balances = balances;
        self.payouts = payouts;
        self.by_order = by_order;
        self.by_record = by_record;
        self.due = due;
        self.attempts = snapshot.attempts;
        self.next_seq = next_seq;
        self.fee_quotes = snapshot.fee_quotes;
        if snapshot.rng.seed == self.seed {
            self.rng = SplitMix64(snapshot.rng.state);
        }
        self.day = DayCounters {
            day: snapshot.day.day,
            requests: snapshot.day.requests,
            creates: snapshot.day.creates,
        };
        self.generation += 1;
        Ok(())
    }

    // -- settlement ----------------------------------------------------------------------------

    /// Settles every payout due at or before `now_ms`; returns how many settled.
    pub fn settle_due(&mut self, now_ms: i64) -> usize {
        let mut settled = 0;
        while let Some(&(due, idx)) = self.due.first() {
            if due > now_ms {
                break;
            }
            self.due.pop_first();
            self.settle(idx);
            settled += 1;
        }
        settled
    }

    fn settle(&mut self, idx: usize) {
        self.generation += 1;
        let payout = &mut self.payouts[idx];
        payout.ledger.settled_ms = Some(payout.due_ms);
        if payout.will_fail {
            payout.ledger.status = RecordStatus::Failed;
            payout.ledger.reason = FAILURE_REASON.to_owned();
            // A failed payout gives back everything it took, fee included (native fee too).
            let refunds = payout.debits.clone();
            for (coin_id, amount) in refunds {
                let balance = self.balances.entry(coin_id).or_default();
                *balance += amount;
            }
        } else {
            payout.ledger.status = RecordStatus::Success;
            payout.ledger.tx_id = tx_id_for(&payout.ledger);
        }
        self.enqueue_final_webhook(idx);
    }

    // -- the request pipeline ------------------------------------------------------------------

    /// Handles one authenticated request: settles what is due, then applies the rate limit,
    /// the daily caps, forced errors and faults, and finally the body; counts the result.
    pub fn handle(&mut self, route: Route, body: &[u8], now_ms: i64) -> Handled {
        let handled = self.respond(route, body, now_ms);
        let code = match handled.transport {
            Transport::Drop | Transport::BadGateway => STATS_NO_REPLY,
            Transport::Reply | Transport::Slow(_) if handled.code == codes::SUCCESS => STATS_SUCCESS,
            Transport::Reply | Transport::Slow(_) => handled.code,
        };
        self.requests.count(route.name(), code, now_ms);
        handled
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
                Fault::DropAfterCommit => handled.transport = Transport::Drop,
                Fault::Slow => {
                    handled.transport = Transport::Slow(Duration::from_millis(self.faults.slow_delay_ms));
                    // Until the held reply is out, a duplicate of this orderId is "repeated
                    // submission" rather than "order exists".
                    if handled.created.is_some() && !peeked_order.is_empty() {
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

    /// Takes one token from the bucket; `false` when it is empty.
    fn take_token(&mut self, now_ms: i64) -> bool {
        let Some(limit) = self.rate_limit else {
            return true;
        };
        let burst = f64::from(limit.burst);
        let bucket = self.bucket.get_or_insert(Bucket {
            tokens: burst,
            last_ms: now_ms,
        });
        // A clock that steps backwards refills nothing rather than draining the bucket.
        let elapsed_ms = (now_ms - bucket.last_ms).max(0);
        bucket.tokens = (bucket.tokens + elapsed_ms as f64 / 1000.0 * limit.per_second).min(burst);
        bucket.last_ms = bucket.last_ms.max(now_ms);
        // The epsilon absorbs float error in the refill (10/s over 100 ms must give one token).
        if bucket.tokens >= 1.0 - 1e-9 {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    /// Starts a new set of daily counters when the day index changes.
    fn roll_day(&mut self, now_ms: i64) {
        let day = (now_ms - self.reset_offset_ms).div_euclid(self.day_length_ms);
        if day != self.day.day {
            self.day = DayCounters {
                day,
                requests: 0,
                creates: 0,
            };
        }
    }

    /// One uniform draw picks at most one fault. No draw at all when every probability is
    /// zero, so turning faults off does not shift the PRNG stream of `fail_rate`.
    fn draw_fault(&mut self) -> Option<Fault> {
        let f = &self.faults;
        let table = [
            (f.drop_before_commit, Fault::DropBeforeCommit),
            (f.http_5xx, Fault::Http5xx),
            (f.internal_11002, Fault::Internal11002),
            (f.drop_after_commit, Fault::DropAfterCommit),
            (f.slow, Fault::Slow),
        ];
        if table.iter().all(|(p, _)| *p <= 0.0) {
            return None;
        }
        let u = self.rng.next_f64();
        let mut acc = 0.0;
        for (p, fault) in table {
            acc += p.max(0.0);
            if u < acc {
                return Some(fault);
            }
        }
        None
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
            Route::V1BillInfo => answer(parse(body, V1_BILL_FIELDS).and_then(|r| self.v1_bill_info(&r))),
            Route::V2(method::GET_APP_WITHDRAW_RECORD) => {
                answer(parse(body, RECORD_FIELDS).and_then(|q| self.get_record(&q)))
            }
            Route::V2(method::GET_APP_WITHDRAW_RECORD_LIST) => {
                answer(parse(body, LIST_FIELDS).and_then(|q| self.list_records(&q, now_ms)))
            }
            Route::V2(method::GET_APP_COIN_ASSET) => {
                answer(parse(body, COIN_ID_FIELDS).and_then(|q| self.coin_asset(&q)))
            }
            Route::V2(method::GET_APP_COIN_ASSET_LIST) => {
                answer(parse::<Empty>(body, &[]).map(|_| self.coin_asset_list()))
            }
            Route::V2(method::GET_COIN_LIST) => answer(parse::<Empty>(body, &[]).map(|_| CoinList {
                coins: self.catalogue.coins.clone(),
            })),
            Route::V2(method::GET_COIN) => answer(parse(body, COIN_ID_FIELDS).and_then(|q| self.coin(&q))),
            Route::V2(method::GET_COIN_USDT_PRICE) => answer(parse(body, PRICE_FIELDS).map(|q| self.prices(&q))),
            Route::V2(method::GET_WITHDRAW_FEE) => answer(parse(body, FEE_FIELDS).and_then(|q| self.withdraw_fee(&q))),
            Route::V2(method::CHECK_WITHDRAWAL_ADDRESS_VALIDITY) => {
                answer(parse(body, ADDRESS_FIELDS).and_then(|q| self.address_validity(&q)))
            }
            Route::V2(method::GET_CWALLET_USER_ID) => {
                answer(parse(body, CWALLET_USER_FIELDS).and_then(|q| self.cwallet_user(&q)))
            }
            Route::V2(method::GET_CHAIN_LIST) => answer(parse(body, CHAIN_LIST_FIELDS).map(|q| self.chain_list(&q))),
            Route::V2(method::GET_FIAT_LIST) => answer(parse::<Empty>(body, &[]).map(|_| FiatList {
                fiats: self.catalogue.fiats.clone(),
            })),
            Route::V2(method::GET_SWAP_COIN_LIST) => answer(parse::<Empty>(body, &[]).map(|_| SwapCoinList {
                coins: self.catalogue.swap_coins.clone(),
            })),
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

    // -- withdrawals ---------------------------------------------------------------------------

    /// `applyAppWithdrawToNetwork`.
    pub fn apply_network(&mut self, req: NetworkWithdrawRequest, now_ms: i64) -> Result<WithdrawReceipt, Refusal> {
        self.check_new_order(&req.order_id)?;
        if let Some(url) = &req.notify_url
            && url.len() > MAX_NOTIFY_URL_LEN
        {
            return Err(Refusal::invalid(format!(
                "notifyUrl is longer than {MAX_NOTIFY_URL_LEN} characters"
            )));
        }
        let mut new = self.validate_network(
            req.coin_id,
            &req.chain,
            &req.address,
            req.memo.as_deref(),
            &req.amount,
            req.merchant_pay_network_fee.unwrap_or(false),
        )?;
        new.api = "v2";
        new.webhook_url = req
            .notify_url
            .filter(|u| !u.is_empty())
            .or_else(|| self.webhook_url.clone());
        let idx = self.commit(&req.order_id, new, now_ms);
        Ok(WithdrawReceipt {
            record_id: self.payouts[idx].ledger.record_id.clone(),
        })
    }

    /// `applyAppWithdrawToCwallet`.
    pub fn apply_cwallet(&mut self, req: CwalletWithdrawRequest, now_ms: i64) -> Result<WithdrawReceipt, Refusal> {
        self.check_new_order(&req.order_id)?;
        let mut new = self.validate_cwallet(req.coin_id, &req.cwallet_user, &req.amount)?;
        new.api = "v2";
        let idx = self.commit(&req.order_id, new, now_ms);
        Ok(WithdrawReceipt {
            record_id: self.payouts[idx].ledger.record_id.clone(),
        })
    }

    /// v1 `withdraw`: the token id selects coin and network; a Cwallet ID or e-mail as the
    /// address makes it an internal transfer (any token of the coin will do).
    pub fn v1_withdraw(&mut self, req: V1WithdrawRequest, now_ms: i64) -> Result<V1WithdrawReceipt, Refusal> {
        self.check_new_order(&req.merchant_order_id)?;
        let (coin_id, chain) = self
            .catalogue
            .v1_token(&req.token_id)
            .ok_or_else(|| Refusal::code(13000))?;
        let mut new = if parse_cwallet_recipient(&req.address).is_ok() {
            self.validate_cwallet(coin_id, &req.address, &req.value)?
        } else {
            self.validate_network(
                coin_id,
                &chain,
                &req.address,
                req.memo.as_deref(),
                &req.value,
                req.merchant_pays_fee.unwrap_or(false),
            )?
        };
        new.api = "v1";
        // v1 webhooks only go to the account's webhook URL (there is no per-order URL in v1).
        new.webhook_url = self.webhook_url.clone();
        let idx = self.commit(&req.merchant_order_id, new, now_ms);
        let payout = &self.payouts[idx];
        let (fee_coin_id, fee_symbol, fee_amount, fee_value) = self.v1_fee_fields(payout);
        Ok(V1WithdrawReceipt {
            order_id: payout.ccp_order_id.clone(),
            record_id: payout.ledger.record_id.clone(),
            network_fee: fee_amount,
            net_receivable: payout.ledger.receiver_gets.clone(),
            network_coin_id: fee_coin_id,
            network_fee_crypto: fee_symbol,
            network_fee_value: fee_value,
        })
    }

    /// 11000 for a bad orderId, 11007 while its first create's reply is held back, 11011 when
    /// a payout with it exists.
    fn check_new_order(&self, order_id: &str) -> Result<(), Refusal> {
        let len = order_id.chars().count();
        if !(3..=64).contains(&len) {
            return Err(Refusal::invalid("orderId must be 3 to 64 characters"));
        }
        if self.in_flight.contains(order_id) {
            return Err(Refusal::code(11007));
        }
        if self.by_order.contains_key(order_id) {
            return Err(Refusal::code(11011));
        }
        Ok(())
    }

    fn balance_of(&self, coin_id: u64) -> Decimal {
        self.balances.get(&coin_id).copied().unwrap_or_default()
    }

    /// The checks of a chain withdrawal, in the order CCPayment is assumed to apply them.
    fn validate_network(
        &self,
        coin_id: u64,
        chain: &str,
        address: &str,
        memo: Option<&str>,
        amount_str: &str,
        merchant_pays_fee: bool,
    ) -> Result<NewPayout, Refusal> {
        let coin = self.catalogue.coin(coin_id).ok_or_else(|| Refusal::code(13000))?;
        let network = coin.networks.get(chain).ok_or_else(|| Refusal::code(13001))?;
        if coin.status != "Normal" {
            return Err(Refusal::code(13005));
        }
        let chain_info = self.catalogue.chain(chain).ok_or_else(|| Refusal::code(13001))?;
        if !chain_info.is_normal() || !network.can_withdraw {
            return Err(Refusal::code(14004));
        }
        if let Err(e) = check_address(AddressFamily::for_chain(chain), address) {
            return Err(Refusal::msg(14007, format!("WithdrawAddrFormat: {e}")));
        }
        let memo = memo.unwrap_or("");
        if chain_info.support_memo && memo.is_empty() {
            return Err(Refusal::code(14003));
        }
        if !chain_info.support_memo && !memo.is_empty() {
            return Err(Refusal::code(14009));
        }
        let amount = parse_amount(amount_str, "amount")?;
        if amount.normalize().scale() > network.precision {
            return Err(Refusal::msg(
                14013,
                format!("CoinPrecisionLimit: at most {} decimals on {chain}", network.precision),
            ));
        }
        let min = catalogue_decimal(&network.minimum_withdraw_amount);
        if amount < min {
            return Err(Refusal::msg(
                14005,
                format!(
                    "WithdrawValueLessThanLimit: minimum is {}",
                    network.minimum_withdraw_amount
                ),
            ));
        }
        let max = catalogue_decimal(&network.maximum_withdraw_amount);
        if !max.is_zero() && amount > max {
            return Err(Refusal::msg(
                14006,
                format!(
                    "WithdrawValueMoreThanLimit: maximum is {}",
                    network.maximum_withdraw_amount
                ),
            ));
        }

        let fee_spec = self.catalogue.fee(coin_id, chain).ok_or_else(|| Refusal::code(13001))?;
        let fee = catalogue_decimal(fee_spec.amount);
        let balance = self.balance_of(coin_id);
        let out_of_range = || Refusal::invalid("amount is out of range");
        let (receiver_gets, debits) = if fee_spec.fee_coin_id == coin_id {
            if merchant_pays_fee {
                let total = amount.checked_add(fee).ok_or_else(out_of_range)?;
                if balance < total {
                    return Err(Refusal::code(14000));
                }
                (amount, vec![(coin_id, total)])
            } else {
                // The receiver pays: the fee comes out of the amount, which must exceed it.
                if amount <= fee {
                    return Err(Refusal::code(14019));
                }
                if balance < amount {
                    return Err(Refusal::code(14000));
                }
                (amount - fee, vec![(coin_id, amount)])
            }
        } else {
            // A fee in the chain's native coin is always the merchant's: the receiver gets the
            // whole amount whatever merchantPayNetworkFee says.
            if balance < amount {
                return Err(Refusal::code(14000));
            }
            if self.balance_of(fee_spec.fee_coin_id) < fee {
                return Err(Refusal::code(14011));
            }
            (amount, vec![(coin_id, amount), (fee_spec.fee_coin_id, fee)])
        };
        Ok(NewPayout {
            api: "v2",
            withdraw_type: "Network",
            coin_id,
            chain: chain.to_owned(),
            to_address: address.to_owned(),
            memo: memo.to_owned(),
            cwallet_user: String::new(),
            amount: amount_str.to_owned(),
            fee: Some((fee_spec.fee_coin_id, fee)),
            receiver_gets,
            merchant_pays_fee,
            debits,
            webhook_url: None,
        })
    }

    /// The checks of a Cwallet transfer.
    fn validate_cwallet(&self, coin_id: u64, user: &str, amount_str: &str) -> Result<NewPayout, Refusal> {
        let coin = self.catalogue.coin(coin_id).ok_or_else(|| Refusal::code(13000))?;
        if coin.status != "Normal" {
            return Err(Refusal::code(13005));
        }
        if let Err(e) = parse_cwallet_recipient(user) {
            return Err(Refusal::invalid(format!("cwalletUser: {e}")));
        }
        if self.catalogue.cwallet_user(user).is_none() {
            return Err(Refusal::code(11015));
        }
        let amount = parse_amount(amount_str, "amount")?;
        let precision = coin.networks.values().map(|n| n.precision).max().unwrap_or(6);
        if amount.normalize().scale() > precision {
            return Err(Refusal::msg(
                14013,
                format!("CoinPrecisionLimit: at most {precision} decimals"),
            ));
        }
        // The documented minimum is 0.001 USD worth; a coin without a price (testnet) has none.
        let price = catalogue_decimal(&coin.price);
        if !price.is_zero() && amount * price < Decimal::new(1, 3) {
            return Err(Refusal::msg(14005, "WithdrawValueLessThanLimit: minimum is 0.001 USD"));
        }
        if self.balance_of(coin_id) < amount {
            return Err(Refusal::code(14000));
        }
        Ok(NewPayout {
            api: "v2",
            withdraw_type: "Cwallet",
            coin_id,
            chain: CWALLET_CHAIN.to_owned(),
            to_address: user.to_owned(),
            memo: String::new(),
            cwallet_user: user.to_owned(),
            amount: amount_str.to_owned(),
            fee: None,
            receiver_gets: amount,
            merchant_pays_fee: false,
            debits: vec![(coin_id, amount)],
            webhook_url: None,
        })
    }

    /// Debits, records and schedules a validated payout; returns its index.
    fn commit(&mut self, order_id: &str, new: NewPayout, now_ms: i64) -> usize {
        self.generation += 1;
        for &(coin_id, amount) in &new.debits {
            let balance = self.balances.entry(coin_id).or_default();
            *balance -= amount;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let record_id = format!("{}{seq:06}", utc_compact(now_ms));
        let will_fail = self.failing_recipients.contains(&new.to_address)
            || self.failing_recipients.contains(&new.cwallet_user)
            || (self.fail_rate > 0.0 && self.rng.next_f64() < self.fail_rate);
        let coin_symbol = self.symbol(new.coin_id);
        let fee = new.fee.map(|(fee_coin_id, amount)| FeeAmount {
            coin_id: fee_coin_id,
            coin_symbol: self.symbol(fee_coin_id),
            amount: fmt_decimal(amount),
        });
        let contract = self
            .catalogue
            .coin(new.coin_id)
            .and_then(|c| c.networks.get(&new.chain))
            .map(|n| n.contract.clone())
            .unwrap_or_default();
        let from_address = if new.withdraw_type == "Network" {
            hot_wallet(&new.chain).to_owned()
        } else {
            String::new()
        };
        let due_ms = now_ms.saturating_add(self.settle_delay_ms);
        let payout = Payout {
            ledger: LedgerPayout {
                record_id: record_id.clone(),
                order_id: order_id.to_owned(),
                api: new.api.to_owned(),
                withdraw_type: new.withdraw_type.to_owned(),
                coin_id: new.coin_id,
                coin_symbol,
                chain: new.chain,
                to_address: new.to_address,
                memo: new.memo,
                cwallet_user: new.cwallet_user,
                amount: new.amount,
                fee,
                receiver_gets: fmt_decimal(new.receiver_gets),
                merchant_pays_fee: new.merchant_pays_fee,
                status: RecordStatus::Processing,
                reason: String::new(),
                tx_id: String::new(),
                created_ms: now_ms,
                settled_ms: None,
            },
            from_address,
            contract,
            ccp_order_id: format!("{record_id}01"),
            debits: new.debits,
            due_ms,
            will_fail,
            webhook_url: new.webhook_url,
        };
        let idx = self.payouts.len();
        self.payouts.push(payout);
        self.by_order.insert(order_id.to_owned(), idx);
        self.by_record.insert(record_id, idx);
        self.due.insert((due_ms, idx));
        self.enqueue_processing_webhook(idx);
        idx
    }

    fn symbol(&self, coin_id: u64) -> String {
        self.catalogue
            .coin(coin_id)
            .map(|c| c.symbol.clone())
            .unwrap_or_default()
    }

    fn price(&self, coin_id: u64) -> Decimal {
        self.catalogue
            .coin(coin_id)
            .map_or(Decimal::ZERO, |c| catalogue_decimal(&c.price))
    }

    /// (fee coin id, fee coin symbol, fee amount, fee in USD) as v1 reports them.
    fn v1_fee_fields(&self, payout: &Payout) -> (String, String, String, String) {
        match &payout.ledger.fee {
            Some(fee) => {
                let amount = catalogue_decimal(&fee.amount);
                (
                    fee.coin_id.to_string(),
                    fee.coin_symbol.clone(),
                    fee.amount.clone(),
                    fmt_decimal(amount * self.price(fee.coin_id)),
                )
            }
            None => (
                payout.ledger.coin_id.to_string(),
                payout.ledger.coin_symbol.clone(),
                "0".to_owned(),
                "0".to_owned(),
            ),
        }
    }

    // -- webhooks ------------------------------------------------------------------------------

    /// v2 network payouts get a `Processing` webhook on creation; Cwallet transfers get none
    /// (as documented) and v1 payouts only get the final one.
    fn enqueue_processing_webhook(&mut self, idx: usize) {
        let payout = &self.payouts[idx];
        if payout.ledger.api != "v2" || payout.ledger.withdraw_type != "Network" {
            return;
        }
        if let Some(job) = self.v2_webhook(payout) {
            self.outbox.push(job);
        }
    }

    fn enqueue_final_webhook(&mut self, idx: usize) {
        let payout = &self.payouts[idx];
        let job = if payout.ledger.api == "v1" {
            self.v1_webhook(payout)
        } else if payout.ledger.withdraw_type == "Network" {
            self.v2_webhook(payout)
        } else {
            None
        };
        if let Some(job) = job {
            self.outbox.push(job);
        }
    }

    fn v2_webhook(&self, payout: &Payout) -> Option<WebhookJob> {
        let url = payout.webhook_url.clone()?;
        let event = WebhookEvent {
            kind: "ApiWithdrawal".to_owned(),
            msg: WebhookWithdrawal {
                record_id: payout.ledger.record_id.clone(),
                order_id: payout.ledger.order_id.clone(),
                coin_id: payout.ledger.coin_id,
                coin_symbol: payout.ledger.coin_symbol.clone(),
                status: payout.ledger.status.clone(),
            },
        };
        Some(WebhookJob {
            scheme: WebhookScheme::V2,
            url,
            record_id: payout.ledger.record_id.clone(),
            order_id: payout.ledger.order_id.clone(),
            status: payout.ledger.status.clone(),
            body: serde_json::to_vec(&event).expect("wire types always serialise to JSON"),
        })
    }

    fn v1_webhook(&self, payout: &Payout) -> Option<WebhookJob> {
        let url = payout.webhook_url.clone()?;
        let (fee_coin_id, fee_symbol, fee_amount, fee_value) = self.v1_fee_fields(payout);
        let l = &payout.ledger;
        let body = V1WithdrawWebhook {
            pay_status: if l.status == RecordStatus::Success {
                "success"
            } else {
                "failed"
            }
            .to_owned(),
            order_type: "API Withdrawal".to_owned(),
            order_id: payout.ccp_order_id.clone(),
            record_id: l.record_id.clone(),
            withdraw_amount: l.amount.clone(),
            net_receivable: l.receiver_gets.clone(),
            network_fee: fee_amount,
            network_fee_crypto: fee_symbol,
            network_coin_id: fee_coin_id,
            network_fee_value: fee_value,
            chain: l.chain.clone(),
            contract: payout.contract.clone(),
            crypto: l.coin_symbol.clone(),
            to_address: l.to_address.clone(),
            memo: l.memo.clone(),
            // The v1 documentation's example for internal transfers.
            txid: if l.withdraw_type == "Cwallet" {
                "internal transfer".to_owned()
            } else {
                l.tx_id.clone()
            },
            merchant_order_id: l.order_id.clone(),
            merchant_pays_fee: l.merchant_pays_fee,
        };
        Some(WebhookJob {
            scheme: WebhookScheme::V1,
            url,
            record_id: l.record_id.clone(),
            order_id: l.order_id.clone(),
            status: l.status.clone(),
            body: serde_json::to_vec(&body).expect("wire types always serialise to JSON"),
        })
    }

    // -- queries -------------------------------------------------------------------------------

    fn to_record(&self, payout: &Payout) -> WithdrawRecord {
        let l = &payout.ledger;
        WithdrawRecord {
            record_id: l.record_id.clone(),
            withdraw_type: l.withdraw_type.clone(),
            coin_id: l.coin_id,
            coin_symbol: l.coin_symbol.clone(),
            chain: l.chain.clone(),
            from_address: payout.from_address.clone(),
            to_address: l.to_address.clone(),
            to_memo: l.memo.clone(),
            cwallet_user: l.cwallet_user.clone(),
            order_id: l.order_id.clone(),
            tx_id: l.tx_id.clone(),
            status: l.status.clone(),
            amount: l.amount.clone(),
            fee: l.fee.clone(),
            reason: l.reason.clone(),
            coin_usd_price: fmt_decimal(self.price(l.coin_id)),
        }
    }

    /// `getAppWithdrawRecord`.
    pub fn get_record(&self, q: &WithdrawRecordQuery) -> Result<WithdrawRecordData, Refusal> {
        let record_id = q.record_id.as_deref().filter(|s| !s.is_empty());
        let order_id = q.order_id.as_deref().filter(|s| !s.is_empty());
        let idx = match (record_id, order_id) {
            (None, None) => {
                return Err(Refusal::invalid("recordId or orderId is required"));
            }
            (Some(record_id), order_id) => self
                .by_record
                .get(record_id)
                .copied()
                .filter(|&i| order_id.is_none_or(|o| self.payouts[i].ledger.order_id == o)),
            (None, Some(order_id)) => self.by_order.get(order_id).copied(),
        };
        let idx = idx.ok_or_else(|| Refusal::code(11003))?;
        Ok(WithdrawRecordData {
            record: self.to_record(&self.payouts[idx]),
        })
    }

    /// `getAppWithdrawRecordList`.
    pub fn list_records(&self, q: &WithdrawRecordListQuery, now_ms: i64) -> Result<WithdrawRecordPage, Refusal> {
        if q.order_ids.len() > MAX_ORDER_IDS_PER_LIST_QUERY {
            return Err(Refusal::msg(
                11010,
                format!("QueryNumMax: at most {MAX_ORDER_IDS_PER_LIST_QUERY} orderIds"),
            ));
        }
        let now_secs = now_ms.div_euclid(1000);
        let end = q.end_at.filter(|&e| e > 0).unwrap_or(now_secs);
        let start = q.start_at.filter(|&s| s > 0).unwrap_or(end - LIST_WINDOW_SECS);
        if start > end {
            return Err(Refusal::invalid("startAt is after endAt"));
        }
        if end - start > LIST_WINDOW_SECS {
            return Err(Refusal::code(11008));
        }
        let from = match q.next_id.as_deref().filter(|s| !s.is_empty()) {
            None => 0,
            Some(cursor) => {
                decode_cursor(cursor).ok_or_else(|| Refusal::invalid("nextId is not a cursor from this server"))?
            }
        };
        let matches = |p: &Payout| {
            let l = &p.ledger;
            let created_secs = l.created_ms.div_euclid(1000);
            q.coin_id.is_none_or(|c| c == l.coin_id)
                && q.chain.as_deref().is_none_or(|c| c.is_empty() || c == l.chain)
                && q.to_address
                    .as_deref()
                    .is_none_or(|a| a.is_empty() || a == l.to_address)
                && (start..=end).contains(&created_secs)
        };
        // With orderIds the candidates come from the index, so tracking a batch of 20 orders
        // costs the same however many payouts exist.
        let candidates: Vec<usize> = if q.order_ids.is_empty() {
            (from..self.payouts.len()).collect()
        } else {
            let mut ids: Vec<usize> = q
                .order_ids
                .iter()
                .filter_map(|o| self.by_order.get(o).copied())
                .filter(|&i| i >= from)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let mut records = Vec::new();
        let mut next_id = String::new();
        for idx in candidates {
            let payout = &self.payouts[idx];
            if !matches(payout) {
                continue;
            }
            if records.len() == RECORD_LIST_PAGE_SIZE {
                next_id = encode_cursor(idx);
                break;
            }
            records.push(self.to_record(payout));
        }
        Ok(WithdrawRecordPage { records, next_id })
    }

    /// `getAppCoinAsset`.
    pub fn coin_asset(&self, q: &CoinIdQuery) -> Result<CoinAssetData, Refusal> {
        let coin = self.catalogue.coin(q.coin_id).ok_or_else(|| Refusal::code(13000))?;
        Ok(CoinAssetData {
            asset: CoinAsset {
                coin_id: coin.coin_id,
                coin_symbol: coin.symbol.clone(),
                available: fmt_decimal(self.balance_of(coin.coin_id)),
            },
        })
    }

    /// `getAppCoinAssetList`.
    pub fn coin_asset_list(&self) -> CoinAssetList {
        CoinAssetList {
            assets: self
                .catalogue
                .coins
                .iter()
                .map(|coin| CoinAsset {
                    coin_id: coin.coin_id,
                    coin_symbol: coin.symbol.clone(),
                    available: fmt_decimal(self.balance_of(coin.coin_id)),
                })
                .collect(),
        }
    }

    /// `getCoin`.
    pub fn coin(&self, q: &CoinIdQuery) -> Result<CoinData, Refusal> {
        let coin = self.catalogue.coin(q.coin_id).ok_or_else(|| Refusal::code(13000))?;
        Ok(CoinData { coin: coin.clone() })
    }

    /// `getCoinUSDTPrice`: unknown coin ids are left out.
    pub fn prices(&self, q: &CoinPriceQuery) -> CoinPrices {
        CoinPrices {
            prices: q
                .coin_ids
                .iter()
                .filter_map(|&id| self.catalogue.coin(id).map(|c| (id.to_string(), c.price.clone())))
                .collect(),
        }
    }

    /// `getWithdrawFee`.
    pub fn withdraw_fee(&mut self, q: &WithdrawFeeQuery) -> Result<WithdrawFeeData, Refusal> {
        let coin = self.catalogue.coin(q.coin_id).ok_or_else(|| Refusal::code(13000))?;
        if !coin.networks.contains_key(&q.chain) {
            return Err(Refusal::code(13001));
        }
        let fee = self
            .catalogue
            .fee(q.coin_id, &q.chain)
            .ok_or_else(|| Refusal::code(13001))?;
        let fee = FeeAmount {
            coin_id: fee.fee_coin_id,
            coin_symbol: self.symbol(fee.fee_coin_id),
            amount: fee.amount.to_owned(),
        };
        self.fee_quotes += 1;
        let digest = Sha256::digest(format!("{}/{}/{}", q.coin_id, q.chain, self.fee_quotes));
        Ok(WithdrawFeeData {
            fee,
            network_fee_inquiry_id: hex::encode(&digest[..12]),
        })
    }

    /// `checkWithdrawalAddressValidity`.
    pub fn address_validity(&self, q: &AddressValidityQuery) -> Result<AddressValidity, Refusal> {
        if self.catalogue.chain(&q.chain).is_none() {
            return Err(Refusal::code(13001));
        }
        Ok(AddressValidity {
            addr_is_valid: check_address(AddressFamily::for_chain(&q.chain), &q.address).is_ok(),
        })
    }

    /// `getCwalletUserId`.
    pub fn cwallet_user(&self, q: &CwalletUserQuery) -> Result<crate::api::types::CwalletUser, Refusal> {
        let user = self
            .catalogue
            .cwallet_user(&q.cwallet_user_id)
            .ok_or_else(|| Refusal::code(11015))?;
        Ok(crate::api::types::CwalletUser {
            cwallet_user_id: user.id.to_owned(),
            cwallet_user_name: user.masked_name.to_owned(),
        })
    }

    /// `getChainList`: all chains, or the named ones (unknown names are skipped).
    pub fn chain_list(&self, q: &ChainListQuery) -> ChainList {
        ChainList {
            chains: self
                .catalogue
                .chains
                .iter()
                .filter(|c| q.chains.is_empty() || q.chains.contains(&c.chain))
                .cloned()
                .collect(),
        }
    }

    /// v1 `bill/info`: the bills of the given merchant order ids that exist.
    pub fn v1_bill_info(&self, req: &V1BillInfoRequest) -> Result<Vec<V1Bill>, Refusal> {
        if req.merchant_order_ids.len() > V1_MAX_ORDER_IDS_PER_QUERY {
            return Err(Refusal::msg(
                11010,
                format!("QueryNumMax: at most {V1_MAX_ORDER_IDS_PER_QUERY} merchant_order_ids"),
            ));
        }
        Ok(req
            .merchant_order_ids
            .iter()
            .filter_map(|o| self.by_order.get(o))
            .map(|&idx| self.v1_bill(&self.payouts[idx]))
            .collect())
    }

    fn v1_bill(&self, payout: &Payout) -> V1Bill {
        let l = &payout.ledger;
        let status = match l.status {
            RecordStatus::Success => "Successful",
            RecordStatus::Failed => "Failed",
            _ => "Processing",
        };
        let rate = fmt_decimal(self.price(l.coin_id));
        let (fee_coin_id, fee_symbol, fee_amount, fee_value) = self.v1_fee_fields(payout);
        V1Bill {
            order_detail: V1OrderDetail {
                merchant_order_id: l.order_id.clone(),
                chain: l.chain.clone(),
                contract: payout.contract.clone(),
                crypto: l.coin_symbol.clone(),
                order_amount: l.amount.clone(),
                token_rate: rate.clone(),
                status: status.to_owned(),
                created: l.created_ms.div_euclid(1000),
                order_id: payout.ccp_order_id.clone(),
            },
            trade_list: vec![V1Trade {
                amount: l.amount.clone(),
                chain: l.chain.clone(),
                contract: payout.contract.clone(),
                crypto: l.coin_symbol.clone(),
                service_fee: "0".to_owned(),
                network_fee: fee_amount,
                network_coin_id: fee_coin_id,
                network_fee_crypto: fee_symbol,
                network_fee_value: fee_value,
                txid: l.tx_id.clone(),
                pay_time: l.settled_ms.map_or(0, |ms| ms.div_euclid(1000)),
                token_rate: rate,
                status: status.to_owned(),
            }],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A catalogue value; the catalogue's tests prove these all parse.
fn catalogue_decimal(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap_or_default()
}

/// `^[0-9]+(\.[0-9]+)?$` as an exact decimal, or `None`.
fn parse_plain_decimal(s: &str) -> Option<Decimal> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    Decimal::from_str_exact(s).ok()
}

/// An amount: plain decimal grammar and strictly positive, else 11000 naming the field.
fn parse_amount(s: &str, field: &str) -> Result<Decimal, Refusal> {
    let value = parse_plain_decimal(s)
        .ok_or_else(|| Refusal::invalid(format!("{field} must be a plain positive decimal string")))?;
    if value.is_zero() {
        return Err(Refusal::invalid(format!("{field} must be greater than 0")));
    }
    Ok(value)
}

/// The transaction hash of a settled payout: SHA-256 of the record id, `0x`-prefixed on EVM
/// chains, upper-case on XRP (as XRPL writes hashes), empty for Cwallet transfers.
fn tx_id_for(l: &LedgerPayout) -> String {
    if l.withdraw_type == "Cwallet" {
        return String::new();
    }
    let hash = hex::encode(Sha256::digest(l.record_id.as_bytes()));
    match AddressFamily::for_chain(&l.chain) {
        AddressFamily::Evm => format!("0x{hash}"),
        AddressFamily::Xrp => hash.to_uppercase(),
        _ => hash,
    }
}

fn encode_cursor(idx: usize) -> String {
    format!("n{idx:x}")
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    usize::from_str_radix(cursor.strip_prefix('n')?, 16).ok()
}

/// `yyyyMMddHHmmss` in UTC: the prefix of CCPayment record ids.
fn utc_compact(now_ms: i64) -> String {
    // "2026-11-21T10:32:40.123Z" → "20261121103240"
    crate::util::time::rfc3339_ms(now_ms)
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .collect()
}

/// The orderId of a create body, if it has one, without validating anything else.
fn peek_order_id(route: Route, body: &[u8]) -> String {
    let key = if route.is_v1() { "merchant_order_id" } else { "orderId" };
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get(key).and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

// -- request parsing ----------------------------------------------------------------------------

/// The JSON type a request field must have.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    U64,
    I64,
    Bool,
    StrList,
    U64List,
}

impl Kind {
    fn accepts(self, v: &Value) -> bool {
        match self {
            Kind::Str => v.is_string(),
            Kind::U64 => v.is_u64(),
            Kind::I64 => v.is_i64() || v.is_u64() && v.as_i64().is_some(),
            Kind::Bool => v.is_boolean(),
            Kind::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Kind::U64List => v.as_array().is_some_and(|a| a.iter().all(Value::is_u64)),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::U64 => "an unsigned integer",
            Kind::I64 => "an integer",
            Kind::Bool => "a boolean",
            Kind::StrList => "an array of strings",
            Kind::U64List => "an array of unsigned integers",
        }
    }
}

/// (field name, type, required)
type Field = (&'static str, Kind, bool);

const NETWORK_FIELDS: &[Field] = &[
    ("orderId", Kind::Str, true),
    ("coinId", Kind::U64, true),
    ("chain", Kind::Str, true),
    ("address", Kind::Str, true),
    ("memo", Kind::Str, false),
    ("amount", Kind::Str, true),
    ("merchantPayNetworkFee", Kind::Bool, false),
    ("networkFeeInquiryID", Kind::Str, false),
    ("notifyUrl", Kind::Str, false),
];
const CWALLET_FIELDS: &[Field] = &[
    ("orderId", Kind::Str, true),
    ("coinId", Kind::U64, true),
    ("cwalletUser", Kind::Str, true),
    ("amount", Kind::Str, true),
];
const RECORD_FIELDS: &[Field] = &[("recordId", Kind::Str, false), ("orderId", Kind::Str, false)];
const LIST_FIELDS: &[Field] = &[
    ("coinId", Kind::U64, false),
    ("orderIds", Kind::StrList, false),
    ("chain", Kind::Str, false),
    ("toAddress", Kind::Str, false),
    ("startAt", Kind::I64, false),
    ("endAt", Kind::I64, false),
    ("nextId", Kind::Str, false),
];
const COIN_ID_FIELDS: &[Field] = &[("coinId", Kind::U64, true)];
const PRICE_FIELDS: &[Field] = &[("coinIds", Kind::U64List, true)];
const FEE_FIELDS: &[Field] = &[("coinId", Kind::U64, true), ("chain", Kind::Str, true)];
const ADDRESS_FIELDS: &[Field] = &[("chain", Kind::Str, true), ("address", Kind::Str, true)];
const CWALLET_USER_FIELDS: &[Field] = &[("cwalletUserId", Kind::Str, true)];
const CHAIN_LIST_FIELDS: &[Field] = &[("chains", Kind::StrList, false)];
const V1_WITHDRAW_FIELDS: &[Field] = &[
    ("merchant_order_id", Kind::Str, true),
    ("address", Kind::Str, true),
    ("token_id", Kind::Str, true),
    ("value", Kind::Str, true),
    ("memo", Kind::Str, false),
    ("merchant_pays_fee", Kind::Bool, false),
];
const V1_BILL_FIELDS: &[Field] = &[("merchant_order_ids", Kind::StrList, true)];

/// Parses a request body into its wire type. An empty body is `{}`. Field types are checked
/// against `fields` first, so a wrong type answers 11000 with a message naming the field
/// (serde's own messages do not name it). Optional fields sent as `null` count as absent.
fn parse<T: DeserializeOwned>(body: &[u8], fields: &[Field]) -> Result<T, Refusal> {
    let mut value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| Refusal::invalid(format!("the body is not valid JSON: {e}")))?
    };
    let Some(object) = value.as_object_mut() else {
        return Err(Refusal::invalid("the body must be a JSON object"));
    };
    for &(name, kind, required) in fields {
        match object.get(name) {
            None | Some(Value::Null) => {
                if required {
                    return Err(Refusal::invalid(format!("{name} is required")));
                }
                object.remove(name);
            }
            Some(v) if !kind.accepts(v) => {
                return Err(Refusal::invalid(format!("{name} must be {}", kind.expected())));
            }
            Some(_) => {}
        }
    }
    serde_json::from_value(value).map_err(|e| Refusal::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::DEMO_FAILING_ADDRESS;

    const T0: i64 = 1_700_000_000_000;
    const TRX_ADDR: &str = "TPSFu3gV4D7SwHS3HkXs3S8QZauZpyQtWH";
    const EVM_ADDR: &str = "0x93b748adfd258333e5d1243d1e2160ee0c169afe";
    const XRP_ADDR: &str = "rN7stzJku7zV8f4Q67t9XHSGeowEbeWgVJ";
    const BTC_ADDR: &str = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa";

    fn world() -> World {
        World::new(&SandboxConfig::default()).expect("demo world")
    }

    fn world_with(f: impl FnOnce(&mut SandboxConfig)) -> World {
        let mut config = SandboxConfig::default();
        f(&mut config);
        World::new(&config).expect("world")
    }

    fn net(order: &str, coin: u64, chain: &str, address: &str, amount: &str) -> Value {
        serde_json::json!({
            "orderId": order, "coinId": coin, "chain": chain, "address": address, "amount": amount,
        })
    }

    fn call(w: &mut World, endpoint: &str, body: &Value, now_ms: i64) -> (i64, Value) {
        let route = match endpoint {
            "v1/withdraw" => Route::V1Withdraw,
            "v1/bill/info" => Route::V1BillInfo,
            m => Route::v2(m).expect("known method"),
        };
        let handled = w.handle(route, body.to_string().as_bytes(), now_ms);
        let reply: Value = serde_json::from_slice(&handled.body).expect("JSON reply");
        assert_eq!(reply["code"], handled.code);
        (handled.code, reply)
    }

    fn create(w: &mut World, body: Value) -> (i64, Value) {
        call(w, method::APPLY_APP_WITHDRAW_TO_NETWORK, &body, T0)
    }

    fn bal(w: &World, symbol: &str) -> String {
        w.balance(symbol).expect("known coin")
    }

    #[test]
    fn network_withdraw_validation_codes() {
        let with = |mut v: Value, key: &str, val: Value| {
            v[key] = val;
            v
        };
        let base = net("order-1", 1280, "TRX", TRX_ADDR, "10");
        let cases: Vec<(&str, Value, i64)> = vec![
            ("ok", base.clone(), 10000),
            ("short orderId", with(base.clone(), "orderId", "ab".into()), 11000),
            (
                "long orderId",
                with(base.clone(), "orderId", "x".repeat(65).into()),
                11000,
            ),
            ("coinId as string", with(base.clone(), "coinId", "1280".into()), 11000),
            (
                "missing amount",
                {
                    let mut v = base.clone();
                    v.as_object_mut().expect("object").remove("amount");
                    v
                },
                11000,
            ),
            ("unknown coin", with(base.clone(), "coinId", 9999.into()), 13000),
            ("chain not a network", with(base.clone(), "chain", "XRP".into()), 13001),
            ("unknown chain", with(base.clone(), "chain", "SOL".into()), 13001),
            (
                "coin in Maintain",
                net("order-1", 1201, "DOGE", "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L", "10"),
                13005,
            ),
            (
                "chain in maintenance",
                net("order-1", 1280, "ARBITRUM", EVM_ADDR, "10"),
                14004,
            ),
            ("canWithdraw false", net("order-1", 1276, "BSC", EVM_ADDR, "10"), 14004),
            ("bad address", with(base.clone(), "address", EVM_ADDR.into()), 14007),
            ("empty address", with(base.clone(), "address", "".into()), 14007),
            (
                "memo missing on XRP",
                net("order-1", 1462, "XRP", XRP_ADDR, "10"),
                14003,
            ),
            ("memo on TRX", with(base.clone(), "memo", "123".into()), 14009),
            ("negative amount", with(base.clone(), "amount", "-1".into()), 11000),
            ("exponent", with(base.clone(), "amount", "1e3".into()), 11000),
            ("zero amount", with(base.clone(), "amount", "0".into()), 11000),
            ("leading dot", with(base.clone(), "amount", ".5".into()), 11000),
            ("amount as number", with(base.clone(), "amount", 10.into()), 11000),
            (
                "too many decimals",
                with(base.clone(), "amount", "10.1234567".into()),
                14013,
            ),
            (
                "trailing zeros are fine",
                with(base.clone(), "amount", "10.1000000".into()),
                10000,
            ),
            ("below min", with(base.clone(), "amount", "0.5".into()), 14005),
            ("above max", net("order-1", 1280, "ETH", EVM_ADDR, "100000.5"), 14006),
            ("at max", net("order-1", 1280, "ETH", EVM_ADDR, "100000"), 10000),
            ("fee exceeds amount", with(base.clone(), "amount", "1".into()), 14019),
            ("balance", with(base.clone(), "amount", "1000001".into()), 14000),
            (
                "testnet max",
                net("order-1", 1891, "ETH_SEPOLIA", EVM_ADDR, "10.5"),
                14006,
            ),
            (
                "notifyUrl too long",
                with(base.clone(), "notifyUrl", "h".repeat(151).into()),
                11000,
            ),
        ];
        for (name, body, code) in cases {
            let mut w = world();
            let (got, reply) = create(&mut w, body);
            assert_eq!(got, code, "{name}: {reply}");
            if code != 10000 {
                assert!(reply.get("data").is_none(), "{name}");
                assert!(w.ledger().payouts.is_empty(), "{name}");
                assert_eq!(bal(&w, "USDT"), "1000000", "{name}: nothing debited");
            }
        }
    }

    #[test]
    fn invalid_argument_messages_name_the_field() {
        let mut w = world();
        let mut body = net("order-1", 1280, "TRX", TRX_ADDR, "10");
        body["coinId"] = "1280".into();
        let (_, reply) = create(&mut w, body);
        assert_eq!(reply["msg"], "coinId must be an unsigned integer");
        let (_, reply) = create(&mut w, serde_json::json!({"orderId": "abc"}));
        assert_eq!(reply["msg"], "coinId is required");
        let handled = w.handle(Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK), b"{not json", T0);
        assert_eq!(handled.code, 11000);
        let handled = w.handle(Route::V2(method::GET_COIN_LIST), b"", T0);
        assert_eq!(handled.code, 10000, "an empty body is {{}}");
        let handled = w.handle(Route::V2(method::GET_COIN_LIST), b"[1]", T0);
        assert_eq!(handled.code, 11000);
    }

    #[test]
    fn receiver_pays_fee_in_the_same_coin() {
        let mut w = world();
        let (code, reply) = create(&mut w, net("order-1", 1280, "TRX", TRX_ADDR, "10.5"));
        assert_eq!(code, 10000);
        assert_eq!(reply["msg"], "success");
        assert_eq!(bal(&w, "USDT"), "999989.5");
        let p = &w.ledger().payouts[0];
        assert_eq!(p.receiver_gets, "9.5");
        assert_eq!(p.amount, "10.5");
        assert_eq!(p.status, RecordStatus::Processing);
        assert_eq!(p.fee.as_ref().map(|f| f.amount.as_str()), Some("1"));
        assert_eq!(p.record_id, reply["data"]["recordId"]);
        assert_eq!(&p.record_id[..14], "20231114221320");
    }

    #[test]
    fn merchant_pays_fee_in_the_same_coin() {
        let mut w = world();
        let mut body = net("order-1", 1280, "ETH", EVM_ADDR, "10");
        body["merchantPayNetworkFee"] = true.into();
        assert_eq!(create(&mut w, body).0, 10000);
        assert_eq!(bal(&w, "USDT"), "999987.5");
        assert_eq!(w.ledger().payouts[0].receiver_gets, "10");
        // The balance must cover amount + fee.
        w.set_balance("USDT", "12.4").expect("set");
        let mut body = net("order-2", 1280, "ETH", EVM_ADDR, "10");
        body["merchantPayNetworkFee"] = true.into();
        assert_eq!(create(&mut w, body).0, 14000);
        w.set_balance("USDT", "12.5").expect("set");
        let mut body = net("order-3", 1280, "ETH", EVM_ADDR, "10");
        body["merchantPayNetworkFee"] = true.into();
        assert_eq!(create(&mut w, body).0, 10000);
        assert_eq!(bal(&w, "USDT"), "0");
    }

    #[test]
    fn native_fee_is_charged_in_the_native_coin() {
        let mut w = world();
        assert_eq!(create(&mut w, net("order-1", 1280, "POLYGON", EVM_ADDR, "5")).0, 10000);
        assert_eq!(bal(&w, "USDT"), "999995");
        assert_eq!(bal(&w, "MATIC"), "4999.9786186");
        let p = &w.ledger().payouts[0];
        assert_eq!(p.receiver_gets, "5");
        let fee = p.fee.clone().expect("fee");
        assert_eq!(
            (fee.coin_id, fee.coin_symbol.as_str(), fee.amount.as_str()),
            (1329, "MATIC", "0.0213814")
        );
        // Not enough MATIC for the fee: 14011, nothing debited.
        w.set_balance("MATIC", "0.02").expect("set");
        assert_eq!(create(&mut w, net("order-2", 1280, "POLYGON", EVM_ADDR, "5")).0, 14011);
        assert_eq!(bal(&w, "USDT"), "999995");
        assert_eq!(bal(&w, "MATIC"), "0.02");
        // Not enough USDT is reported first.
        w.set_balance("USDT", "1").expect("set");
        assert_eq!(create(&mut w, net("order-3", 1280, "POLYGON", EVM_ADDR, "5")).0, 14000);
    }

    #[test]
    fn settlement_succeeds_with_a_tx_id_or_fails_with_a_full_refund() {
        let mut w = world();
        assert_eq!(create(&mut w, net("ok-1", 1280, "POLYGON", EVM_ADDR, "5")).0, 10000);
        assert_eq!(
            create(&mut w, net("fail-1", 1280, "TRX", DEMO_FAILING_ADDRESS, "7")).0,
            10000
        );
        let mut xrp = net("xrp-1", 1462, "XRP", XRP_ADDR, "3");
        xrp["memo"] = "42".into();
        assert_eq!(create(&mut w, xrp).0, 10000);
        assert_eq!(create(&mut w, net("btc-1", 1157, "BTC", BTC_ADDR, "0.001")).0, 10000);
        assert_eq!(bal(&w, "USDT"), "999988");
        assert_eq!(w.next_due_ms(), Some(T0 + 2000));
        // Not yet due.
        assert_eq!(w.settle_due(T0 + 1999), 0);
        assert_eq!(w.settle_due(T0 + 2000), 4);
        assert_eq!(w.next_due_ms(), None);
        let ledger = w.ledger();
        let ok = ledger.payouts_for("ok-1")[0];
        assert_eq!(ok.status, RecordStatus::Success);
        assert!(ok.tx_id.starts_with("0x") && ok.tx_id.len() == 66, "{}", ok.tx_id);
        assert_eq!(ok.settled_ms, Some(T0 + 2000));
        let failed = ledger.payouts_for("fail-1")[0];
        assert_eq!(failed.status, RecordStatus::Failed);
        assert_eq!(failed.reason, FAILURE_REASON);
        assert_eq!(failed.tx_id, "");
        let xrp = ledger.payouts_for("xrp-1")[0];
        assert_eq!(xrp.tx_id, xrp.tx_id.to_uppercase());
        assert_eq!(ledger.payouts_for("btc-1")[0].tx_id.len(), 64);
        // The failed TRX payout gave back its 7 USDT; the POLYGON one keeps its 5 USDT and fee.
        assert_eq!(bal(&w, "USDT"), "999995");
        assert_eq!(bal(&w, "MATIC"), "4999.9786186");
    }

    #[test]
    fn a_failed_native_fee_payout_refunds_the_native_fee_too() {
        let mut w = world_with(|c| c.fail_rate = 1.0);
        assert_eq!(create(&mut w, net("order-1", 1280, "POLYGON", EVM_ADDR, "5")).0, 10000);
        assert_eq!(bal(&w, "MATIC"), "4999.9786186");
        w.settle_due(T0 + 10_000);
        assert_eq!(w.ledger().payouts[0].status, RecordStatus::Failed);
        assert_eq!(bal(&w, "USDT"), "1000000");
        assert_eq!(bal(&w, "MATIC"), "5000");
    }

    #[test]
    fn fail_rate_is_seeded_and_roughly_right() {
        let outcome = |seed| {
            let mut w = world_with(|c| {
                c.fail_rate = 0.3;
                c.seed = seed;
            });
            for i in 0..200 {
                let (code, _) = create(&mut w, net(&format!("order-{i}"), 1280, "TRX", TRX_ADDR, "2"));
                assert_eq!(code, 10000);
            }
            w.settle_due(T0 + 10_000);
            w.ledger()
                .payouts
                .iter()
                .map(|p| p.status == RecordStatus::Failed)
                .collect::<Vec<_>>()
        };
        let a = outcome(7);
        assert_eq!(a, outcome(7));
        assert_ne!(a, outcome(8));
        let failed = a.iter().filter(|f| **f).count();
        assert!((30..=90).contains(&failed), "{failed}");
    }

    #[test]
    fn duplicate_order_ids_are_refused_across_v1_and_v2() {
        let mut w = world();
        assert_eq!(create(&mut w, net("dup-1", 1280, "TRX", TRX_ADDR, "5")).0, 10000);
        // Same payload, different payload, after settlement, and through Cwallet and v1.
        assert_eq!(create(&mut w, net("dup-1", 1280, "TRX", TRX_ADDR, "5")).0, 11011);
        assert_eq!(create(&mut w, net("dup-1", 1280, "TRX", TRX_ADDR, "6")).0, 11011);
        w.settle_due(T0 + 5000);
        assert_eq!(create(&mut w, net("dup-1", 1280, "TRX", TRX_ADDR, "5")).0, 11011);
        let cwallet = serde_json::json!({"orderId": "dup-1", "coinId": 1280, "cwalletUser": "9558861", "amount": "1"});
        assert_eq!(
            call(&mut w, method::APPLY_APP_WITHDRAW_TO_CWALLET, &cwallet, T0).0,
            11011
        );
        let token = w.v1_token_id("USDT", "TRX").expect("token");
        let v1 =
            serde_json::json!({"merchant_order_id": "dup-1", "address": TRX_ADDR, "token_id": token, "value": "5"});
        assert_eq!(call(&mut w, "v1/withdraw", &v1, T0).0, 11011);
        // A duplicate is detected before the balance check, so it cannot look like a new error.
        w.set_balance("USDT", "0").expect("set");
        assert_eq!(create(&mut w, net("dup-1", 1280, "TRX", TRX_ADDR, "5")).0, 11011);
        let ledger = w.ledger();
        assert_eq!(ledger.payouts_for("dup-1").len(), 1);
        let codes: Vec<_> = ledger.attempts_for("dup-1").iter().map(|a| a.outcome.clone()).collect();
        assert!(matches!(codes[0], AttemptOutcome::Created { .. }));
        assert!(codes[1..].iter().all(|o| *o == AttemptOutcome::Refused { code: 11011 }));
        assert_eq!(codes.len(), 7);
    }

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

    #[test]
    fn slow_reply_makes_duplicates_repeated_submit_until_released() {
        let mut w = world_with(|c| {
            c.faults = Faults {
                slow: 1.0,
                slow_delay_ms: 500,
                ..Faults::default()
            }
        });
        let handled = w.handle(
            Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK),
            net("slow-1", 1280, "TRX", TRX_ADDR, "5").to_string().as_bytes(),
            T0,
        );
        assert_eq!(handled.code, 10000);
        assert_eq!(handled.transport, Transport::Slow(Duration::from_millis(500)));
        assert_eq!(handled.in_flight.as_deref(), Some("slow-1"));
        w.set_faults(Faults::default());
        assert_eq!(create(&mut w, net("slow-1", 1280, "TRX", TRX_ADDR, "5")).0, 11007);
        w.release_in_flight("slow-1");
        assert_eq!(create(&mut w, net("slow-1", 1280, "TRX", TRX_ADDR, "5")).0, 11011);
        let attempts = w.ledger().attempts;
        assert!(matches!(attempts[0].outcome, AttemptOutcome::Created { .. }));
        assert_eq!(attempts[1].outcome, AttemptOutcome::Fault { fault: "slow".into() });
    }

    #[test]
    fn faults_commit_or_not_as_named() {
        let cases = [
            ("drop_before_commit", Transport::Drop, 0, false),
            ("http_5xx", Transport::BadGateway, 0, false),
            ("internal_11002", Transport::Reply, 11002, false),
            ("drop_after_commit", Transport::Drop, 10000, true),
        ];
        for (name, transport, code, commits) in cases {
            let mut faults = Faults::default();
            match name {
                "drop_before_commit" => faults.drop_before_commit = 1.0,
                "http_5xx" => faults.http_5xx = 1.0,
                "internal_11002" => faults.internal_11002 = 1.0,
                _ => faults.drop_after_commit = 1.0,
            }
            let mut w = world_with(|c| c.faults = faults);
            let handled = w.handle(
                Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK),
                net("f-1", 1280, "TRX", TRX_ADDR, "5").to_string().as_bytes(),
                T0,
            );
            assert_eq!((handled.transport, handled.code), (transport, code), "{name}");
            let ledger = w.ledger();
            assert_eq!(ledger.payouts.len(), usize::from(commits), "{name}");
            let last = ledger.attempts.last().expect("attempt");
            assert_eq!(last.outcome, AttemptOutcome::Fault { fault: name.into() });
            assert_eq!(last.order_id, "f-1");
            // Reads are untouched unless on_reads.
            let read = w.handle(Route::V2(method::GET_COIN_LIST), b"{}", T0);
            assert_eq!(read.code, 10000, "{name}");
        }
        let mut w = world_with(|c| {
            c.faults = Faults {
                http_5xx: 1.0,
                on_reads: true,
                ..Faults::default()
            }
        });
        let read = w.handle(Route::V2(method::GET_COIN_LIST), b"{}", T0);
        assert_eq!(read.transport, Transport::BadGateway);
        assert!(w.ledger().attempts.is_empty(), "reads are not create attempts");
    }

    #[test]
    fn record_query_by_either_id_and_not_found() {
        let mut w = world();
        let (_, reply) = create(&mut w, net("order-1", 1280, "POLYGON", EVM_ADDR, "5"));
        let record_id = reply["data"]["recordId"].as_str().expect("id").to_owned();
        let by_record = serde_json::json!({"recordId": record_id});
        let (code, r1) = call(&mut w, method::GET_APP_WITHDRAW_RECORD, &by_record, T0);
        assert_eq!(code, 10000);
        let (_, r2) = call(
            &mut w,
            method::GET_APP_WITHDRAW_RECORD,
            &serde_json::json!({"orderId": "order-1"}),
            T0,
        );
        assert_eq!(r1, r2);
        let record = &r1["data"]["record"];
        assert_eq!(record["status"], "Processing");
        assert_eq!(record["withdrawType"], "Network");
        assert_eq!(record["fromAddress"], hot_wallet("POLYGON"));
        assert_eq!(record["fee"]["coinSymbol"], "MATIC");
        assert_eq!(record["coinUSDPrice"], "1");
        let (_, r3) = call(&mut w, method::GET_APP_WITHDRAW_RECORD, &by_record, T0 + 2000);
        assert_eq!(r3["data"]["record"]["status"], "Success", "settled lazily");
        for (body, code) in [
            (serde_json::json!({"orderId": "nope"}), 11003),
            (serde_json::json!({"recordId": "123"}), 11003),
            (serde_json::json!({"recordId": record_id, "orderId": "other"}), 11003),
            (serde_json::json!({}), 11000),
            (serde_json::json!({"orderId": ""}), 11000),
        ] {
            assert_eq!(
                call(&mut w, method::GET_APP_WITHDRAW_RECORD, &body, T0).0,
                code,
                "{body}"
            );
        }
    }

    #[test]
    fn record_list_pages_with_next_id_and_filters() {
        let mut w = world();
        for i in 0..45 {
            let (code, _) = call(
                &mut w,
                method::APPLY_APP_WITHDRAW_TO_NETWORK,
                &net(&format!("order-{i:02}"), 1280, "TRX", TRX_ADDR, "2"),
                T0 + i * 1000,
            );
            assert_eq!(code, 10000);
        }
        let now = T0 + 100_000;
        let mut seen = Vec::new();
        let mut next = String::new();
        let mut pages = 0;
        loop {
            let q = serde_json::json!({"nextId": next});
            let (code, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now);
            assert_eq!(code, 10000);
            let page: WithdrawRecordPage = serde_json::from_value(reply["data"].clone()).expect("page");
            pages += 1;
            seen.extend(page.records.iter().map(|r| r.order_id.clone()));
            if page.next_id.is_empty() {
                break;
            }
            next = page.next_id;
        }
        assert_eq!(pages, 3);
        let expected: Vec<String> = (0..45).map(|i| format!("order-{i:02}")).collect();
        assert_eq!(seen, expected);

        // orderIds filter, in creation order whatever the query order.
        let q = serde_json::json!({"orderIds": ["order-30", "order-02", "missing"]});
        let (_, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now);
        let ids: Vec<_> = reply["data"]["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["orderId"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(ids, ["order-02", "order-30"]);
        assert_eq!(reply["data"]["nextId"], "");
        let too_many: Vec<String> = (0..21).map(|i| format!("order-{i:02}")).collect();
        let q = serde_json::json!({"orderIds": too_many});
        assert_eq!(call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now).0, 11010);

        // Time window (seconds), coin and chain filters.
        let start = (T0 + 40_000) / 1000;
        let q = serde_json::json!({"startAt": start, "endAt": start + 2});
        let (_, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now);
        assert_eq!(reply["data"]["records"].as_array().map(Vec::len), Some(3));
        let q = serde_json::json!({"coinId": 1482});
        let (_, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now);
        assert_eq!(reply["data"]["records"].as_array().map(Vec::len), Some(0));
        let q = serde_json::json!({"chain": "TRX", "toAddress": TRX_ADDR, "coinId": 1280});
        let (_, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now);
        assert_eq!(reply["data"]["records"].as_array().map(Vec::len), Some(20));
        // Records older than 90 days fall out of the default window.
        let later = T0 + 91 * 24 * 3600 * 1000;
        let (_, reply) = call(
            &mut w,
            method::GET_APP_WITHDRAW_RECORD_LIST,
            &serde_json::json!({}),
            later,
        );
        assert_eq!(reply["data"]["records"].as_array().map(Vec::len), Some(0));
        for (q, code) in [
            (serde_json::json!({"nextId": "garbage"}), 11000),
            (serde_json::json!({"startAt": 10, "endAt": 5}), 11000),
            (serde_json::json!({"startAt": 1, "endAt": 100_000_000}), 11008),
        ] {
            assert_eq!(
                call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now).0,
                code,
                "{q}"
            );
        }
    }

    #[test]
    fn cwallet_transfers() {
        let mut w = world();
        let body = |order: &str, user: &str, amount: &str| serde_json::json!({"orderId": order, "coinId": 1280, "cwalletUser": user, "amount": amount});
        let cases = [
            (body("cw-1", "9558861", "10"), 10000),
            (body("cw-2", "bob@example.org", "0.001"), 10000),
            (body("cw-3", "12345", "1"), 11015),
            (body("cw-4", "not a user", "1"), 11000),
            (body("cw-5", "9558861", "0.0009"), 14005),
            (body("cw-6", "9558861", "0.123456789"), 14013),
            (body("cw-7", "9558861", "2000000"), 14000),
            (body("cw-8", "9558861", "abc"), 11000),
            (
                serde_json::json!({"orderId": "cw-9", "coinId": 1201, "cwalletUser": "9558861", "amount": "100"}),
                13005,
            ),
            (
                serde_json::json!({"orderId": "cw-10", "coinId": 1, "cwalletUser": "9558861", "amount": "100"}),
                13000,
            ),
        ];
        for (b, code) in cases {
            assert_eq!(
                call(&mut w, method::APPLY_APP_WITHDRAW_TO_CWALLET, &b, T0).0,
                code,
                "{b}"
            );
        }
        assert_eq!(bal(&w, "USDT"), "999989.999");
        let p = &w.ledger().payouts_for("cw-1")[0].clone();
        assert_eq!((p.chain.as_str(), p.withdraw_type.as_str()), (CWALLET_CHAIN, "Cwallet"));
        assert_eq!(p.fee, None);
        assert_eq!(p.receiver_gets, "10");
        w.settle_due(T0 + 2000);
        let (_, reply) = call(
            &mut w,
            method::GET_APP_WITHDRAW_RECORD,
            &serde_json::json!({"orderId": "cw-1"}),
            T0 + 2000,
        );
        let record = &reply["data"]["record"];
        assert_eq!(record["status"], "Success");
        assert_eq!(record["txId"], "");
        assert_eq!(record["cwalletUser"], "9558861");
        assert!(record.get("fee").is_none());
        assert!(record.get("fromAddress").is_none());
        assert!(w.take_webhooks().is_empty(), "no webhooks without a URL");
    }

    #[test]
    fn rate_limit_bucket_refills_on_the_clock() {
        let mut w = world_with(|c| {
            c.rate_limit = Some(RateLimit {
                per_second: 10.0,
                burst: 3,
            })
        });
        let list = Route::V2(method::GET_COIN_LIST);
        let codes: Vec<i64> = (0..5).map(|_| w.handle(list, b"{}", T0).code).collect();
        assert_eq!(codes, [10000, 10000, 10000, 11004, 11004]);
        // 100 ms refills one token at 10/s.
        assert_eq!(w.handle(list, b"{}", T0 + 100).code, 10000);
        assert_eq!(w.handle(list, b"{}", T0 + 100).code, 11004);
        // A long pause refills only up to the burst.
        let codes: Vec<i64> = (0..4).map(|_| w.handle(list, b"{}", T0 + 60_000).code).collect();
        assert_eq!(codes, [10000, 10000, 10000, 11004]);
        // A rate-limited create is recorded as an attempt.
        let body = net("rl-1", 1280, "TRX", TRX_ADDR, "5").to_string();
        let handled = w.handle(
            Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK),
            body.as_bytes(),
            T0 + 60_000,
        );
        assert_eq!(handled.code, 11004);
        assert_eq!(
            w.ledger().attempts_for("rl-1")[0].outcome,
            AttemptOutcome::Refused { code: 11004 }
        );
    }

    #[test]
    fn daily_caps_reset_at_the_day_boundary() {
        let day_ms = 10_000;
        let mut w = world_with(|c| {
            c.daily_create_limit = Some(2);
            c.daily_request_limit = Some(4);
            c.day_length = Duration::from_millis(10_000);
            c.daily_reset_offset = Duration::from_millis(3_000);
        });
        // The day containing T0 starts at the last multiple of the day length plus the offset.
        let day_start = (T0 - 3000).div_euclid(day_ms) * day_ms + 3000;
        let t = day_start + 1;
        let codes: Vec<i64> = (0..3).map(|i| create_at(&mut w, &format!("cap-{i}"), t)).collect();
        assert_eq!(codes, [10000, 10000, 11009]);
        let list = Route::V2(method::GET_COIN_LIST);
        assert_eq!(w.handle(list, b"{}", t).code, 10000);
        assert_eq!(w.handle(list, b"{}", t).code, 10000);
        // Four accepted requests: the request cap is reached too.
        assert_eq!(w.handle(list, b"{}", t).code, 11009);
        assert_eq!(w.handle(list, b"{}", day_start + day_ms - 1).code, 11009);
        // The next day starts exactly at the boundary.
        assert_eq!(create_at(&mut w, "cap-9", day_start + day_ms), 10000);
        assert_eq!(
            w.ledger().attempts_for("cap-2")[0].outcome,
            AttemptOutcome::Refused { code: 11009 }
        );
    }

    #[test]
    fn stats_count_requests_by_endpoint_and_result_and_per_second() {
        let mut w = world_with(|c| {
            c.rate_limit = Some(RateLimit {
                per_second: 1.0,
                burst: 2,
            });
            c.faults.drop_before_commit = 1.0;
        });
        let start = T0 - T0 % 1000 - 2000;
        w.start_stats(start + 999);
        let list = Route::V2(method::GET_COIN_LIST);
        // Second 2: two accepted, one answered 11004; one create dropped by a fault.
        assert_eq!(w.handle(list, b"{}", T0).code, 10000);
        assert_eq!(create_at(&mut w, "st-1", T0), 0);
        assert_eq!(w.handle(list, b"{}", T0).code, 11004);
        // Second 3: one accepted (one token refilled), one answered 11004.
        assert_eq!(w.handle(list, b"{}", T0 + 1000).code, 10000);
        assert_eq!(w.handle(list, b"{}", T0 + 1000).code, 11004);

        let stats = w.stats();
        let counts: Vec<(&str, i64, u64)> = stats
            .requests
            .iter()
            .map(|r| (r.endpoint.as_str(), r.code, r.count))
            .collect();
        assert_eq!(
            counts,
            [
                (method::APPLY_APP_WITHDRAW_TO_NETWORK, STATS_NO_REPLY, 1),
                (method::GET_COIN_LIST, STATS_SUCCESS, 2),
                (method::GET_COIN_LIST, 11004, 2),
            ]
        );
        assert_eq!(
            (
                stats.total(),
                stats.with_code(11004),
                stats.to_endpoint(method::GET_COIN_LIST)
            ),
            (5, 2, 4)
        );
        assert_eq!(stats.per_second.start_sec, start / 1000);
        assert_eq!(stats.per_second.accepted, [0, 0, 2, 1]);
        assert_eq!(stats.per_second.rate_limited, [0, 0, 1, 1]);

        // Two days later only the last day of seconds is kept, ending with this one.
        let later = T0 + 2 * 86_400_000;
        w.handle(list, b"{}", later);
        let series = w.stats().per_second;
        assert_eq!(series.accepted.len(), STATS_SECONDS);
        assert_eq!(series.start_sec + STATS_SECONDS as i64 - 1, later / 1000);
        assert_eq!(
            series.accepted.iter().sum::<u64>() + series.rate_limited.iter().sum::<u64>(),
            1
        );
    }

    fn create_at(w: &mut World, order: &str, now_ms: i64) -> i64 {
        let body = net(order, 1280, "TRX", TRX_ADDR, "5").to_string();
        w.handle(
            Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK),
            body.as_bytes(),
            now_ms,
        )
        .code
    }

    #[test]
    fn forced_errors_answer_then_expire() {
        let mut w = world();
        w.force_error(method::APPLY_APP_WITHDRAW_TO_NETWORK, 11002, "Internal", 2);
        assert_eq!(create_at(&mut w, "forced-1", T0), 11002);
        assert_eq!(create_at(&mut w, "forced-1", T0), 11002);
        assert_eq!(create_at(&mut w, "forced-1", T0), 10000);
        assert_eq!(w.ledger().attempts_for("forced-1").len(), 3);
        w.force_error("v1/bill/info", 10001, "something broke", 1);
        let (code, reply) = call(
            &mut w,
            "v1/bill/info",
            &serde_json::json!({"merchant_order_ids": []}),
            T0,
        );
        assert_eq!((code, reply["msg"].as_str()), (10001, Some("something broke")));
    }

    #[test]
    fn v1_withdraw_and_bill_info() {
        let mut w = world_with(|c| c.webhook_url = Some("http://127.0.0.1:9/hook".into()));
        let trx = w.v1_token_id("USDT", "TRX").expect("token");
        let polygon = w.v1_token_id("USDT", "POLYGON").expect("token");
        let body = serde_json::json!({"merchant_order_id": "v1-1", "address": TRX_ADDR, "token_id": trx, "value": "10", "merchant_pays_fee": false});
        let (code, reply) = call(&mut w, "v1/withdraw", &body, T0);
        assert_eq!(code, 10000, "{reply}");
        let data: V1WithdrawReceipt = serde_json::from_value(reply["data"].clone()).expect("receipt");
        assert_eq!(data.net_receivable, "9");
        assert_eq!(data.network_fee, "1");
        assert_eq!(data.network_coin_id, "1280");
        assert_eq!(data.network_fee_crypto, "USDT");
        assert_eq!(data.network_fee_value, "1");
        assert!(!data.order_id.is_empty() && !data.record_id.is_empty());
        // Native fee, priced in USD.
        let body =
            serde_json::json!({"merchant_order_id": "v1-2", "address": EVM_ADDR, "token_id": polygon, "value": "5"});
        let (_, reply) = call(&mut w, "v1/withdraw", &body, T0);
        assert_eq!(reply["data"]["network_fee_crypto"], "MATIC");
        assert_eq!(reply["data"]["network_fee_value"], "0.01175977");
        // A Cwallet address with any token of the coin is an internal transfer.
        let body = serde_json::json!({"merchant_order_id": "v1-3", "address": "alice@example.com", "token_id": polygon, "value": "3"});
        let (_, reply) = call(&mut w, "v1/withdraw", &body, T0);
        assert_eq!(reply["data"]["network_fee"], "0");
        assert_eq!(reply["data"]["net_receivable"], "3");
        assert_eq!(w.ledger().payouts_for("v1-3")[0].withdraw_type, "Cwallet");
        for (body, code) in [
            (
                serde_json::json!({"merchant_order_id": "v1-4", "address": TRX_ADDR, "token_id": "00000000-0000-0000-0000-000000000000", "value": "10"}),
                13000,
            ),
            (
                serde_json::json!({"merchant_order_id": "v1-4", "address": EVM_ADDR, "token_id": trx, "value": "10"}),
                14007,
            ),
            (
                serde_json::json!({"merchant_order_id": "v1-4", "address": "12345", "token_id": trx, "value": "10"}),
                11015,
            ),
            (
                serde_json::json!({"merchant_order_id": "v1-4", "address": TRX_ADDR, "token_id": trx, "value": 10}),
                11000,
            ),
        ] {
            assert_eq!(call(&mut w, "v1/withdraw", &body, T0).0, code, "{body}");
        }
        // No v1 webhook before the final status.
        assert!(w.take_webhooks().is_empty());

        let q = serde_json::json!({"merchant_order_ids": ["v1-1", "v1-3", "missing"]});
        let (code, reply) = call(&mut w, "v1/bill/info", &q, T0);
        assert_eq!(code, 10000);
        let bills: Vec<V1Bill> = serde_json::from_value(reply["data"].clone()).expect("bills");
        assert_eq!(bills.len(), 2);
        assert_eq!(bills[0].order_detail.status, "Processing");
        assert_eq!(bills[0].order_detail.merchant_order_id, "v1-1");
        w.settle_due(T0 + 2000);
        let (_, reply) = call(&mut w, "v1/bill/info", &q, T0 + 2000);
        let bills: Vec<V1Bill> = serde_json::from_value(reply["data"].clone()).expect("bills");
        assert_eq!(bills[0].order_detail.status, "Successful");
        assert_eq!(bills[0].trade_list[0].txid.len(), 64);
        assert_eq!(bills[0].trade_list[0].pay_time, (T0 + 2000) / 1000);
        assert_eq!(bills[1].trade_list[0].txid, "");
        let too_many: Vec<String> = (0..101).map(|i| format!("o-{i}")).collect();
        let q = serde_json::json!({"merchant_order_ids": too_many});
        assert_eq!(call(&mut w, "v1/bill/info", &q, T0).0, 11010);

        // Final v1 webhooks, flat and with "internal transfer" for the Cwallet payout.
        let hooks = w.take_webhooks();
        assert_eq!(hooks.len(), 3);
        assert!(hooks.iter().all(|h| h.scheme == WebhookScheme::V1));
        let cwallet: V1WithdrawWebhook = serde_json::from_slice(&hooks[2].body).expect("v1 hook");
        assert_eq!(cwallet.txid, "internal transfer");
        assert_eq!(cwallet.pay_status, "success");
        assert_eq!(cwallet.merchant_order_id, "v1-3");
    }

    #[test]
    fn v2_webhooks_on_creation_and_final_status() {
        let mut w = world_with(|c| c.webhook_url = Some("http://127.0.0.1:9/default".into()));
        let mut body = net("hook-1", 1280, "TRX", TRX_ADDR, "5");
        body["notifyUrl"] = "http://127.0.0.1:9/per-order".into();
        assert_eq!(create(&mut w, body).0, 10000);
        assert_eq!(
            create(&mut w, net("hook-2", 1280, "TRX", DEMO_FAILING_ADDRESS, "5")).0,
            10000
        );
        let first = w.take_webhooks();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].url, "http://127.0.0.1:9/per-order");
        assert_eq!(first[1].url, "http://127.0.0.1:9/default");
        assert_eq!(first[0].status, RecordStatus::Processing);
        let event: WebhookEvent = serde_json::from_slice(&first[0].body).expect("event");
        assert_eq!(event.kind, "ApiWithdrawal");
        assert_eq!(event.msg.order_id, "hook-1");
        assert_eq!(event.msg.coin_symbol, "USDT");
        w.settle_due(T0 + 2000);
        let last = w.take_webhooks();
        let statuses: Vec<_> = last.iter().map(|h| h.status.clone()).collect();
        assert_eq!(statuses, [RecordStatus::Success, RecordStatus::Failed]);
    }

    #[test]
    fn read_endpoints() {
        let mut w = world();
        let (code, reply) = call(
            &mut w,
            method::GET_APP_COIN_ASSET,
            &serde_json::json!({"coinId": 1329}),
            T0,
        );
        assert_eq!(code, 10000);
        assert_eq!(reply["data"]["asset"]["available"], "5000");
        assert_eq!(
            call(
                &mut w,
                method::GET_APP_COIN_ASSET,
                &serde_json::json!({"coinId": 1}),
                T0
            )
            .0,
            13000
        );
        let (_, reply) = call(&mut w, method::GET_APP_COIN_ASSET_LIST, &serde_json::json!({}), T0);
        let assets: CoinAssetList = serde_json::from_value(reply["data"].clone()).expect("assets");
        assert!(
            assets
                .assets
                .iter()
                .any(|a| a.coin_symbol == "DOGE" && a.available == "0")
        );
        let (_, reply) = call(&mut w, method::GET_COIN_LIST, &serde_json::json!({}), T0);
        let coins: CoinList = serde_json::from_value(reply["data"].clone()).expect("coins");
        assert_eq!(coins.coins.len(), 10);
        let (_, reply) = call(&mut w, method::GET_COIN, &serde_json::json!({"coinId": 1280}), T0);
        assert_eq!(
            reply["data"]["coin"]["networks"]["ETH"]["maximumWithdrawAmount"],
            "100000"
        );
        assert_eq!(
            call(&mut w, method::GET_COIN, &serde_json::json!({"coinId": 2}), T0).0,
            13000
        );
        let (_, reply) = call(
            &mut w,
            method::GET_COIN_USDT_PRICE,
            &serde_json::json!({"coinIds": [1280, 1155, 7]}),
            T0,
        );
        assert_eq!(
            reply["data"]["prices"],
            serde_json::json!({"1280": "1", "1155": "3000"})
        );
        let (_, reply) = call(
            &mut w,
            method::GET_WITHDRAW_FEE,
            &serde_json::json!({"coinId": 1280, "chain": "POLYGON"}),
            T0,
        );
        assert_eq!(
            reply["data"]["fee"],
            serde_json::json!({"coinId": 1329, "coinSymbol": "MATIC", "amount": "0.0213814"})
        );
        assert!(
            reply["data"]["networkFeeInquiryID"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        assert_eq!(
            call(
                &mut w,
                method::GET_WITHDRAW_FEE,
                &serde_json::json!({"coinId": 1280, "chain": "XRP"}),
                T0
            )
            .0,
            13001
        );
        assert_eq!(
            call(
                &mut w,
                method::GET_WITHDRAW_FEE,
                &serde_json::json!({"coinId": 3, "chain": "XRP"}),
                T0
            )
            .0,
            13000
        );
        let check = |w: &mut World, chain: &str, address: &str| {
            call(
                w,
                method::CHECK_WITHDRAWAL_ADDRESS_VALIDITY,
                &serde_json::json!({"chain": chain, "address": address}),
                T0,
            )
        };
        assert_eq!(check(&mut w, "TRX", TRX_ADDR).1["data"]["addrIsValid"], true);
        assert_eq!(check(&mut w, "TRX", EVM_ADDR).1["data"]["addrIsValid"], false);
        assert_eq!(check(&mut w, "NOPE", EVM_ADDR).0, 13001);
        let (_, reply) = call(
            &mut w,
            method::GET_CWALLET_USER_ID,
            &serde_json::json!({"cwalletUserId": "35255142"}),
            T0,
        );
        assert_eq!(
            reply["data"],
            serde_json::json!({"cwalletUserId": "35255142", "cwalletUserName": "bo***@example.org"})
        );
        assert_eq!(
            call(
                &mut w,
                method::GET_CWALLET_USER_ID,
                &serde_json::json!({"cwalletUserId": "777777"}),
                T0
            )
            .0,
            11015
        );
        let (_, reply) = call(
            &mut w,
            method::GET_CHAIN_LIST,
            &serde_json::json!({"chains": ["TRX", "ARBITRUM", "NOPE"]}),
            T0,
        );
        let chains: ChainList = serde_json::from_value(reply["data"].clone()).expect("chains");
        assert_eq!(chains.chains.len(), 2);
        assert_eq!(
            chains.chains[0].tx_url("abc").as_deref(),
            Some("https://tronscan.org/#/transaction/abc")
        );
        assert!(!chains.chains[1].is_normal());
        let (_, reply) = call(&mut w, method::GET_CHAIN_LIST, &serde_json::json!({}), T0);
        assert_eq!(reply["data"]["chains"].as_array().map(Vec::len), Some(9));
        let (_, reply) = call(&mut w, method::GET_FIAT_LIST, &serde_json::json!({}), T0);
        assert!(reply["data"]["fiats"].as_array().is_some_and(|f| f.len() >= 5));
        let (_, reply) = call(&mut w, method::GET_SWAP_COIN_LIST, &serde_json::json!({}), T0);
        assert!(reply["data"]["coins"].as_array().is_some_and(|f| f.len() >= 5));
    }

    #[test]
    fn operator_controls() {
        let mut w = world_with(|c| c.balances = vec![("USDT".into(), "12.5".into())]);
        assert_eq!(bal(&w, "USDT"), "12.5");
        assert!(w.set_balance("NOPE", "1").is_err());
        assert!(w.set_balance("USDT", "-1").is_err());
        assert!(w.balance("NOPE").is_none());
        w.set_chain_status("ARBITRUM", "Normal").expect("chain");
        assert_eq!(create(&mut w, net("arb-1", 1280, "ARBITRUM", EVM_ADDR, "2")).0, 10000);
        w.set_chain_status("TRX", "Maintenance").expect("chain");
        assert_eq!(create(&mut w, net("trx-1", 1280, "TRX", TRX_ADDR, "2")).0, 14004);
        assert!(w.set_chain_status("NOPE", "Normal").is_err());
        let config = SandboxConfig {
            balances: vec![("USDT".into(), "1e3".into())],
            ..SandboxConfig::default()
        };
        assert!(World::new(&config).is_err());
    }

    #[test]
    fn record_ids_are_dated_and_unique() {
        assert_eq!(utc_compact(1_677_152_720_000), "20230223114520");
        assert_eq!(utc_compact(0), "19700101000000");
        assert_eq!(utc_compact(951_782_400_000), "20000229000000");
        let mut w = world();
        for i in 0..3 {
            create(&mut w, net(&format!("id-{i}"), 1280, "TRX", TRX_ADDR, "2"));
        }
        let ids: HashSet<_> = w.ledger().payouts.iter().map(|p| p.record_id.clone()).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(decode_cursor(&encode_cursor(12345)), Some(12345));
    }
}
