//! The preflight: everything `ccpayout check` asks CCPayment before it can say what a batch
//! would do. This is an edge module; the decisions are made by the pure `validate` and `plan`.
//!
//! In order: the coin and chain lists (one call each) become the [`Catalogue`]; the file is
//! read once, hashed and validated against it; then, for the accepted rows only, one fee quote
//! per distinct coin and chain, one balance list, and — when the configuration allows it for a
//! batch of this size — one validity check per distinct address and one lookup per distinct
//! Cwallet ID. Every answer is asked once per run. Each question is one request through the
//! client, which passes the process's one pacing (`crate::api::pacing`): a preflight shares the
//! rate, the pause gate and the daily budget with everything else the process sends, and has
//! no pace of its own.
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

use super::parse::{Format, Limits};
use super::plan::{self, FeeQuote, Plan, PlanSettings, PreflightAnswers, RemoteCheckSummary};
use super::validate::{self, Rules, Validated};
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
    let plan = plan::build(&validated, &catalogue, &answers, &settings);
    let report = CheckReport {
        file: display,
        format: format.name().to_owned(),
        size_bytes,
        sha256,
        preflight_requests: requests,
        signer: signed.map(|(signer, _)| signer),
        plan,
    };
    Ok(Prepared {
        report,
        validated,
        catalogue,
        chains,
    })
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
    let mut addresses: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
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
                .entry((cat.chain_name(chain).to_owned(), recipient))
                .or_default()
                .push(u64::from(row.line)),
            // Only IDs can be looked up; getCwalletUserId takes no e-mail.
            Some(ChainRef::Cwallet) if matches!(parse_cwallet_recipient(&recipient), Ok(CwalletRecipient::Id(_))) => {
                users.entry(recipient).or_default().push(u64::from(row.line))
            }
            _ => {}
        }
    }

    enum Question {
        Address(String, String),
        User(String),
    }
    let questions: Vec<(Question, Vec<u64>)> = addresses
        .into_iter()
        .map(|((chain, address), lines)| (Question::Address(chain, address), lines))
        .chain(users.into_iter().map(|(user, lines)| (Question::User(user), lines)))
        .collect();
    let mut summary = RemoteCheckSummary {
        performed: true,
        known_recipients_skipped: known_skipped,
        ..Default::default()
    };
    let mut results = futures_util::stream::iter(questions)
        .map(|(question, lines)| async move {
            let verdict: Result<Option<String>, CallError> = match &question {
                Question::Address(chain, address) => read(|| client.check_withdrawal_address_validity(chain, address))
                    .await
                    .map(|ok| (!ok).then(|| format!("CCPayment says {address:?} is not a valid {chain} address"))),
                Question::User(user) => match read(|| client.get_cwallet_user_id(user)).await {
                    Ok(_) => Ok(None),
                    Err(CallError::Api(e)) if matches!(e.code, 11015 | 11003) => {
                        Ok(Some(format!("no Cwallet user has the ID {user:?}")))
                    }
                    Err(e) => Err(e),
                },
            };
            (matches!(question, Question::Address(..)), lines, verdict)
        })
        .buffer_unordered(concurrency(client));
    while let Some((is_address, lines, verdict)) = results.next().await {
        answers.requests += 1;
        if is_address {
            summary.addresses_checked += 1;
        } else {
            summary.cwallet_users_checked += 1;
        }
        if let Some(problem) = verdict? {
            for line in lines {
                answers.remote_problems.entry(line).or_default().push(problem.clone());
            }
        }
    }
    answers.remote_checks = summary;
    Ok(())
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
