//! `ccpayout doctor`: a read-only probe of the configured CCPayment account, run once before a
//! batch is trusted to the service.
//!
//! It asks only reads (every request through the one pacing, none that creates a payout: see
//! `Probe::send`) and answers with one [`Check`] per question: can CCPayment be reached (and
//! over TLS), is this machine's clock close enough to the server's (the `Date` header, and what
//! 11006 says), are the credentials right (11005, 12001), is the address on the whitelist (12002),
//! which API generation the account answers (11013), which body the parameter-less calls accept
//! (R5), what a lookup of a never-used orderId returns (R1), whether the account has the batch
//! withdrawal routes (R14: a lookup of a batch never applied — never an apply, append or
//! confirm, which are creates), whether coin, chain, fee and record replies decode (R4), the
//! balances, and whether the coins and chains the policy allows are offered. The readings are
//! those of ccpayment-api.md §5.
//!
//! What it learns that ccpayout can use is an [`AccountFindings`], kept in the store under
//! [`ACCOUNT`] and shown by `status`: the wiring sends parameter-less calls in the form the
//! account accepted.
//!
//! The judgements (what a reply means, what to do) are pure functions below the probe, tested
//! on their own.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::codes;
use crate::api::types::{
    BatchOrderQuery, ChainListQuery, CoinAssetList, CoinList, Envelope, V1AssetsQuery, V1BillInfoRequest, V1CoinList,
    V1NetworkFeeQuery, WithdrawRecordData, WithdrawRecordListQuery, WithdrawRecordPage, WithdrawRecordQuery, method,
};
use crate::api::{CallError, Client, Endpoint, NoParams, RawReply};
use crate::batch::catalogue::{suspends_withdrawals, v1_status_text};
use crate::config::{ApiGeneration, Config};
use crate::store::Key;
use crate::util::clock::SharedClock;

/// What `doctor` last learnt of the account.
pub const ACCOUNT: Key<AccountFindings> = Key::new("account");

/// Beyond this many seconds between the server's clock and this machine's, a check fails:
/// CCPayment refuses timestamps more than 120 s off (11006), and half of that leaves room for
/// drift between runs.
pub const CLOCK_FAIL_SECS: i64 = 60;
/// Beyond this, a warning: NTP keeps a server within a second.
pub const CLOCK_WARN_SECS: i64 = 10;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    /// Passes, with something the operator should know.
    Warn,
    /// Must be fixed before a batch is trusted to ccpayout.
    Fail,
    /// Could not be asked (an earlier check failed).
    Skip,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
            Level::Skip => "skip",
        })
    }
}

/// One line of the diagnosis: what was asked, how it came out, what was seen, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub seen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub todo: Option<String>,
}

impl Check {
    fn new(name: &'static str, level: Level, seen: impl Into<String>, todo: Option<String>) -> Check {
        Check {
            name,
            level,
            seen: seen.into(),
            todo,
        }
    }
    fn ok(name: &'static str, seen: impl Into<String>) -> Check {
        Check::new(name, Level::Ok, seen, None)
    }
    fn warn(name: &'static str, seen: impl Into<String>, todo: impl Into<String>) -> Check {
        Check::new(name, Level::Warn, seen, Some(todo.into()))
    }
    fn fail(name: &'static str, seen: impl Into<String>, todo: impl Into<String>) -> Check {
        Check::new(name, Level::Fail, seen, Some(todo.into()))
    }
    fn skip(name: &'static str, why: impl Into<String>) -> Check {
        Check::new(name, Level::Skip, why, None)
    }
}

/// How the account answers a lookup of an orderId it never saw (R1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownOrder {
    /// 11003 NotFound, as the code table suggests.
    NotFoundCode,
    /// Success with an empty record.
    EmptyRecord,
    /// Success with a record of another orderId.
    OtherRecord,
    /// v1: no bill for it.
    NoBill,
}

impl fmt::Display for UnknownOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnknownOrder::NotFoundCode => "11003 NotFound",
            UnknownOrder::EmptyRecord => "success with an empty record",
            UnknownOrder::OtherRecord => "success with another order's record",
            UnknownOrder::NoBill => "no bill",
        })
    }
}

/// What `doctor` learnt of the account, kept in the store ([`ACCOUNT`]) and shown by `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountFindings {
    /// When the probe ran (ms since the epoch).
    pub checked_ms: i64,
    /// The base URL probed.
    pub base_url: String,
    /// The generation the account answers: `"v2"` or `"v1"`.
    pub generation: String,
    /// The body parameter-less calls are sent with, when the probe found one that works.
    pub no_params: Option<NoParams>,
    /// What a lookup of a never-used orderId returned.
    pub unknown_order: Option<UnknownOrder>,
    /// The server's clock minus this machine's, from the `Date` header (seconds).
    pub clock_skew_secs: Option<i64>,
    /// Whether the account has the batch withdrawal routes (`withdraw_mode = "batch"`); `None`
    /// when the probe could not tell (or a v1 account, which has none).
    pub batch_withdraw: Option<bool>,
    /// Checks that passed, warned and failed.
    pub ok: u32,
    pub warnings: u32,
    pub failures: u32,
}

impl AccountFindings {
    /// The lines `status` shows.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{} account at {}", self.generation, self.base_url)];
        if let Some(form) = self.no_params {
            parts.push(format!(
                "parameter-less calls sent with {}",
                match form {
                    NoParams::Empty => "an empty body",
                    NoParams::Braces => "{}",
                }
            ));
        }
        if let Some(form) = self.unknown_order {
            parts.push(format!("an unknown orderId is answered with {form}"));
        }
        match self.batch_withdraw {
            Some(true) => parts.push("batch withdrawals available".to_owned()),
            Some(false) => parts.push("no batch withdrawals".to_owned()),
            None => {}
        }
        if let Some(skew) = self.clock_skew_secs {
            parts.push(format!("server clock {skew:+} s"));
        }
        format!(
            "{} ({} ok, {} warning(s), {} failure(s))",
            parts.join("; "),
            self.ok,
            self.warnings,
            self.failures
        )
    }
}

/// The whole answer of a probe.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub checks: Vec<Check>,
    pub findings: AccountFindings,
    /// Whether CCPayment answered at all; when not, nothing else could be asked.
    pub reached: bool,
}

impl Diagnosis {
    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.level == Level::Fail)
    }
}

/// The orderId a lookup asks about: ccpayout never sends one like it (batches' order ids are
/// the file's own or `<batch>-<line>`), and a fresh one each run.
pub fn probe_order_id(now_ms: i64) -> String {
    format!("ccpayout-doctor-probe-{now_ms}")
}

/// Probes the account `config` names through `client` (which must pass the pacing) and judges
/// what came back. Never creates a payout.
pub async fn examine(config: &Config, client: &Client, clock: &SharedClock) -> Diagnosis {
    let mut probe = Probe {
        client,
        config,
        clock,
        checks: Vec::new(),
        findings: AccountFindings {
            checked_ms: clock.now_ms(),
            base_url: base_of(&client.url(match config.api.generation {
                ApiGeneration::V2 => Endpoint::v2(method::GET_COIN_LIST),
                ApiGeneration::V1 => Endpoint::v1(method::V1_COIN_ALL),
            })),
            generation: config.api.generation.as_str().to_owned(),
            ..AccountFindings::default()
        },
    };
    let reached = match config.api.generation {
        ApiGeneration::V2 => probe.v2().await,
        ApiGeneration::V1 => probe.v1().await,
    };
    let count = |level| probe.checks.iter().filter(|c| c.level == level).count() as u32;
    probe.findings.ok = count(Level::Ok);
    probe.findings.warnings = count(Level::Warn);
    probe.findings.failures = count(Level::Fail);
    Diagnosis {
        checks: probe.checks,
        findings: probe.findings,
        reached,
    }
}

/// `scheme://host[:port]` of a URL (the whole text when it does not parse).
fn base_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let mut base = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
            if let Some(port) = u.port() {
                base.push_str(&format!(":{port}"));
            }
            base
        }
        Err(_) => url.to_owned(),
    }
}

/// Names of the checks, in the order they are printed.
pub const CHECKS: &[&str] = &[
    "endpoint",
    "clock",
    "credentials",
    "ip whitelist",
    "api generation",
    "parameter-less body",
    "unknown orderId",
    "batch withdrawals",
    "decoding",
    "balances",
    "policy",
];

struct Probe<'a> {
    client: &'a Client,
    config: &'a Config,
    clock: &'a SharedClock,
    checks: Vec<Check>,
    findings: AccountFindings,
}

/// A reply and how long it took.
struct Answer {
    reply: RawReply,
    elapsed_ms: u128,
    /// The envelope's code, when the reply is CCPayment's envelope.
    code: Option<i64>,
    msg: String,
}

impl Answer {
    fn data(&self) -> Option<Value> {
        serde_json::from_slice::<Envelope<Value>>(&self.reply.body)
            .ok()
            .and_then(|e| e.data)
    }
}

impl Probe<'_> {
    /// Sends one read. A method that creates a payout is refused here, before the pacing: the
    /// doctor only ever reads.
    async fn send(&self, endpoint: Endpoint<'_>, body: Vec<u8>) -> Result<Answer, CallError> {
        if endpoint.creates_payout() {
            return Err(CallError::NotSent {
                endpoint: endpoint.label(),
                detail: "doctor never creates a payout".into(),
            });
        }
        let started = Instant::now();
        let reply = self.client.send_raw(endpoint, body).await?;
        let elapsed_ms = started.elapsed().as_millis();
        let (code, msg) = match serde_json::from_slice::<Envelope<serde::de::IgnoredAny>>(&reply.body) {
            Ok(e) => (Some(e.code), e.msg),
            Err(_) => (None, String::new()),
        };
        Ok(Answer {
            reply,
            elapsed_ms,
            code,
            msg,
        })
    }

    fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    fn skip_rest(&mut self, why: &str) {
        let done: BTreeSet<&str> = self.checks.iter().map(|c| c.name).collect();
        for name in CHECKS {
            if !done.contains(name) {
                self.checks.push(Check::skip(name, why));
            }
        }
        self.checks
            .sort_by_key(|c| CHECKS.iter().position(|n| *n == c.name).unwrap_or(usize::MAX));
    }

    /// The first request: reachability, TLS, clock, credentials, whitelist. Returns the answer
    /// when CCPayment let the request through, `None` (with the rest skipped) when not.
    async fn first(&mut self, endpoint: Endpoint<'_>, body: Vec<u8>) -> Option<Answer> {
        let url = self.client.url(endpoint);
        let answer = match self.send(endpoint, body).await {
            Ok(answer) => answer,
            Err(e) => {
                self.push(judge_unreachable(&url, &e));
                self.skip_rest("CCPayment could not be reached");
                return None;
            }
        };
        let Some(code) = answer.code else {
            self.push(Check::fail(
                "endpoint",
                format!(
                    "{url} answered HTTP {} without CCPayment's reply envelope",
                    answer.reply.http_status
                ),
                "check the base URL (api.base_url / CCPAYOUT_API_BASE_URL): it should be CCPayment's API host",
            ));
            self.skip_rest("the endpoint is not CCPayment's API");
            return None;
        };
        self.push(judge_endpoint(&url, answer.elapsed_ms));
        let skew = server_skew_secs(&answer.reply, self.clock.now_ms());
        self.findings.clock_skew_secs = skew;
        self.push(judge_clock(skew, code == 11006));
        let (credentials, ip) = judge_access(code, &answer.msg, self.client.app_id());
        let blocked = credentials.level == Level::Fail || ip.level == Level::Fail || code == 11006;
        self.push(credentials);
        self.push(ip);
        if blocked {
            self.skip_rest("CCPayment refused the request before reading it");
            return None;
        }
        Some(answer)
    }

    /// The v2 account's checks. Returns whether CCPayment answered.
    async fn v2(&mut self) -> bool {
        let coins_at = Endpoint::v2(method::GET_COIN_LIST);
        let Some(empty) = self.first(coins_at, NoParams::Empty.body()).await else {
            return self.reached();
        };
        if empty.code == Some(11013) {
            // The account answers v1 only: say so, and whether v1 answers.
            let v1 = self.send(Endpoint::v1(method::V1_COIN_ALL), b"{}".to_vec()).await;
            let v1_ok = matches!(&v1, Ok(a) if a.code == Some(10000));
            self.push(Check::fail(
                "api generation",
                format!(
                    "getCoinList answered 11013 NoSupportVersion: this account uses the v1 API{}",
                    if v1_ok { ", and v1 answers" } else { "" }
                ),
                "set api.version = \"v1\" in the configuration, then run doctor again",
            ));
            self.findings.generation = "v1".into();
            self.skip_rest("the configuration names the wrong API generation");
            return true;
        }
        self.push(Check::ok("api generation", "v2 answers (the configured api.version)"));

        // R5: which body the parameter-less calls accept.
        let braces = self.send(coins_at, NoParams::Braces.body()).await.ok();
        let braces_code = braces.as_ref().and_then(|a| a.code);
        let (check, form) = judge_body_form(empty.code, braces_code);
        self.findings.no_params = form;
        self.push(check);
        let coins_answer = match form {
            Some(NoParams::Braces) => braces,
            Some(NoParams::Empty) => Some(empty),
            None => None,
        };

        // R1: a lookup of an orderId never used.
        let order_id = probe_order_id(self.clock.now_ms());
        let query = WithdrawRecordQuery {
            record_id: None,
            order_id: Some(order_id.clone()),
        };
        let body = serde_json::to_vec(&query).unwrap_or_default();
        match self.send(Endpoint::v2(method::GET_APP_WITHDRAW_RECORD), body).await {
            Ok(answer) => {
                let record = answer
                    .data()
                    .and_then(|d| serde_json::from_value::<WithdrawRecordData>(d).ok())
                    .map(|d| d.record.order_id);
                let (check, form) = judge_unknown_order_v2(answer.code, record.as_deref(), &order_id);
                self.findings.unknown_order = form;
                self.push(check);
            }
            Err(e) => self.push(Check::fail(
                "unknown orderId",
                format!("the lookup got no answer: {e}"),
                "run doctor again; if it persists, CCPayment's record lookups are failing",
            )),
        }

        // R14: whether the batch routes exist, by a read of a batch never applied.
        let query = BatchOrderQuery {
            batch_order_id: probe_order_id(self.clock.now_ms()),
            verbose: 0,
        };
        let body = serde_json::to_vec(&query).unwrap_or_default();
        let answer = self
            .send(Endpoint::v2(method::GET_BATCH_WITHDRAW_ORDER), body)
            .await
            .map(|a| (a.reply.http_status, a.code))
            .map_err(|e| e.to_string());
        let (check, batch) = judge_batch_routes(answer);
        self.findings.batch_withdraw = batch;
        self.push(check);

        // R4: the coin, chain, fee and record replies decode.
        let mut decoded = Vec::new();
        let mut problems = Vec::new();
        let coins = match &coins_answer {
            Some(answer) => match self.client.interpret::<CoinList>(coins_at, &answer.reply) {
                Ok(list) => {
                    let listed = listed(answer, "coins");
                    note_decoded("coins", list.coins.len(), listed, &mut decoded, &mut problems);
                    list.coins
                }
                Err(e) => {
                    problems.push(format!("getCoinList: {e}"));
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let chains_at = Endpoint::v2(method::GET_CHAIN_LIST);
        let body = serde_json::to_vec(&ChainListQuery::default()).unwrap_or_default();
        self.decode_list::<crate::api::types::ChainList>(
            chains_at,
            body,
            "chains",
            |l| l.chains.len(),
            &mut decoded,
            &mut problems,
        )
        .await;
        let records_at = Endpoint::v2(method::GET_APP_WITHDRAW_RECORD_LIST);
        let body = serde_json::to_vec(&WithdrawRecordListQuery::default()).unwrap_or_default();
        self.decode_list::<WithdrawRecordPage>(
            records_at,
            body,
            "records",
            |p| p.records.len(),
            &mut decoded,
            &mut problems,
        )
        .await;
        // One fee quote, for the first coin and chain the policy allows.
        let allowed = self.allowed_pairs(coins.iter().map(|c| {
            (
                c.symbol.clone(),
                c.networks.values().map(|n| n.chain.clone()).collect::<Vec<_>>(),
            )
        }));
        if let Some((symbol, chain)) = allowed.first() {
            let coin_id = coins.iter().find(|c| &c.symbol == symbol).map_or(0, |c| c.coin_id);
            match self.client.get_withdraw_fee(coin_id, chain).await {
                Ok(fee) => decoded.push(format!(
                    "a fee quote ({symbol} on {chain}: {} {})",
                    fee.fee.amount, fee.fee.coin_symbol
                )),
                Err(CallError::Api(e)) => decoded.push(format!(
                    "a fee refusal for {symbol} on {chain} ({} {})",
                    e.code,
                    e.name()
                )),
                Err(e) => problems.push(format!("getWithdrawFee: {e}")),
            }
        }
        self.push(judge_decoding(&decoded, &problems));

        // Balances, in the body form found.
        let form = self.findings.no_params.unwrap_or_default();
        let assets_at = Endpoint::v2(method::GET_APP_COIN_ASSET_LIST);
        let balances = match self.send(assets_at, form.body()).await {
            Ok(answer) => self
                .client
                .interpret::<CoinAssetList>(assets_at, &answer.reply)
                .map(|l| {
                    l.assets
                        .into_iter()
                        .map(|a| (a.coin_symbol, a.available))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let offered: Vec<Offered> = coins
            .iter()
            .map(|c| Offered {
                symbol: c.symbol.clone(),
                status: c.status.clone(),
                chains: c
                    .networks
                    .values()
                    .filter(|n| n.can_withdraw)
                    .map(|n| n.chain.clone())
                    .collect(),
            })
            .collect();
        self.judge_holdings(balances, &offered, coins_answer.is_some());
        true
    }

    /// The v1 account's checks. Returns whether CCPayment answered.
    async fn v1(&mut self) -> bool {
        let coins_at = Endpoint::v1(method::V1_COIN_ALL);
        let Some(first) = self.first(coins_at, b"{}".to_vec()).await else {
            return self.reached();
        };
        // Whether v2 answers too, for the record (a v1 account answers it 11013).
        let v2 = self
            .send(Endpoint::v2(method::GET_COIN_LIST), NoParams::Empty.body())
            .await
            .ok()
            .and_then(|a| a.code);
        self.push(match (first.code, v2) {
            (Some(10000), Some(10000)) => Check::warn(
                "api generation",
                "v1 answers, and so does v2",
                "this account can use v2, CCPayment's current API: consider api.version = \"v2\"",
            ),
            (Some(10000), _) => Check::ok("api generation", "v1 answers (the configured api.version)"),
            (code, _) => Check::fail(
                "api generation",
                format!("v1 coin/all answered {}", code_text(code.unwrap_or(0))),
                "check api.version and the v1 base URL (api.v1_base_url)",
            ),
        });
        self.push(Check::ok(
            "parameter-less body",
            "v1 calls always carry a JSON object; nothing to choose",
        ));
        self.push(Check::skip(
            "batch withdrawals",
            "a v1 account: batch withdrawals are v2 routes",
        ));

        let order_id = probe_order_id(self.clock.now_ms());
        let body = serde_json::to_vec(&V1BillInfoRequest {
            merchant_order_ids: vec![order_id.clone()],
        })
        .unwrap_or_default();
        match self.send(Endpoint::v1(method::V1_BILL_INFO), body).await {
            Ok(answer) => {
                let ids: Option<Vec<String>> = answer.data().map(|d| {
                    d.as_array()
                        .map(|bills| {
                            bills
                                .iter()
                                .map(|b| {
                                    b.pointer("/order_detail/merchant_order_id")
                                        .and_then(Value::as_str)
                                        .unwrap_or("")
                                        .to_owned()
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                });
                let (check, form) = judge_unknown_order_v1(answer.code, ids.as_deref(), &order_id);
                self.findings.unknown_order = form;
                self.push(check);
            }
            Err(e) => self.push(Check::fail(
                "unknown orderId",
                format!("the bill lookup got no answer: {e}"),
                "run doctor again; if it persists, CCPayment's bill lookups are failing",
            )),
        }

        let mut decoded = Vec::new();
        let mut problems = Vec::new();
        let coins = match self.client.interpret::<V1CoinList>(coins_at, &first.reply) {
            Ok(list) => {
                let listed = listed(&first, "list");
                note_decoded("coins", list.list.len(), listed, &mut decoded, &mut problems);
                list.list
            }
            Err(e) => {
                problems.push(format!("coin/all: {e}"));
                Vec::new()
            }
        };
        let allowed = self.allowed_pairs(coins.iter().map(|c| {
            (
                c.symbol.clone(),
                c.tokens.iter().map(|t| t.chain.clone()).collect::<Vec<_>>(),
            )
        }));
        if let Some((symbol, chain)) = allowed.first() {
            let token = coins
                .iter()
                .filter(|c| &c.symbol == symbol)
                .flat_map(|c| c.tokens.iter())
                .find(|t| &t.chain == chain)
                .map(|t| t.token_id.clone())
                .unwrap_or_default();
            match self.client.v1_token_chain(&token).await {
                Ok(tokens) => decoded.push(format!("{} network(s) of {symbol}", tokens.len())),
                Err(e) => problems.push(format!("token/chain: {e}")),
            }
            let query = V1NetworkFeeQuery {
                token_id: token,
                address: None,
                memo: None,
            };
            match self.client.v1_network_fee(&query).await {
                Ok(fee) => decoded.push(format!("a fee quote ({symbol} on {chain}: {} {})", fee.fee, fee.crypto)),
                Err(e) => problems.push(format!("network/fee: {e}")),
            }
        }
        self.push(judge_decoding(&decoded, &problems));

        let body = serde_json::to_vec(&V1AssetsQuery { coin_id: None }).unwrap_or_default();
        let assets_at = Endpoint::v1(method::V1_ASSETS);
        let balances = match self.send(assets_at, body).await {
            Ok(answer) => self
                .client
                .interpret::<crate::api::types::V1AssetList>(assets_at, &answer.reply)
                .map(|l| l.list.into_iter().map(|a| (a.crypto, a.value)).collect::<Vec<_>>())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let offered: Vec<Offered> = coins
            .iter()
            .map(|c| Offered {
                symbol: c.symbol.clone(),
                status: v1_status_text(c.status),
                chains: c.tokens.iter().map(|t| t.chain.clone()).collect(),
            })
            .collect();
        self.judge_holdings(balances, &offered, !coins.is_empty());
        true
    }

    /// The last two checks of either generation: the balances of the coins that matter, and the
    /// policy's coins and chains against what the account offers (`listed`: the coin list read).
    fn judge_holdings(&mut self, balances: Result<Vec<(String, String)>, String>, offered: &[Offered], listed: bool) {
        let wanted = self.policy_coins(offered.iter().map(|o| o.symbol.clone()));
        self.push(judge_balances(balances, &wanted));
        self.push(judge_policy(&self.config.policy, offered, listed));
    }

    /// Whether the first request got any answer (the endpoint check passed).
    fn reached(&self) -> bool {
        self.checks
            .iter()
            .any(|c| c.name == "endpoint" && c.level != Level::Fail)
    }

    /// Decodes a list reply, counting what the reply listed against what decoded.
    async fn decode_list<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: Endpoint<'_>,
        body: Vec<u8>,
        field: &str,
        len: impl Fn(&T) -> usize,
        decoded: &mut Vec<String>,
        problems: &mut Vec<String>,
    ) {
        match self.send(endpoint, body).await {
            Ok(answer) => match self.client.interpret::<T>(endpoint, &answer.reply) {
                Ok(value) => note_decoded(field, len(&value), listed(&answer, field), decoded, problems),
                Err(e) => problems.push(format!("{}: {e}", endpoint.label())),
            },
            Err(e) => problems.push(format!("{}: {e}", endpoint.label())),
        }
    }

    /// The (coin, chain) pairs the policy allows among those offered, in the account's order.
    fn allowed_pairs(&self, offered: impl Iterator<Item = (String, Vec<String>)>) -> Vec<(String, String)> {
        let policy = &self.config.policy;
        let allows = |list: &[String], x: &str| list.is_empty() || list.iter().any(|a| a.eq_ignore_ascii_case(x));
        let mut pairs = Vec::new();
        for (symbol, chains) in offered {
            if !allows(&policy.allowed_coins, &symbol) {
                continue;
            }
            for chain in chains {
                if allows(&policy.allowed_chains, &chain) && !chain.eq_ignore_ascii_case("CWALLET") {
                    pairs.push((symbol.clone(), chain));
                }
            }
        }
        pairs
    }

    /// The coins whose balances matter: the policy's, or (when it allows every coin) the
    /// account's first few.
    fn policy_coins(&self, offered: impl Iterator<Item = String>) -> Vec<String> {
        if self.config.policy.allowed_coins.is_empty() {
            offered.take(3).collect()
        } else {
            self.config.policy.allowed_coins.clone()
        }
    }
}

/// How many elements the reply's `data.<field>` listed (before decoding dropped any).
fn listed(answer: &Answer, field: &str) -> usize {
    answer
        .data()
        .and_then(|d| d.get(field).and_then(Value::as_array).map(Vec::len))
        .unwrap_or(0)
}

fn note_decoded(field: &str, got: usize, listed: usize, decoded: &mut Vec<String>, problems: &mut Vec<String>) {
    if got < listed {
        problems.push(format!(
            "{} of {listed} {field} did not decode (left out; the others are used)",
            listed - got
        ));
    }
    decoded.push(format!("{got} {field}"));
}

fn code_text(code: i64) -> String {
    format!("{code} {}", codes::name(code))
}

// ---------------------------------------------------------------------------------------------
// Judgements (pure)
// ---------------------------------------------------------------------------------------------

/// No reply at all.
pub fn judge_unreachable(url: &str, e: &CallError) -> Check {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let tls = ["certificate", "tls", "ssl", "handshake"]
        .iter()
        .any(|w| lower.contains(w));
    if tls {
        Check::fail(
            "endpoint",
            format!("TLS with {url} failed: {text}"),
            "the server's certificate is not trusted here: check the base URL, the system's CA certificates and any intercepting proxy",
        )
    } else {
        Check::fail(
            "endpoint",
            format!("no answer from {url}: {text}"),
            "check DNS, the firewall and any proxy between this machine and CCPayment, and the base URL (CCPAYOUT_API_BASE_URL)",
        )
    }
}

/// A reply came: over TLS, or plain HTTP (fine on loopback, for a sandbox).
pub fn judge_endpoint(url: &str, elapsed_ms: u128) -> Check {
    let host = reqwest::Url::parse(url).ok();
    let scheme = host.as_ref().map(|u| u.scheme().to_owned()).unwrap_or_default();
    let loopback = host
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|h| {
            h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || h == "[::1]"
        });
    if scheme == "https" {
        Check::ok(
            "endpoint",
            format!("{url} answered in {elapsed_ms} ms over HTTPS (certificate verified)"),
        )
    } else if loopback {
        Check::ok(
            "endpoint",
            format!("{url} answered in {elapsed_ms} ms over plain HTTP on loopback (a sandbox)"),
        )
    } else {
        Check::warn(
            "endpoint",
            format!("{url} answered in {elapsed_ms} ms over plain HTTP"),
            "requests and replies can be read and changed on the way: use CCPayment's https:// URL",
        )
    }
}

/// The server's clock minus this machine's, in seconds, from the reply's `Date` header.
pub fn server_skew_secs(reply: &RawReply, now_ms: i64) -> Option<i64> {
    let date = reply.headers.get("date")?.to_str().ok()?;
    let server = chrono::DateTime::parse_from_rfc2822(date).ok()?;
    // The header has whole seconds: round to the nearest.
    let diff_ms = server.timestamp_millis() - now_ms;
    Some((diff_ms + 500).div_euclid(1000))
}

/// The clock: what the `Date` header says, and whether CCPayment refused the timestamp.
pub fn judge_clock(skew_secs: Option<i64>, refused_11006: bool) -> Check {
    let todo =
        "set this machine's clock right and keep it right (systemd-timesyncd or chrony: `timedatectl set-ntp true`)";
    let said = |skew: i64| {
        if skew >= 0 {
            format!("the server's clock is {skew} s ahead of this machine's (Date header)")
        } else {
            format!("the server's clock is {} s behind this machine's (Date header)", -skew)
        }
    };
    match (skew_secs, refused_11006) {
        (Some(skew), true) => Check::fail(
            "clock",
            format!(
                "{}; CCPayment refused the request's timestamp (11006 ReqExpired)",
                said(skew)
            ),
            todo,
        ),
        (None, true) => Check::fail(
            "clock",
            "CCPayment refused the request's timestamp (11006 ReqExpired: more than 120 s off)",
            todo,
        ),
        (Some(skew), false) if skew.abs() > CLOCK_FAIL_SECS => Check::fail("clock", said(skew), todo),
        (Some(skew), false) if skew.abs() > CLOCK_WARN_SECS => Check::warn("clock", said(skew), todo),
        (Some(skew), false) => Check::ok(
            "clock",
            format!("within {} s of the server's (Date header)", skew.abs().max(1)),
        ),
        (None, false) => Check::warn(
            "clock",
            "the reply had no Date header; the timestamp was accepted (no 11006)",
            "nothing to do unless 11006 appears",
        ),
    }
}

/// Credentials and the whitelist, from the first reply's code.
pub fn judge_access(code: i64, msg: &str, app_id: &str) -> (Check, Check) {
    let said = |code: i64| {
        if msg.is_empty() {
            code_text(code)
        } else {
            format!("{} ({msg})", code_text(code))
        }
    };
    let ip_unknown = Check::skip("ip whitelist", "not reached: CCPayment refused the credentials first");
    match code {
        12002 => (
            Check::ok("credentials", "not judged: the address check comes first"),
            Check::fail(
                "ip whitelist",
                format!(
                    "CCPayment answered {}: this machine's address is not on the app's whitelist",
                    said(code)
                ),
                "add this server's public IP address to the app's IP whitelist in the CCPayment dashboard",
            ),
        ),
        11014 => (
            Check::ok("credentials", "not judged: the address is banned"),
            Check::fail(
                "ip whitelist",
                format!("CCPayment answered {}", said(code)),
                "this address was banned for malicious requests: contact CCPayment support",
            ),
        ),
        11005 => (
            Check::fail(
                "credentials",
                format!("CCPayment answered {}: the signature did not verify", said(code)),
                "the app secret is wrong: copy it again from the dashboard into CCPAYOUT_APP_SECRET_FILE (no spaces or newline inside)",
            ),
            Check::ok("ip whitelist", "this machine's address is allowed"),
        ),
        12001 => (
            Check::fail(
                "credentials",
                format!(
                    "CCPayment answered {}: no merchant has the app id {app_id:?}",
                    said(code)
                ),
                "check api.app_id / CCPAYOUT_APP_ID against the dashboard",
            ),
            Check::ok("ip whitelist", "this machine's address is allowed"),
        ),
        11001 => (
            Check::fail(
                "credentials",
                format!("CCPayment answered {}", said(code)),
                "a header was refused: check that the app id has no spaces or odd characters",
            ),
            ip_unknown,
        ),
        12000 | 12003 => (
            Check::fail(
                "credentials",
                format!("CCPayment answered {}", said(code)),
                codes::lookup(code)
                    .and_then(|c| c.hint)
                    .unwrap_or("see the CCPayment dashboard"),
            ),
            Check::ok("ip whitelist", "this machine's address is allowed"),
        ),
        11006 => (
            Check::skip("credentials", "not judged: the timestamp was refused first"),
            Check::skip("ip whitelist", "not judged: the timestamp was refused first"),
        ),
        _ => (
            Check::ok(
                "credentials",
                format!("app id {app_id} accepted; the signature verified"),
            ),
            Check::ok("ip whitelist", "this machine's address is allowed"),
        ),
    }
}

/// R5: the codes a parameter-less call got with an empty body and with `{}`; and the form to
/// send, when one works (the empty body when both do).
pub fn judge_body_form(empty: Option<i64>, braces: Option<i64>) -> (Check, Option<NoParams>) {
    const NAME: &str = "parameter-less body";
    let text = |c: Option<i64>| c.map_or_else(|| "no answer".to_owned(), code_text);
    match (empty == Some(10000), braces == Some(10000)) {
        (true, true) => (
            Check::ok(
                NAME,
                "an empty body and {} are both accepted; ccpayout sends an empty body",
            ),
            Some(NoParams::Empty),
        ),
        (true, false) => (
            Check::ok(
                NAME,
                format!(
                    "an empty body is accepted ({{}} got {}); ccpayout sends an empty body",
                    text(braces)
                ),
            ),
            Some(NoParams::Empty),
        ),
        (false, true) => (
            Check::warn(
                NAME,
                format!("only {{}} is accepted (an empty body got {})", text(empty)),
                "recorded in the state store: ccpayout sends {} from its next start",
            ),
            Some(NoParams::Braces),
        ),
        (false, false) => (
            Check::fail(
                NAME,
                format!(
                    "getCoinList was refused with an empty body ({}) and with {{}} ({})",
                    text(empty),
                    text(braces)
                ),
                "run `ccpayout api getCoinList` to see CCPayment's answer, and report it",
            ),
            None,
        ),
    }
}

/// R1 on v2: what a lookup of `order_id` (never used) returned.
pub fn judge_unknown_order_v2(
    code: Option<i64>,
    record_order_id: Option<&str>,
    order_id: &str,
) -> (Check, Option<UnknownOrder>) {
    const NAME: &str = "unknown orderId";
    match (code, record_order_id) {
        (Some(11003), _) => (
            Check::ok(NAME, "a lookup of an orderId never sent answers 11003 NotFound"),
            Some(UnknownOrder::NotFoundCode),
        ),
        (Some(10000), None | Some("")) => (
            Check::ok(
                NAME,
                "a lookup of an orderId never sent answers success with an empty record; ccpayout reads that as not found (R1)",
            ),
            Some(UnknownOrder::EmptyRecord),
        ),
        (Some(10000), Some(other)) if other != order_id => (
            Check::warn(
                NAME,
                format!("a lookup of an orderId never sent answers with the record of {other:?}"),
                "nothing to change: ccpayout takes a record only when its orderId is the order's (R1); tell CCPayment",
            ),
            Some(UnknownOrder::OtherRecord),
        ),
        (Some(10000), Some(_)) => (
            Check::fail(
                NAME,
                format!("CCPayment has a record for {order_id:?}, which ccpayout never sent"),
                "lookups by orderId cannot be trusted on this account: do not run batches, contact CCPayment",
            ),
            None,
        ),
        (code, _) => (
            Check::fail(
                NAME,
                format!(
                    "a lookup of an orderId never sent answered {}",
                    code.map_or_else(|| "without an envelope".to_owned(), code_text)
                ),
                "ccpayout resolves lost replies by looking orders up: find out why lookups fail before paying",
            ),
            None,
        ),
    }
}

/// R1 on v1: the merchant order ids of the bills `bill/info` returned for `order_id`.
pub fn judge_unknown_order_v1(
    code: Option<i64>,
    bills: Option<&[String]>,
    order_id: &str,
) -> (Check, Option<UnknownOrder>) {
    const NAME: &str = "unknown orderId";
    match (code, bills) {
        (Some(10000), None) | (Some(10000), Some([])) => (
            Check::ok(NAME, "bill/info for an order id never sent answers with no bill"),
            Some(UnknownOrder::NoBill),
        ),
        (Some(10000), Some(ids)) if ids.iter().all(|id| id != order_id) => (
            Check::warn(
                NAME,
                format!(
                    "bill/info for an order id never sent answers with the bill of {:?}",
                    ids[0]
                ),
                "nothing to change: ccpayout takes a bill only when its order id is the order's (R1); tell CCPayment",
            ),
            Some(UnknownOrder::OtherRecord),
        ),
        (Some(10000), Some(_)) => (
            Check::fail(
                NAME,
                format!("CCPayment has a bill for {order_id:?}, which ccpayout never sent"),
                "lookups by order id cannot be trusted on this account: do not run batches, contact CCPayment",
            ),
            None,
        ),
        (Some(11003), _) => (
            Check::ok(NAME, "bill/info for an order id never sent answers 11003 NotFound"),
            Some(UnknownOrder::NotFoundCode),
        ),
        (code, _) => (
            Check::fail(
                NAME,
                format!(
                    "bill/info for an order id never sent answered {}",
                    code.map_or_else(|| "without an envelope".to_owned(), code_text)
                ),
                "ccpayout resolves lost replies by looking orders up: find out why lookups fail before paying",
            ),
            None,
        ),
    }
}

/// R14: what a lookup of a batch never applied (`getBatchWithdrawOrder`) got: the HTTP status
/// and the envelope's code, or why there was no reply. Any answer of CCPayment's API shows the
/// route exists (11003 as the code table suggests, 10000 with an empty or another batch under
/// the R1 readings, any refusal of the request); the router's 404 for an unknown method, or
/// 11013 (v2 not offered), shows it does not. A retryable code or no reply says nothing.
pub fn judge_batch_routes(answer: Result<(u16, Option<i64>), String>) -> (Check, Option<bool>) {
    const NAME: &str = "batch withdrawals";
    let unavailable = |seen: String| {
        (
            Check::warn(
                NAME,
                format!("not available on this account; withdraw_mode = \"batch\" cannot be used ({seen})"),
                "pay with single withdrawals (the default), or ask CCPayment to enable batch withdrawals for the app",
            ),
            Some(false),
        )
    };
    let unknown = |seen: String| {
        (
            Check::warn(
                NAME,
                format!("could not tell whether the account has the batch routes: {seen}"),
                "run doctor again before choosing withdraw_mode = \"batch\"",
            ),
            None,
        )
    };
    match answer {
        Err(e) => unknown(format!("the lookup of a batch got no answer: {e}")),
        Ok((_, Some(11013))) => unavailable("getBatchWithdrawOrder answered 11013 NoSupportVersion".to_owned()),
        Ok((_, Some(code @ (11002 | 11004 | 11009 | 11018)))) => {
            unknown(format!("getBatchWithdrawOrder answered {}", code_text(code)))
        }
        Ok((_, Some(code))) => (
            Check::ok(
                NAME,
                format!(
                    "the account answers the batch routes (a lookup of a batch never applied: {})",
                    code_text(code)
                ),
            ),
            Some(true),
        ),
        Ok((404, None)) => {
            unavailable("getBatchWithdrawOrder answered HTTP 404, as CCPayment answers an unknown method".to_owned())
        }
        Ok((status, None)) => unknown(format!(
            "getBatchWithdrawOrder answered HTTP {status} without CCPayment's reply envelope"
        )),
    }
}

/// R4: what decoded, what did not.
pub fn judge_decoding(decoded: &[String], problems: &[String]) -> Check {
    const NAME: &str = "decoding";
    let got = if decoded.is_empty() {
        "nothing".to_owned()
    } else {
        decoded.join(", ")
    };
    if problems.is_empty() {
        Check::ok(NAME, format!("decoded {got}"))
    } else if decoded.is_empty() {
        Check::fail(
            NAME,
            problems.join("; "),
            "ccpayout cannot read this account's replies: report the reply (`ccpayout api METHOD`) to the ccpayout maintainers",
        )
    } else {
        Check::warn(
            NAME,
            format!("decoded {got}; but {}", problems.join("; ")),
            "report the reply (`ccpayout api METHOD`) to the ccpayout maintainers",
        )
    }
}

/// Balances of the coins that matter.
pub fn judge_balances(balances: Result<Vec<(String, String)>, String>, wanted: &[String]) -> Check {
    const NAME: &str = "balances";
    let balances = match balances {
        Ok(b) => b,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("the balances could not be read: {e}"),
                "ccpayout checks balances before every batch: find out why this read fails",
            );
        }
    };
    let mut seen = Vec::new();
    let mut empty = Vec::new();
    for coin in wanted {
        let available = balances
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(coin))
            .map(|(_, a)| a.clone());
        let zero = available
            .as_deref()
            .and_then(|a| a.parse::<rust_decimal::Decimal>().ok())
            .is_none_or(|a| a.is_zero());
        if zero {
            empty.push(coin.clone());
        }
        seen.push(format!("{coin} {}", available.unwrap_or_else(|| "0".into())));
    }
    let seen = if seen.is_empty() {
        format!("{} coin balance(s) read", balances.len())
    } else {
        format!("available: {}", seen.join(", "))
    };
    if empty.is_empty() {
        Check::ok(NAME, seen)
    } else {
        Check::warn(
            NAME,
            seen,
            format!(
                "nothing to pay {} with: fund the account before a batch",
                empty.join(", ")
            ),
        )
    }
}

/// A coin the account offers: its symbol, its status word and the chains it withdraws on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    pub symbol: String,
    pub status: String,
    pub chains: Vec<String>,
}

/// The coins and chains the policy allows, against what the account offers.
pub fn judge_policy(policy: &crate::rules::policy::Policy, offered: &[Offered], listed: bool) -> Check {
    const NAME: &str = "policy";
    if !listed {
        return Check::skip(NAME, "the coin list could not be read");
    }
    let mut missing = Vec::new();
    let mut held = Vec::new();
    for coin in &policy.allowed_coins {
        match offered.iter().find(|o| o.symbol.eq_ignore_ascii_case(coin)) {
            None => missing.push(format!("coin {coin}")),
            Some(o) if suspends_withdrawals(&o.status) => held.push(format!("{coin} ({})", o.status)),
            Some(_) => {}
        }
    }
    for chain in &policy.allowed_chains {
        if chain.eq_ignore_ascii_case("CWALLET") {
            continue;
        }
        let on_chain = offered.iter().any(|o| {
            (policy.allowed_coins.is_empty() || policy.allowed_coins.iter().any(|c| c.eq_ignore_ascii_case(&o.symbol)))
                && o.chains.iter().any(|c| c.eq_ignore_ascii_case(chain))
        });
        if !on_chain {
            missing.push(format!("chain {chain}"));
        }
    }
    let scope = match (policy.allowed_coins.is_empty(), policy.allowed_chains.is_empty()) {
        (true, true) => "the policy allows every coin and chain".to_owned(),
        _ => format!(
            "the policy allows coins [{}] on chains [{}]",
            if policy.allowed_coins.is_empty() {
                "any".to_owned()
            } else {
                policy.allowed_coins.join(", ")
            },
            if policy.allowed_chains.is_empty() {
                "any".to_owned()
            } else {
                policy.allowed_chains.join(", ")
            }
        ),
    };
    if !missing.is_empty() {
        Check::fail(
            NAME,
            format!("{scope}; the account does not offer {}", missing.join(", ")),
            "enable them for the app in the CCPayment dashboard, or take them out of [policy]",
        )
    } else if !held.is_empty() {
        Check::warn(
            NAME,
            format!("{scope}; withdrawals are suspended for {}", held.join(", ")),
            "rows of these coins wait until CCPayment lifts the suspension",
        )
    } else {
        Check::ok(NAME, format!("{scope}; the account offers them all"))
    }
}

/// The diagnosis as text: one line per check, then what to do.
pub fn render(diagnosis: &Diagnosis) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let width = CHECKS.iter().map(|n| n.len()).max().unwrap_or(0);
    for check in &diagnosis.checks {
        let _ = writeln!(
            out,
            "{:<4}  {:<width$}  {}",
            check.level.to_string(),
            check.name,
            check.seen
        );
        if let Some(todo) = &check.todo {
            let _ = writeln!(out, "      {:<width$}  -> {todo}", "");
        }
    }
    let f = &diagnosis.findings;
    let _ = writeln!(
        out,
        "\n{} ok, {} warning(s), {} failure(s)",
        f.ok, f.warnings, f.failures
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_fails_beyond_a_minute_and_on_11006() {
        assert_eq!(judge_clock(Some(0), false).level, Level::Ok);
        assert_eq!(judge_clock(Some(-CLOCK_WARN_SECS), false).level, Level::Ok);
        assert_eq!(judge_clock(Some(CLOCK_WARN_SECS + 1), false).level, Level::Warn);
        assert_eq!(judge_clock(Some(-CLOCK_FAIL_SECS - 1), false).level, Level::Fail);
        let off = judge_clock(Some(300), true);
        assert_eq!(off.level, Level::Fail);
        assert!(
            off.seen.contains("300 s ahead") && off.seen.contains("11006"),
            "{}",
            off.seen
        );
        assert_eq!(judge_clock(None, true).level, Level::Fail);
        assert_eq!(judge_clock(None, false).level, Level::Warn);
    }

    #[test]
    fn access_codes_name_what_to_fix() {
        let (cred, ip) = judge_access(11005, "VerifySignFailed", "app");
        assert_eq!((cred.level, ip.level), (Level::Fail, Level::Ok));
        assert!(cred.seen.contains("11005"), "{}", cred.seen);
        let (cred, _) = judge_access(12001, "", "nope");
        assert!(
            cred.level == Level::Fail && cred.seen.contains("\"nope\""),
            "{}",
            cred.seen
        );
        let (_, ip) = judge_access(12002, "", "app");
        assert!(ip.level == Level::Fail && ip.seen.contains("12002"), "{}", ip.seen);
        let (cred, ip) = judge_access(10000, "success", "app");
        assert_eq!((cred.level, ip.level), (Level::Ok, Level::Ok));
        // A refusal of the parameters (not of the caller) still proves the credentials.
        let (cred, _) = judge_access(11000, "InvalidArgument", "app");
        assert_eq!(cred.level, Level::Ok);
    }

    #[test]
    fn the_body_form_prefers_an_empty_body_and_learns_braces() {
        assert_eq!(judge_body_form(Some(10000), Some(10000)).1, Some(NoParams::Empty));
        assert_eq!(judge_body_form(Some(10000), Some(11000)).1, Some(NoParams::Empty));
        let (check, form) = judge_body_form(Some(11000), Some(10000));
        assert_eq!((check.level, form), (Level::Warn, Some(NoParams::Braces)));
        let (check, form) = judge_body_form(Some(11000), None);
        assert_eq!((check.level, form), (Level::Fail, None));
    }

    #[test]
    fn every_unknown_order_form_is_told_apart() {
        let id = "ccpayout-doctor-probe-1";
        assert_eq!(
            judge_unknown_order_v2(Some(11003), None, id).1,
            Some(UnknownOrder::NotFoundCode)
        );
        assert_eq!(
            judge_unknown_order_v2(Some(10000), Some(""), id).1,
            Some(UnknownOrder::EmptyRecord)
        );
        let (check, form) = judge_unknown_order_v2(Some(10000), Some("other"), id);
        assert_eq!((check.level, form), (Level::Warn, Some(UnknownOrder::OtherRecord)));
        assert_eq!(judge_unknown_order_v2(Some(10000), Some(id), id).0.level, Level::Fail);
        assert_eq!(judge_unknown_order_v2(Some(11002), None, id).0.level, Level::Fail);
        assert_eq!(
            judge_unknown_order_v1(Some(10000), Some(&[]), id).1,
            Some(UnknownOrder::NoBill)
        );
        let other = ["x".to_owned()];
        assert_eq!(
            judge_unknown_order_v1(Some(10000), Some(&other), id).1,
            Some(UnknownOrder::OtherRecord)
        );
        let same = [id.to_owned()];
        assert_eq!(
            judge_unknown_order_v1(Some(10000), Some(&same), id).0.level,
            Level::Fail
        );
    }

    #[test]
    fn the_batch_routes_exist_when_the_api_answers_and_not_on_a_404() {
        for code in [11003, 10000, 11000, 12003] {
            let (check, found) = judge_batch_routes(Ok((200, Some(code))));
            assert_eq!((check.level, found), (Level::Ok, Some(true)), "{code}");
            assert!(
                check.seen.starts_with("the account answers the batch routes"),
                "{}",
                check.seen
            );
        }
        let (check, found) = judge_batch_routes(Ok((404, None)));
        assert_eq!((check.level, found), (Level::Warn, Some(false)));
        assert!(
            check
                .seen
                .starts_with("not available on this account; withdraw_mode = \"batch\" cannot be used"),
            "{}",
            check.seen
        );
        assert_eq!(judge_batch_routes(Ok((200, Some(11013)))).1, Some(false));
        for inconclusive in [
            Ok((200, Some(11004))),
            Ok((200, Some(11002))),
            Ok((502, None)),
            Err("connection reset".to_owned()),
        ] {
            let (check, found) = judge_batch_routes(inconclusive.clone());
            assert_eq!((check.level, found), (Level::Warn, None), "{inconclusive:?}");
            assert!(check.seen.starts_with("could not tell"), "{}", check.seen);
        }
    }

    #[test]
    fn the_policy_fails_on_a_coin_the_account_does_not_offer_and_warns_on_maintenance() {
        let policy = |coins: &[&str], chains: &[&str]| crate::rules::policy::Policy {
            allowed_coins: coins.iter().map(|s| (*s).to_owned()).collect(),
            allowed_chains: chains.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        let offered = vec![
            Offered {
                symbol: "USDT".into(),
                status: "Normal".into(),
                chains: vec!["TRX".into(), "BSC".into()],
            },
            Offered {
                symbol: "USDC".into(),
                status: "Maintain".into(),
                chains: vec!["POLYGON".into()],
            },
            Offered {
                symbol: "ETH".into(),
                status: "Pre-delisting".into(),
                chains: vec!["ETH".into()],
            },
        ];
        assert_eq!(judge_policy(&policy(&[], &[]), &offered, true).level, Level::Ok);
        assert_eq!(
            judge_policy(&policy(&["USDT", "ETH"], &["TRX", "CWALLET"]), &offered, true).level,
            Level::Ok
        );
        let held = judge_policy(&policy(&["USDC"], &[]), &offered, true);
        assert!(
            held.level == Level::Warn && held.seen.contains("USDC (Maintain)"),
            "{}",
            held.seen
        );
        let missing = judge_policy(&policy(&["DOGE"], &["SOL"]), &offered, true);
        assert!(
            missing.level == Level::Fail && missing.seen.contains("coin DOGE") && missing.seen.contains("chain SOL"),
            "{}",
            missing.seen
        );
        assert_eq!(judge_policy(&policy(&[], &[]), &[], false).level, Level::Skip);
    }

    #[test]
    fn balances_warn_on_an_empty_coin_and_fail_when_unreadable() {
        let b = vec![
            ("USDT".to_owned(), "10.5".to_owned()),
            ("USDC".to_owned(), "0".to_owned()),
        ];
        assert_eq!(judge_balances(Ok(b.clone()), &["USDT".into()]).level, Level::Ok);
        let warn = judge_balances(Ok(b.clone()), &["USDT".into(), "USDC".into(), "ETH".into()]);
        assert!(
            warn.level == Level::Warn && warn.todo.as_deref().unwrap_or("").contains("USDC, ETH"),
            "{warn:?}"
        );
        assert_eq!(judge_balances(Err("x".into()), &[]).level, Level::Fail);
    }

    #[test]
    fn findings_are_described_for_status_and_round_trip() {
        let f = AccountFindings {
            checked_ms: 1,
            base_url: "https://ccpayment.com".into(),
            generation: "v2".into(),
            no_params: Some(NoParams::Braces),
            unknown_order: Some(UnknownOrder::EmptyRecord),
            clock_skew_secs: Some(-2),
            batch_withdraw: Some(false),
            ok: 9,
            warnings: 1,
            failures: 0,
        };
        let text = f.describe();
        for part in [
            "v2 account",
            "sent with {}",
            "empty record",
            "no batch withdrawals",
            "-2 s",
            "9 ok",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<AccountFindings>(&json).unwrap(), f);
        // A value written by a later release with more fields still reads.
        let mut v: Value = serde_json::from_str(&json).unwrap();
        v["something_new"] = Value::from(1);
        assert_eq!(serde_json::from_value::<AccountFindings>(v).unwrap(), f);
    }

    #[test]
    fn the_date_header_gives_the_skew() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("date", "Sun, 06 Dec 2026 09:05:00 GMT".parse().unwrap());
        let reply = RawReply {
            http_status: 200,
            headers,
            body: bytes::Bytes::new(),
        };
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-06T09:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(server_skew_secs(&reply, at), Some(300));
    }
}
