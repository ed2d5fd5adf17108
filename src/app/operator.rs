//! The one operator: `status`, `approve`, `cancel`, `pause`, `resume`, `report` and `retry`
//! (and the findings `doctor` records), answered by one type whichever way the command arrived.
//!
//! The logic is written once, in [`Operator`]. What differs between working on the store directly
//! (no daemon runs; the CLI opened the store itself) and working inside a running daemon (the
//! command came through its control socket) is a [`Runtime`]: a daemon holds the live pacing, can
//! stop one batch's loop before changing its orders and start it again after, pays an approved
//! batch at once, and knows things worth showing above `status`. [`Offline`] is the store-only
//! runtime. Both back ends answer with the same [`Reply`]: the same words for the same state, plus
//! the runtime's own [`Reply::context`].

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::doctor::{ACCOUNT, AccountFindings};
use super::reports::{ReportError, link_lines, links, write_reports};
use super::retry::RetryFile;
use crate::api::Pacing;
use crate::api::pacing::gate::PersistedPause;
use crate::engine::PAUSE;
use crate::engine::control::{self, Approved, Approver, ControlError};
use crate::model::record::{Approval, ApproverProof, BatchRecord};
use crate::model::state::StateKind;
use crate::rules::policy::Policy;
use crate::rules::signature::{self, APPROVAL_NAMESPACE};
use crate::store::{ControlEvent, Store, StoreError};
use crate::util::clock::SharedClock;
use crate::util::time::rfc3339_ms;

/// One operator command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Every batch, one batch (name or id prefix) or one order (order_id).
    Status {
        target: Option<String>,
    },
    /// Approves exactly the part (the plan, or the recipient review) with this digest, as the
    /// caller's OS user, or as the key that made `signature` (an SSH signature, namespace
    /// `ccpayout-approval`, over `rules::signature::approval_message(batch id, digest)`).
    Approve {
        batch: String,
        digest: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// The full id of a batch (by name or id prefix): what a signed approval binds to.
    Resolve {
        batch: String,
    },
    /// The recipient registry, as `table`, `csv` or `json`.
    Recipients {
        format: String,
    },
    /// Cancels every order of the batch not sent yet.
    Cancel {
        batch: String,
    },
    /// The kill switch: nothing is sent until `Resume`.
    Pause {
        reason: Option<String>,
    },
    Resume,
    /// Writes the batch's reports.
    Report {
        batch: String,
    },
    /// The batch's failed and rejected orders as the rows of a retry file (`super::retry`);
    /// the caller writes the file.
    Retry {
        batch: String,
    },
    /// Keeps what `ccpayout doctor` learnt of the account.
    Learned {
        findings: AccountFindings,
    },
    /// A one-time sign-in link to the web console for the caller (`ccpayout console`).
    ConsoleLink,
}

/// How a command ended, as an exit code: 0, 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Verdict {
    /// Done as asked.
    Done,
    /// Refused for a reason in the text (a wrong digest): exit 1.
    Refused,
    /// Could not be done (no such batch, the store failed): exit 2.
    Failed,
}

impl From<Verdict> for u8 {
    fn from(v: Verdict) -> u8 {
        match v {
            Verdict::Done => 0,
            Verdict::Refused => 1,
            Verdict::Failed => 2,
        }
    }
}

impl TryFrom<u8> for Verdict {
    type Error = String;
    fn try_from(n: u8) -> Result<Verdict, String> {
        match n {
            0 => Ok(Verdict::Done),
            1 => Ok(Verdict::Refused),
            2 => Ok(Verdict::Failed),
            other => Err(format!("no verdict has exit code {other}")),
        }
    }
}

/// What an operator command says. On the control socket it is one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The exit code the CLI maps it to.
    #[serde(rename = "exit")]
    pub verdict: Verdict,
    /// The answer, the same for the same state whichever back end gave it.
    pub text: String,
    /// What only this back end knows or does next (the daemon's status lines, what happens
    /// after an approval); shown before the text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context: String,
    /// `retry`'s rows, for the caller to write as a batch file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Box<RetryFile>>,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply::new(Verdict::Done, text)
    }

    pub fn refused(text: impl Into<String>) -> Reply {
        Reply::new(Verdict::Refused, text)
    }

    pub fn error(text: impl Into<String>) -> Reply {
        Reply::new(Verdict::Failed, text)
    }

    fn new(verdict: Verdict, text: impl Into<String>) -> Reply {
        Reply {
            verdict,
            text: text.into(),
            context: String::new(),
            retry: None,
        }
    }

    fn with_context(mut self, context: String) -> Reply {
        self.context = context;
        self
    }

    /// The whole answer as shown: the context, then the text.
    pub fn shown(&self) -> String {
        format!("{}{}", self.context, self.text)
    }
}

/// What differs between answering on the store directly and inside a running daemon.
pub trait Runtime: Send + Sync {
    /// The live pacing, when something sends from this store now.
    fn pacing(&self) -> Option<&Pacing>;

    /// Stops paying `batch_id` and waits until its requests in flight are recorded, so a
    /// change to its orders never races the engine; keeps it from being paid again until
    /// [`Runtime::release`].
    fn hold(&self, batch_id: &str) -> impl Future<Output = ()> + Send;

    /// Ends a [`Runtime::hold`]: the batch is followed again.
    fn release(&self, batch_id: &str);

    /// `batch_id` was approved: pay it now, if this runtime pays.
    fn launch(&self, batch_id: &str);

    /// What happens to an approved batch next, in words.
    fn after_approval(&self, batch: &BatchRecord) -> String;

    /// Lines only this runtime can tell, shown above the overview of `status`.
    fn status_context(&self) -> String;

    /// A one-time sign-in link to the web console for `user`, or why there is none.
    fn console_link(&self, user: &str) -> Result<String, String>;
}

/// The runtime of an operator working on the store alone (no daemon runs).
#[derive(Debug, Default, Clone, Copy)]
pub struct Offline;

impl Runtime for Offline {
    fn pacing(&self) -> Option<&Pacing> {
        None
    }

    async fn hold(&self, _batch_id: &str) {}

    fn release(&self, _batch_id: &str) {}

    fn launch(&self, _batch_id: &str) {}

    fn after_approval(&self, batch: &BatchRecord) -> String {
        format!("run `ccpayout submit {}` to pay them\n", batch.source)
    }

    fn status_context(&self) -> String {
        String::new()
    }

    fn console_link(&self, _user: &str) -> Result<String, String> {
        Err("no daemon runs for this state directory: the console is served by `ccpayout run` with [console] enabled = true in its configuration".to_owned())
    }
}

/// Why an operator command could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Reports(#[from] ReportError),
}

/// The one operator, over a store and a runtime.
pub struct Operator<R> {
    store: Arc<Store>,
    /// The state directory as the operator named it, for messages.
    state_dir: PathBuf,
    reports_dir: PathBuf,
    clock: SharedClock,
    runtime: R,
    /// Who may approve, and whose signed approvals count.
    policy: Policy,
}

impl<R: Runtime> Operator<R> {
    pub fn new(store: Arc<Store>, state_dir: PathBuf, reports_dir: PathBuf, clock: SharedClock, runtime: R) -> Self {
        Operator {
            store,
            state_dir,
            reports_dir,
            clock,
            runtime,
            policy: Policy::default(),
        }
    }

    /// The policy approvals are judged by (`approvers`, `approver_signers`).
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// Answers `request` from this process's own user (working on the store directly). A
    /// failure becomes a reply with [`Verdict::Failed`] naming it.
    pub async fn handle(&self, request: Request) -> Reply {
        self.handle_from(request, &crate::util::user::current()).await
    }

    /// Answers `request` from the OS user `caller` (the control socket's peer).
    pub async fn handle_from(&self, request: Request, caller: &str) -> Reply {
        match self.answer(request, caller).await {
            Ok(reply) => reply,
            Err(e) => Reply::error(format!("{e}")),
        }
    }

    async fn answer(&self, request: Request, caller: &str) -> Result<Reply, OperatorError> {
        let now = self.clock.now_ms();
        match request {
            Request::Status { target } => Ok(self.status(target.as_deref(), now)?),
            Request::Approve {
                batch,
                digest,
                signature,
            } => {
                let batch = match self.find_batch(&batch)? {
                    Ok(b) => b,
                    Err(reply) => return Ok(reply),
                };
                let approver = match self.approver(&batch, &digest, signature.as_deref(), caller, now) {
                    Ok(approver) => approver,
                    Err(reply) => return Ok(reply),
                };
                self.approve(batch, &digest, &approver, now)
            }
            Request::Recipients { format } => Ok(match super::recipients::render(&self.store, &format) {
                Ok(text) => Reply::ok(text),
                Err(super::recipients::RenderError::Format(f)) => {
                    Reply::error(format!("no recipients format {f:?}: table, csv or json\n"))
                }
                Err(super::recipients::RenderError::Store(e)) => return Err(e.into()),
            }),
            Request::Resolve { batch } => Ok(match self.find_batch(&batch)? {
                Ok(b) => Reply::ok(format!("{}\n", b.batch_id)),
                Err(reply) => reply,
            }),
            Request::Cancel { batch } => {
                let batch = match self.find_batch(&batch)? {
                    Ok(b) => b,
                    Err(reply) => return Ok(reply),
                };
                // Stop its sends first (the requests in flight are recorded), so the cancel and
                // the engine never change the same orders at once; then follow the rest.
                // Who asked is recorded before anything changes.
                self.store.audit(&[ControlEvent {
                    batch_id: batch.batch_id.to_string(),
                    event: "cancel",
                    by: Some(caller.to_owned()),
                    detail: format!("{caller} cancelled the unsent orders of batch {}", batch.name),
                    at_ms: now,
                }])?;
                self.runtime.hold(&batch.batch_id).await;
                let cancelled = control::cancel(&self.store, &batch, now);
                self.runtime.release(&batch.batch_id);
                let n = cancelled?;
                tracing::info!(batch = %batch.name, orders = n, by = caller, "unsent orders cancelled by an operator");
                Ok(Reply::ok(format!(
                    "cancelled {n} unsent orders of batch {}; orders already sent are followed to their end\n",
                    batch.name
                )))
            }
            Request::Pause { reason } => self.kill_switch(true, reason, caller),
            Request::Resume => self.kill_switch(false, None, caller),
            Request::ConsoleLink => Ok(match self.runtime.console_link(caller) {
                Ok(link) => {
                    tracing::info!(user = caller, "console sign-in link issued");
                    Reply::ok(format!(
                        "sign in to the console as {caller} with this link (it works once, within 5 minutes):\n{link}\n"
                    ))
                }
                Err(why) => Reply::refused(format!("{why}\n")),
            }),
            Request::Learned { findings } => {
                self.store.put(&ACCOUNT, &findings)?;
                tracing::info!(account = %findings.describe(), "doctor findings recorded");
                // The wiring reads it when a process starts: a daemon running now keeps the form
                // it started with until it is restarted.
                Ok(Reply::ok(format!(
                    "recorded in {}: {}\n",
                    self.where_(),
                    findings.describe()
                )))
            }
            Request::Report { batch } => {
                let batch = match self.find_batch(&batch)? {
                    Ok(b) => b,
                    Err(reply) => return Ok(reply),
                };
                let paths = write_reports(&self.reports_dir, &self.store, &batch, now)?;
                Ok(Reply::ok(format!(
                    "{}\n{}reports:\n  {}\n  {}\n  {}\n",
                    batch_line(&batch, &self.store.counts(Some(&batch.batch_id))?),
                    link_lines(&links(&self.store, &batch)?, "  "),
                    paths.result_csv.display(),
                    paths.result_json.display(),
                    paths.summary_json.display()
                )))
            }
            Request::Retry { batch } => {
                let batch = match self.find_batch(&batch)? {
                    Ok(b) => b,
                    Err(reply) => return Ok(reply),
                };
                Ok(super::retry::retry(&self.store, &batch)?)
            }
        }
    }

    fn where_(&self) -> String {
        self.state_dir.display().to_string()
    }

    /// Finds a batch by name or id prefix, or says none matches.
    fn find_batch(&self, target: &str) -> Result<Result<BatchRecord, Reply>, StoreError> {
        Ok(self
            .store
            .find_batch(target)?
            .ok_or_else(|| Reply::error(format!("no batch matches {target:?} in {}\n", self.where_()))))
    }

    /// Who approves: the key that made `signature` (checked against `policy.approver_signers`
    /// over the batch id and digest), or the OS user `caller`; and whether the policy lets them.
    fn approver(
        &self,
        batch: &BatchRecord,
        digest: &str,
        signature: Option<&str>,
        caller: &str,
        now_ms: i64,
    ) -> Result<Approver, Reply> {
        let approver = match signature {
            None => Approver {
                name: caller.to_owned(),
                proof: ApproverProof::OsUser,
                fingerprint: None,
            },
            Some(sig) => {
                let Some(signers) = &self.policy.approver_signers else {
                    return Err(Reply::refused(
                        "a signed approval needs policy.approver_signers (an allowed_signers file of the approvers' keys) in the configuration\n",
                    ));
                };
                let message = signature::approval_message(batch.batch_id.as_str(), digest.trim());
                match signature::verify(
                    &signers.signers,
                    APPROVAL_NAMESPACE,
                    &message,
                    sig.as_bytes(),
                    now_ms / 1000,
                ) {
                    Ok(signer) => Approver {
                        name: signer.principal,
                        proof: ApproverProof::SshSignature,
                        fingerprint: Some(signer.fingerprint),
                    },
                    Err(e) => {
                        return Err(Reply::refused(format!(
                            "the approval's signature is refused ({}): {e}\n",
                            signers.path
                        )));
                    }
                }
            }
        };
        if !self.policy.may_approve(&approver.name) {
            return Err(Reply::refused(format!(
                "{} may not approve: policy.approvers lists {}\n",
                approver.name,
                self.policy.approvers.join(", ")
            )));
        }
        Ok(approver)
    }

    /// `approve BATCH --digest D`: records the approval of exactly the part with that digest,
    /// and releases it once enough distinct approvers gave theirs.
    fn approve(&self, batch: BatchRecord, digest: &str, approver: &Approver, now: i64) -> Result<Reply, OperatorError> {
        match control::approve(&self.store, batch.clone(), digest, approver, now) {
            Ok(Approved::Released { part, orders, by }) => {
                tracing::info!(batch = %batch.name, orders, part = part.name(), by = %by.join(", "), "approved");
                self.runtime.launch(&batch.batch_id);
                Ok(Reply::ok(format!(
                    "{} approved {} of batch {} (digest {}): approved by {}; {orders} orders released\n",
                    approver.name,
                    part.name(),
                    batch.name,
                    digest.trim(),
                    by.join(", ")
                ))
                .with_context(self.runtime.after_approval(&batch)))
            }
            Ok(Approved::Counted { part, given, needed }) => {
                tracing::info!(batch = %batch.name, part = part.name(), by = %approver.name, "approval recorded");
                Ok(Reply::ok(format!(
                    "{} approved {} of batch {}: {} of {needed} approvals given ({}); {} more needed from someone else\n",
                    approver.name,
                    part.name(),
                    batch.name,
                    given.len(),
                    given.join(", "),
                    needed as usize - given.len()
                )))
            }
            Ok(Approved::NotNeeded) => Ok(Reply::ok(format!("batch {} needs no approval\n", batch.name))),
            Ok(Approved::Already(part)) => {
                // A crash between the approval and its orders' release is finished here.
                let released = control::release_approved(&self.store, &batch, part, now)?;
                if released > 0 {
                    self.runtime.launch(&batch.batch_id);
                }
                Ok(Reply::ok(format!(
                    "{} of batch {} is already approved\n",
                    part.name(),
                    batch.name
                )))
            }
            Err(
                e @ (ControlError::WrongDigest { .. }
                | ControlError::MakerMayNotApprove { .. }
                | ControlError::AlreadyApproved { .. }),
            ) => Ok(Reply::refused(format!("{e}\n"))),
            Err(e) => Err(e.into()),
        }
    }

    /// `pause` / `resume`: the kill switch, in the live pacing when a daemon holds one (its
    /// waiters wake at once), and in the store, so a restart keeps it.
    fn kill_switch(&self, on: bool, reason: Option<String>, caller: &str) -> Result<Reply, OperatorError> {
        let before = self.store.get(&PAUSE)?.unwrap_or_default();
        let now = self.clock.now_ms();
        self.store.audit(&[ControlEvent {
            batch_id: String::new(),
            event: if on { "pause" } else { "resume" },
            by: Some(caller.to_owned()),
            detail: if on {
                format!(
                    "{caller} paused all sending{}",
                    reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                )
            } else {
                format!("{caller} resumed sending")
            },
            at_ms: now,
        }])?;
        let pause = match self.runtime.pacing() {
            Some(pacing) => pacing.set_kill_switch(on, reason),
            None => before.clone().with_kill_switch(on, reason),
        };
        let notices = crate::engine::pause_notices(&before, &pause, now);
        self.store.put_noticed(&PAUSE, &pause, &notices)?;
        if let Some(pacing) = self.runtime.pacing() {
            pacing.pause_saved(pause);
        }
        if on {
            tracing::warn!(by = caller, "submission paused by an operator");
        } else {
            tracing::info!(by = caller, "submission resumed by an operator");
        }
        Ok(Reply::ok(if on {
            "submission paused: nothing is sent until `ccpayout resume`\n"
        } else {
            "submission resumed\n"
        }))
    }

    /// `status [TARGET]`: every batch, one batch (name or id prefix) or one order (order_id).
    fn status(&self, target: Option<&str>, now_ms: i64) -> Result<Reply, StoreError> {
        let store = &self.store;
        let pause = store.get(&PAUSE)?.unwrap_or_default();
        let mut out = pause_text(&pause, now_ms);
        let Some(target) = target else {
            match store.get(&ACCOUNT)? {
                Some(found) => {
                    let _ = writeln!(
                        out,
                        "account (ccpayout doctor, {}): {}",
                        rfc3339_ms(found.checked_ms),
                        found.describe()
                    );
                }
                None => {
                    let _ = writeln!(out, "account: not examined yet (run `ccpayout doctor`)");
                }
            }
            out.push_str(&notices_text(&store.outbox_summary()?));
            let batches = store.batches()?;
            if batches.is_empty() {
                let _ = writeln!(out, "no batches in {}", self.where_());
            } else {
                let totals = store.counts(None)?;
                let count = |k| totals.get(&k).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "orders: {} queued, {} deferred, {} in flight or unknown, {} submitted, {} awaiting approval, {} final",
                    count(StateKind::Queued),
                    count(StateKind::Deferred),
                    count(StateKind::Submitting) + count(StateKind::Unknown),
                    count(StateKind::Submitted),
                    count(StateKind::AwaitingApproval),
                    StateKind::finals(&totals)
                );
                for batch in batches {
                    let counts = store.counts(Some(&batch.batch_id))?;
                    let _ = writeln!(out, "{}", batch_line(&batch, &counts));
                }
            }
            return Ok(Reply::ok(out).with_context(self.runtime.status_context()));
        };
        if let Some(batch) = store.find_batch(target)? {
            batch_status(&mut out, &batch, &store.counts(Some(&batch.batch_id))?);
            out.push_str(&link_lines(&links(store, &batch)?, "  "));
            if batch.recipients.is_some() {
                held_rows(&mut out, store, &batch)?;
            }
            bundle_lines(&mut out, &store.bundles(&batch.batch_id)?, now_ms);
            return Ok(Reply::ok(out));
        }
        if let Some(order) = store.order(target)? {
            let _ = writeln!(
                out,
                "order {} (batch {}, line {})",
                order.order_id,
                &order.batch_id[..12.min(order.batch_id.len())],
                order.line
            );
            let _ = writeln!(
                out,
                "  state:     {}",
                serde_json::to_string(&order.state).unwrap_or_default()
            );
            let _ = writeln!(out, "  attempts:  {}", order.attempts);
            let _ = writeln!(
                out,
                "  amount:    {} {} on {} to {}",
                order.input.amount, order.input.coin, order.input.chain, order.input.recipient
            );
            if let Some(id) = &order.record_id {
                let _ = writeln!(out, "  record id: {id}");
            }
            if let Some(tx) = &order.tx_id {
                let _ = writeln!(out, "  tx id:     {tx}");
            }
            if let Some(task) = &order.task {
                let _ = writeln!(
                    out,
                    "  task:      seq {} of CCPayment batch withdrawal {}{}",
                    task.seq,
                    task.bundle,
                    task.ccp_order_id
                        .as_deref()
                        .map(|id| format!(" (CCPayment orderId {id})"))
                        .unwrap_or_default()
                );
            }
            if let Some(error) = &order.error {
                let _ = writeln!(out, "  last error: {}", error.message);
            }
            if let Some(absent) = &order.absent {
                let _ = writeln!(
                    out,
                    "  not found: by {} lookup(s) since {}; sent again only once its absence is confirmed",
                    absent.lookups,
                    rfc3339_ms(absent.since_ms)
                );
            }
            return Ok(Reply::ok(out));
        }
        Ok(Reply::error(format!(
            "no batch or order matches {target:?} in {}\n",
            self.where_()
        )))
    }
}

/// The batch's CCPayment batch withdrawals (`withdraw_mode = "batch"`), one line each with what
/// CCPayment last said, its review state and reason, and what an abort cancelled.
fn bundle_lines(out: &mut String, bundles: &[crate::model::bundle::BundleRecord], now_ms: i64) {
    if bundles.is_empty() {
        return;
    }
    let _ = writeln!(out, "batch withdrawals ({}):", bundles.len());
    for b in bundles {
        let mut line = format!(
            "  #{} {} {} {} on {}: {} task(s), {}",
            b.part,
            b.id,
            b.settings.execution.as_str(),
            b.coin,
            b.chain,
            b.orders.len(),
            b.phase.name()
        );
        if let Some(remote) = &b.remote {
            let _ = write!(
                line,
                "; CCPayment: {} ({} succeeded, {} failed, {} cancelled, {} processing)",
                remote.status, remote.succeeded, remote.failed, remote.canceled, remote.processing
            );
            if remote.status.eq_ignore_ascii_case("reviewing") {
                let _ = write!(line, " — held in CCPayment's review");
            }
            if !remote.reason.is_empty() {
                let _ = write!(line, " — reason: {}", remote.reason);
            }
        }
        if let Some(confirmed) = b.confirmed_ms {
            let runs = confirmed + i64::try_from(b.settings.confirm_delay_secs).unwrap_or(0) * 1000;
            if runs > now_ms {
                let _ = write!(line, "; runs at {} (cancel aborts it until then)", rfc3339_ms(runs));
            }
        }
        if b.cancel_requested && b.abort.is_none() {
            let _ = write!(line, "; cancel requested: its tasks not yet run will be aborted");
        }
        if let Some(abort) = &b.abort {
            let _ = write!(
                line,
                "; aborted {}: cancelled seqs {:?}, ignored seqs {:?}",
                rfc3339_ms(abort.at_ms),
                abort.canceled,
                abort.ignored
            );
        }
        if let Some(problem) = &b.problem {
            let _ = write!(line, "; {problem}");
        }
        let _ = writeln!(out, "{line}");
    }
}

/// One batch in detail, for `status BATCH`.
fn batch_status(out: &mut String, batch: &BatchRecord, counts: &std::collections::BTreeMap<StateKind, u64>) {
    let _ = writeln!(out, "{}", batch_line(batch, counts));
    let _ = writeln!(out, "  id:          {}", batch.batch_id);
    let _ = writeln!(
        out,
        "  source:      {} ({}, api {})",
        batch.source, batch.format, batch.api
    );
    let _ = writeln!(out, "  created:     {}", rfc3339_ms(batch.created_ms));
    match &batch.signer {
        Some(s) => {
            let _ = writeln!(
                out,
                "  signed by:   {} ({} {}){}",
                s.principal,
                s.key_type,
                s.fingerprint,
                if batch.maker_may_approve {
                    ""
                } else {
                    "; the signer may not approve it"
                }
            );
        }
        None => {
            let _ = writeln!(out, "  signed by:   (not signed)");
        }
    }
    let _ = writeln!(out, "  plan digest: {}", batch.plan_digest);
    approval_lines(out, "approval:   ", &batch.approval, &batch.name, &batch.plan_digest);
    if let Some(review) = &batch.recipients {
        let _ = writeln!(
            out,
            "  recipient review: {} orders to new or changed destinations, digest {}",
            review.orders, review.digest
        );
        approval_lines(out, "review:     ", &review.approval, &batch.name, &review.digest);
    }
    for kind in StateKind::ALL {
        if let Some(n) = counts.get(&kind).filter(|n| **n > 0) {
            let _ = writeln!(out, "  {:<18} {n}", kind.as_str());
        }
    }
    if !batch.refused.is_empty() {
        let _ = writeln!(out, "  {:<18} {}", "refused (rows)", batch.refused.len());
    }
}

/// An approval as `status BATCH` shows it: needed, given by whom, and the command.
fn approval_lines(out: &mut String, label: &str, approval: &Approval, name: &str, digest: &str) {
    match approval {
        Approval::NotNeeded => {
            let _ = writeln!(out, "  {label} not needed");
        }
        Approval::Required { reasons, needed, given } => {
            let _ = writeln!(out, "  {label} REQUIRED ({})", reasons.join("; "));
            let names: Vec<String> = given.iter().map(given_text).collect();
            let _ = writeln!(
                out,
                "  {label} {} of {needed} given{}; {} more needed",
                given.len(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                },
                (*needed as usize).saturating_sub(given.len())
            );
            let _ = writeln!(out, "  approve with: ccpayout approve {name} --digest {digest}");
        }
        Approval::Approved { at_ms, by, .. } => {
            let who = if by.is_empty() {
                String::new()
            } else {
                format!(" by {}", by.iter().map(given_text).collect::<Vec<_>>().join(", "))
            };
            let _ = writeln!(out, "  {label} approved at {}{who}", rfc3339_ms(*at_ms));
        }
    }
}

fn given_text(g: &crate::model::record::GivenApproval) -> String {
    match (&g.how, &g.fingerprint) {
        (ApproverProof::SshSignature, Some(f)) => format!("{} [key {f}]", g.by),
        _ => format!("{} [os user]", g.by),
    }
}

/// The orders held for the recipient review, each destination beside the payee's old one (the
/// first 50; the reports list every row).
fn held_rows(out: &mut String, store: &Store, batch: &BatchRecord) -> Result<(), StoreError> {
    const SHOWN: usize = 50;
    let mut held = Vec::new();
    let mut total = 0usize;
    store.for_each_batch_order(&batch.batch_id, &mut |order| {
        if let Some(review) = &order.review {
            total += 1;
            if held.len() < SHOWN {
                let to = crate::store::destination_of(order).describe();
                let was = match &review.previous {
                    Some(p) => format!("; payee {} was paid to {} before", order.input.payee, p.describe()),
                    None => "; never paid before".to_owned(),
                };
                held.push(format!(
                    "    line {} {}: {} {} to {to}{was} [{}]",
                    order.line,
                    order.order_id,
                    order.input.amount,
                    order.input.coin,
                    order.kind()
                ));
            }
        }
        Ok(())
    })?;
    let _ = writeln!(out, "  held for the recipient review ({total}):");
    for line in held {
        let _ = writeln!(out, "{line}");
    }
    if total > SHOWN {
        let _ = writeln!(out, "    … and {} more (see the reports)", total - SHOWN);
    }
    Ok(())
}

/// One line per batch: name, state and counts.
pub fn batch_line(batch: &BatchRecord, counts: &std::collections::BTreeMap<StateKind, u64>) -> String {
    let total: u64 = counts.values().sum();
    let done = StateKind::finals(counts);
    let count = |k| counts.get(&k).copied().unwrap_or(0);
    let waiting = if count(StateKind::AwaitingApproval) > 0 {
        "  AWAITING APPROVAL"
    } else {
        ""
    };
    format!(
        "{}  {:?}  {done}/{total} final  ({} success, {} failed, {} rejected; {} refused rows){waiting}",
        batch.name,
        batch.state,
        count(StateKind::Success),
        count(StateKind::Failed),
        count(StateKind::Rejected),
        batch.refused.len()
    )
}

/// The notice lines of `status`: per target, what was delivered, what waits and why.
pub fn notices_text(summary: &crate::store::OutboxSummary) -> String {
    let mut out = String::new();
    for (target, t) in &summary.targets {
        let _ = write!(
            out,
            "notices to {target}: {} delivered, {} pending",
            t.delivered, t.pending
        );
        if t.refused > 0 {
            let _ = write!(
                out,
                ", {} refused by the target (last: {})",
                t.refused,
                t.last_refused.as_deref().unwrap_or("?")
            );
        }
        if t.dropped > 0 {
            let _ = write!(out, ", {} given up", t.dropped);
        }
        if let Some((error, next_ms)) = &t.failing {
            let _ = write!(out, "; FAILING: {error}, next try {}", rfc3339_ms(*next_ms));
        }
        out.push('\n');
    }
    out
}

/// The pause line of `status`, empty when nothing is paused.
pub fn pause_text(pause: &PersistedPause, now_ms: i64) -> String {
    if pause.kill_switch {
        format!(
            "submission is PAUSED by an operator{}; `ccpayout resume` lifts it\n",
            pause.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        )
    } else if let Some(until) = pause.daily_until_ms.filter(|&t| t > now_ms) {
        format!(
            "submission is paused until {} (daily request limit)\n",
            rfc3339_ms(until)
        )
    } else {
        String::new()
    }
}
