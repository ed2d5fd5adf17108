//! The sandbox's state machine: balances, payouts, the ledger, the rate-limit bucket, the daily
//! counters, forced errors, seeded faults and the webhook outbox.
//!
//! Everything here is pure: methods take the current time as `now_ms` and parsed (or raw)
//! input, and return the exact reply bytes plus what the transport should do with them. There
//! is no I/O, no tokio and no lock inside; the server wraps one [`World`] in one mutex, which is
//! what makes "check the orderId and insert the payout" atomic. Authentication (headers,
//! signature, timestamp, IP whitelist) is the server's job; [`World::handle`] starts where an
//! authenticated request begins to cost something.
//!
//! # Layout
//!
//! [`World`] is one struct; its `impl` is split by concern across the files below, each of
//! which may touch every field (they are children of this module). This file holds the struct,
//! its construction, the operator's balance and chain controls and the small catalogue lookups
//! the other files share.
//!
//! - `reply.rs`: [`Route`], [`Refusal`], [`Handled`], [`Transport`] and the reply bytes.
//! - `pipeline.rs`: [`World::handle`], the order a request goes through, and the dispatch to
//!   the endpoints.
//! - `parse.rs`: each endpoint's fields and the body parser.
//! - `payouts.rs`: the create endpoints, their validations, and committing a payout.
//! - `batches.rs`: batch withdrawals: the six batch routes, a batch's review, delay and run
//!   (each task executed as a payout, in seq order), abort, and the batch and task views.
//! - `settle.rs`: settlement, refunds, the batch steps due, and [`World::ledger`].
//! - `records.rs`: record queries (single withdrawals only), the record-list cursor and v1
//!   `bill/info`.
//! - `reads.rs`: the catalogue, fee, asset, address, Cwallet-user and chain reads.
//! - `v1.rs`: the same reads as a v1 account makes them (token list, a coin's networks, the
//!   network fee, balances, the Cwallet user check).
//! - `limits.rs`: the rate-limit bucket and the daily caps.
//! - `stats.rs`: the request counters behind [`World::stats`].
//! - `faults.rs`: seeded faults and forced errors.
//! - `webhooks.rs`: the webhook outbox.
//! - `readings.rs`: what the readings of [`Readings`] change that has no better home: which
//!   payouts a read sees, the answer to an unknown orderId, the `string-ids` transform of the
//!   reply bytes, and the parameter-less bodies. (The batch readings act in `batches.rs`, and
//!   `no-batch-withdraw` in `pipeline.rs`.)
//! - `snapshot.rs`: [`World::snapshot`] and [`World::restore`].
//! - `rng.rs`: the seeded PRNG.
//! - `decimal.rs`: exact-decimal helpers.
//! - `testkit.rs`: what the unit tests above share (test builds only).

mod batches;
mod decimal;
mod faults;
mod limits;
mod parse;
mod payouts;
mod pipeline;
mod readings;
mod reads;
mod records;
mod reply;
mod rng;
mod settle;
mod snapshot;
mod stats;
#[cfg(test)]
mod testkit;
mod v1;
mod webhooks;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use rust_decimal::Decimal;

use self::decimal::{catalogue_decimal, fmt_decimal, parse_plain_decimal};
use self::faults::ForcedError;
use self::limits::{Bucket, DayCounters};
use self::rng::SplitMix64;
use self::stats::RequestCounters;
use super::demo::Catalogue;
use super::readings::PRE_DELISTING_COIN;
use super::{CreateAttempt, Faults, LedgerPayout, RateLimit, Readings, SandboxConfig};

pub use self::batches::{BALANCE_REASON, BatchAnswer, FEE_BALANCE_REASON};
pub use self::payouts::CWALLET_CHAIN;
pub use self::pipeline::NOT_FOUND_BODY;
pub use self::reply::{Handled, Refusal, Route, Transport, error_body};
pub use self::settle::FAILURE_REASON;
pub use self::webhooks::{WebhookJob, WebhookScheme};

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
    /// The first payout of each orderId.
    by_order: HashMap<String, usize>,
    /// The later payouts of an orderId, in creation order: only `no-order-uniqueness` makes
    /// any, so the usual case costs no allocation per payout.
    repeats: HashMap<String, Vec<usize>>,
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
    /// The readings of the API this world takes (none by default).
    readings: Readings,
    /// Well-formed addresses CCPayment refuses anyway ([`World::refuse_address`]).
    refused_addresses: HashSet<String>,
    /// Batch withdrawals, in creation order.
    batches: Vec<batches::Batch>,
    /// The batches of each batchOrderId, in creation order (more than one only under
    /// `batch-id-reuse`).
    batch_ids: HashMap<String, Vec<usize>>,
    /// Each batch's next step by due time (review over, run start, next task).
    batch_due: BTreeSet<(i64, usize)>,
    /// The payouts of batch tasks: payout index → (batch index, task index).
    task_payouts: HashMap<usize, (usize, usize)>,
    /// `Single` mode: the time between two tasks of a batch.
    batch_task_interval_ms: i64,
}

/// Milliseconds of a configured duration, saturating (no configured duration comes near).
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl World {
    /// A world in its initial state: demo catalogue, demo balances with the configured
    /// overrides, no payouts.
    ///
    /// # Errors
    ///
    /// A balance override names an unknown coin or is not a plain non-negative decimal.
    pub fn new(config: &SandboxConfig) -> Result<World, String> {
        let mut catalogue = Catalogue::demo();
        // R6: deposits suspended, withdrawals still open; the status is all that changes.
        if config.readings.pre_delisting
            && let Some(coin) = catalogue.coins.iter_mut().find(|c| c.symbol == PRE_DELISTING_COIN)
        {
            coin.status = "Pre-delisting".to_owned();
        }
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
            repeats: HashMap::new(),
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
            readings: config.readings,
            refused_addresses: HashSet::new(),
            batches: Vec::new(),
            batch_ids: HashMap::new(),
            batch_due: BTreeSet::new(),
            task_payouts: HashMap::new(),
            batch_task_interval_ms: duration_ms(config.batch_task_interval),
        };
        for (symbol, amount) in &config.balances {
            world.set_balance(symbol, amount)?;
        }
        Ok(world)
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

    /// From now on CCPayment refuses `address` although it is well-formed (as an inactive or
    /// risky address is refused): `checkWithdrawalAddressValidity` says it is not valid,
    /// `checkWithdrawAddress` names it 14002 (AddressNotActive) and a create to it answers 14002.
    /// A test and demo control; not persisted.
    pub fn refuse_address(&mut self, address: &str) {
        self.refused_addresses.insert(address.to_owned());
    }

    /// The v1 token id of (coin, chain).
    pub fn v1_token_id(&self, coin_symbol: &str, chain: &str) -> Option<String> {
        self.catalogue.v1_token_id(coin_symbol, chain)
    }

    /// A coin's balance by id; zero for a coin that has none.
    fn balance_of(&self, coin_id: u64) -> Decimal {
        self.balances.get(&coin_id).copied().unwrap_or_default()
    }

    /// A coin's symbol by id; empty for an unknown coin.
    fn symbol(&self, coin_id: u64) -> String {
        self.catalogue
            .coin(coin_id)
            .map(|c| c.symbol.clone())
            .unwrap_or_default()
    }

    /// A coin's USD price by id; zero for an unknown coin or one without a price.
    fn price(&self, coin_id: u64) -> Decimal {
        self.catalogue
            .coin(coin_id)
            .map_or(Decimal::ZERO, |c| catalogue_decimal(&c.price))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sandbox::world::testkit::*;

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
}
