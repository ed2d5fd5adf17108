//! The built-in CCPayment API simulator ("sandbox"): a local HTTP server that speaks the
//! CCPayment merchant API closely enough that ccpayout's whole pipeline (preflight, submission,
//! tracking, reporting) can run against it on loopback, in tests, in benchmarks and in
//! `--sandbox` mode for newcomers.
//!
//! # What it simulates
//!
//! - The wire format of every v2 method in [`crate::api::types::method::ALL`] and of every v1
//!   path in [`crate::api::types::method::V1_ALL`] (`withdraw`, `bill/info` and the reads a
//!   v1 payout job makes), built from the same wire types as the client so the two cannot drift
//!   apart. Replies are serialised once and those exact bytes are sent.
//! - Authentication over the raw body bytes: missing or malformed headers (11001), the IP
//!   whitelist (12002), the app id (12001), the ±2-minute timestamp window (11006) and the v2
//!   HMAC / v1 SHA-256 signatures (11005). v1 success replies are signed like CCPayment signs
//!   them.
//! - A demo catalogue ([`demo`]) with coins, networks, chains, fees (some in the chain's
//!   native coin), Cwallet users and generous demo balances; every validation code of a
//!   withdrawal (13000–14019) is reachable.
//! - Money: balances are exact decimals; a withdrawal debits amount and fee on commit, settles
//!   after [`SandboxConfig::settle_delay`] to `Success` or `Failed`, and a failure refunds
//!   everything it debited.
//! - orderId uniqueness across v1 and v2 (11011, and 11007 while a slow reply for the first
//!   create is still in flight), checked and inserted under one lock.
//! - A token-bucket rate limit (11004) and daily caps (11009) on the injected clock, forced
//!   error codes, and seeded faults: dropped connections before and after commit, HTTP 502,
//!   11002, slow replies.
//! - Batch withdrawals (ccpayment-api.md §2.8): apply, append, confirm (review, delay, the run:
//!   each task a network withdrawal in seq order, one every
//!   [`SandboxConfig::batch_task_interval`] in `Single` mode, all at once in `Batch` mode, settled
//!   like a single withdrawal), abort, the batch and its task list. Task payouts are in the
//!   ledger (with their batch, seq and remark) but not in the single withdrawal reads. The
//!   choices where the sources are silent are listed in `world/batches.rs`.
//! - Withdrawal webhooks, signed and retried on CCPayment's schedule (time-scaled).
//! - Debug endpoints: `GET /sandbox/ledger` (the [`Ledger`] as JSON), `GET /sandbox/stats`
//!   (the [`SandboxStats`]: authenticated requests by endpoint and result code, and requests
//!   accepted and answered 11004 per second) and `GET /sandbox/health`.
//!
//! [`DEMO_ADDRESSES`] lists a valid payee address per demo chain; payouts to
//! [`DEMO_FAILING_ADDRESS`] always end `Failed` under the default configuration.
//!
//! # What it deliberately does not simulate
//!
//! Deposits, invoices, swaps, the wallet-system (per-user) API, manual approval
//! (`WaitingApproval`/`Rejected`, and a batch review that rejects), webhooks for batch tasks (no
//! format is known), RSA signatures, webhook resend, the 11014 IP ban, merchant verification
//! (12003) and test-mode amount limits (14022/14023). The catalogue is demo data, not
//! CCPayment's live list.
//!
//! # Choices where the API reference is a guess (tagged \[G\] there)
//!
//! - v1 errors use the v2 codes (the v1 error table is not public; an unknown Cwallet ID on
//!   `check/user` answers 11015 as on v2); v1 error replies are not signed, v1 success replies
//!   are. v2 replies are never signed.
//! - v1 names coins and tokens by UUIDs made from the demo symbols; a fee's `network_coin_id` is
//!   the fee coin's token on the payout's chain (a UUID, never the v2 number). The v1 token list
//!   gives each coin the strictest of its networks' minimums and precisions, and its tokens
//!   come without the fee fields, which `token/chain` adds.
//! - The timestamp window is symmetric: `|now − ts| ≤ window`.
//! - 11007 (RepeatedSubmit) answers a duplicate while the first create of that orderId is
//!   committed but its reply is still held back (a slow fault); 11011 (OrderDuplicate) answers
//!   every later duplicate. Duplicates are detected before any other validation, so resending
//!   the same payload always gets 11011 rather than, say, a balance error.
//! - An amount's precision is judged on its value: trailing zeros do not count as decimals.
//! - Rate limiting consumes one token per signed request; the daily request cap counts signed
//!   requests that passed the rate limit, and the daily create cap counts withdrawal creates that
//!   passed the rate limit; a request refused with 11009 does not count.
//! - A `getAppWithdrawRecordList` window longer than 90 days answers 11008.
//! - A malformed `cwalletUser` answers 11000; a well-formed but unknown one answers 11015.
//! - Webhook retries carry a fresh timestamp and signature.
//! - The parameter-less v2 calls (`getCoinList`, `getAppCoinAssetList`, `getFiatList`,
//!   `getSwapCoinList`) accept both an empty body (signed over appId + timestamp alone, as the
//!   official examples send it) and `{}`.
//! - Only a coin in `Maintain` (or any status but `Normal` and `Pre-delisting`) refuses
//!   withdrawals (13005); `Pre-delisting` suspends deposits only.
//! - `checkWithdrawAddress` (of the batch withdrawal family) judges each address as
//!   `checkWithdrawalAddressValidity` does and names a bad one 14024 (AddressFormatErr, the 2026
//!   definitions' code; a create still answers 14007); a memo missing where the chain takes one
//!   is 14003, one given where it takes none 14009. An empty chain, no addresses, more than 500
//!   or a seq of 0 refuse the request with 11000, an unknown chain with 13001, a repeated seq
//!   with 14027.
//!
//! # Readings
//!
//! Where the documentation is silent, the choices above are one plausible reading each.
//! [`SandboxConfig::readings`] swaps in another, per run, so ccpayout can be proven against
//! every reading (ccpayment-api.md §5; `ccpayout sandbox --reading NAME`):
//!
//! - `lookup-lag[=MS]` (R2): `getAppWithdrawRecord`, `getAppWithdrawRecordList` and v1
//!   `bill/info` see a payout only MS (default 3000) after its creation; before that it does not
//!   exist for them (11003, absent from lists and bills). Creates see it at once.
//! - `empty-record` (R1): `getAppWithdrawRecord` of an orderId with no visible payout answers
//!   10000 with `"data":{"record":{}}` instead of 11003; `other-record` answers 10000 with the
//!   record of the latest visible payout of another orderId (the empty record when there is
//!   none). Lookups by recordId still answer 11003.
//! - `no-order-uniqueness` (R3): a create with a used orderId, v2 or v1, commits another payout
//!   (no 11011, no 11007). Record lists and bills show every payout of the orderId; a lookup by
//!   orderId answers the first visible one; the ledger shows the double payment. A state file
//!   that holds an orderId twice loads only under this reading.
//! - `string-ids` (R4): every JSON number inside the `data` of every success reply is sent as a
//!   string (`"coinId":"1280"`), by a transform of the reply bytes.
//! - `empty-body-only` (R5): the parameter-less v2 calls refuse any body but an empty one with
//!   11000.
//! - `pre-delisting` (R6): USDC reports status `Pre-delisting`; its withdrawals still work.
//! - `old-webhook-timestamps` (R11): webhook retries carry the first attempt's timestamp and the
//!   signature made with it.
//! - `batch-apply-idempotent` (R14): a reused batchOrderId answers 10000 with the existing
//!   batch's ids and adds nothing (by default: 11007 RepeatedSubmit, nothing stored).
//! - `batch-id-reuse` (R14): a reused batchOrderId makes a second batch; reads and `append` by
//!   the id see the first, `confirm` and `abort` act on every batch with it — the reading under
//!   which a blind re-apply pays twice. Excludes `batch-apply-idempotent`.
//! - `batch-seq-unchecked` (R14): a task seq repeated in a request, or already in the batch, is
//!   stored (and paid) instead of refused with 14027 SeqDuplicate.
//! - `batch-review[=MS]` (R14): a confirmed batch is `Reviewing` for MS (default 5000) of world
//!   time before it is `Pending`.
//! - `task-status-success` (R14): a paid batch task reads `Success` instead of `Successful`.
//! - `no-batch-withdraw` (R14): the six batch routes answer as an unknown method does (the
//!   router's plain-text HTTP 404, before authentication; nothing counted).
//! - `v1-only` (R15): every v2 endpoint answers 11013 (NoSupportVersion) before it costs
//!   anything; v1 endpoints work.
//! - `no-address-batch-check` (§2.8): the account lacks `checkWithdrawAddress`, which is
//!   answered as an unknown method is (the plain-text HTTP 404) before it reaches the world.
//!
//! # Persistence
//!
//! By default the state lives and dies with the process. With
//! [`SandboxConfig::persist_path`] set, [`Sandbox::start`] loads that file if it exists and
//! restores the durable state from it, and the sandbox saves the state there after every change
//! that matters, so a restarted simulator still knows (and still settles) the payouts it
//! committed, refuses their orderIds with 11011, goes on with its batches and never repeats a
//! record id.
//!
//! - **Loading**: a missing file starts the demo state (and writes it at once, so an unwritable
//!   path fails at start); a file that cannot be read, is not JSON, has another version or is
//!   inconsistent (an orderId or recordId twice, a bad amount) makes `start` fail with
//!   [`std::io::ErrorKind::InvalidData`] naming the file. It never starts empty instead: in
//!   the simulation that would pay everything again. The file's balances replace the demo
//!   balances and [`SandboxConfig::balances`]; everything else comes from the configuration.
//! - **Saving**: after a committed create (before its reply is sent, also when a fault then
//!   drops or holds the reply; a batch's apply, append, confirm and abort too), a settlement or
//!   batch step, a balance change through
//!   [`Sandbox::set_balance`], and on [`Sandbox::shutdown`]. Any reply is sent only once the
//!   state it reflects is in the file, so SIGKILL after a reply never loses a payout the client
//!   was told about. Create attempts refused without a payout and the daily counters are
//!   written with the next save. Writes are atomic (a temporary `.NAME.tmp` in the same folder,
//!   fsynced, renamed over the file) and ordered: a snapshot is taken and written under one
//!   mutex, and a save whose change is already on disk writes nothing, so concurrent creates
//!   share writes and an older snapshot never replaces a newer one. A failed write is logged;
//!   a create whose payout could not be saved gets its connection dropped instead of a reply.
//! - **Not persisted** (they belong to one run): the request statistics, the rate-limit
//!   bucket, forced errors, orderIds held by slow replies, the webhook outbox and delivery log,
//!   faults, chain statuses and refused addresses. Webhooks already queued when the process
//!   died are not resent; payouts that were still `Processing` settle after the restart at
//!   their original due time, with the outcome decided at commit, and send their final webhook
//!   then.
//!
//! The file is JSON, [`persist::Snapshot`] (amounts are exact decimal strings):
//!
//! ```text
//! {
//!   "version": 2,
//!   "next_seq": 3,                      // sequence of the next record id
//!   "fee_quotes": 0,                    // fee quotes given (inquiry ids derive from it)
//!   "rng": {"seed": 1, "state": 123},   // the PRNG; continued only under the same seed
//!   "day": {"day": 19675, "requests": 4, "creates": 3},
//!   "balances": {"1280": "999985", ...},                 // by coin id
//!   "payouts": [{                                        // in creation order
//!     "ledger": { ..a LedgerPayout, as GET /sandbox/ledger shows it.. },
//!     "from_address": "T...", "contract": "TR7...", "ccp_order_id": "2023...01",
//!     "debits": [{"coin_id": 1280, "amount": "5"}],      // refunded if it fails
//!     "due_ms": 1700000002000, "will_fail": false, "webhook_url": null
//!   }],
//!   "attempts": [ ..CreateAttempt, as GET /sandbox/ledger shows them.. ],
//!   "batches": [{                                        // in creation order
//!     "batch_order_id": "b-1", "bill_id": "2023...04", "coin_id": 1280, "chain": "TRX",
//!     "product_name": "", "mode": "Single", "notify_url": "", "status": "Processing",
//!     "created_ms": ..., "updated_ms": ..., "delay_ms": 0, "review_until_ms": null,
//!     "start_ms": ..., "next_event_ms": ..., "exec_seq": 1, "fee_charged": false,
//!     "tasks": [{"seq": 1, "address": "T...", "memo": "", "amount": "5", "remark": "row-1",
//!                "created_ms": ..., "updated_ms": ..., "state": "executed",
//!                "record_id": "2023...05"}]             // its payout, among "payouts"
//!   }]
//! }
//! ```
//!
//! The version is 2; a version 1 file (written before batch withdrawals) still loads, as a state
//! without batches, and is written back as version 2. A later format gets a new version number;
//! this build refuses any version but 1 and 2.
//!
//! # Layout
//!
//! - [`demo`]: the demo catalogue and addresses (pure).
//! - [`world`]: the state machine: balances, payouts, ledger, limits, faults (pure, no I/O), one
//!   file per concern under `world/`.
//! - [`server`]: the axum router, authentication and fault transport, the debug endpoints and
//!   the [`Sandbox`] handle, one file per concern under `server/`.
//! - [`persist`]: the state file: its format, loading, atomic ordered saves.
//! - [`notifier`]: the webhook sender.
//! - [`readings`]: the readings a run can take: their names, parsing and help (pure).

pub mod demo;
pub mod direct;
pub mod notifier;
pub mod persist;
pub mod readings;
pub mod server;
pub mod world;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::api::types::{FeeAmount, RecordStatus};

pub use demo::{DEMO_ADDRESSES, DEMO_FAILING_ADDRESS};
pub use readings::{Readings, RepeatedBatch, UnknownOrder};
pub use server::Sandbox;

/// The app id the sandbox accepts by default.
pub const DEMO_APP_ID: &str = "ccpayout-sandbox-app";
/// The app secret the sandbox accepts by default. Public on purpose: it protects nothing.
pub const DEMO_APP_SECRET: &str = "ccpayout-sandbox-secret";

/// How a sandbox behaves. [`Default`] gives the demo values documented on each field.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The app id requests must carry. Default [`DEMO_APP_ID`].
    pub app_id: String,
    /// The secret requests are signed with. Default [`DEMO_APP_SECRET`].
    pub app_secret: SecretString,
    /// Seed of the PRNG behind faults and `fail_rate`. Default 1.
    pub seed: u64,
    /// Time from commit (`Processing`) to the final status. Default 2 s.
    pub settle_delay: Duration,
    /// A batch withdrawal in `Single` mode executes one task, then the next this much later.
    /// Default 100 ms.
    pub batch_task_interval: Duration,
    /// Share of payouts that end `Failed`, drawn from the seeded PRNG. Default 0.
    pub fail_rate: f64,
    /// Payouts to these addresses or Cwallet users always end `Failed`.
    /// Default: [`DEMO_FAILING_ADDRESS`] only.
    pub failing_recipients: Vec<String>,
    /// A token bucket on the injected clock; `None` is unlimited. Default `None`.
    pub rate_limit: Option<RateLimit>,
    /// Withdrawal creates (v1 and v2) accepted per day; 11009 beyond. Default `None`.
    pub daily_create_limit: Option<u64>,
    /// Signed requests accepted per day; 11009 beyond. Default `None`.
    pub daily_request_limit: Option<u64>,
    /// Length of a "day" for the daily caps (tests shorten it). Default 24 h.
    pub day_length: Duration,
    /// The day starts at UTC midnight plus this offset. Default 0.
    pub daily_reset_offset: Duration,
    /// Requests with `|now − Timestamp|` above this answer 11006. Default 120 s.
    pub timestamp_window: Duration,
    /// Seeded faults. Default none.
    pub faults: Faults,
    /// Where withdrawal webhooks go; a v2 order's `notifyUrl` overrides it. Default `None`.
    pub webhook_url: Option<String>,
    /// Multiplies the webhook retry intervals (30 s … 1890 s). Default 1.0.
    pub webhook_time_scale: f64,
    /// `Some`: requests from other peers answer 12002. Default `None`.
    pub ip_whitelist: Option<Vec<IpAddr>>,
    /// Overrides of the demo balances: (coin symbol, decimal string).
    pub balances: Vec<(String, String)>,
    /// `Some`: keep the durable state in this file, load it at start and save it after every
    /// change that matters (see "Persistence" in the module documentation). Default `None`:
    /// the state lives and dies with the process.
    pub persist_path: Option<PathBuf>,
    /// Readings of the API where its documentation is silent (see "Readings" in the module
    /// documentation). Default: none, the behaviour documented above.
    pub readings: Readings,
    /// Network latency the HTTP server adds to every API request, round trip, drawn uniformly
    /// from `min..=max` (seeded): half before the request is handled, half before its reply
    /// leaves, as a server far away would. Default none (loopback).
    pub latency: direct::Latency,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            app_id: DEMO_APP_ID.to_owned(),
            app_secret: SecretString::from(DEMO_APP_SECRET),
            seed: 1,
            settle_delay: Duration::from_secs(2),
            batch_task_interval: Duration::from_millis(100),
            fail_rate: 0.0,
            failing_recipients: vec![DEMO_FAILING_ADDRESS.to_owned()],
            rate_limit: None,
            daily_create_limit: None,
            daily_request_limit: None,
            day_length: Duration::from_secs(24 * 60 * 60),
            daily_reset_offset: Duration::ZERO,
            timestamp_window: Duration::from_secs(120),
            faults: Faults::default(),
            webhook_url: None,
            webhook_time_scale: 1.0,
            ip_whitelist: None,
            balances: Vec::new(),
            persist_path: None,
            readings: Readings::NONE,
            latency: direct::Latency::NONE,
        }
    }
}

/// A token bucket: `burst` tokens at most, refilled at `per_second`, one per signed request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// Seeded faults. Each is a probability in `0.0..=1.0`; one uniform draw per eligible request
/// picks at most one of them (in the order drop_before_commit, http_5xx, internal_11002,
/// drop_after_commit, slow), so their sum should not exceed 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Commit, then close the connection without a reply.
    pub drop_after_commit: f64,
    /// Close the connection without a reply; nothing committed.
    pub drop_before_commit: f64,
    /// HTTP 502 with an HTML body; nothing committed.
    pub http_5xx: f64,
    /// Code 11002 Internal; nothing committed.
    pub internal_11002: f64,
    /// Commit, then hold the reply for `slow_delay_ms` (real time).
    pub slow: f64,
    pub slow_delay_ms: u64,
    /// `false`: faults hit withdrawal creates only; `true`: every endpoint.
    pub on_reads: bool,
}

/// Everything the sandbox paid and every create it was asked for: the ground truth tests and
/// benchmarks compare ccpayout's reports against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Payouts in creation order.
    pub payouts: Vec<LedgerPayout>,
    /// Every withdrawal create that passed authentication, in arrival order.
    pub attempts: Vec<CreateAttempt>,
}

impl Ledger {
    /// The payouts with this orderId (at most one, unless the sandbox is broken).
    pub fn payouts_for(&self, order_id: &str) -> Vec<&LedgerPayout> {
        self.payouts.iter().filter(|p| p.order_id == order_id).collect()
    }

    /// The create attempts for this orderId (or, for the batch routes, this batchOrderId).
    pub fn attempts_for(&self, order_id: &str) -> Vec<&CreateAttempt> {
        self.attempts.iter().filter(|a| a.order_id == order_id).collect()
    }

    /// The payouts of the tasks of the batches with this batchOrderId, in execution order.
    pub fn tasks_of(&self, batch_order_id: &str) -> Vec<&LedgerPayout> {
        self.payouts
            .iter()
            .filter(|p| p.is_batch_task() && p.batch_order_id == batch_order_id)
            .collect()
    }

    /// The payouts whose merchant reference ([`LedgerPayout::merchant_ref`]) is `reference`.
    pub fn payouts_by_ref(&self, reference: &str) -> Vec<&LedgerPayout> {
        self.payouts.iter().filter(|p| p.merchant_ref() == reference).collect()
    }
}

/// One payout as the sandbox committed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerPayout {
    pub record_id: String,
    pub order_id: String,
    /// `v2` or `v1`.
    pub api: String,
    /// `Network` or `Cwallet`.
    pub withdraw_type: String,
    pub coin_id: u64,
    pub coin_symbol: String,
    /// The chain symbol, or `Cwallet OS` for Cwallet transfers.
    pub chain: String,
    pub to_address: String,
    pub memo: String,
    pub cwallet_user: String,
    pub amount: String,
    /// The network fee; `None` for Cwallet transfers.
    pub fee: Option<FeeAmount>,
    /// What the recipient receives.
    pub receiver_gets: String,
    pub merchant_pays_fee: bool,
    pub status: RecordStatus,
    pub reason: String,
    pub tx_id: String,
    pub created_ms: i64,
    pub settled_ms: Option<i64>,
    /// The batchOrderId of a batch task's payout; empty for a single withdrawal.
    #[serde(default)]
    pub batch_order_id: String,
    /// The task's seq within its batch; 0 for a single withdrawal.
    #[serde(default)]
    pub seq: u32,
    /// The task's remark as the merchant sent it (ccpayout puts the row's order_id there);
    /// empty for a single withdrawal.
    #[serde(default)]
    pub remark: String,
}

impl LedgerPayout {
    /// Whether this payout is a task of a batch withdrawal.
    pub fn is_batch_task(&self) -> bool {
        !self.batch_order_id.is_empty()
    }

    /// The merchant's own reference of this payout: the remark of a batch task (whose `order_id`
    /// is CCPayment's generated one), the orderId of a single withdrawal.
    pub fn merchant_ref(&self) -> &str {
        if self.is_batch_task() {
            &self.remark
        } else {
            &self.order_id
        }
    }
}

/// One withdrawal create that passed authentication: a single withdrawal (v2 or v1), or a
/// batch's apply, append or confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAttempt {
    /// The orderId (or v1 `merchant_order_id`, or the batchOrderId of a batch route); empty when
    /// the body did not carry one.
    pub order_id: String,
    /// The v2 method name, or `v1/withdraw`.
    pub endpoint: String,
    pub at_ms: i64,
    pub outcome: AttemptOutcome,
}

/// What became of a create attempt. A `drop_after_commit` or `slow` fault records two entries
/// for one request: what the body did (`Created` or `Refused`), then the `Fault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// A payout was committed. For the batch routes: answered 10000, and `record_id` is the
    /// batch's billId (the batch or its tasks were stored or confirmed, unless the answer was
    /// an idempotent repeat).
    Created { record_id: String },
    /// Answered with this error code; nothing committed.
    Refused { code: i64 },
    /// A fault was injected: `drop_before_commit`, `http_5xx`, `internal_11002`,
    /// `drop_after_commit` or `slow`.
    Fault { fault: String },
}

/// What the sandbox answered since it started: `GET /sandbox/stats`. Counters only (one per
/// endpoint and code, two per second), so it costs the same memory after a million requests as
/// after ten. Only requests that passed authentication are counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// Requests by endpoint and result code, sorted by endpoint, then code.
    pub requests: Vec<RequestCount>,
    /// Requests per second.
    pub per_second: PerSecond,
    /// TCP connections the HTTP server accepted (0 in process): a client that reuses its
    /// connections opens few.
    #[serde(default)]
    pub connections: u64,
}

impl SandboxStats {
    /// Requests with this result code, over every endpoint.
    pub fn with_code(&self, code: i64) -> u64 {
        self.requests.iter().filter(|r| r.code == code).map(|r| r.count).sum()
    }

    /// Requests to this endpoint, whatever their result.
    pub fn to_endpoint(&self, endpoint: &str) -> u64 {
        self.requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.count)
            .sum()
    }

    /// Every request counted.
    pub fn total(&self) -> u64 {
        self.requests.iter().map(|r| r.count).sum()
    }
}

/// Requests to one endpoint that got one result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCount {
    /// The v2 method name, or `v1/` and the path (`v1/withdraw`, `v1/coin/all` …).
    pub endpoint: String,
    /// [`STATS_SUCCESS`] for success (CCPayment's 10000), the error code otherwise, and
    /// [`STATS_NO_REPLY`] when a fault sent no API reply (a dropped connection or HTTP 502).
    pub code: i64,
    pub count: u64,
}

/// [`RequestCount::code`] of a success.
pub const STATS_SUCCESS: i64 = 0;
/// [`RequestCount::code`] of a request a fault left without an API reply.
pub const STATS_NO_REPLY: i64 = -1;

/// A series of per-second counters: entry `i` is Unix second `start_sec + i`. It starts when the
/// sandbox starts and keeps the last 24 hours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerSecond {
    pub start_sec: i64,
    /// Requests that were not answered 11004.
    pub accepted: Vec<u64>,
    /// Requests answered 11004 (RateLimit).
    pub rate_limited: Vec<u64>,
}

/// One webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub record_id: String,
    pub order_id: String,
    pub status: RecordStatus,
    pub url: String,
    /// 0 for the first attempt, 1..=6 for the retries.
    pub attempt: u32,
    pub at_ms: i64,
    /// `None` when the request failed at the transport level.
    pub http_status: Option<u16>,
    /// HTTP 200 with `success` (any case) in the body.
    pub accepted: bool,
}
