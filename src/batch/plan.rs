//! The plan: what paying a validated batch would do, row by row and coin by coin, and the
//! digest an approval binds to.
//!
//! Building the plan is pure arithmetic over the validated rows and the preflight's answers
//! (fee quotes, balances, remote recipient checks) and the policy. All sums are exact decimals.
//!
//! How fees are charged (CCPayment's rules as far as they are documented):
//! - fee in the coin itself, receiver pays (the default): the balance pays `amount`, the receiver
//!   gets `amount − fee`, which must be positive;
//! - fee in the coin itself, merchant pays: the balance pays `amount + fee`, the receiver gets
//!   `amount`;
//! - fee in another coin (the chain's native coin, USDT on POLYGON pays MATIC): the balance pays
//!   `amount` of the coin and `fee` of the native coin, the receiver gets `amount`. The
//!   documentation is silent here (ccpayment-api.md §5, R12; a v1 bill example charges such a fee
//!   in the coin itself): this is the assumption the plan states, and the reports take the fee
//!   actually charged from the record, never from the quote;
//! - Cwallet transfers have no fee.
//!
//! With the fee in the coin itself and paid by the receiver, `amount − fee` must reach the
//! network's minimum, or CCPayment refuses with 14019 (R7): the plan refuses such a row.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::bundles::{self, BundlePlan};
use super::parse::Column;
use super::validate::{self, Hold, Problem, Row, Validated};
use crate::batch::catalogue::{Catalogue, ChainRef, CoinEntry};
use crate::model::bundle::BundleSettings;
use crate::model::recipient::{Destination, KnownRecipients, RecipientStatus};
use crate::model::record::ReviewKind;
use crate::rules::amount::plain;
use crate::rules::deny::DenyLists;
use crate::rules::policy::{ChangedPayee, Policy};

/// A fee quote for one coin on one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeQuote {
    pub coin_id: u64,
    pub symbol: String,
    pub amount: Decimal,
}

/// What the preflight learned from the API, besides the catalogue.
#[derive(Debug, Clone, Default)]
pub struct PreflightAnswers {
    /// Keyed by (coin id, chain symbol).
    pub fees: HashMap<(u64, String), FeeQuote>,
    /// Available balance per coin id.
    pub balances: HashMap<u64, Decimal>,
    /// Refusals from remote checks (address validity, Cwallet users), keyed by line. They are
    /// about the row's recipient, and its problems say so (field `recipient`).
    pub remote_problems: HashMap<u64, Vec<String>>,
    /// Whether recipients were checked with the API, and why not if they were not.
    pub remote_checks: RemoteCheckSummary,
    /// API requests the preflight made.
    pub requests: u64,
}

/// Whether recipients were checked remotely.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RemoteCheckSummary {
    pub performed: bool,
    /// Why not, when not performed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_because: Option<String>,
    pub addresses_checked: u64,
    pub cwallet_users_checked: u64,
    /// Rows not checked because a payout to their destination succeeded before.
    #[serde(skip_serializing_if = "is_zero")]
    pub known_recipients_skipped: u64,
    /// What else to know about the checks made (v1: addresses are checked locally only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// How the addresses were checked, when any was: `batch` (`checkWithdrawAddress`, up to 500
    /// a request) or `single` (one `checkWithdrawalAddressValidity` each, also when the account
    /// turned out not to have the batch route).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_check: Option<AddressCheck>,
}

/// How the preflight asks CCPayment whether addresses are valid (`preflight::Settings`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressCheck {
    /// `checkWithdrawAddress`: up to 500 addresses of a chain in one request. An account that
    /// does not have the route gets the rest of the preflight's addresses checked `Single`.
    #[default]
    Batch,
    /// `checkWithdrawalAddressValidity`: one request per address.
    Single,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Everything else the plan needs.
#[derive(Clone, Copy)]
pub struct PlanSettings<'a> {
    pub policy: &'a Policy,
    /// Extra balance required on top of what the batch needs (0.02 = 2 %).
    pub balance_margin: Decimal,
    /// Requests per second the engine will send.
    pub rate_per_second: u32,
    /// Amount already paid today per coin symbol.
    pub paid_today: &'a dyn Fn(&str) -> Decimal,
    /// Addresses never paid.
    pub deny: &'a DenyLists,
    /// The recipient registry, when the plan says which destinations are new or changed
    /// (`None`: not asked, and nothing is held for review).
    pub recipients: Option<&'a dyn KnownRecipients>,
    /// `withdraw_mode = "batch"`: network rows go in CCPayment batch withdrawals (`None`: every
    /// row is a single create).
    pub bundles: Option<BundleSettings>,
}

/// A row's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Will be paid.
    Payable,
    /// Valid, but cannot be paid right now; submission waits for it.
    Held { reason: String },
    /// Will not be paid.
    Refused { reasons: Vec<String> },
    /// Already paid or planned in an earlier batch with the same payload.
    Duplicate { earlier_batch: String },
    /// Valid and payable, but to a new destination or a payee's changed one: waits for the
    /// batch's recipient review, a part of the plan with its own approval.
    Review { review: ReviewKind, reason: String },
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Payable => "payable",
            Verdict::Held { .. } => "held",
            Verdict::Refused { .. } => "refused",
            Verdict::Duplicate { .. } => "duplicate",
            Verdict::Review { .. } => "review",
        }
    }
}

/// One row of the plan, in full, as [`PlanRows`] gives it (and `check --json` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowPlan {
    pub line: u64,
    pub order_id: String,
    pub coin: String,
    pub chain: String,
    pub recipient: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub memo: String,
    pub amount: String,
    pub merchant_pays_fee: bool,
    /// The network fee and its coin; absent for Cwallet transfers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee_coin: Option<String>,
    /// What the receiver gets, in the coin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_gets: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reference: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub payee: String,
    /// What the recipient registry says: `known`, `new` or `changed`; absent when it was not
    /// asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<&'static str>,
    /// The payee's destination before, when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_destination: Option<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// What the plan decided for one row. The row's texts stay in the validated rows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RowOutcome {
    /// The row's fee quote, an index into [`PlanRows::fees`].
    fee: Option<u32>,
    verdict: Verdict,
    recipient: Registry,
}

/// What the registry said of a row's destination, in a byte (the previous destination of a
/// changed one is kept in [`PlanRows::previous`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registry {
    NotAsked,
    Known,
    New,
    Changed,
}

impl Registry {
    fn label(self) -> Option<&'static str> {
        match self {
            Registry::NotAsked => None,
            Registry::Known => Some("known"),
            Registry::New => Some("new"),
            Registry::Changed => Some("changed"),
        }
    }
}

/// The rows of a plan: one per validated row, in the same order.
///
/// Kept compact: a verdict and a fee-quote index per row, next to the validated rows (shared,
/// not copied) whose texts they describe. Each [`RowPlan`] is built when it is asked for, so a
/// million-row plan holds tens of megabytes rather than half a gigabyte of strings. Serializes
/// as the list of [`RowPlan`]s.
#[derive(Clone)]
pub struct PlanRows {
    validated: Arc<Validated>,
    catalogue: Arc<Catalogue>,
    /// The distinct fee quotes the rows use.
    fees: Vec<FeeQuote>,
    outcomes: Vec<RowOutcome>,
    /// Row index → the payee's destination before, for rows whose payee changed destination.
    previous: HashMap<usize, Destination>,
}

impl PlanRows {
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// The verdict of the `index`th row.
    pub fn verdict(&self, index: usize) -> Option<&Verdict> {
        self.outcomes.get(index).map(|o| &o.verdict)
    }

    /// Every row's verdict, in row order (the order of `Validated::rows`).
    pub fn verdicts(&self) -> impl ExactSizeIterator<Item = &Verdict> + '_ {
        self.outcomes.iter().map(|o| &o.verdict)
    }

    /// The `index`th row in full.
    pub fn get(&self, index: usize) -> Option<RowPlan> {
        let outcome = self.outcomes.get(index)?;
        let row = self.validated.rows.get(index)?;
        Some(self.row_plan(index, row, outcome))
    }

    /// Every row in full, built one at a time.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RowPlan> + '_ {
        self.validated
            .rows
            .iter()
            .zip(&self.outcomes)
            .enumerate()
            .map(|(i, (row, outcome))| self.row_plan(i, row, outcome))
    }

    /// The payee's destination before, for the `index`th row when its payee changed destination.
    pub fn previous_destination(&self, index: usize) -> Option<&Destination> {
        self.previous.get(&index)
    }

    fn row_plan(&self, index: usize, row: &Row, outcome: &RowOutcome) -> RowPlan {
        let (v, cat) = (&*self.validated, &*self.catalogue);
        let coin = row.coin.map(|c| cat.coin(c));
        let fee = outcome.fee.and_then(|i| self.fees.get(i as usize));
        let money = money(row, coin, fee);
        RowPlan {
            line: u64::from(row.line),
            order_id: v.order_id(row).to_owned(),
            coin: coin.map_or_else(String::new, |c| c.symbol.clone()),
            chain: row.chain.map_or_else(String::new, |c| cat.chain_name(c).to_owned()),
            recipient: v.recipient(row).to_owned(),
            memo: v.memo(row).to_owned(),
            amount: row.amount.canonical(),
            merchant_pays_fee: row.merchant_pays_fee,
            fee: fee.map(|f| plain(f.amount)),
            fee_coin: fee.map(|f| f.symbol.clone()),
            receiver_gets: money.receiver_gets.map(plain),
            reference: v.reference(row).to_owned(),
            payee: v.payee(row).to_owned(),
            registry: outcome.recipient.label(),
            previous_destination: self.previous.get(&index).map(Destination::describe),
            verdict: outcome.verdict.clone(),
        }
    }
}

impl Serialize for PlanRows {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl fmt::Debug for PlanRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What paying a row moves: the debits (coin id, value) on the balances, and what the
/// receiver gets (`None` when it cannot be told).
struct Money {
    /// The amount from the coin's balance, and a fee charged on top (in the coin itself when
    /// the merchant pays it, or in another coin).
    debits: [Option<(u64, Decimal)>; 2],
    receiver_gets: Option<Decimal>,
    /// The receiver pays the fee and the amount does not cover it.
    fee_not_covered: bool,
    /// The receiver pays the fee in the coin itself and what is left is below the network's
    /// minimum, which CCPayment refuses with 14019 ("the amount minus the network fee is below
    /// the minimum allowed amount", ccpayment-api.md §5, R7): the minimum.
    net_below_minimum: Option<Decimal>,
}

fn money(row: &Row, coin: Option<&CoinEntry>, fee: Option<&FeeQuote>) -> Money {
    let amount = row.amount.value();
    let Some(c) = coin else {
        return Money {
            debits: [None, None],
            receiver_gets: None,
            fee_not_covered: false,
            net_below_minimum: None,
        };
    };
    let mut m = Money {
        debits: [Some((c.coin_id, amount)), None],
        receiver_gets: Some(amount),
        fee_not_covered: false,
        net_below_minimum: None,
    };
    match fee {
        Some(fee) if fee.coin_id != c.coin_id => m.debits[1] = Some((fee.coin_id, fee.amount)),
        Some(fee) if row.merchant_pays_fee => m.debits[1] = Some((c.coin_id, fee.amount)),
        Some(fee) => {
            m.receiver_gets = Some(amount - fee.amount);
            m.fee_not_covered = amount <= fee.amount;
            if let Some(ChainRef::Chain(chain)) = row.chain
                && let Some(network) = c.network(chain)
                && !m.fee_not_covered
                && amount - fee.amount < network.minimum
            {
                m.net_below_minimum = Some(network.minimum);
            }
        }
        // No quote (should not happen after a preflight): say so rather than guess.
        None if matches!(row.chain, Some(ChainRef::Chain(_))) => m.receiver_gets = None,
        None => {}
    }
    m
}

/// Totals for one coin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoinTotals {
    pub coin: String,
    pub coin_id: u64,
    /// Accepted rows paying this coin.
    pub rows: u64,
    /// Sum of the rows' amounts.
    pub amount: String,
    /// Network fees charged in this coin (from rows of any coin).
    pub fees: String,
    /// Sum of what receivers get in this coin.
    pub receivers_get: String,
    /// What leaves the balance: amounts plus fees charged in this coin.
    pub needed: String,
    /// `needed` plus the safety margin.
    pub needed_with_margin: String,
    pub balance_before: String,
    pub balance_after: String,
    pub sufficient: bool,
}

/// How many API requests submission takes, and how long at the configured rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestEstimate {
    pub withdrawals: u64,
    pub status_queries: u64,
    /// Requests of CCPayment batch withdrawals (apply, confirm, status, task lists), in batch mode.
    #[serde(skip_serializing_if = "is_zero")]
    pub batch_requests: u64,
    pub total: u64,
    pub rate_per_second: u32,
    pub seconds: f64,
}

/// Counts of rows by verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub rows: u64,
    pub payable: u64,
    pub held: u64,
    pub refused: u64,
    pub duplicate: u64,
    /// Rows waiting for the recipient review.
    pub review: u64,
}

/// A row refused because its recipient is on a deny list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DenyListHit {
    pub line: u64,
    pub order_id: String,
    pub recipient: String,
    /// The list, as the configuration names it.
    pub list: String,
    /// The line of the list the address is on.
    pub list_line: u32,
}

/// The part of the plan that waits for its own approval: rows to new destinations, or to a
/// payee's changed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewPart {
    /// SHA-256 over the held rows and their destinations, old and new, hex: what its approval
    /// binds to (`ccpayout approve BATCH --digest` this).
    pub digest: String,
    pub rows: u64,
    /// Rows to destinations never paid.
    pub new: u64,
    /// Rows whose payee was paid to another destination before.
    pub changed: u64,
    pub approvals_needed: u32,
}

/// The plan of a batch.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub counts: Counts,
    pub rows: PlanRows,
    /// Every problem, row-level and file-level, in line order.
    pub problems: Vec<Problem>,
    pub coins: Vec<CoinTotals>,
    /// Reasons the batch cannot be paid as it is (balance, policy limits, an unreadable file).
    pub blockers: Vec<String>,
    /// Reasons it needs approval; empty when it does not.
    pub approval_reasons: Vec<String>,
    /// Distinct approvers the plan needs (0: no approval needed).
    pub approvals_needed: u32,
    /// Whether the signer of the file may approve it.
    pub maker_may_approve: bool,
    /// The held rows' part, when rows wait for the recipient review.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewPart>,
    /// Rows refused because their recipient is on a deny list.
    pub deny_list_hits: Vec<DenyListHit>,
    pub requests: RequestEstimate,
    /// How the rows are grouped into CCPayment batch withdrawals (`withdraw_mode = "batch"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundles: Option<BundlePlan>,
    pub remote_checks: RemoteCheckSummary,
    /// SHA-256 over the canonical form of the accepted rows and totals, hex.
    pub digest: String,
    /// Every row payable and nothing blocks the batch.
    pub payable: bool,
}

/// Status queries per batch of orders: one `getAppWithdrawRecordList` call covers 20 orderIds,
/// and the engine expects about two rounds (one while processing, one final).
const ORDER_IDS_PER_QUERY: u64 = 20;
const EXPECTED_TRACKING_ROUNDS: u64 = 2;

/// Builds the plan. The plan's rows share `validated` and `cat` (see [`PlanRows`]).
///
/// Two passes: one over the rows (fee, reasons to refuse, verdict, sums per coin), then one over
/// the coins (totals, balances with the margin); the policy then judges the batch's totals. The
/// digest takes the accepted rows in row order, then the totals in coin id order.
pub fn build(
    validated: &Arc<Validated>,
    cat: &Arc<Catalogue>,
    answers: &PreflightAnswers,
    settings: &PlanSettings<'_>,
) -> Plan {
    let mut digest = Sha256::new();
    digest.update(b"ccpayout plan v1\n");
    let mut rows = plan_rows(validated, cat, answers, settings, &mut digest);
    let coins = coin_totals(&rows.sums, cat, answers, settings.balance_margin, &mut digest);

    let policy = settings
        .policy
        .check_batch(&coins.totals_by_symbol, settings.paid_today);
    let mut blockers = coins.blockers;
    blockers.extend(policy.blockers);
    if validated.has_file_problem() {
        blockers.insert(0, "the file is not a valid batch".to_owned());
    }
    let counts = rows.counts;
    let bundles = settings.bundles.map(|bundle_settings| {
        let verdicts: Vec<&Verdict> = rows.outcomes.iter().map(|o| &o.verdict).collect();
        bundles::plan(validated, cat, &verdicts, bundle_settings)
    });
    let requests = estimate_requests(
        counts.payable + counts.held + counts.review,
        bundles.as_ref(),
        settings.rate_per_second,
    );
    let payable = blockers.is_empty() && counts.payable == counts.rows && counts.rows > 0;
    let review = (counts.review > 0).then(|| ReviewPart {
        digest: hex::encode(std::mem::take(&mut rows.review_digest).finalize()),
        rows: counts.review,
        new: rows.review_new,
        changed: counts.review - rows.review_new,
        approvals_needed: settings.policy.approvals_required.max(1),
    });
    Plan {
        counts,
        rows: PlanRows {
            validated: Arc::clone(validated),
            catalogue: Arc::clone(cat),
            fees: rows.fees.quotes,
            outcomes: rows.outcomes,
            previous: rows.previous,
        },
        problems: rows.problems,
        coins: coins.coins,
        blockers,
        approval_reasons: policy.approval_reasons,
        approvals_needed: policy.approvals_needed,
        maker_may_approve: settings.policy.maker_may_approve,
        review,
        deny_list_hits: rows.deny_hits,
        requests,
        bundles,
        remote_checks: answers.remote_checks.clone(),
        digest: hex::encode(digest.finalize()),
        payable,
    }
}

/// What the pass over the rows found.
struct RowsPass<'c> {
    fees: FeeTable<'c>,
    /// One per validated row, in row order.
    outcomes: Vec<RowOutcome>,
    /// The validation problems and every refusal, in line order.
    problems: Vec<Problem>,
    counts: Counts,
    sums: CoinSums,
    previous: HashMap<usize, Destination>,
    deny_hits: Vec<DenyListHit>,
    review_digest: Sha256,
    review_new: u64,
}

/// Decides every validated row, adds the accepted ones (payable or held) to the sums per coin
/// and to `digest`, and counts the verdicts, including the rows validation refused or found
/// duplicate, which have no outcome of their own.
fn plan_rows<'c>(
    validated: &Validated,
    cat: &'c Catalogue,
    answers: &PreflightAnswers,
    settings: &PlanSettings<'_>,
    digest: &mut Sha256,
) -> RowsPass<'c> {
    let mut pass = RowsPass {
        fees: FeeTable::default(),
        outcomes: Vec::with_capacity(validated.rows.len()),
        problems: validated.problems.clone(),
        counts: Counts {
            rows: validated.rows_seen,
            ..Counts::default()
        },
        sums: CoinSums::default(),
        previous: HashMap::new(),
        deny_hits: Vec::new(),
        review_digest: Sha256::new(),
        review_new: 0,
    };
    pass.review_digest.update(b"ccpayout recipient review v1\n");
    for (index, row) in validated.rows.iter().enumerate() {
        let coin = row.coin.map(|c| cat.coin(c));
        let coin_symbol = coin.map_or("", |c| c.symbol.as_str());
        let chain_name = row.chain.map_or("", |c| cat.chain_name(c));

        let fee = pass.fees.quote_for(row, coin, chain_name, answers);
        let fee_quote = pass.fees.get(fee);
        let money = money(row, coin, fee_quote);
        let mut reasons = row_reasons(row, coin_symbol, chain_name, answers, settings);
        reasons.extend(fee_not_covered(row, coin, fee_quote, &money));
        reasons.extend(net_below_minimum(row, coin, fee_quote, &money));
        let recipient = validated.recipient(row);
        if let Some(hit) = settings.deny.check(recipient) {
            reasons.insert(0, hit.reason());
            pass.deny_hits.push(DenyListHit {
                line: u64::from(row.line),
                order_id: validated.order_id(row).to_owned(),
                recipient: recipient.to_owned(),
                list: hit.list,
                list_line: hit.line,
            });
        }

        let mut registry = Registry::NotAsked;
        let verdict = if reasons.is_empty() {
            let destination = Destination::new(chain_name, recipient, validated.memo(row));
            let status = settings
                .recipients
                .map(|known| known.status(&destination, validated.payee(row)));
            registry = match &status {
                None => Registry::NotAsked,
                Some(RecipientStatus::Known) => Registry::Known,
                Some(RecipientStatus::New) => Registry::New,
                Some(RecipientStatus::Changed { .. }) => Registry::Changed,
            };
            let previous = match &status {
                Some(RecipientStatus::Changed { previous }) => Some(previous.clone()),
                _ => None,
            };
            let verdict = match review_of(status, row, validated, settings.policy) {
                Some((review, reason)) => {
                    digest_review(
                        &mut pass.review_digest,
                        validated.order_id(row),
                        &destination,
                        previous.as_ref(),
                    );
                    if review == ReviewKind::New {
                        pass.review_new += 1;
                    }
                    Verdict::Review { review, reason }
                }
                None => accepted_verdict(row.hold, coin_symbol, chain_name),
            };
            if let Some(previous) = previous {
                pass.previous.insert(index, previous);
            }
            verdict
        } else {
            let remote = answers.remote_problems.get(&u64::from(row.line));
            pass.problems.extend(refusal_problems(
                row,
                validated,
                &reasons,
                remote.map_or(&[][..], Vec::as_slice),
            ));
            Verdict::Refused { reasons }
        };
        if matches!(
            verdict,
            Verdict::Payable | Verdict::Held { .. } | Verdict::Review { .. }
        ) {
            pass.sums.add(row, coin, fee_quote, &money);
            digest_row(digest, row, validated, cat);
        }
        pass.counts.tally(&verdict);
        pass.outcomes.push(RowOutcome {
            fee,
            verdict,
            recipient: registry,
        });
    }
    pass.counts.refused += validated.refused_lines.len() as u64;
    pass.counts.duplicate += validated.duplicates.len() as u64;
    pass.problems.sort_by_key(|p| p.line.unwrap_or(0));
    pass
}

/// The distinct fee quotes a plan's rows use, each stored once and referred to by index, so a
/// million rows on a handful of chains hold a handful of quotes.
#[derive(Default)]
struct FeeTable<'c> {
    quotes: Vec<FeeQuote>,
    /// (coin id, chain) → index in `quotes`.
    index: HashMap<(u64, &'c str), u32>,
}

impl<'c> FeeTable<'c> {
    /// The fee quote of a row paid on a chain, from the preflight's answers; `None` for Cwallet
    /// transfers (which have no fee), rows without a coin, and pairs the preflight has no quote
    /// for.
    fn quote_for(
        &mut self,
        row: &Row,
        coin: Option<&CoinEntry>,
        chain_name: &'c str,
        answers: &PreflightAnswers,
    ) -> Option<u32> {
        let (Some(c), Some(ChainRef::Chain(_))) = (coin, row.chain) else {
            return None;
        };
        if let Some(&i) = self.index.get(&(c.coin_id, chain_name)) {
            return Some(i);
        }
        let quote = answers.fees.get(&(c.coin_id, chain_name.to_owned()))?;
        let i = u32::try_from(self.quotes.len()).unwrap_or(u32::MAX);
        self.quotes.push(quote.clone());
        self.index.insert((c.coin_id, chain_name), i);
        Some(i)
    }

    fn get(&self, index: Option<u32>) -> Option<&FeeQuote> {
        index.and_then(|i| self.quotes.get(i as usize))
    }
}

/// Why a row is refused, besides its fee: the remote checks' refusals first, then the policy's
/// per-row rules, which judge a coin (v1 rows have their token's).
fn row_reasons(
    row: &Row,
    coin_symbol: &str,
    chain_name: &str,
    answers: &PreflightAnswers,
    settings: &PlanSettings<'_>,
) -> Vec<String> {
    let mut reasons: Vec<String> = answers
        .remote_problems
        .get(&u64::from(row.line))
        .cloned()
        .unwrap_or_default();
    if row.coin.is_some() {
        reasons.extend(settings.policy.check_row(coin_symbol, chain_name, row.amount.value()));
    }
    reasons
}

/// The refusal of a row whose receiver pays the fee when the amount does not cover it: the
/// receiver would get nothing, or less than nothing.
fn fee_not_covered(row: &Row, coin: Option<&CoinEntry>, fee: Option<&FeeQuote>, money: &Money) -> Option<String> {
    if !money.fee_not_covered {
        return None;
    }
    let (c, fee) = (coin?, fee?);
    Some(format!(
        "{} {} does not cover the network fee of {} {}; raise the amount or set merchant_pays_fee",
        row.amount,
        c.symbol,
        plain(fee.amount),
        fee.symbol
    ))
}

/// The refusal of a row whose receiver pays the fee when what is left is below the network's
/// minimum: CCPayment answers 14019 (R7), so the plan refuses it first, saying what to change.
fn net_below_minimum(row: &Row, coin: Option<&CoinEntry>, fee: Option<&FeeQuote>, money: &Money) -> Option<String> {
    let (minimum, c, fee) = (money.net_below_minimum?, coin?, fee?);
    Some(format!(
        "{} {} minus the network fee of {} {} is below the minimum of {} {} (CCPayment would answer 14019); raise the amount or set merchant_pays_fee",
        row.amount,
        c.symbol,
        plain(fee.amount),
        fee.symbol,
        plain(minimum),
        c.symbol
    ))
}

/// One problem per reason a row is refused, so reports list refusals with the other problems.
/// The remote checks' refusals (`remote`) are about the recipient and name its field.
fn refusal_problems<'a>(
    row: &'a Row,
    validated: &'a Validated,
    reasons: &'a [String],
    remote: &'a [String],
) -> impl Iterator<Item = Problem> + 'a {
    reasons.iter().map(move |reason| Problem {
        line: Some(u64::from(row.line)),
        field: remote.contains(reason).then(|| Column::Recipient.name().to_owned()),
        order_id: Some(validated.order_id(row).to_owned()),
        message: reason.clone(),
    })
}

/// Whether a row waits for the recipient review, and why:
/// a changed payee destination when the policy holds those, a new destination when the policy
/// holds new ones (or this amount of a new one).
fn review_of(
    status: Option<RecipientStatus>,
    row: &Row,
    v: &Validated,
    policy: &Policy,
) -> Option<(ReviewKind, String)> {
    match status? {
        RecipientStatus::Known => None,
        RecipientStatus::Changed { previous } => (policy.changed_payee_address == ChangedPayee::Hold).then(|| {
            (
                ReviewKind::Changed,
                format!(
                    "payee {} was paid to {} before; a changed destination waits for the recipient review",
                    v.payee(row),
                    previous.describe()
                ),
            )
        }),
        RecipientStatus::New => policy.holds_new_recipient(row.amount.value()).then(|| {
            (
                ReviewKind::New,
                "a destination never paid before waits for the recipient review".to_owned(),
            )
        }),
    }
}

/// A held row in the review part's digest: its order_id, its destination and the payee's
/// destination before, each length-prefixed.
fn digest_review(h: &mut Sha256, order_id: &str, destination: &Destination, previous: Option<&Destination>) {
    h.update(b"row");
    validate::hash_field(h, order_id);
    validate::hash_field(h, &destination.key());
    validate::hash_field(h, &previous.map(Destination::key).unwrap_or_default());
}

/// The verdict of a row nothing refuses: held when validation found it cannot be paid right
/// now, payable otherwise.
fn accepted_verdict(hold: Option<Hold>, coin_symbol: &str, chain_name: &str) -> Verdict {
    match hold {
        Some(hold) => Verdict::Held {
            reason: hold_reason(hold, coin_symbol, chain_name),
        },
        None => Verdict::Payable,
    }
}

impl Counts {
    fn tally(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Payable => self.payable += 1,
            Verdict::Held { .. } => self.held += 1,
            Verdict::Refused { .. } => self.refused += 1,
            Verdict::Duplicate { .. } => self.duplicate += 1,
            Verdict::Review { .. } => self.review += 1,
        }
    }
}

/// Sums over the accepted rows, by coin id. Held rows count: they are paid once the hold
/// clears, so the balance must cover them too.
#[derive(Default)]
struct CoinSums {
    /// Coin id → (rows, amount, what receivers get).
    amount: BTreeMap<u64, (u64, Decimal, Decimal)>,
    /// Fee coin id → fees charged in it.
    fees: BTreeMap<u64, Decimal>,
    /// Coin id → what leaves its balance.
    needed: BTreeMap<u64, Decimal>,
}

impl CoinSums {
    fn add(&mut self, row: &Row, coin: Option<&CoinEntry>, fee: Option<&FeeQuote>, money: &Money) {
        if let Some(c) = coin {
            let entry = self.amount.entry(c.coin_id).or_default();
            entry.0 += 1;
            entry.1 += row.amount.value();
            entry.2 += money.receiver_gets.unwrap_or_default();
        }
        // Every fee counts here; one the receiver pays comes out of the amount rather than
        // on top of it, which the debits already reflect.
        if let Some(fee) = fee {
            *self.fees.entry(fee.coin_id).or_default() += fee.amount;
        }
        for (coin_id, value) in money.debits.iter().flatten() {
            *self.needed.entry(*coin_id).or_default() += *value;
        }
    }

    /// Every coin that is paid or charged, in id order.
    fn coin_ids(&self) -> Vec<u64> {
        let mut coin_ids: Vec<u64> = self.amount.keys().chain(self.needed.keys()).copied().collect();
        coin_ids.sort_unstable();
        coin_ids.dedup();
        coin_ids
    }
}

/// What the pass over the coins found.
struct CoinsPass {
    coins: Vec<CoinTotals>,
    /// Balances short of what the batch needs.
    blockers: Vec<String>,
    /// The amount paid per coin symbol, for the policy's batch limits; coins only charged fees
    /// are left out.
    totals_by_symbol: BTreeMap<String, Decimal>,
}

/// The totals of every coin paid or charged, each balance checked against what the batch
/// needs plus the margin, and each coin's amount added to `digest`.
fn coin_totals(
    sums: &CoinSums,
    cat: &Catalogue,
    answers: &PreflightAnswers,
    margin: Decimal,
    digest: &mut Sha256,
) -> CoinsPass {
    let mut pass = CoinsPass {
        coins: Vec::new(),
        blockers: Vec::new(),
        totals_by_symbol: BTreeMap::new(),
    };
    for coin_id in sums.coin_ids() {
        // A fee coin the catalogue does not list is named by its id.
        let symbol = cat
            .coin_by_id(coin_id)
            .map_or_else(|| coin_id.to_string(), |c| c.symbol.clone());
        let (n, amount, receivers) = sums.amount.get(&coin_id).copied().unwrap_or_default();
        let needed = sums.needed.get(&coin_id).copied().unwrap_or_default();
        let with_margin = needed + needed * margin;
        let before = answers.balances.get(&coin_id).copied().unwrap_or_default();
        let sufficient = before >= with_margin;
        if !sufficient {
            pass.blockers
                .push(balance_blocker(&symbol, before, with_margin, margin));
        }
        if !amount.is_zero() {
            pass.totals_by_symbol.insert(symbol.clone(), amount);
        }
        digest.update(format!("total\t{coin_id}\t{}\n", plain(amount)).as_bytes());
        pass.coins.push(CoinTotals {
            coin: symbol,
            coin_id,
            rows: n,
            amount: plain(amount),
            fees: plain(sums.fees.get(&coin_id).copied().unwrap_or_default()),
            receivers_get: plain(receivers),
            needed: plain(needed),
            needed_with_margin: plain(with_margin),
            balance_before: plain(before),
            balance_after: plain(before - needed),
            sufficient,
        });
    }
    pass
}

/// The blocker of a balance short of what the batch needs, naming the margin when there is one
/// so the operator sees why a balance that covers the amounts is still not enough.
fn balance_blocker(symbol: &str, before: Decimal, with_margin: Decimal, margin: Decimal) -> String {
    format!(
        "the {symbol} balance of {} is short of the {} {symbol} this batch needs{}",
        plain(before),
        plain(with_margin),
        if margin.is_zero() {
            ""
        } else {
            " with the safety margin"
        }
    )
}

/// The requests submitting `accepted` rows takes: one withdrawal each, plus the status queries
/// that track them — in batch mode, the bundled rows instead cost their bundles' few requests
/// each — and the time that takes at `rate_per_second` (at least 1).
fn estimate_requests(accepted: u64, bundles: Option<&BundlePlan>, rate_per_second: u32) -> RequestEstimate {
    let (single, batch_requests) = match bundles {
        Some(b) => (
            accepted.saturating_sub(b.bundled_rows),
            b.parts.iter().map(|p| bundles::requests_for(p.tasks)).sum(),
        ),
        None => (accepted, 0),
    };
    let status_queries = single.div_ceil(ORDER_IDS_PER_QUERY) * EXPECTED_TRACKING_ROUNDS;
    let total = single + status_queries + batch_requests;
    let rate = rate_per_second.max(1);
    RequestEstimate {
        withdrawals: single,
        status_queries,
        batch_requests,
        total,
        rate_per_second: rate,
        seconds: total as f64 / f64::from(rate),
    }
}

fn hold_reason(hold: Hold, coin: &str, chain: &str) -> String {
    match hold {
        Hold::ChainMaintenance => format!("{chain} is in maintenance; the row waits until it is back"),
        Hold::CoinSuspended => format!("{coin} withdrawals are suspended; the row waits until they resume"),
        Hold::WithdrawDisabled => format!("CCPayment does not allow {coin} withdrawals on {chain} right now"),
    }
}

/// The canonical form of an accepted row: its order_id, then its payout fields in the order
/// of [`validate::hash_payload`], each length-prefixed.
fn digest_row(h: &mut Sha256, row: &Row, v: &Validated, cat: &Catalogue) {
    h.update(b"row");
    validate::hash_field(h, v.order_id(row));
    validate::hash_payload(h, row, v, cat);
}
