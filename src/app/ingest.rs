//! Taking a batch file in: recognise known contents by SHA-256, otherwise validate, preflight
//! (through the one pacing) and plan it, and store the batch with its orders — every intent on
//! disk before anything is sent.
//!
//! What can go wrong is an [`IngestError`] with one variant per decision the caller makes: try
//! the file again later (CCPayment did not answer, or refused for a reason a person must fix),
//! reject the file (it changed while it was read, or cannot be read), or stop (the store
//! failed: nothing can be trusted to be recorded).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::api::{CallError, Client, ErrorClass};
use crate::batch::diff::BatchDiff;
use crate::batch::plan::Plan;
use crate::batch::{preflight, records, render};
use crate::config::Config;
use crate::model::notice::{self, Awaiting, CoinTotal, DiffSummary, Notice, Shortfall};
use crate::model::record::{Approval, BatchRecord, BatchState, RetriedBatch};
use crate::model::retry::RetryLink;
use crate::store::{ControlEvent, Key, Store, StoreError};

/// Explorer URL templates per chain (from CCPayment's chain list), saved when a batch is taken
/// in so reports can link transactions without asking the API.
pub const EXPLORERS: Key<BTreeMap<String, String>> = Key::new("explorers");

/// What taking a batch file into the store came to.
#[derive(Debug)]
pub enum Ingested {
    /// The same contents were stored before: the batch resumes, nothing is paid twice.
    Known(BatchRecord),
    /// A new batch, stored with its plan; `plan` is the rendered check report, `diff` the diff
    /// to the previous batch of its series (`render::diff` gives its summary), when there is one.
    Created {
        batch: BatchRecord,
        plan: String,
        diff: Option<Box<BatchDiff>>,
    },
    /// Not a batch at all (unreadable, not CSV/JSON, broken structure), or its signature is
    /// missing or wrong: nothing stored, no request made for it.
    NotABatch { message: String },
    /// Valid enough to plan, but blocked (file problems or policy blockers): nothing stored.
    Blocked { plan: String },
    /// No row is payable; the batch record (never stored) still yields reports.
    NothingPayable { batch: BatchRecord, plan: String },
}

/// Why a file could not be taken in, by what the caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// CCPayment did not answer the preflight usefully (no reply, rate limited, a 5xx, an
    /// unusable catalogue): nothing was stored; try the file again later.
    #[error("preflight failed: {0}")]
    PreflightUnavailable(String),
    /// CCPayment refused the preflight for a reason a person must fix (credentials, IP
    /// whitelist, clock): nothing was stored; try again once it is fixed.
    #[error("preflight refused: {message}{}", .hint.map(|h| format!("\n  check: {h}")).unwrap_or_default())]
    PreflightRefused {
        message: String,
        hint: Option<&'static str>,
    },
    /// The file changed while it was read (a producer writing in place): reject it.
    #[error("{0} changed while it was being read; write batch files elsewhere and rename them into place")]
    FileChanged(String),
    /// The file cannot be read: reject it.
    #[error("cannot read {path}: {source}")]
    Unreadable { path: String, source: std::io::Error },
    /// A control the policy names cannot be read now (a deny list removed or unreadable since
    /// start): nothing was stored; try again once it is fixed. Never "no list".
    #[error("{0}")]
    Controls(String),
    /// The state store failed: stop, nothing can be trusted to be recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// Whether trying the same file again later may succeed (the file itself is fine).
    pub fn retry_later(&self) -> bool {
        matches!(
            self,
            IngestError::PreflightUnavailable(_) | IngestError::PreflightRefused { .. } | IngestError::Controls(_)
        )
    }
}

/// The SHA-256 of a file, hex: a batch's identity.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Takes `file` into the store: recognises known contents by SHA-256, otherwise validates,
/// preflights and plans it with `config` and stores the batch with its orders. `client` must be
/// the process's paced client: the preflight's questions share the pacing with everything else.
pub async fn ingest(
    client: &Client,
    config: &Config,
    store: &Arc<Store>,
    file: &Path,
    now_ms: i64,
) -> Result<Ingested, IngestError> {
    let unreadable = |source| IngestError::Unreadable {
        path: file.display().to_string(),
        source,
    };
    let batch_id = file_sha256(file).map_err(unreadable)?;
    if let Some(batch) = store.batch(&batch_id)? {
        return Ok(Ingested::Known(batch));
    }
    let prepared = match preflight::prepare(client, &config.preflight_settings(), file, store.known_orders()).await {
        Ok(p) => p,
        Err(preflight::CheckError::NotABatch(message)) => return Ok(Ingested::NotABatch { message }),
        Err(preflight::CheckError::Io { source, .. }) => return Err(unreadable(source)),
        Err(preflight::CheckError::Api(e)) => return Err(api_error(e)),
        Err(preflight::CheckError::Catalogue(e)) => return Err(IngestError::PreflightUnavailable(e.to_string())),
        Err(preflight::CheckError::Signature(message)) => {
            tracing::warn!(file = %file.display(), "batch refused: {message}");
            return Ok(Ingested::NotABatch { message });
        }
        Err(preflight::CheckError::DenyList(message)) => return Err(IngestError::Controls(message)),
    };
    let plan_text = render::check_report(&prepared.report);
    if !prepared.report.plan.blockers.is_empty() || prepared.validated.has_file_problem() {
        // Nothing is stored, but what the controls found is still in the audit trail.
        store.audit(&control_events(&prepared, batch_id.as_str(), now_ms))?;
        store.record_notices(&balance_notice(&prepared.report.plan, file, now_ms))?;
        return Ok(Ingested::Blocked { plan: plan_text });
    }
    let explorers: BTreeMap<String, String> = prepared
        .chains
        .iter()
        .map(|c| (c.chain.clone(), c.base_url.clone()))
        .collect();
    let mut known = store.get(&EXPLORERS)?.unwrap_or_default();
    known.extend(explorers);
    store.put(&EXPLORERS, &known)?;
    let generation = config.api.generation;
    let mut batch = records::batch_record(&prepared, file, generation, now_ms);
    if batch.batch_id != batch_id {
        return Err(IngestError::FileChanged(file.display().to_string()));
    }
    if batch.orders == 0 {
        store.audit(&control_events(&prepared, batch_id.as_str(), now_ms))?;
        return Ok(Ingested::NothingPayable { batch, plan: plan_text });
    }
    // The orders are built as the store writes them, chunk by chunk: a big batch is never
    // held as records. The controls' decisions go into the audit trail with the batch.
    let events = control_events(&prepared, batch_id.as_str(), now_ms);
    let bundles = records::bundles(&prepared, generation, now_ms);
    let diff = prepared
        .report
        .diff
        .as_ref()
        .map(|d| DiffSummary {
            lines: render::diff(d).lines().map(|l| l.trim().to_owned()).collect(),
            value: serde_json::to_value(d).unwrap_or_default(),
        })
        .unwrap_or_default();
    let notices = approval_notices(&batch, &prepared.report.plan, &diff, now_ms);
    // Rows that retry orders of earlier batches are linked to them in the batch's own commit.
    let retries = retry_links(store, &mut batch, records::retries(&prepared, generation))?;
    store.create_batch_retrying(
        &batch,
        records::orders(&prepared, generation, now_ms),
        &bundles,
        &events,
        &retries,
        &notices,
    )?;
    if !retries.is_empty() {
        rewrite_retried_reports(config, store, &batch, now_ms);
    }
    Ok(Ingested::Created {
        batch,
        plan: plan_text,
        diff: prepared.report.diff.map(Box::new),
    })
}

/// "Waits for approval" for the batch's plan and for its recipient review part, whichever needs
/// one: recorded with the batch, so the people who approve hear of it as it is stored. (The
/// dispatcher adds the link to the batch's page in the web console as it sends.)
fn approval_notices(batch: &BatchRecord, plan: &Plan, diff: &DiffSummary, now_ms: i64) -> Vec<Notice> {
    let totals: Vec<CoinTotal> = plan
        .coins
        .iter()
        .filter(|c| c.rows > 0)
        .map(|c| CoinTotal {
            coin: c.coin.clone(),
            rows: c.rows,
            amount: c.amount.clone(),
        })
        .collect();
    // The plan waits with its totals, the recipient review part with its rows.
    let plan = (
        "plan",
        batch.plan_digest.as_str(),
        batch.orders,
        &batch.approval,
        totals.as_slice(),
    );
    let review = batch.recipients.as_ref().map(|part| {
        (
            "recipient_review",
            part.digest.as_str(),
            part.orders,
            &part.approval,
            &[][..],
        )
    });
    std::iter::once(plan)
        .chain(review)
        .filter_map(|(part, digest, orders, approval, totals)| {
            let Approval::Required { reasons, needed, .. } = approval else {
                return None;
            };
            let awaiting = Awaiting {
                part,
                digest,
                orders: u64::from(orders),
                needed: *needed,
                reasons,
            };
            Some(notice::approval_required(
                &batch.batch_id,
                &batch.name,
                &awaiting,
                totals,
                diff,
                now_ms,
            ))
        })
        .collect()
}

/// "Balance too low" for a file the plan blocked because a balance is short of what it needs.
fn balance_notice(plan: &Plan, file: &Path, now_ms: i64) -> Vec<Notice> {
    let short: Vec<Shortfall> = plan
        .coins
        .iter()
        .filter(|c| !c.sufficient)
        .map(|c| Shortfall {
            coin: c.coin.clone(),
            balance: Some(c.balance_before.clone()),
            needed: Some(c.needed_with_margin.clone()),
        })
        .collect();
    if short.is_empty() {
        return Vec::new();
    }
    let name = file
        .file_name()
        .map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
    vec![notice::balance_low(
        None,
        Some(&name),
        &short,
        "the plan found the balance short; the file was not taken in",
        now_ms,
    )]
}

/// The links of a new batch's retry rows (order_id, original_order_id) to the orders they
/// retry, for those the store has (an id from elsewhere is only carried into the reports); the
/// batches retried, with how many of their orders, go into the batch's record.
fn retry_links(
    store: &Store,
    batch: &mut BatchRecord,
    rows: Vec<(String, String)>,
) -> Result<Vec<RetryLink>, StoreError> {
    let mut links = Vec::new();
    let mut batches: Vec<RetriedBatch> = Vec::new();
    for (order_id, original) in rows {
        let Some(order) = store.order(&original)? else {
            continue;
        };
        match batches.iter_mut().find(|b| b.batch_id == order.batch_id) {
            Some(b) => b.orders += 1,
            None => batches.push(RetriedBatch {
                batch_id: order.batch_id.clone(),
                orders: 1,
            }),
        }
        links.push(RetryLink {
            original_batch_id: order.batch_id,
            original_order_id: original.into(),
            batch_id: batch.batch_id.clone(),
            order_id: order_id.into(),
        });
    }
    if let Some(of) = batch.retry_of.as_mut() {
        of.batches = batches;
    }
    Ok(links)
}

/// Writes again the reports of the finished batches `batch` retries orders of, so they name
/// their retries at once (an open one names them when it finishes). The batch is stored
/// whatever happens here: a report that cannot be written is logged, and `ccpayout report`
/// writes it again.
fn rewrite_retried_reports(config: &Config, store: &Store, batch: &BatchRecord, now_ms: i64) {
    let dir = super::reports_dir(config, store.state_dir());
    for retried in batch.retry_of.iter().flat_map(|of| &of.batches) {
        let written = match store.batch(&retried.batch_id) {
            Ok(Some(original)) if original.state == BatchState::Done => {
                super::write_reports(&dir, store, &original, now_ms).map(|_| ())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = written {
            tracing::warn!(
                batch = %retried.batch_id,
                retried_by = %batch.name,
                "cannot write the reports of a retried batch again: {e}"
            );
        }
    }
}

/// The audit events of a batch taken in: who signed it, each deny-list hit, the rows held for
/// the recipient review.
fn control_events(prepared: &preflight::Prepared, batch_id: &str, now_ms: i64) -> Vec<ControlEvent> {
    let source = &prepared.report.file;
    let event = |name: &'static str, by: Option<String>, detail: String| ControlEvent {
        batch_id: batch_id.to_owned(),
        event: name,
        by,
        detail,
        at_ms: now_ms,
    };
    let plan = &prepared.report.plan;
    let mut events = Vec::new();
    if let Some(signer) = &prepared.report.signer {
        events.push(event(
            "signature_verified",
            Some(signer.principal.clone()),
            format!(
                "{source} signed by {} ({} {})",
                signer.principal, signer.key_type, signer.fingerprint
            ),
        ));
    }
    for hit in &plan.deny_list_hits {
        events.push(event(
            "deny_list_hit",
            None,
            format!(
                "line {} (order_id {}): {} is on {} line {}; refused",
                hit.line, hit.order_id, hit.recipient, hit.list, hit.list_line
            ),
        ));
    }
    if let Some(review) = &plan.review {
        events.push(event(
            "recipient_review_required",
            None,
            format!(
                "{} row(s) held: {} new destination(s), {} changed payee destination(s); review digest {}",
                review.rows, review.new, review.changed, review.digest
            ),
        ));
    }
    events
}

/// A preflight call that failed, by what to do about it.
fn api_error(e: CallError) -> IngestError {
    match &e {
        CallError::Api(api) if matches!(api.class, ErrorClass::OperatorAction | ErrorClass::Clock) => {
            IngestError::PreflightRefused {
                message: api.to_string(),
                hint: api.hint(),
            }
        }
        CallError::Api(api) => {
            let hint = api.hint().map(|h| format!("\n  check: {h}")).unwrap_or_default();
            IngestError::PreflightUnavailable(format!("{api}{hint}"))
        }
        _ => IngestError::PreflightUnavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiError;

    /// Each way a preflight call fails maps to the decision the daemon makes about the file.
    #[test]
    fn preflight_failures_are_retried_and_file_problems_are_not() {
        let refused = api_error(CallError::Api(ApiError::new("getCoinList", 11005, "VerifySignFailed")));
        assert!(
            matches!(refused, IngestError::PreflightRefused { hint: Some(_), .. }),
            "{refused:?}"
        );
        assert!(refused.retry_later());
        let clock = api_error(CallError::Api(ApiError::new("getCoinList", 11006, "ReqExpired")));
        assert!(matches!(clock, IngestError::PreflightRefused { .. }), "{clock:?}");
        for e in [
            CallError::Api(ApiError::new("getCoinList", 11004, "RateLimit")),
            CallError::Api(ApiError::new("getCoinList", 11002, "Internal")),
            CallError::Ambiguous {
                endpoint: "getCoinList".into(),
                detail: "timed out".into(),
            },
            CallError::NotSent {
                endpoint: "getCoinList".into(),
                detail: "connection refused".into(),
            },
        ] {
            let mapped = api_error(e);
            assert!(matches!(mapped, IngestError::PreflightUnavailable(_)), "{mapped:?}");
            assert!(mapped.retry_later());
        }
        assert!(!IngestError::FileChanged("b.csv".into()).retry_later());
        assert!(
            !IngestError::Unreadable {
                path: "b.csv".into(),
                source: std::io::Error::other("gone"),
            }
            .retry_later()
        );
        assert!(!IngestError::Store(StoreError::Db("disk full".into())).retry_later());
    }
}
