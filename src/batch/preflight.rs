//! The preflight: everything `ccpayout check` asks CCPayment before it can say what a batch
//! would do. This is an edge module; the decisions are made by the pure `validate` and `plan`.
//!
//! In order: the coin and chain lists (one call each) become the [`Catalogue`]; the file is
//! read once, hashed and validated against it; then, for the accepted rows only, one fee quote
//! per distinct coin and chain, one balance list, and — when the configuration allows it for a
//! batch of this size — the validity of the distinct addresses, up to 500 of a chain in one
//! `checkWithdrawAddress` (one `checkWithdrawalAddressValidity` per address on an account
//! without that route), and one lookup per distinct Cwallet ID. Every answer is asked once per
//! run. Each question is one request through the client, which passes the process's one pacing
//! (`crate::api::pacing`): a preflight shares the rate, the pause gate and the daily budget with
//! everything else the process sends, and has no pace of its own.
//!
//! A v1 account (`api.version = "v1"`) may answer every v2 call with 11013 (R15), so its
//! preflight asks the same questions of the v1 API only ([`super::preflight_v1`]): the token
//! list, fees per token, balances and Cwallet users, and no v2 request at all.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::diff::{self, BatchDiff, ChosenBy, DiffRow, PreviousBatch};
use super::parse::{Format, Limits};
pub use super::plan::AddressCheck;
use super::plan::{self, FeeQuote, Plan, PlanSettings, PreflightAnswers, RemoteCheckSummary};
use super::validate::{self, Rules, Validated};
use crate::api::types::{
    CheckWithdrawAddressRequest, MAX_TASKS_PER_REQUEST, WithdrawAddress, WithdrawAddressResult, method,
};
use crate::api::{CallError, Client, codes};
use crate::batch::catalogue::{Catalogue, ChainRef};
use crate::model::ApiGeneration;
use crate::model::recipient::{Destination, Known, KnownRecipients};
use crate::model::record::BatchSigner;
use crate::rules::address::{CwalletRecipient, parse_cwallet_recipient};
use crate::rules::amount::parse_api_decimal;
use crate::rules::deny::{DenyList, DenyLists};
use crate::rules::policy::Policy;
use crate::rules::signature::{self, BATCH_NAMESPACE, MAX_SIGNATURE_BYTES};

/// Preflight questions in flight at once without a pacing to ask (a client with no pacing).
const DEFAULT_CONCURRENCY: usize = 8;

/// How many independent preflight questions go out at once: the pacing's in-flight limit, which
/// follows the latency measured, so a check costs about requests ÷ rate, not requests × round
/// trip. The pacing keeps the rate either way.
pub(super) fn concurrency(client: &Client) -> usize {
    client
        .pacing()
        .map_or(DEFAULT_CONCURRENCY, |p| p.in_flight_limit())
        .max(1)
}

/// When the preflight asks CCPayment about each recipient (address validity, Cwallet users).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteChecks {
    Always,
    Never,
    /// Only for batches of at most this many rows: a million-row batch must not need a million
    /// calls before it starts.
    UpTo(u64),
}

/// What a preflight needs from the configuration (`Config::preflight_settings` builds it).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Which API the rows are for (v1 rows name a token instead of coin and chain).
    pub generation: ApiGeneration,
    /// `merchant_pays_fee` of rows that leave the column empty.
    pub default_merchant_pays_fee: bool,
    pub remote_checks: RemoteChecks,
    /// Extra balance required on top of what the batch needs, as a fraction (0.02 = 2 %).
    pub balance_margin: Decimal,
    /// The configured request rate, for the plan's time estimate.
    pub rate_per_second: u32,
    pub policy: Policy,
    /// `withdraw_mode = "batch"`: how network rows are grouped into CCPayment batch withdrawals.
    pub bundles: Option<crate::model::bundle::BundleSettings>,
    /// How addresses are asked about: [`AddressCheck::Batch`] (the default) falls back to
    /// [`AddressCheck::Single`] by itself when the account does not have the batch route; a
    /// caller that knows the account lacks it (from `doctor`'s findings, or an earlier
    /// preflight's `remote_checks.address_check`) can ask `Single` from the start.
    pub address_check: AddressCheck,
    /// The stored batch (its full id) the diff to last time compares with (`check
    /// --compare-with`); `None`: the previous batch of the file's series.
    pub compare_with: Option<String>,
}

/// The result of `ccpayout check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub file: String,
    pub format: String,
    pub size_bytes: u64,
    /// SHA-256 of the file's bytes: the batch's identity.
    pub sha256: String,
    pub preflight_requests: u64,
    /// Who signed the file (its `FILE.sig`), when signatures are checked.
    pub signer: Option<BatchSigner>,
    #[serde(flatten)]
    pub plan: Plan,
    /// The diff to the previous batch of the series (information for the approver, not part of
    /// the plan or its digest); `None` when it could not be made, `no_diff` says why.
    pub diff: Option<BatchDiff>,
    /// Why there is no diff (no state directory, the store held by a running daemon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_diff: Option<String>,
}

/// Why a check could not produce a plan.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file is not something ccpayout reads: a batch problem, exit 1.
    #[error("{0}")]
    NotABatch(String),
    /// The file could not be read: exit 2.
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// CCPayment refused or did not answer a preflight call: exit 2.
    #[error("preflight failed: {0}")]
    Api(CallError),
    /// CCPayment's catalogue is unusable: exit 2.
    #[error(transparent)]
    Catalogue(#[from] crate::batch::catalogue::CatalogueError),
    /// The file's signature is missing or wrong (`policy.require_signature`): refused before any
    /// request, exit 1.
    #[error("{0}")]
    Signature(String),
    /// A deny list cannot be read: a configuration problem, never "no list" (exit 78).
    #[error("{0}")]
    DenyList(String),
}

/// A checked batch with what submission needs besides the report: the validated rows, the
/// catalogue they refer to, and the chains (for explorer links).
pub struct Prepared {
    pub report: CheckReport,
    /// Shared with the plan's rows.
    pub validated: Arc<Validated>,
    pub catalogue: Arc<Catalogue>,
    /// The chain list, for explorer links; empty for v1, which has none.
    pub chains: Vec<crate::api::types::ChainInfo>,
}

impl From<CallError> for CheckError {
    fn from(e: CallError) -> Self {
        // Not a `#[source]`: the message already includes it, and error chains print it once.
        CheckError::Api(e)
    }
}

/// Reads, validates and plans the batch at `path`.
pub async fn check_file(
    client: &Client,
    settings: &Settings,
    path: &Path,
    known: Arc<dyn Known + Send + Sync>,
) -> Result<CheckReport, CheckError> {
    prepare(client, settings, path, known).await.map(|p| p.report)
}

/// [`check_file`], keeping the validated rows for submission.
pub async fn prepare(
    client: &Client,
    settings: &Settings,
    path: &Path,
    known: Arc<dyn Known + Send + Sync>,
) -> Result<Prepared, CheckError> {
    let display = path.display().to_string();
    let format = Format::from_path(path).ok_or_else(|| {
        CheckError::NotABatch(format!(
            "{display}: cannot tell the format from the name; use .csv, .json or .jsonl"
        ))
    })?;
    // Before any request: the signature, then the deny lists (read afresh each time, so a list
    // changed on disk counts from the next batch on).
    let signed = check_signature(&settings.policy, path)?;
    let deny = read_deny_lists(&settings.policy.deny_lists)?;
    let file = std::fs::File::open(path).map_err(|source| CheckError::Io {
        path: display.clone(),
        source,
    })?;

    let mut requests = 0u64;
    let (catalogue, chains) = match settings.generation {
        ApiGeneration::V2 => {
            // Independent: both at once.
            let (coins, chains) =
                futures_util::try_join!(read(|| client.get_coin_list()), read(|| client.get_chain_list(&[])))?;
            requests += 2;
            (Catalogue::from_api(&coins, &chains)?, chains)
        }
        // v1 has no chain list: no explorers for its chains.
        ApiGeneration::V1 => {
            let coins = read(|| client.v1_coin_all()).await?;
            requests += 1;
            (Catalogue::from_v1(&coins)?, Vec::new())
        }
    };
    let catalogue = Arc::new(catalogue);

    // Validation is CPU work over the whole file: on a multi-threaded runtime (the CLI, the
    // daemon) it runs on the blocking pool, off the async workers. A current-thread runtime (the
    // deterministic simulation, tests) has no workers to keep free, and a replay needs the work
    // to happen at a known point rather than whenever another thread finishes it: in place.
    let validate = {
        let known = Arc::clone(&known);
        let catalogue = catalogue.clone();
        let generation = settings.generation;
        let default_fee = settings.default_merchant_pays_fee;
        move || {
            let mut reader = HashingReader::new(std::io::BufReader::with_capacity(1 << 16, file));
            let limits = Limits::default();
            let rules = Rules {
                catalogue: &catalogue,
                generation,
                default_merchant_pays_fee: default_fee,
                limits: &limits,
            };
            let known_orders: &dyn validate::KnownOrders = known.as_ref();
            let validated = validate::validate(format, &mut reader, &rules, known_orders);
            // Whatever the parser left unread still belongs to the file's identity.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
            (validated, reader.finish())
        }
    };
    let (validated, hashed) = match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => validate(),
        _ => tokio::task::spawn_blocking(validate)
            .await
            .map_err(|e| CheckError::NotABatch(format!("{display}: validation stopped: {e}")))?,
    };
    let (sha256, size_bytes) = hashed;
    // The signature was checked over the bytes read then; these are the bytes validated.
    if let Some((_, signed_sha256)) = &signed
        && *signed_sha256 != sha256
    {
        return Err(CheckError::NotABatch(format!(
            "{display} changed while it was being read; write batch files elsewhere and rename them into place"
        )));
    }
    let validated = Arc::new(validated);

    let mut answers = PreflightAnswers::default();
    if !validated.rows.is_empty() {
        match settings.generation {
            ApiGeneration::V2 => {
                // The fee quotes and the balances at once.
                let (_, assets) = futures_util::try_join!(
                    ask_fees(client, &catalogue, &validated, &mut answers),
                    read(|| client.get_app_coin_asset_list())
                )?;
                answers.requests += 1;
                for asset in assets {
                    answers
                        .balances
                        .insert(asset.coin_id, parse_api_decimal(&asset.available).unwrap_or_default());
                }
                remote_checks(client, settings, &catalogue, &validated, known.as_ref(), &mut answers).await?;
            }
            ApiGeneration::V1 => {
                super::preflight_v1::ask_fees(client, &catalogue, &validated, &mut answers).await?;
                super::preflight_v1::ask_balances(client, &catalogue, &mut answers).await?;
                super::preflight_v1::remote_checks(client, settings, &validated, &mut answers).await?;
            }
        }
    }
    requests += answers.requests;

    let plan = {
        let paid_today = |_: &str| Decimal::ZERO;
        let policy = &settings.policy;
        // The registry is asked when the policy holds new or changed destinations.
        let holds = policy.new_recipients != crate::rules::policy::NewRecipients::Allow
            || policy.changed_payee_address != crate::rules::policy::ChangedPayee::Allow;
        let known_recipients: &(dyn KnownRecipients + Send + Sync) = known.as_ref();
        let settings = PlanSettings {
            policy,
            balance_margin: settings.balance_margin,
            rate_per_second: settings.rate_per_second,
            paid_today: &paid_today,
            deny: &deny,
            recipients: holds.then_some(known_recipients),
            bundles: settings.bundles,
        };
        plan::build(&validated, &catalogue, &answers, &settings)
    };
    let (diff, no_diff) = match diff_to_previous(DiffJob {
        known,
        validated: Arc::clone(&validated),
        catalogue: Arc::clone(&catalogue),
        accepted: validated
            .rows
            .iter()
            .zip(plan.rows.verdicts())
            .map(|(row, verdict)| super::records::becomes_order(row, verdict, settings.generation))
            .collect(),
        file: display.clone(),
        batch_id: sha256.clone(),
        compare_with: settings.compare_with.clone(),
        warn_percent: settings.policy.diff_warn_percent,
    })
    .await
    {
        Ok(diff) => (Some(diff), None),
        Err(why) => (None, Some(why)),
    };
    let report = CheckReport {
        file: display,
        format: format.name().to_owned(),
        size_bytes,
        sha256,
        preflight_requests: requests,
        signer: signed.map(|(signer, _)| signer),
        plan,
        diff,
        no_diff,
    };
    Ok(Prepared {
        report,
        validated,
        catalogue,
        chains,
    })
}

/// What the diff to last time needs, owned, so it can run on the blocking pool.
struct DiffJob {
    known: Arc<dyn Known + Send + Sync>,
    validated: Arc<Validated>,
    catalogue: Arc<Catalogue>,
    /// Per validated row: whether it becomes an order.
    accepted: Vec<bool>,
    file: String,
    batch_id: String,
    compare_with: Option<String>,
    warn_percent: Decimal,
}

/// The diff of this batch's accepted rows to the previous batch's orders, read from the store
/// (one walk of the previous batch, then the few rows its lists name). Reading a big batch is
/// blocking work: on the blocking pool, or in place on a current-thread runtime (as validation).
/// An error is the reason there is no diff.
async fn diff_to_previous(job: DiffJob) -> Result<BatchDiff, String> {
    let run = move || job.run();
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => run(),
        _ => tokio::task::spawn_blocking(run)
            .await
            .unwrap_or_else(|e| Err(format!("the diff stopped: {e}"))),
    }
}

impl DiffJob {
    fn run(self) -> Result<BatchDiff, String> {
        let batches = self.known.batches()?;
        let series = diff::series(&self.file);
        let (previous, chosen_by) = match &self.compare_with {
            Some(id) => (
                Some(
                    batches
                        .iter()
                        .find(|b| b.batch_id.as_str() == id)
                        .ok_or_else(|| format!("batch {id} is not in the store"))?,
                ),
                ChosenBy::CompareWith,
            ),
            None => (
                diff::previous_of(&self.file, &self.batch_id, &batches),
                ChosenBy::Series,
            ),
        };
        let Some(previous) = previous else {
            return Ok(BatchDiff::no_previous(series, chosen_by, self.warn_percent));
        };
        let mut index = diff::Previous::default();
        self.known
            .for_each_order(previous.batch_id.as_str(), &mut |order| index.push_order(order))?;
        let (v, cat) = (&self.validated, &self.catalogue);
        let current = v
            .rows
            .iter()
            .zip(&self.accepted)
            .filter(|(_, accepted)| **accepted)
            .map(|(row, _)| DiffRow {
                line: u64::from(row.line),
                order_id: v.order_id(row),
                payee: v.payee(row),
                coin: row.coin.map_or("", |c| cat.coin(c).symbol.as_str()),
                chain: row.chain.map_or("", |c| cat.chain_name(c)),
                recipient: v.recipient(row),
                memo: v.memo(row),
                amount: row.amount.value(),
            });
        let compared = diff::compare(index, current, self.warn_percent);
        let named = self.known.orders_at(previous.batch_id.as_str(), &compared.wanted())?;
        Ok(compared.finish(series, chosen_by, PreviousBatch::of(previous), &named))
    }
}

/// One fee quote per distinct (coin, chain) among the accepted rows.
async fn ask_fees(
    client: &Client,
    cat: &Catalogue,
    v: &Validated,
    answers: &mut PreflightAnswers,
) -> Result<(), CallError> {
    let pairs: BTreeSet<(u64, String)> = v
        .rows
        .iter()
        .filter_map(|row| match (row.coin, row.chain) {
            (Some(coin), Some(chain @ ChainRef::Chain(_))) => {
                Some((cat.coin(coin).coin_id, cat.chain_name(chain).to_owned()))
            }
            _ => None,
        })
        .collect();
    // In order (`buffered`): the same requests in the same order every time, for a replay.
    let mut quotes = futures_util::stream::iter(pairs)
        .map(|(coin_id, chain)| async move {
            let quote = read(|| client.get_withdraw_fee(coin_id, &chain)).await;
            (coin_id, chain, quote)
        })
        .buffered(concurrency(client));
    while let Some((coin_id, chain, quote)) = quotes.next().await {
        let quote = quote?;
        answers.requests += 1;
        let amount = parse_api_decimal(&quote.fee.amount).ok_or_else(|| CallError::Ambiguous {
            endpoint: "getWithdrawFee".into(),
            detail: format!("the fee {:?} is not a decimal", quote.fee.amount),
        })?;
        // A quote without a coin is in the withdrawn coin itself.
        let fee_coin = if quote.fee.coin_id == 0 {
            coin_id
        } else {
            quote.fee.coin_id
        };
        let symbol = cat
            .coin_by_id(fee_coin)
            .map_or(quote.fee.coin_symbol.clone(), |c| c.symbol.clone());
        answers.fees.insert(
            (coin_id, chain),
            FeeQuote {
                coin_id: fee_coin,
                symbol,
                amount,
            },
        );
    }
    Ok(())
}

/// Address validity and Cwallet user checks with the API, when the configuration allows them
/// for a batch of this size.
///
/// Addresses are asked [`AddressCheck::Batch`] by default: the distinct (chain, address, memo)
/// destinations of a chain go up to [`MAX_TASKS_PER_REQUEST`] in one `checkWithdrawAddress`. The
/// first of those requests goes alone: an account without the route (the router's plain 404 of
/// an unknown method, or 11013 "not supported by API v2") then costs one request, and every
/// address is asked with `checkWithdrawalAddressValidity` instead, one request each, as
/// [`AddressCheck::Single`] asks from the start. An address a batch answer leaves out is not
/// taken as valid: it is asked on its own too.
async fn remote_checks(
    client: &Client,
    settings: &Settings,
    cat: &Catalogue,
    v: &Validated,
    registry: &(dyn KnownRecipients + Sync),
    answers: &mut PreflightAnswers,
) -> Result<(), CallError> {
    if let Some(skipped) = remote_checks_skipped(settings, v.rows.len() as u64) {
        answers.remote_checks = skipped;
        return Ok(());
    }

    // Distinct questions, each with the lines that depend on the answer.
    // Ordered maps: the questions go out in the same order every time (a replayed simulation
    // sees the same requests), and the answers' problems land in line order.
    let mut addresses: BTreeMap<AddressKey, Vec<u64>> = BTreeMap::new();
    let mut users: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut known_skipped = 0u64;
    for row in &v.rows {
        let recipient = v.recipient(row).to_owned();
        // A destination a payout succeeded to is valid: no request for it.
        if let Some(chain) = row.chain
            && registry
                .destination(&Destination::new(cat.chain_name(chain), &recipient, v.memo(row)).key())
                .is_some()
        {
            known_skipped += 1;
            continue;
        }
        match row.chain {
            Some(chain @ ChainRef::Chain(_)) => addresses
                .entry(AddressKey {
                    chain: cat.chain_name(chain).to_owned(),
                    address: recipient,
                    memo: v.memo(row).to_owned(),
                })
                .or_default()
                .push(u64::from(row.line)),
            // Only IDs can be looked up; getCwalletUserId takes no e-mail.
            Some(ChainRef::Cwallet) if matches!(parse_cwallet_recipient(&recipient), Ok(CwalletRecipient::Id(_))) => {
                users.entry(recipient).or_default().push(u64::from(row.line))
            }
            _ => {}
        }
    }

    let mut checks = AddressChecks {
        addresses,
        singles: BTreeMap::new(),
        route_missing: false,
        summary: RemoteCheckSummary {
            performed: true,
            known_recipients_skipped: known_skipped,
            ..Default::default()
        },
    };
    let mut batches = match settings.address_check {
        AddressCheck::Batch => checks.batches(),
        AddressCheck::Single => {
            checks.ask_singly(checks.addresses.keys().cloned().collect());
            Vec::new()
        }
    }
    .into_iter();

    // The first batch alone: whether the account has the route decides how the rest are asked.
    if let Some(first) = batches.next() {
        let answer = ask(client, &first).await?;
        answers.requests += 1;
        checks.take(first, answer, answers);
    }
    let mut round: Vec<Question> = Vec::new();
    for batch in batches {
        match batch {
            Question::Batch { keys, .. } if checks.route_missing => checks.ask_singly(keys),
            batch => round.push(batch),
        }
    }
    round.extend(checks.take_singles());
    round.extend(users.into_iter().map(|(user, lines)| Question::User(user, lines)));
    // Then everything at once; an address a batch left unconfirmed goes in one more round.
    while !round.is_empty() {
        let mut results = futures_util::stream::iter(round)
            .map(|question| async move {
                let answer = ask(client, &question).await;
                (question, answer)
            })
            .buffer_unordered(concurrency(client));
        while let Some((question, answer)) = results.next().await {
            let answer = answer?;
            answers.requests += 1;
            checks.take(question, answer, answers);
        }
        round = checks.take_singles();
    }

    let mut summary = checks.summary;
    if !checks.addresses.is_empty() {
        summary.address_check = Some(if checks.route_missing {
            AddressCheck::Single
        } else {
            settings.address_check
        });
    }
    if checks.route_missing {
        summary.note = Some(format!(
            "this account has no {} (the batch address check); each address was checked with its own {} request",
            method::CHECK_WITHDRAW_ADDRESS,
            method::CHECK_WITHDRAWAL_ADDRESS_VALIDITY
        ));
    }
    answers.remote_checks = summary;
    Ok(())
}

/// A destination whose address CCPayment is asked about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AddressKey {
    chain: String,
    address: String,
    /// Sent with `checkWithdrawAddress`; `checkWithdrawalAddressValidity` takes none.
    memo: String,
}

/// One remote question of the preflight, with the lines (or destinations) its answer is for.
enum Question {
    /// One `checkWithdrawAddress` of one chain: the destinations in seq order (seq = index + 1).
    Batch { chain: String, keys: Vec<AddressKey> },
    /// One `checkWithdrawalAddressValidity`, for the destinations with this chain and address
    /// that are still to be confirmed.
    Address {
        chain: String,
        address: String,
        keys: Vec<AddressKey>,
    },
    /// One `getCwalletUserId`.
    User(String, Vec<u64>),
}

/// What CCPayment answered to a [`Question`].
enum Answer {
    /// The results of a batch check; `None`: the account does not have the route.
    Batch(Option<Vec<WithdrawAddressResult>>),
    /// Whether the address is valid.
    Address(bool),
    /// Why the Cwallet ID cannot be paid, if it cannot.
    User(Option<String>),
}

/// Asks one question, retrying what a read may retry ([`read`]).
async fn ask(client: &Client, question: &Question) -> Result<Answer, CallError> {
    match question {
        Question::Batch { chain, keys } => {
            let req = CheckWithdrawAddressRequest {
                chain: chain.clone(),
                address_info_list: keys
                    .iter()
                    .zip(1u32..)
                    .map(|(key, seq)| WithdrawAddress {
                        address: key.address.clone(),
                        memo: key.memo.clone(),
                        seq,
                    })
                    .collect(),
            };
            match read(|| client.check_withdraw_address_if_routed(&req)).await {
                Ok(results) => Ok(Answer::Batch(results)),
                // S2's reading of 11013: this method is "not supported by API v2" for the account.
                Err(CallError::Api(e)) if e.code == NO_SUPPORT_VERSION => Ok(Answer::Batch(None)),
                Err(e) => Err(e),
            }
        }
        Question::Address { chain, address, .. } => read(|| client.check_withdrawal_address_validity(chain, address))
            .await
            .map(Answer::Address),
        Question::User(user, _) => match read(|| client.get_cwallet_user_id(user)).await {
            Ok(_) => Ok(Answer::User(None)),
            Err(CallError::Api(e)) if matches!(e.code, 11015 | 11003) => {
                Ok(Answer::User(Some(format!("no Cwallet user has the ID {user:?}"))))
            }
            Err(e) => Err(e),
        },
    }
}

/// 11013 NoSupportVersion.
const NO_SUPPORT_VERSION: i64 = 11013;

/// The address checks of one preflight: the destinations, what is still to be asked one at a
/// time, and what was learnt.
struct AddressChecks {
    /// Every destination asked about, with its lines.
    addresses: BTreeMap<AddressKey, Vec<u64>>,
    /// (chain, address) still to be asked with `checkWithdrawalAddressValidity`, with the
    /// destinations its answer settles.
    singles: BTreeMap<(String, String), Vec<AddressKey>>,
    /// Whether the account turned out not to have `checkWithdrawAddress`.
    route_missing: bool,
    summary: RemoteCheckSummary,
}

impl AddressChecks {
    /// The destinations of each chain in requests of at most [`MAX_TASKS_PER_REQUEST`].
    fn batches(&self) -> Vec<Question> {
        let mut by_chain: BTreeMap<&str, Vec<AddressKey>> = BTreeMap::new();
        for key in self.addresses.keys() {
            by_chain.entry(&key.chain).or_default().push(key.clone());
        }
        by_chain
            .into_iter()
            .flat_map(|(chain, keys)| {
                keys.chunks(MAX_TASKS_PER_REQUEST)
                    .map(|chunk| Question::Batch {
                        chain: chain.to_owned(),
                        keys: chunk.to_vec(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Queues `keys` to be asked one address at a time.
    fn ask_singly(&mut self, keys: Vec<AddressKey>) {
        for key in keys {
            self.singles
                .entry((key.chain.clone(), key.address.clone()))
                .or_default()
                .push(key);
        }
    }

    /// The single-address questions queued so far, leaving none.
    fn take_singles(&mut self) -> Vec<Question> {
        std::mem::take(&mut self.singles)
            .into_iter()
            .map(|((chain, address), keys)| Question::Address { chain, address, keys })
            .collect()
    }

    /// Flags every line of `key` with `problem`.
    fn flag(&self, key: &AddressKey, problem: &str, answers: &mut PreflightAnswers) {
        for &line in self.addresses.get(key).map_or(&[][..], Vec::as_slice) {
            answers
                .remote_problems
                .entry(line)
                .or_default()
                .push(problem.to_owned());
        }
    }

    /// Takes the answer to `question` in: flags what CCPayment refused, counts what it checked,
    /// and queues for a single check what a batch answer did not confirm.
    fn take(&mut self, question: Question, answer: Answer, answers: &mut PreflightAnswers) {
        match (question, answer) {
            (Question::Batch { keys, .. }, Answer::Batch(None)) => {
                if !self.route_missing {
                    self.route_missing = true;
                    tracing::info!(
                        "this account has no {}: the preflight checks addresses one request each with {}",
                        method::CHECK_WITHDRAW_ADDRESS,
                        method::CHECK_WITHDRAWAL_ADDRESS_VALIDITY
                    );
                }
                self.ask_singly(keys);
            }
            (Question::Batch { keys, .. }, Answer::Batch(Some(results))) => {
                let mut codes_by_seq: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
                for result in results {
                    let codes = codes_by_seq.entry(result.seq).or_default();
                    for code in result.codes {
                        if !codes.contains(&code) {
                            codes.push(code);
                        }
                    }
                }
                let mut unconfirmed = Vec::new();
                for (key, seq) in keys.into_iter().zip(1u32..) {
                    match codes_by_seq.get(&seq) {
                        // Left out of the answer: not confirmed, so asked on its own.
                        None => unconfirmed.push(key),
                        Some(codes) => {
                            self.summary.addresses_checked += 1;
                            if !codes.is_empty() {
                                self.flag(&key, &batch_refusal(&key, codes), answers);
                            }
                        }
                    }
                }
                if !unconfirmed.is_empty() {
                    tracing::debug!(
                        addresses = unconfirmed.len(),
                        "checkWithdrawAddress left addresses out of its answer; asking each on its own"
                    );
                    self.ask_singly(unconfirmed);
                }
            }
            (Question::Address { chain, address, keys }, Answer::Address(valid)) => {
                self.summary.addresses_checked += 1;
                if !valid {
                    let problem = format!("CCPayment says {address:?} is not a valid {chain} address");
                    for key in &keys {
                        self.flag(key, &problem, answers);
                    }
                }
            }
            (Question::User(_, lines), Answer::User(problem)) => {
                self.summary.cwallet_users_checked += 1;
                if let Some(problem) = problem {
                    for line in lines {
                        answers.remote_problems.entry(line).or_default().push(problem.clone());
                    }
                }
            }
            // `ask` answers each question with its own kind.
            _ => {}
        }
    }
}

/// The refusal of a destination `checkWithdrawAddress` answered `codes` for: what CCPayment
/// named, by number, name and meaning.
fn batch_refusal(key: &AddressKey, codes: &[i64]) -> String {
    let named: Vec<String> = codes
        .iter()
        .map(|&code| match codes::lookup(code) {
            Some(info) => format!("{code} {}: {}", info.name, info.meaning),
            None => format!("{code}: an undocumented code"),
        })
        .collect();
    let AddressKey { chain, address, memo } = key;
    if memo.is_empty() {
        format!(
            "CCPayment says {address:?} is not a valid {chain} address ({})",
            named.join("; ")
        )
    } else {
        format!(
            "CCPayment says {address:?} with memo {memo:?} is not a valid {chain} destination ({})",
            named.join("; ")
        )
    }
}

/// The summary of recipient checks not made for a batch of `n_rows` accepted rows, saying why,
/// when the configuration says they are not made.
pub(super) fn remote_checks_skipped(settings: &Settings, n_rows: u64) -> Option<RemoteCheckSummary> {
    let reason = match settings.remote_checks {
        RemoteChecks::Never => "preflight.remote_checks is \"never\"".to_owned(),
        RemoteChecks::UpTo(max) if n_rows > max => format!(
            "the batch has {n_rows} rows, more than preflight.remote_checks_max_rows ({max}); addresses were checked locally only"
        ),
        _ => return None,
    };
    Some(RemoteCheckSummary {
        performed: false,
        skipped_because: Some(reason),
        ..Default::default()
    })
}

/// Checks `FILE.sig` when the policy requires a signature, or names signers and a signature
/// file exists: the signer and the SHA-256 of the bytes it signed. A signature that is missing,
/// too large, not a signature, by a key not allowed, in another namespace, or over other bytes
/// refuses the file, saying which.
fn check_signature(
    policy: &crate::rules::policy::Policy,
    path: &Path,
) -> Result<Option<(BatchSigner, String)>, CheckError> {
    let Some(signers) = &policy.allowed_signers else {
        return Ok(None);
    };
    let display = path.display();
    let mut sig_path = path.as_os_str().to_owned();
    sig_path.push(".sig");
    let sig_path = std::path::PathBuf::from(sig_path);
    let refuse = |why: String| CheckError::Signature(format!("{display}: {why}"));
    let size = match std::fs::metadata(&sig_path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !policy.require_signature {
                return Ok(None);
            }
            return Err(refuse(format!(
                "unsigned: policy.require_signature needs a detached signature {} made by `ssh-keygen -Y sign -n {BATCH_NAMESPACE} -f KEY {display}` (move the .sig into the inbox before the batch)",
                sig_path.display()
            )));
        }
        Err(e) => return Err(refuse(format!("cannot read the signature {}: {e}", sig_path.display()))),
    };
    if size > MAX_SIGNATURE_BYTES as u64 {
        return Err(refuse(format!(
            "the signature file {} is {size} bytes, larger than {} KiB: not a signature",
            sig_path.display(),
            MAX_SIGNATURE_BYTES / 1024
        )));
    }
    let sig = std::fs::read(&sig_path)
        .map_err(|e| refuse(format!("cannot read the signature {}: {e}", sig_path.display())))?;
    let bytes = std::fs::read(path).map_err(|source| CheckError::Io {
        path: display.to_string(),
        source,
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let signer = signature::verify(&signers.signers, BATCH_NAMESPACE, &bytes, &sig, now)
        .map_err(|e| refuse(format!("signature {} refused: {e}", sig_path.display())))?;
    Ok(Some((
        BatchSigner {
            principal: signer.principal,
            key_type: signer.key_type,
            fingerprint: signer.fingerprint,
        },
        hex::encode(Sha256::digest(&bytes)),
    )))
}

/// Reads every deny list afresh. A list that cannot be read stops the preflight: a missing
/// list is never "no list".
fn read_deny_lists(paths: &[String]) -> Result<DenyLists, CheckError> {
    let mut lists = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read(path)
            .map_err(|e| CheckError::DenyList(format!("policy.deny_lists: cannot read {path}: {e}")))?;
        lists.push(DenyList::parse(path, &String::from_utf8_lossy(&text)));
    }
    Ok(DenyLists::new(lists))
}

/// Read attempts for one preflight question before giving up.
const READ_ATTEMPTS: u32 = 8;

/// Runs a read call, retrying what a retry can fix: 11004 (rate limited), 11002, 11018 and
/// v1's 224066 (try again), and transport failures. Reads change nothing at CCPayment, so
/// repeating them is always safe; the wait grows from 250 ms to 8 s.
pub(super) async fn read<T, F, Fut>(call: F) -> Result<T, CallError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) if attempt < READ_ATTEMPTS && retryable_read(&e) => {
                let wait = Duration::from_millis(250u64 << (attempt - 1).min(5));
                tracing::debug!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "preflight read retried");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

fn retryable_read(e: &CallError) -> bool {
    match e {
        CallError::NotSent { .. } | CallError::Ambiguous { .. } => true,
        CallError::Api(api) => codes::read_retryable(api.code),
    }
}

/// Hashes and counts everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(chain: &str, address: &str, memo: &str) -> AddressKey {
        AddressKey {
            chain: chain.to_owned(),
            address: address.to_owned(),
            memo: memo.to_owned(),
        }
    }

    /// Three destinations: lines 2, 3 and 4 (and 5, the same as line 2).
    fn checks() -> AddressChecks {
        let addresses = BTreeMap::from([
            (key("BSC", "0xa", ""), vec![2, 5]),
            (key("BSC", "0xb", ""), vec![3]),
            (key("XRP", "rC", "77"), vec![4]),
        ]);
        AddressChecks {
            addresses,
            singles: BTreeMap::new(),
            route_missing: false,
            summary: RemoteCheckSummary::default(),
        }
    }

    fn result(seq: u32, codes: &[i64]) -> WithdrawAddressResult {
        WithdrawAddressResult {
            seq,
            codes: codes.to_vec(),
        }
    }

    #[test]
    fn batches_hold_one_chain_and_at_most_500_destinations() {
        let mut checks = checks();
        for i in 0..1001 {
            checks
                .addresses
                .insert(key("TRX", &format!("T{i:04}"), ""), vec![10 + i]);
        }
        let sizes: Vec<(String, usize)> = checks
            .batches()
            .into_iter()
            .map(|q| match q {
                Question::Batch { chain, keys } => {
                    assert!(keys.iter().all(|k| k.chain == chain));
                    (chain, keys.len())
                }
                _ => panic!("not a batch"),
            })
            .collect();
        let expected = [("BSC", 2), ("TRX", 500), ("TRX", 500), ("TRX", 1), ("XRP", 1)];
        assert_eq!(sizes, expected.map(|(c, n)| (c.to_owned(), n)).to_vec());
    }

    #[test]
    fn codes_flag_every_line_of_their_destination_naming_the_codes() {
        let mut checks = checks();
        let mut answers = PreflightAnswers::default();
        let batch = Question::Batch {
            chain: "BSC".into(),
            keys: vec![key("BSC", "0xa", ""), key("BSC", "0xb", "")],
        };
        // The same seq twice: the codes of both count, once each.
        let results = vec![result(1, &[14024]), result(2, &[]), result(1, &[14024, 19999])];
        checks.take(batch, Answer::Batch(Some(results)), &mut answers);
        let expected = "CCPayment says \"0xa\" is not a valid BSC address (14024 AddressFormatErr: the address format is wrong; 19999: an undocumented code)";
        assert_eq!(answers.remote_problems.get(&2), Some(&vec![expected.to_owned()]));
        assert_eq!(answers.remote_problems.get(&5), Some(&vec![expected.to_owned()]));
        assert_eq!(answers.remote_problems.get(&3), None);
        assert_eq!(checks.summary.addresses_checked, 2);
        assert!(checks.take_singles().is_empty());

        let batch = Question::Batch {
            chain: "XRP".into(),
            keys: vec![key("XRP", "rC", "77")],
        };
        checks.take(batch, Answer::Batch(Some(vec![result(1, &[14025])])), &mut answers);
        assert_eq!(
            answers.remote_problems.get(&4).map(Vec::as_slice),
            Some(&["CCPayment says \"rC\" with memo \"77\" is not a valid XRP destination (14025 AddressMemoFormatErr: the memo format is wrong)".to_owned()][..])
        );
    }

    #[test]
    fn a_destination_left_out_of_the_answer_is_asked_on_its_own() {
        let mut checks = checks();
        let mut answers = PreflightAnswers::default();
        let batch = Question::Batch {
            chain: "BSC".into(),
            keys: vec![key("BSC", "0xa", ""), key("BSC", "0xb", "")],
        };
        // seq 2 is missing, seq 9 was never asked.
        checks.take(
            batch,
            Answer::Batch(Some(vec![result(1, &[]), result(9, &[14024])])),
            &mut answers,
        );
        assert!(answers.remote_problems.is_empty());
        assert_eq!(checks.summary.addresses_checked, 1);
        assert!(!checks.route_missing);
        let singles = checks.take_singles();
        assert_eq!(singles.len(), 1);
        let Some(Question::Address { chain, address, keys }) = singles.into_iter().next() else {
            panic!("a single question");
        };
        assert_eq!((chain.as_str(), address.as_str()), ("BSC", "0xb"));
        // Its single answer decides.
        checks.take(
            Question::Address { chain, address, keys },
            Answer::Address(false),
            &mut answers,
        );
        assert_eq!(
            answers.remote_problems.get(&3),
            Some(&vec!["CCPayment says \"0xb\" is not a valid BSC address".to_owned()])
        );
        assert_eq!(checks.summary.addresses_checked, 2);
    }

    #[test]
    fn an_account_without_the_route_has_the_batch_asked_one_address_at_a_time() {
        let mut checks = checks();
        let mut answers = PreflightAnswers::default();
        let batch = Question::Batch {
            chain: "BSC".into(),
            keys: vec![key("BSC", "0xa", ""), key("BSC", "0xb", "")],
        };
        checks.take(batch, Answer::Batch(None), &mut answers);
        assert!(checks.route_missing);
        assert_eq!(checks.summary.addresses_checked, 0);
        let singles: Vec<(String, String)> = checks
            .take_singles()
            .into_iter()
            .map(|q| match q {
                Question::Address { chain, address, .. } => (chain, address),
                _ => panic!("not a single question"),
            })
            .collect();
        assert_eq!(
            singles,
            vec![
                ("BSC".to_owned(), "0xa".to_owned()),
                ("BSC".to_owned(), "0xb".to_owned())
            ]
        );
    }
}
