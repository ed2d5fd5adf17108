//! What the store keeps about batches and orders. These are the records the engine reads and
//! writes; the store module alone decides how they sit on disk (versioned, see `store`).
//!
//! Pure data: no I/O.

use serde::{Deserialize, Serialize};

use super::ApiGeneration;
use super::bundle::{BundleSettings, TaskRef};
use super::call::WithdrawCall;
use super::ids::{BatchId, OrderId};
use super::state::{OrderState, StateKind};

/// A row's columns exactly as the batch file gave them, for the reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRow {
    pub order_id: String,
    pub recipient: String,
    pub coin: String,
    pub chain: String,
    pub amount: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memo: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub merchant_pays_fee: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reference: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_id: String,
    /// A stable id of the person paid (the optional `payee` column), for the registry.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub payee: String,
    /// The order this row retries (the optional `original_order_id` column, written by
    /// `ccpayout retry`); empty for a row that retries nothing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub original_order_id: String,
}

/// The network fee CCPayment charged for a payout: in which coin, and how much (the amount
/// string exactly as CCPayment gave it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Fee {
    pub coin_id: u64,
    pub coin_symbol: String,
    pub amount: String,
}

/// The last error an order met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// CCPayment's code, when it answered with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    pub message: String,
}

/// One payout: its input, the exact call it sends, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The merchant's id, sent as CCPayment's orderId; the key of the record.
    pub order_id: OrderId,
    /// The batch (the SHA-256 of its file) the order came from.
    pub batch_id: BatchId,
    /// Position among the batch's accepted rows, from 0.
    pub seq: u32,
    /// Line of the row in the file.
    pub line: u64,
    pub input: InputRow,
    /// The request, exactly as it is sent on every attempt (amount in canonical form).
    pub call: WithdrawCall,
    /// `validate::payload_digest` of the row, hex: tells a duplicate from a conflict.
    pub payload_digest: String,
    pub state: OrderState,
    /// Sends so far.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Fee>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_sent_ms: Option<i64>,
    /// When the order was last sent: the intent's time, moved to the moment its answer came back
    /// (or the process restarted) when that answer left it unknown — the latest moment the create
    /// may have reached CCPayment, from which its absence is confirmed (R2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_ms: Option<i64>,
    /// When to ask CCPayment about the order next (tracking a submitted order, reconciling an
    /// unknown one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_ms: Option<i64>,
    /// Status queries made for this order.
    #[serde(default)]
    pub checks: u32,
    /// Lookups by orderId that found nothing since the order was last sent: an order whose
    /// create may have reached CCPayment is sent again only once its absence is confirmed
    /// (ccpayment-api.md §5, R2/R3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent: Option<Absent>,
    /// Why the order waits for the batch's recipient review (a new destination, or its payee's
    /// changed one), and the payee's destination before: the order is released by approving
    /// the review part, not the batch's plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<RecipientReview>,
    /// The order's task in a CCPayment batch withdrawal (`withdraw_mode = "batch"`): the bundle
    /// drives it, never the single-order paths (see [`due_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRef>,
}

/// Why an order waits for the recipient review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientReview {
    /// `new` or `changed`.
    pub kind: ReviewKind,
    /// The payee's destination before, for a changed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<super::recipient::Destination>,
}

/// What the review is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewKind {
    /// A destination no payout went to before.
    New,
    /// The payee was paid to another destination before.
    Changed,
}

/// Lookups that found nothing for an order since its last send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Absent {
    /// When the first of them answered.
    pub since_ms: i64,
    /// How many answered "no such order".
    pub lookups: u32,
}

impl OrderRecord {
    pub fn kind(&self) -> StateKind {
        self.state.kind()
    }

    /// The time the store's state index orders this record by: when a deferred order may be
    /// sent, or when a submitted or unknown order should be checked; 0 otherwise (due now).
    pub fn due_ms(&self) -> i64 {
        due_ms(&self.state, self.next_check_ms, self.task.is_some())
    }
}

/// The due time of every order in a bundle, whatever its state: after every real due time, so
/// the single-order paths (sends, status queries, lookups by orderId, wakes), which ask the
/// index for orders due by now, never see it. Its bundle moves it.
pub const BUNDLED_DUE_MS: i64 = i64::MAX;

/// [`OrderRecord::due_ms`] from the fields it depends on.
pub fn due_ms(state: &OrderState, next_check_ms: Option<i64>, bundled: bool) -> i64 {
    if bundled {
        return BUNDLED_DUE_MS;
    }
    match state {
        OrderState::Deferred { until_ms, .. } => *until_ms,
        OrderState::Submitted | OrderState::Unknown { .. } => next_check_ms.unwrap_or(0),
        _ => 0,
    }
}

/// A row of the batch that was not accepted, kept for the reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRow {
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// `field: message` for each problem.
    pub problems: Vec<String>,
    /// Set when the row duplicates an order of an earlier batch (same payload): not refused for
    /// a fault of its own, and not paid again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of_batch: Option<String>,
}

/// Whether a batch (or its recipient review) needs approval, and whether it has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "approval", rename_all = "snake_case")]
pub enum Approval {
    NotNeeded,
    Required {
        reasons: Vec<String>,
        /// Distinct approvers needed (records of 0.1.0 have none: one).
        #[serde(default = "one")]
        needed: u32,
        /// Approvals given so far, each by a different approver.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        given: Vec<GivenApproval>,
    },
    Approved {
        at_ms: i64,
        digest: String,
        /// Who approved (empty in records of 0.1.0, whose approvals were anonymous).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        by: Vec<GivenApproval>,
    },
}

fn one() -> u32 {
    1
}

impl Approval {
    /// A requirement of `needed` approvers for `reasons`, none given yet.
    pub fn required(reasons: Vec<String>, needed: u32) -> Approval {
        Approval::Required {
            reasons,
            needed: needed.max(1),
            given: Vec::new(),
        }
    }
}

/// One approval: who gave it, how they were known, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenApproval {
    /// The approver: an OS user name, or the principal of the key that signed.
    pub by: String,
    pub how: ApproverProof,
    /// The SHA256 fingerprint of the key, for a signed approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub at_ms: i64,
}

/// How an approver was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApproverProof {
    /// The OS user of the caller: peer credentials on the control socket, or the process's own
    /// user on the store.
    OsUser,
    /// An SSH signature over the batch id and digest, by a key of `policy.approver_signers`.
    SshSignature,
}

/// Who signed a batch file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSigner {
    /// The principal of the allowed-signers line.
    pub principal: String,
    pub key_type: String,
    /// `SHA256:…`, as ssh-keygen prints it.
    pub fingerprint: String,
}

/// The part of a batch that waits for its own approval: rows to new destinations, or to a payee's
/// changed one. The rest of the batch proceeds without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientPart {
    /// SHA-256 over the held rows and their destinations (old and new), hex: what its approval
    /// binds to.
    pub digest: String,
    /// Orders held.
    pub orders: u32,
    pub approval: Approval,
}

/// Where a batch is as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Orders are being sent or followed.
    Open,
    /// Every order is final and the reports are written.
    Done,
}

impl BatchState {
    /// Every batch state, in order.
    pub const ALL: [BatchState; 2] = [BatchState::Open, BatchState::Done];

    /// The snake_case name used in the store, metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Open => "open",
            BatchState::Done => "done",
        }
    }
}

/// A batch: one file's accepted plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// SHA-256 of the file's bytes, hex: the same content is the same batch.
    pub batch_id: BatchId,
    /// A short human name: the file's stem and the first 12 hex digits of its hash.
    pub name: String,
    /// The file as it was given.
    pub source: String,
    pub format: String,
    /// The API generation its orders go through (stored as `"v2"` or `"v1"`).
    pub api: ApiGeneration,
    pub plan_digest: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Rows in the file.
    pub rows: u64,
    /// Accepted orders.
    pub orders: u32,
    pub refused: Vec<RefusedRow>,
    pub approval: Approval,
    pub state: BatchState,
    /// Who signed the batch file, when it was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<BatchSigner>,
    /// Whether the signer may approve the batch (`policy.maker_may_approve` when it was taken in).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub maker_may_approve: bool,
    /// The rows held for recipient review, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<RecipientPart>,
    /// Set when the batch was taken in with `withdraw_mode = "batch"`: its network rows go
    /// through CCPayment's batch withdrawals (bundles), the rest through single creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundles: Option<BundleSettings>,
    /// Set when orders of the batch retry orders of earlier batches (their rows name one in
    /// `original_order_id`): its reports carry that column and name those batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<RetryOf>,
}

/// What a batch of retries retries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryOf {
    /// Orders of the batch that name the order they retry.
    pub orders: u32,
    /// The batches those orders were in, as the store knew them when the batch was taken in;
    /// empty when it knew none of them (an `original_order_id` from elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<RetriedBatch>,
}

/// A batch some orders of a later batch retry orders of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetriedBatch {
    pub batch_id: BatchId,
    /// How many of its orders are retried.
    pub orders: u32,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}
