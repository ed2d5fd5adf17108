//! Batch withdrawals (ccpayment-api.md §2.8; R14 for what the sources leave open): the six
//! routes `applyBatchWithdraw`, `appendBatchWithdraw`, `confirmBatchWithdraw`,
//! `abortBatchWithdraw`, `getBatchWithdrawOrder` and `getBatchWithdrawOrderRecordList`, and the
//! batch's run: review, delay, each task executed as a network withdrawal, settled like one.
//!
//! # The model
//!
//! A batch is one coin on one chain, applied in status `Init` with 0–500 tasks; `append` adds
//! 1–500 more while it is `Init`. `confirm` starts it: `Reviewing` for the `batch-review` time
//! (none by default), then `Pending` for `delaySeconds`, then `Processing`: each task not
//! cancelled is executed in seq order — in `Single` mode one every
//! [`SandboxConfig::batch_task_interval`](crate::sandbox::SandboxConfig::batch_task_interval)
//! (one transaction each), in `Batch` mode all at once (one transaction). An executed task is a
//! payout: it is debited (amount plus network fee; see "Fees"), gets a recordId, CCPayment's own
//! orderId and status `Processing`, and settles after the world's settle delay to `Successful` or
//! `Failed` exactly like a single withdrawal (fail rate, failing recipients, full refund on
//! failure). A task the balance cannot cover fails at once with a reason, debiting nothing. The
//! batch is `Completed` once every task is final (`Successful`, `Failed`, `Canceled`).
//!
//! Everything happens on world time: the steps are events in `World::batch_due`, run by
//! `World::settle_due` in time order with the payouts' settlements, each at its own scheduled
//! time, so a world that hears no request for a while catches up exactly as if it had.
//!
//! Task payouts are in the ledger (with `batch_order_id`, `seq` and `remark`), never in the
//! single withdrawal reads: `getAppWithdrawRecord`, `getAppWithdrawRecordList` and v1
//! `bill/info` do not see them. No webhook is sent for them (no batch webhook format is known).
//!
//! # Choices where the sources are silent (R14)
//!
//! - **Who pays the fee**: the merchant. A batch reports `amount` and `networkFee` apart, and a
//!   task has no `merchantPayNetworkFee`, so the receiver gets the whole amount and the fee is
//!   debited on top, in the fee coin of the catalogue (the chain's native coin on some chains).
//! - **Fees in `Batch` mode**: one network fee per batch, not per task (the tasks share one
//!   transaction). It is debited with the first task executed that the balance covers: that
//!   task's `networkFee` (and its ledger fee) is the batch's fee, the others' is 0. If that task
//!   fails, its refund gives the fee back, as a failed single withdrawal does. Undocumented.
//! - **A reused batchOrderId**: 11007 RepeatedSubmit, nothing stored (`batch-apply-idempotent`:
//!   10000 with the existing ids; `batch-id-reuse`: a second batch — reads by the id see the
//!   first, `append` goes to the first, `confirm` and `abort` act on every batch with the id).
//! - **Append to a batch no longer `Init`**: 11000 (InvalidArgument), nothing added.
//! - **Confirm of a batch no longer `Init`**: 10000 with the batch as it is (idempotent; nothing
//!   changes), so a confirm resent after a lost reply is harmless.
//! - **Abort**: a task not yet executed becomes `Canceled` (listed in `canceledSeqs`, also when it
//!   already was); an executed one (`Processing`, `Successful`, `Failed`) and a seq the batch does
//!   not have are listed in `ignoredSeqs`. A `Completed` batch answers 14028 UnableAbort.
//! - **Validation**: a task's address, memo, precision and limits are checked as for a single
//!   network withdrawal (14007, 14003/14009, 14013, 14005/14006), its memo (≤ 16) and remark
//!   (≤ 64) lengths with 11000; one bad task refuses the whole request, naming its seq. The
//!   balance is not checked before the run.
//! - **Seqs**: > 0, unique within the batch (14027 SeqDuplicate refuses the whole request);
//!   `batch-seq-unchecked` stores duplicates, which are then paid twice.
//! - **Task statuses**: `Init` before confirm, `Pending` until executed, `Processing`,
//!   `Successful` (`task-status-success`: `Success`), `Failed`, `Canceled`.
//! - **Numbers**: `amount` is the sum of the tasks' amounts, `networkFee` the sum of the fees
//!   debited so far; `createdAt`/`updatedAt` are Unix seconds.
//! - **Reads**: an unknown batch follows the R1 readings as `getAppWithdrawRecord` does (11003;
//!   `empty-record`: 10000 with `{}`; `other-record`: the latest other batch); the task list of
//!   an unknown batch is 11003. Under `lookup-lag` a batch, and a task, is invisible to reads
//!   until the lag has passed since it was stored.

use std::collections::HashSet;

use rust_decimal::Decimal;
use serde::Serialize;

use super::decimal::{catalogue_decimal, fmt_decimal, parse_amount, parse_plain_decimal};
use super::payouts::{CWALLET_CHAIN, utc_compact, withdrawals_open};
use super::reply::Refusal;
use super::{Payout, World};
use crate::api::types::{
    AbortBatchWithdrawReply, AbortBatchWithdrawRequest, AppendBatchWithdrawRequest, ApplyBatchWithdrawReply,
    ApplyBatchWithdrawRequest, BATCH_RECORD_PAGE_SIZE, BatchCoin, BatchOrderQuery, BatchRecordListQuery,
    BatchRecordPage, BatchStats, BatchTask, BatchWithdrawOrder, ConfirmBatchWithdrawRequest, Empty, FeeAmount,
    MAX_CONFIRM_DELAY_SECS, MAX_TASK_MEMO_CHARS, MAX_TASK_REMARK_CHARS, MAX_TASKS_PER_REQUEST, RecordStatus,
};
use crate::rules::address::{AddressFamily, check_address};
use crate::sandbox::demo::hot_wallet;
use crate::sandbox::{LedgerPayout, RepeatedBatch, UnknownOrder};

/// The page size of `getBatchWithdrawOrderRecordList` when `limit` is 0 or absent.
pub(super) const DEFAULT_RECORD_PAGE: usize = 20;

/// `notifyUrl` of a batch is at most this long.
const MAX_BATCH_NOTIFY_URL_CHARS: usize = 120;

/// The largest `verbose` of `getBatchWithdrawOrder`.
const MAX_VERBOSE: u32 = 3;

/// The reason of a task the balance could not cover.
pub const BALANCE_REASON: &str = "BalanceInsufficient: the balance does not cover the amount and its network fee";

/// The reason of a task whose network fee (in another coin) the balance could not cover.
pub const FEE_BALANCE_REASON: &str = "WithdrawFeeBalanceNotEnough: the balance does not cover the network fee";

/// How a batch's tasks are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// One transaction per task, one task after another.
    Single,
    /// All tasks in one transaction.
    Batch,
}

impl Mode {
    pub(super) fn parse(s: &str) -> Option<Mode> {
        match s {
            "Single" => Some(Mode::Single),
            "Batch" => Some(Mode::Batch),
            _ => None,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Mode::Single => "Single",
            Mode::Batch => "Batch",
        }
    }
}

/// Where a batch is. `Rejected` (a review that refuses) is never reached: nothing refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BatchStatus {
    Init,
    Reviewing,
    Pending,
    Processing,
    Completed,
    /// `batch-review-reject`: the review refused the batch; none of its tasks runs.
    Rejected,
}

/// CCPayment's reason on a batch its review refused (`batch-review-reject`).
pub const REVIEW_REJECT_REASON: &str = "rejected by risk review";

impl BatchStatus {
    pub(super) fn parse(s: &str) -> Option<BatchStatus> {
        Some(match s {
            "Init" => BatchStatus::Init,
            "Reviewing" => BatchStatus::Reviewing,
            "Pending" => BatchStatus::Pending,
            "Processing" => BatchStatus::Processing,
            "Completed" => BatchStatus::Completed,
            "Rejected" => BatchStatus::Rejected,
            _ => return None,
        })
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Init => "Init",
            BatchStatus::Reviewing => "Reviewing",
            BatchStatus::Pending => "Pending",
            BatchStatus::Processing => "Processing",
            BatchStatus::Completed => "Completed",
            BatchStatus::Rejected => "Rejected",
        }
    }
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskState {
    /// Not executed yet.
    Waiting,
    /// Aborted before it was executed.
    Canceled,
    /// Executed: the index of its payout.
    Executed(usize),
}

/// A task as the merchant sent it, and what became of it.
#[derive(Debug, Clone)]
pub(super) struct Task {
    pub(super) seq: u32,
    pub(super) address: String,
    pub(super) memo: String,
    pub(super) amount: String,
    pub(super) remark: String,
    pub(super) created_ms: i64,
    pub(super) updated_ms: i64,
    pub(super) state: TaskState,
}

/// A batch withdrawal.
#[derive(Debug, Clone)]
pub(super) struct Batch {
    pub(super) batch_order_id: String,
    pub(super) bill_id: String,
    pub(super) coin_id: u64,
    pub(super) chain: String,
    pub(super) product_name: String,
    pub(super) mode: Mode,
    pub(super) notify_url: String,
    pub(super) status: BatchStatus,
    pub(super) created_ms: i64,
    pub(super) updated_ms: i64,
    /// `delaySeconds` of the confirm, in milliseconds.
    pub(super) delay_ms: i64,
    /// When `Reviewing` ends (`batch-review`).
    pub(super) review_until_ms: Option<i64>,
    /// When the run starts (`Processing`): the confirm, plus the review, plus the delay.
    pub(super) start_ms: Option<i64>,
    /// When its next step is due (its entry in `World::batch_due`).
    pub(super) next_event_ms: Option<i64>,
    /// The seq of the task executed last (0 before the first).
    pub(super) exec_seq: u32,
    /// `Batch` mode: whether the batch's one network fee has been debited.
    pub(super) fee_charged: bool,
    /// In arrival order; an index here is a task's identity (seqs may repeat under
    /// `batch-seq-unchecked`).
    pub(super) tasks: Vec<Task>,
}

impl Batch {
    /// Task indexes in seq order (arrival order among equal seqs).
    fn by_seq(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.tasks.len()).collect();
        order.sort_by_key(|&i| (self.tasks[i].seq, i));
        order
    }
}

/// What `getBatchWithdrawOrder` answers with code 10000.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum BatchAnswer {
    /// A batch: the one asked for, or another under `other-record`.
    Found(Box<BatchWithdrawOrder>),
    /// `{}`: every field absent (`empty-record`).
    Empty(Empty),
}

/// The coin, network and chain facts a task is checked against.
struct Target {
    family: AddressFamily,
    support_memo: bool,
    precision: u32,
    min: Decimal,
    max: Decimal,
    min_text: String,
    max_text: String,
}

/// 11000 unless 3 to 64 characters.
fn check_batch_id(id: &str) -> Result<(), Refusal> {
    if (3..=64).contains(&id.chars().count()) {
        Ok(())
    } else {
        Err(Refusal::invalid("batchOrderId must be 3 to 64 characters"))
    }
}

/// Unix seconds of a world time.
fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

impl World {
    // -----------------------------------------------------------------------------------------
    // The routes
    // -----------------------------------------------------------------------------------------

    /// `applyBatchWithdraw`.
    /// `batch-partial-apply`: the batch the apply in `body` just created (its reply about to be
    /// lost) keeps only the first half of its tasks, as an apply that stopped midway would.
    pub(super) fn keep_first_half_of_last_apply(&mut self, body: &[u8]) {
        let Some(id) = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("batchOrderId").and_then(|id| id.as_str().map(str::to_owned)))
        else {
            return;
        };
        let Some(&index) = self.batch_ids.get(&id).and_then(|list| list.last()) else {
            return;
        };
        if let Some(batch) = self.batches.get_mut(index)
            && batch.status == BatchStatus::Init
        {
            let keep = batch.tasks.len().div_ceil(2);
            batch.tasks.truncate(keep);
        }
    }

    pub fn apply_batch(
        &mut self,
        req: ApplyBatchWithdrawRequest,
        now_ms: i64,
    ) -> Result<ApplyBatchWithdrawReply, Refusal> {
        check_batch_id(&req.batch_order_id)?;
        // Like an orderId, a used batchOrderId is looked at before anything else, so a resent
        // apply always gets the same answer.
        if let Some(&first) = self.batch_ids.get(&req.batch_order_id).and_then(|ids| ids.first()) {
            match self.readings.repeated_batch {
                RepeatedBatch::Refused => return Err(Refusal::code(11007)),
                RepeatedBatch::Idempotent => {
                    let batch = &self.batches[first];
                    return Ok(ApplyBatchWithdrawReply {
                        batch_order_id: batch.batch_order_id.clone(),
                        bill_id: batch.bill_id.clone(),
                    });
                }
                RepeatedBatch::Reuse => {}
            }
        }
        let mode = Mode::parse(&req.mode).ok_or_else(|| Refusal::invalid("mode must be Single or Batch"))?;
        if req.orders.len() > MAX_TASKS_PER_REQUEST {
            return Err(Refusal::invalid(format!(
                "orders has {} tasks; at most {MAX_TASKS_PER_REQUEST}",
                req.orders.len()
            )));
        }
        if req.notify_url.chars().count() > MAX_BATCH_NOTIFY_URL_CHARS {
            return Err(Refusal::invalid(format!(
                "notifyUrl is longer than {MAX_BATCH_NOTIFY_URL_CHARS} characters"
            )));
        }
        if !req.notify_url.is_empty() && reqwest::Url::parse(&req.notify_url).is_err() {
            return Err(Refusal::invalid("notifyUrl must be a URI"));
        }
        let target = self.batch_target(req.coin_id, &req.chain, true)?;
        let tasks = self.check_tasks(&target, &req.orders, HashSet::new(), now_ms)?;
        self.generation += 1;
        let bill_id = self.next_id(now_ms);
        let idx = self.batches.len();
        self.batches.push(Batch {
            batch_order_id: req.batch_order_id.clone(),
            bill_id: bill_id.clone(),
            coin_id: req.coin_id,
            chain: req.chain,
            product_name: req.product_name,
            mode,
            notify_url: req.notify_url,
            status: BatchStatus::Init,
            created_ms: now_ms,
            updated_ms: now_ms,
            delay_ms: 0,
            review_until_ms: None,
            start_ms: None,
            next_event_ms: None,
            exec_seq: 0,
            fee_charged: false,
            tasks,
        });
        self.batch_ids.entry(req.batch_order_id.clone()).or_default().push(idx);
        Ok(ApplyBatchWithdrawReply {
            batch_order_id: req.batch_order_id,
            bill_id,
        })
    }

    /// `appendBatchWithdraw`: returns the batch's billId. Tasks go to the first batch with the
    /// id (under `batch-id-reuse` there may be more).
    pub fn append_batch(&mut self, req: AppendBatchWithdrawRequest, now_ms: i64) -> Result<String, Refusal> {
        check_batch_id(&req.batch_order_id)?;
        let b = self
            .first_batch(&req.batch_order_id)
            .ok_or_else(|| Refusal::code(11003))?;
        let batch = &self.batches[b];
        if batch.status != BatchStatus::Init {
            // Undocumented: tasks can only be added before the confirm.
            return Err(Refusal::invalid(format!(
                "batch {} is {}: tasks can only be appended while it is Init",
                batch.batch_order_id,
                batch.status.as_str()
            )));
        }
        if req.orders.is_empty() || req.orders.len() > MAX_TASKS_PER_REQUEST {
            return Err(Refusal::invalid(format!(
                "orders has {} tasks; 1 to {MAX_TASKS_PER_REQUEST} may be appended at once",
                req.orders.len()
            )));
        }
        let target = self.batch_target(batch.coin_id, &batch.chain, false)?;
        let existing = batch.tasks.iter().map(|t| t.seq).collect();
        let tasks = self.check_tasks(&target, &req.orders, existing, now_ms)?;
        self.generation += 1;
        let batch = &mut self.batches[b];
        batch.tasks.extend(tasks);
        batch.updated_ms = now_ms;
        Ok(batch.bill_id.clone())
    }

    /// `confirmBatchWithdraw`: every `Init` batch with the id starts (one, unless
    /// `batch-id-reuse` made more); the reply is the first batch as it now stands. A batch no
    /// longer `Init` is left as it is (undocumented: answered 10000, idempotent).
    pub fn confirm_batch(
        &mut self,
        req: ConfirmBatchWithdrawRequest,
        now_ms: i64,
    ) -> Result<BatchWithdrawOrder, Refusal> {
        check_batch_id(&req.batch_order_id)?;
        if req.delay_seconds > MAX_CONFIRM_DELAY_SECS {
            return Err(Refusal::invalid(format!(
                "delaySeconds must be 0 to {MAX_CONFIRM_DELAY_SECS}"
            )));
        }
        let ids = self
            .batch_ids
            .get(&req.batch_order_id)
            .cloned()
            .ok_or_else(|| Refusal::code(11003))?;
        let delay_ms = i64::try_from(req.delay_seconds).unwrap_or(0) * 1000;
        for &b in &ids {
            if self.batches[b].status == BatchStatus::Init {
                self.start_batch(b, delay_ms, now_ms);
            }
        }
        Ok(self.batch_view(ids[0], now_ms))
    }

    /// `abortBatchWithdraw`: on every batch with the id that is not `Completed`.
    pub fn abort_batch(
        &mut self,
        req: AbortBatchWithdrawRequest,
        now_ms: i64,
    ) -> Result<AbortBatchWithdrawReply, Refusal> {
        check_batch_id(&req.batch_order_id)?;
        if req.seqs.len() > MAX_TASKS_PER_REQUEST {
            return Err(Refusal::invalid(format!(
                "seqs has {} entries; at most {MAX_TASKS_PER_REQUEST}",
                req.seqs.len()
            )));
        }
        let ids = self
            .batch_ids
            .get(&req.batch_order_id)
            .cloned()
            .ok_or_else(|| Refusal::code(11003))?;
        let open: Vec<usize> = ids
            .into_iter()
            .filter(|&b| self.batches[b].status != BatchStatus::Completed)
            .collect();
        if open.is_empty() {
            return Err(Refusal::code(14028));
        }
        let wanted: Option<HashSet<u32>> = (!req.seqs.is_empty()).then(|| req.seqs.iter().copied().collect());
        let mut canceled = Vec::new();
        let mut ignored = Vec::new();
        for b in open {
            let mut seen = HashSet::new();
            let batch = &mut self.batches[b];
            for task in &mut batch.tasks {
                if wanted.as_ref().is_some_and(|w| !w.contains(&task.seq)) {
                    continue;
                }
                seen.insert(task.seq);
                match task.state {
                    TaskState::Waiting => {
                        task.state = TaskState::Canceled;
                        task.updated_ms = now_ms;
                        batch.updated_ms = now_ms;
                        canceled.push(task.seq);
                    }
                    TaskState::Canceled => canceled.push(task.seq),
                    TaskState::Executed(_) => ignored.push(task.seq),
                }
            }
            if let Some(wanted) = &wanted {
                ignored.extend(wanted.iter().filter(|s| !seen.contains(s)));
            }
            self.generation += 1;
            self.refresh_completion(b, now_ms);
        }
        canceled.sort_unstable();
        ignored.sort_unstable();
        ignored.dedup();
        Ok(AbortBatchWithdrawReply {
            batch_order_id: req.batch_order_id,
            canceled_seqs: canceled,
            ignored_seqs: ignored,
        })
    }

    /// `getBatchWithdrawOrder`.
    pub fn get_batch(&self, q: &BatchOrderQuery, now_ms: i64) -> Result<BatchAnswer, Refusal> {
        check_batch_id(&q.batch_order_id)?;
        if q.verbose > MAX_VERBOSE {
            return Err(Refusal::invalid(format!("verbose must be 0 to {MAX_VERBOSE}")));
        }
        let lag = self.readings.lookup_lag_ms();
        if let Some(b) = self.visible_batch(&q.batch_order_id, now_ms) {
            return Ok(BatchAnswer::Found(Box::new(self.batch_view_at(b, now_ms, lag))));
        }
        // R1, as for an unknown orderId.
        match self.readings.unknown_order {
            UnknownOrder::NotFound => Err(Refusal::code(11003)),
            UnknownOrder::EmptyRecord => Ok(BatchAnswer::Empty(Empty {})),
            UnknownOrder::OtherRecord => {
                let other = (0..self.batches.len())
                    .rev()
                    .find(|&b| self.batches[b].batch_order_id != q.batch_order_id && self.batch_visible(b, now_ms));
                Ok(other.map_or(BatchAnswer::Empty(Empty {}), |b| {
                    BatchAnswer::Found(Box::new(self.batch_view_at(b, now_ms, lag)))
                }))
            }
        }
    }

    /// `getBatchWithdrawOrderRecordList`: the tasks in seq order, `limit` a page (20 when 0),
    /// `nextId` an opaque cursor (the seq and arrival of the next task).
    pub fn list_batch_records(&self, q: &BatchRecordListQuery, now_ms: i64) -> Result<BatchRecordPage, Refusal> {
        check_batch_id(&q.batch_order_id)?;
        let limit = match usize::try_from(q.limit) {
            Ok(0) => DEFAULT_RECORD_PAGE,
            Ok(n) if n <= BATCH_RECORD_PAGE_SIZE => n,
            _ => {
                return Err(Refusal::invalid(format!(
                    "limit must be at most {BATCH_RECORD_PAGE_SIZE}"
                )));
            }
        };
        let from = match q.next_id.as_str() {
            "" => (0, 0),
            cursor => {
                decode_task_cursor(cursor).ok_or_else(|| Refusal::invalid("nextId is not a cursor from this server"))?
            }
        };
        let b = self
            .visible_batch(&q.batch_order_id, now_ms)
            .ok_or_else(|| Refusal::code(11003))?;
        let batch = &self.batches[b];
        let lag = self.readings.lookup_lag_ms();
        let mut records = Vec::new();
        let mut next_id = String::new();
        for i in batch.by_seq() {
            let task = &batch.tasks[i];
            if (task.seq, i) < from || !task_visible(task, now_ms, lag) {
                continue;
            }
            if records.len() == limit {
                next_id = encode_task_cursor(task.seq, i);
                break;
            }
            records.push(self.task_view(batch, task));
        }
        Ok(BatchRecordPage { next_id, records })
    }

    // -----------------------------------------------------------------------------------------
    // The run
    // -----------------------------------------------------------------------------------------

    /// When the next batch step is due.
    pub(super) fn next_batch_due_ms(&self) -> Option<i64> {
        self.batch_due.first().map(|&(due, _)| due)
    }

    /// Takes the first batch step due at or before `now_ms` off the schedule and runs it at its
    /// own time; `false` when none is due.
    pub(super) fn run_due_batch_step(&mut self, now_ms: i64) -> bool {
        let Some(&(due, b)) = self.batch_due.first() else {
            return false;
        };
        if due > now_ms {
            return false;
        }
        self.batch_due.pop_first();
        self.batches[b].next_event_ms = None;
        self.advance_batch(b, due);
        true
    }

    /// A task payout settled: the batch may be complete.
    pub(super) fn task_settled(&mut self, payout: usize, at_ms: i64) {
        if let Some(&(b, t)) = self.task_payouts.get(&payout) {
            self.batches[b].tasks[t].updated_ms = at_ms;
            self.batches[b].updated_ms = at_ms;
            self.refresh_completion(b, at_ms);
        }
    }

    /// The key of a settled task payout's transaction hash: in `Batch` mode the tasks share one
    /// transaction (the batch's billId); `None` for single payouts and `Single` mode.
    pub(super) fn shared_tx_key(&self, payout: usize) -> Option<String> {
        let &(b, _) = self.task_payouts.get(&payout)?;
        let batch = &self.batches[b];
        (batch.mode == Mode::Batch).then(|| batch.bill_id.clone())
    }

    /// The confirm of an `Init` batch: review, delay, then the run (at once when neither).
    fn start_batch(&mut self, b: usize, delay_ms: i64, now_ms: i64) {
        self.generation += 1;
        let review_ms = self.readings.batch_review_ms();
        let batch = &mut self.batches[b];
        batch.delay_ms = delay_ms;
        batch.updated_ms = now_ms;
        if review_ms > 0 {
            batch.status = BatchStatus::Reviewing;
            batch.review_until_ms = Some(now_ms.saturating_add(review_ms));
        } else {
            batch.status = BatchStatus::Pending;
        }
        batch.start_ms = Some(now_ms.saturating_add(review_ms).saturating_add(delay_ms));
        self.advance_batch(b, now_ms);
    }

    /// Every step of batch `b` that is due at `at_ms` (its own scheduled time), then its next
    /// step on the schedule.
    fn advance_batch(&mut self, b: usize, at_ms: i64) {
        loop {
            let batch = &mut self.batches[b];
            match batch.status {
                BatchStatus::Reviewing => {
                    let until = batch.review_until_ms.unwrap_or(at_ms);
                    if at_ms < until {
                        self.schedule_batch(b, Some(until));
                        return;
                    }
                    if self.readings.batch_review_reject {
                        batch.status = BatchStatus::Rejected;
                        batch.updated_ms = at_ms;
                        self.generation += 1;
                        self.schedule_batch(b, None);
                        return;
                    }
                    batch.status = BatchStatus::Pending;
                    batch.updated_ms = at_ms;
                    self.generation += 1;
                }
                BatchStatus::Pending => {
                    let start = batch.start_ms.unwrap_or(at_ms);
                    if at_ms < start {
                        self.schedule_batch(b, Some(start));
                        return;
                    }
                    batch.status = BatchStatus::Processing;
                    batch.updated_ms = at_ms;
                    self.generation += 1;
                }
                BatchStatus::Processing => {
                    let waiting: Vec<usize> = batch
                        .by_seq()
                        .into_iter()
                        .filter(|&t| batch.tasks[t].state == TaskState::Waiting)
                        .collect();
                    let now_run = match batch.mode {
                        Mode::Single => &waiting[..waiting.len().min(1)],
                        Mode::Batch => &waiting[..],
                    };
                    for &t in now_run {
                        self.execute_task(b, t, at_ms);
                    }
                    let more = waiting.len() > now_run.len();
                    let next = more.then(|| at_ms.saturating_add(self.batch_task_interval_ms));
                    self.schedule_batch(b, next);
                    self.refresh_completion(b, at_ms);
                    return;
                }
                BatchStatus::Init | BatchStatus::Completed | BatchStatus::Rejected => {
                    self.schedule_batch(b, None);
                    return;
                }
            }
        }
    }

    /// Puts batch `b`'s next step on the schedule (or takes it off).
    fn schedule_batch(&mut self, b: usize, next: Option<i64>) {
        let batch = &mut self.batches[b];
        if let Some(old) = batch.next_event_ms.take() {
            self.batch_due.remove(&(old, b));
        }
        batch.next_event_ms = next;
        if let Some(at) = next {
            self.batch_due.insert((at, b));
        }
    }

    /// `Completed` once every task is final. Called where that can happen: after an abort (of a
    /// batch in any status), an execution and a task's settlement; so an empty batch completes
    /// when it runs or is aborted, never while it waits.
    fn refresh_completion(&mut self, b: usize, at_ms: i64) {
        let batch = &self.batches[b];
        if matches!(batch.status, BatchStatus::Completed | BatchStatus::Rejected) {
            return;
        }
        let all_final = batch.tasks.iter().all(|t| match t.state {
            TaskState::Waiting => false,
            TaskState::Canceled => true,
            TaskState::Executed(p) => self.payouts[p].ledger.status != RecordStatus::Processing,
        });
        if !all_final {
            return;
        }
        self.generation += 1;
        let batch = &mut self.batches[b];
        batch.status = BatchStatus::Completed;
        batch.updated_ms = at_ms;
        self.schedule_batch(b, None);
    }

    /// Executes task `t` of batch `b` at `at_ms`: a payout, debited and due to settle, or failed
    /// at once when the balance does not cover it.
    fn execute_task(&mut self, b: usize, t: usize, at_ms: i64) {
        self.generation += 1;
        let batch = &self.batches[b];
        let task = batch.tasks[t].clone();
        let (coin_id, chain, mode, fee_charged) = (batch.coin_id, batch.chain.clone(), batch.mode, batch.fee_charged);
        let batch_order_id = batch.batch_order_id.clone();
        let amount = parse_plain_decimal(&task.amount).unwrap_or_default();
        let (fee_coin_id, full_fee) = self
            .catalogue
            .fee(coin_id, &chain)
            .map_or((coin_id, Decimal::ZERO), |f| {
                (f.fee_coin_id, catalogue_decimal(f.amount))
            });
        // Batch mode: one fee for the whole batch, carried by the first task debited.
        let fee = match mode {
            Mode::Batch if fee_charged => Decimal::ZERO,
            Mode::Single | Mode::Batch => full_fee,
        };
        // The merchant pays the fee: the amount and the fee come out of the balance.
        let shortfall = if fee_coin_id == coin_id {
            (self.balance_of(coin_id) < amount + fee).then_some(BALANCE_REASON)
        } else if self.balance_of(coin_id) < amount {
            Some(BALANCE_REASON)
        } else {
            (self.balance_of(fee_coin_id) < fee).then_some(FEE_BALANCE_REASON)
        };
        let settles = shortfall.is_none();
        let mut debits = Vec::new();
        if settles {
            if fee_coin_id == coin_id {
                debits.push((coin_id, amount + fee));
            } else {
                debits.push((coin_id, amount));
                if !fee.is_zero() {
                    debits.push((fee_coin_id, fee));
                }
            }
        }
        let record_id = self.next_id(at_ms);
        // Decided now, as a single withdrawal's outcome is decided at its commit.
        let will_fail = settles
            && (self.failing_recipients.contains(&task.address)
                || (self.fail_rate > 0.0 && self.rng.next_f64() < self.fail_rate));
        let contract = self
            .catalogue
            .coin(coin_id)
            .and_then(|c| c.networks.get(&chain))
            .map(|n| n.contract.clone())
            .unwrap_or_default();
        // CCPayment's own id of the task's withdrawal (ledger `order_id`; the merchant's own
        // reference is the remark).
        let order_id = format!("{record_id}01");
        let due_ms = if settles {
            at_ms.saturating_add(self.settle_delay_ms)
        } else {
            at_ms
        };
        let payout = Payout {
            ledger: LedgerPayout {
                record_id,
                order_id: order_id.clone(),
                api: "v2".to_owned(),
                withdraw_type: "Network".to_owned(),
                coin_id,
                coin_symbol: self.symbol(coin_id),
                chain: chain.clone(),
                to_address: task.address.clone(),
                memo: task.memo.clone(),
                cwallet_user: String::new(),
                amount: task.amount.clone(),
                fee: settles.then(|| FeeAmount {
                    coin_id: fee_coin_id,
                    coin_symbol: self.symbol(fee_coin_id),
                    amount: fmt_decimal(fee),
                }),
                receiver_gets: fmt_decimal(amount),
                merchant_pays_fee: true,
                status: if settles {
                    RecordStatus::Processing
                } else {
                    RecordStatus::Failed
                },
                reason: shortfall.unwrap_or_default().to_owned(),
                tx_id: String::new(),
                created_ms: at_ms,
                settled_ms: (!settles).then_some(at_ms),
                batch_order_id,
                seq: task.seq,
                remark: task.remark.clone(),
            },
            from_address: hot_wallet(&chain).to_owned(),
            contract,
            ccp_order_id: order_id,
            debits,
            due_ms,
            will_fail,
            // No batch webhook format is known: none is sent for tasks.
            webhook_url: None,
        };
        for &(coin, value) in &payout.debits {
            *self.balances.entry(coin).or_default() -= value;
        }
        let idx = self.payouts.len();
        self.payouts.push(payout);
        if settles {
            self.due.insert((due_ms, idx));
        }
        self.task_payouts.insert(idx, (b, t));
        let batch = &mut self.batches[b];
        if settles && !fee.is_zero() {
            batch.fee_charged = true;
        }
        batch.exec_seq = task.seq;
        batch.tasks[t].state = TaskState::Executed(idx);
        batch.tasks[t].updated_ms = at_ms;
        batch.updated_ms = at_ms;
    }

    // -----------------------------------------------------------------------------------------
    // Checks, lookups and views
    // -----------------------------------------------------------------------------------------

    /// The facts a batch's tasks are checked against; `opening` also checks that withdrawals of
    /// the coin on the chain are open (13005, 14004), as a single withdrawal does.
    fn batch_target(&self, coin_id: u64, chain: &str, opening: bool) -> Result<Target, Refusal> {
        let coin = self.catalogue.coin(coin_id).ok_or_else(|| Refusal::code(13000))?;
        if chain == CWALLET_CHAIN || chain.eq_ignore_ascii_case("CWALLET") {
            return Err(Refusal::msg(
                13001,
                "InvalidChain: a batch pays chain addresses, not Cwallet",
            ));
        }
        let network = coin.networks.get(chain).ok_or_else(|| Refusal::code(13001))?;
        let chain_info = self.catalogue.chain(chain).ok_or_else(|| Refusal::code(13001))?;
        if opening {
            if !withdrawals_open(&coin.status) {
                return Err(Refusal::code(13005));
            }
            if !chain_info.is_normal() || !network.can_withdraw {
                return Err(Refusal::code(14004));
            }
        }
        Ok(Target {
            family: AddressFamily::for_chain(chain),
            support_memo: chain_info.support_memo,
            precision: network.precision,
            min: catalogue_decimal(&network.minimum_withdraw_amount),
            max: catalogue_decimal(&network.maximum_withdraw_amount),
            min_text: network.minimum_withdraw_amount.clone(),
            max_text: network.maximum_withdraw_amount.clone(),
        })
    }

    /// Checks the tasks of one request in order; `seqs` holds the seqs already in the batch.
    /// One bad task refuses them all, its seq named.
    fn check_tasks(
        &self,
        target: &Target,
        orders: &[BatchTask],
        mut seqs: HashSet<u32>,
        now_ms: i64,
    ) -> Result<Vec<Task>, Refusal> {
        let mut tasks = Vec::with_capacity(orders.len());
        for (i, order) in orders.iter().enumerate() {
            let seq = order.seq;
            if seq == 0 {
                return Err(Refusal::invalid(format!("orders[{i}].seq must be greater than 0")));
            }
            if !seqs.insert(seq) && !self.readings.batch_seq_unchecked {
                return Err(Refusal::msg(
                    14027,
                    format!("SeqDuplicate: seq {seq} is already in the batch or repeated in the request"),
                ));
            }
            if let Err(e) = check_address(target.family, &order.address) {
                return Err(Refusal::msg(14007, format!("WithdrawAddrFormat: seq {seq}: {e}")));
            }
            if order.memo.chars().count() > MAX_TASK_MEMO_CHARS {
                return Err(Refusal::invalid(format!(
                    "orders[{i}].memo is longer than {MAX_TASK_MEMO_CHARS} characters"
                )));
            }
            if target.support_memo && order.memo.is_empty() {
                return Err(Refusal::msg(14003, format!("AddressEmptyMemo: seq {seq}")));
            }
            if !target.support_memo && !order.memo.is_empty() {
                return Err(Refusal::msg(14009, format!("CoinNoSupportMemo: seq {seq}")));
            }
            if order.remark.chars().count() > MAX_TASK_REMARK_CHARS {
                return Err(Refusal::invalid(format!(
                    "orders[{i}].remark is longer than {MAX_TASK_REMARK_CHARS} characters"
                )));
            }
            let amount = parse_amount(&order.amount, &format!("orders[{i}].amount"))?;
            if amount.normalize().scale() > target.precision {
                return Err(Refusal::msg(
                    14013,
                    format!("CoinPrecisionLimit: seq {seq}: at most {} decimals", target.precision),
                ));
            }
            if amount < target.min {
                return Err(Refusal::msg(
                    14005,
                    format!("WithdrawValueLessThanLimit: seq {seq}: minimum is {}", target.min_text),
                ));
            }
            if !target.max.is_zero() && amount > target.max {
                return Err(Refusal::msg(
                    14006,
                    format!("WithdrawValueMoreThanLimit: seq {seq}: maximum is {}", target.max_text),
                ));
            }
            tasks.push(Task {
                seq,
                address: order.address.clone(),
                memo: order.memo.clone(),
                amount: order.amount.clone(),
                remark: order.remark.clone(),
                created_ms: now_ms,
                updated_ms: now_ms,
                state: TaskState::Waiting,
            });
        }
        Ok(tasks)
    }

    /// A record id, or a batch's billId: the same dated sequence, so they never collide.
    fn next_id(&mut self, now_ms: i64) -> String {
        let seq = self.next_seq;
        self.next_seq += 1;
        format!("{}{seq:06}", utc_compact(now_ms))
    }

    /// The first batch with this id (what every read and `append` see).
    fn first_batch(&self, id: &str) -> Option<usize> {
        self.batch_ids.get(id).and_then(|ids| ids.first().copied())
    }

    /// The first batch with this id that reads see at `now_ms`.
    fn visible_batch(&self, id: &str, now_ms: i64) -> Option<usize> {
        self.batch_ids
            .get(id)?
            .iter()
            .copied()
            .find(|&b| self.batch_visible(b, now_ms))
    }

    /// Whether reads see batch `b` at `now_ms` (`lookup-lag`).
    fn batch_visible(&self, b: usize, now_ms: i64) -> bool {
        now_ms >= self.batches[b].created_ms.saturating_add(self.readings.lookup_lag_ms())
    }

    /// The batch as the replies show it, every task counted (what a create answers).
    fn batch_view(&self, b: usize, now_ms: i64) -> BatchWithdrawOrder {
        self.batch_view_at(b, now_ms, 0)
    }

    /// The batch as the replies show it at `now_ms`, counting only the tasks stored at least
    /// `lag_ms` ago.
    fn batch_view_at(&self, b: usize, now_ms: i64, lag_ms: i64) -> BatchWithdrawOrder {
        let batch = &self.batches[b];
        let mut stats = BatchStats {
            exec_seq: batch.exec_seq,
            ..BatchStats::default()
        };
        let mut amount = Decimal::ZERO;
        let mut fees = Decimal::ZERO;
        let fee_coin_id = self
            .catalogue
            .fee(batch.coin_id, &batch.chain)
            .map_or(batch.coin_id, |f| f.fee_coin_id);
        for task in batch
            .tasks
            .iter()
            .filter(|t| lag_ms == 0 || task_visible(t, now_ms, lag_ms))
        {
            stats.total += 1;
            amount += parse_plain_decimal(&task.amount).unwrap_or_default();
            match task.state {
                TaskState::Waiting => {}
                TaskState::Canceled => stats.canceled += 1,
                TaskState::Executed(p) => {
                    let ledger = &self.payouts[p].ledger;
                    match ledger.status {
                        RecordStatus::Success => stats.succeeded += 1,
                        RecordStatus::Failed => stats.failed += 1,
                        _ => stats.processing += 1,
                    }
                    if let Some(fee) = &ledger.fee {
                        fees += catalogue_decimal(&fee.amount);
                    }
                }
            }
        }
        let coin = |coin_id: u64| BatchCoin {
            coin_id,
            coin_symbol: self.symbol(coin_id),
            coin_price: fmt_decimal(self.price(coin_id)),
        };
        BatchWithdrawOrder {
            batch_order_id: batch.batch_order_id.clone(),
            product_name: batch.product_name.clone(),
            bill_id: batch.bill_id.clone(),
            coin: coin(batch.coin_id),
            amount: fmt_decimal(amount),
            network_fee: fmt_decimal(fees),
            network_fee_coin: coin(fee_coin_id),
            status: batch.status.as_str().to_owned(),
            reason: if batch.status == BatchStatus::Rejected {
                REVIEW_REJECT_REASON.to_owned()
            } else {
                String::new()
            },
            mode: batch.mode.as_str().to_owned(),
            stats,
            created_at: secs(batch.created_ms),
            updated_at: secs(batch.updated_ms),
        }
    }

    /// A task as the record list shows it: what was sent, exactly, and what CCPayment added.
    fn task_view(&self, batch: &Batch, task: &Task) -> BatchTask {
        let mut view = BatchTask {
            seq: task.seq,
            address: task.address.clone(),
            memo: task.memo.clone(),
            amount: task.amount.clone(),
            remark: task.remark.clone(),
            created_at: secs(task.created_ms),
            updated_at: secs(task.updated_ms),
            ..BatchTask::default()
        };
        match task.state {
            TaskState::Waiting if batch.status == BatchStatus::Init => view.status = "Init".to_owned(),
            TaskState::Waiting => view.status = "Pending".to_owned(),
            TaskState::Canceled => view.status = "Canceled".to_owned(),
            TaskState::Executed(p) => {
                let ledger = &self.payouts[p].ledger;
                view.record_id = ledger.record_id.clone();
                view.order_id = ledger.order_id.clone();
                view.status = match ledger.status {
                    RecordStatus::Success if self.readings.task_status_success => "Success",
                    RecordStatus::Success => "Successful",
                    RecordStatus::Failed => "Failed",
                    _ => "Processing",
                }
                .to_owned();
                view.network_fee = ledger.fee.as_ref().map_or_else(|| "0".to_owned(), |f| f.amount.clone());
                view.tx_id = ledger.tx_id.clone();
                view.reason = ledger.reason.clone();
            }
        }
        view
    }
}

/// Whether reads see a task at `now_ms` under a lag of `lag_ms`.
fn task_visible(task: &Task, now_ms: i64, lag_ms: i64) -> bool {
    now_ms >= task.created_ms.saturating_add(lag_ms)
}

/// The `nextId` of a page that starts at the task with this seq and arrival index.
fn encode_task_cursor(seq: u32, idx: usize) -> String {
    format!("s{seq:x}.{idx:x}")
}

fn decode_task_cursor(cursor: &str) -> Option<(u32, usize)> {
    let (seq, idx) = cursor.strip_prefix('s')?.split_once('.')?;
    Some((u32::from_str_radix(seq, 16).ok()?, usize::from_str_radix(idx, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::{Value, json};

    use crate::api::types::method;
    use crate::sandbox::world::testkit::*;
    use crate::sandbox::world::{FAILURE_REASON, Route, Transport};
    use crate::sandbox::{AttemptOutcome, DEMO_FAILING_ADDRESS, Faults, RateLimit, Readings};

    fn task(seq: u32, address: &str, amount: &str, remark: &str) -> Value {
        json!({"seq": seq, "address": address, "amount": amount, "remark": remark})
    }

    /// `n` TRX tasks of 5 USDT, seqs 1..=n, remarks `row-SEQ`.
    fn trx_tasks(seqs: impl IntoIterator<Item = u32>) -> Vec<Value> {
        seqs.into_iter()
            .map(|seq| task(seq, TRX_ADDR, "5", &format!("row-{seq}")))
            .collect()
    }

    fn apply_body(id: &str, chain: &str, mode: &str, orders: Vec<Value>) -> Value {
        json!({"batchOrderId": id, "coinId": 1280, "chain": chain, "mode": mode, "orders": orders})
    }

    fn apply(w: &mut World, body: &Value, now_ms: i64) -> (i64, Value) {
        call(w, method::APPLY_BATCH_WITHDRAW, body, now_ms)
    }

    fn append(w: &mut World, id: &str, orders: Vec<Value>, now_ms: i64) -> (i64, Value) {
        let body = json!({"batchOrderId": id, "orders": orders});
        call(w, method::APPEND_BATCH_WITHDRAW, &body, now_ms)
    }

    fn confirm(w: &mut World, id: &str, delay_secs: i64, now_ms: i64) -> (i64, Value) {
        let body = json!({"batchOrderId": id, "delaySeconds": delay_secs});
        call(w, method::CONFIRM_BATCH_WITHDRAW, &body, now_ms)
    }

    fn abort(w: &mut World, id: &str, seqs: &[u32], now_ms: i64) -> (i64, Value) {
        let body = json!({"batchOrderId": id, "seqs": seqs});
        call(w, method::ABORT_BATCH_WITHDRAW, &body, now_ms)
    }

    fn get(w: &mut World, id: &str, now_ms: i64) -> (i64, Value) {
        call(
            w,
            method::GET_BATCH_WITHDRAW_ORDER,
            &json!({ "batchOrderId": id }),
            now_ms,
        )
    }

    /// The batch's data, which must be found.
    fn batch(w: &mut World, id: &str, now_ms: i64) -> Value {
        let (code, reply) = get(w, id, now_ms);
        assert_eq!(code, 10000, "{reply}");
        reply["data"].clone()
    }

    /// Every task of the batch, through the pages.
    fn tasks(w: &mut World, id: &str, now_ms: i64) -> Vec<Value> {
        let mut all = Vec::new();
        let mut next = String::new();
        loop {
            let body = json!({"batchOrderId": id, "limit": 100, "nextId": next});
            let (code, reply) = call(w, method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST, &body, now_ms);
            assert_eq!(code, 10000, "{reply}");
            all.extend(reply["data"]["records"].as_array().cloned().unwrap_or_default());
            next = reply["data"]["nextId"].as_str().unwrap_or_default().to_owned();
            if next.is_empty() {
                return all;
            }
        }
    }

    fn statuses(tasks: &[Value]) -> Vec<String> {
        tasks
            .iter()
            .map(|t| t["status"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn stats(batch: &Value) -> [i64; 6] {
        let s = &batch["stats"];
        ["total", "succeeded", "failed", "canceled", "processing", "execSeq"].map(|k| s[k].as_i64().unwrap_or(-1))
    }

    #[test]
    fn apply_refuses_every_bad_request_whole_and_stores_nothing() {
        let with = |mut v: Value, key: &str, val: Value| {
            v[key] = val;
            v
        };
        let with_task = |key: &str, val: Value| {
            let mut orders = trx_tasks(1..=2);
            orders[1][key] = val;
            apply_body("bad-1", "TRX", "Single", orders)
        };
        let base = apply_body("bad-1", "TRX", "Single", trx_tasks(1..=2));
        let mut no_mode = base.clone();
        no_mode.as_object_mut().expect("object").remove("mode");
        let mut xrp = apply_body("bad-1", "XRP", "Single", vec![task(1, XRP_ADDR, "10", "")]);
        xrp["coinId"] = 1462.into();
        let cases: Vec<(&str, Value, i64)> = vec![
            ("short id", with(base.clone(), "batchOrderId", "ab".into()), 11000),
            (
                "long id",
                with(base.clone(), "batchOrderId", "x".repeat(65).into()),
                11000,
            ),
            ("unknown coin", with(base.clone(), "coinId", 9999.into()), 13000),
            ("chain not a network", with(base.clone(), "chain", "XRP".into()), 13001),
            ("Cwallet", with(base.clone(), "chain", "Cwallet OS".into()), 13001),
            (
                "coin in Maintain",
                with(
                    apply_body(
                        "bad-1",
                        "DOGE",
                        "Single",
                        vec![task(1, "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L", "10", "")],
                    ),
                    "coinId",
                    1201.into(),
                ),
                13005,
            ),
            (
                "chain in maintenance",
                with(base.clone(), "chain", "ARBITRUM".into()),
                14004,
            ),
            ("mode", with(base.clone(), "mode", "Fast".into()), 11000),
            ("no mode", no_mode, 11000),
            (
                "501 tasks",
                apply_body("bad-1", "TRX", "Single", trx_tasks(1..=501)),
                11000,
            ),
            ("seq 0", with_task("seq", 0.into()), 11000),
            ("seq as text", with_task("seq", "2".into()), 11000),
            ("seq repeated", with_task("seq", 1.into()), 14027),
            ("address", with_task("address", EVM_ADDR.into()), 14007),
            ("memo too long", with_task("memo", "1".repeat(17).into()), 11000),
            ("memo on TRX", with_task("memo", "12".into()), 14009),
            ("no memo on XRP", xrp, 14003),
            ("remark too long", with_task("remark", "r".repeat(65).into()), 11000),
            ("negative", with_task("amount", "-5".into()), 11000),
            ("exponent", with_task("amount", "5e1".into()), 11000),
            ("amount as number", with_task("amount", 5.into()), 11000),
            ("precision", with_task("amount", "5.1234567".into()), 14013),
            ("below min", with_task("amount", "0.5".into()), 14005),
            (
                "notifyUrl too long",
                with(base.clone(), "notifyUrl", format!("https://{}", "h".repeat(113)).into()),
                11000,
            ),
            (
                "notifyUrl not a URI",
                with(base.clone(), "notifyUrl", "not a uri".into()),
                11000,
            ),
        ];
        for (name, body, code) in cases {
            let mut w = world();
            let (got, reply) = apply(&mut w, &body, T0);
            assert_eq!(got, code, "{name}: {reply}");
            assert_eq!(get(&mut w, "bad-1", T0).0, 11003, "{name}: nothing stored");
            assert_eq!(
                w.ledger().attempts[0].outcome,
                AttemptOutcome::Refused { code },
                "{name}"
            );
        }
        // The messages name the field or the seq.
        let mut w = world();
        let (_, reply) = apply(&mut w, &with_task("seq", "2".into()), T0);
        assert_eq!(reply["msg"], "orders[1].seq must be an unsigned integer");
        let (_, reply) = apply(&mut w, &with_task("address", EVM_ADDR.into()), T0);
        assert!(reply["msg"].as_str().is_some_and(|m| m.contains("seq 2")), "{reply}");
        // The limits themselves are fine.
        let long = json!([task(1, TRX_ADDR, "5", &"r".repeat(64))]);
        let mut body = apply_body("ok-1", "TRX", "Batch", serde_json::from_value(long).expect("tasks"));
        body["notifyUrl"] = format!("https://{}", "h".repeat(112)).into();
        assert_eq!(apply(&mut w, &body, T0).0, 10000);
        assert_eq!(
            apply(&mut w, &apply_body("ok-2", "TRX", "Single", trx_tasks(1..=500)), T0).0,
            10000
        );
    }

    #[test]
    fn apply_stores_an_init_batch_with_its_tasks_exactly_as_sent() {
        let mut w = world();
        let mut orders = vec![
            task(7, TRX_ADDR, "5.50", "order-b"),
            task(2, DEMO_FAILING_ADDRESS, "12", "order-a"),
            task(30, TRX_ADDR, "2", ""),
        ];
        orders[0]["recordId"] = "ignored".into();
        let mut body = apply_body("batch-1", "TRX", "Single", orders);
        body["productName"] = "December payroll".into();
        let (code, reply) = apply(&mut w, &body, T0);
        assert_eq!(code, 10000, "{reply}");
        assert_eq!(reply["data"]["batchOrderId"], "batch-1");
        let bill_id = reply["data"]["billId"].as_str().expect("billId").to_owned();
        assert_eq!(&bill_id[..14], "20231114221320");
        let b = batch(&mut w, "batch-1", T0);
        assert_eq!(b["status"], "Init");
        assert_eq!(b["billId"], bill_id.as_str());
        assert_eq!(b["productName"], "December payroll");
        assert_eq!(b["mode"], "Single");
        assert_eq!(b["amount"], "19.5");
        assert_eq!(b["networkFee"], "0");
        assert_eq!(
            b["coin"],
            json!({"coin_id": 1280, "coin_symbol": "USDT", "coin_price": "1"})
        );
        assert_eq!(b["networkFeeCoin"]["coin_symbol"], "USDT");
        assert_eq!(stats(&b), [3, 0, 0, 0, 0, 0]);
        assert_eq!(b["createdAt"], T0 / 1000);
        let listed = tasks(&mut w, "batch-1", T0);
        assert_eq!(
            listed
                .iter()
                .map(|t| t["seq"].as_i64().unwrap_or(0))
                .collect::<Vec<_>>(),
            [2, 7, 30],
            "seq order"
        );
        assert_eq!(listed[1]["amount"], "5.50", "as sent, trailing zero and all");
        assert_eq!(listed[1]["remark"], "order-b");
        assert_eq!(listed[0]["address"], DEMO_FAILING_ADDRESS);
        assert!(listed[2].get("remark").is_none(), "an empty remark is absent");
        assert_eq!(statuses(&listed), ["Init", "Init", "Init"]);
        for t in &listed {
            for absent in ["recordId", "orderId", "networkFee", "txId", "reason"] {
                assert!(t.get(absent).is_none(), "{absent} before the run: {t}");
            }
        }
        // Nothing is paid, nothing debited, before the confirm.
        assert!(w.ledger().payouts.is_empty());
        assert_eq!(bal(&w, "USDT"), "1000000");
        // An empty batch (no orders at all) is fine too.
        let empty = json!({"batchOrderId": "batch-2", "coinId": 1280, "chain": "TRX", "mode": "Batch"});
        assert_eq!(apply(&mut w, &empty, T0).0, 10000);
        assert_eq!(stats(&batch(&mut w, "batch-2", T0)), [0; 6]);
        let attempts = w.ledger().attempts;
        assert_eq!(attempts[0].endpoint, method::APPLY_BATCH_WITHDRAW);
        assert_eq!(attempts[0].order_id, "batch-1");
        assert_eq!(attempts[0].outcome, AttemptOutcome::Created { record_id: bill_id });
    }

    #[test]
    fn a_reused_batch_order_id_is_refused_by_default() {
        let mut w = world();
        assert_eq!(
            apply(&mut w, &apply_body("dup-1", "TRX", "Single", trx_tasks(1..=2)), T0).0,
            10000
        );
        let (code, reply) = apply(&mut w, &apply_body("dup-1", "TRX", "Single", trx_tasks(3..=9)), T0);
        assert_eq!((code, reply["msg"].as_str()), (11007, Some("RepeatedSubmit")));
        // Even a request that is wrong in other ways: the id is looked at first.
        assert_eq!(apply(&mut w, &apply_body("dup-1", "SOL", "Fast", vec![]), T0).0, 11007);
        assert_eq!(stats(&batch(&mut w, "dup-1", T0))[0], 2, "nothing added");
        assert_eq!(w.batches.len(), 1);
    }

    #[test]
    fn batch_apply_idempotent_answers_a_reused_id_with_the_existing_batch() {
        let mut w = world_with(|c| c.readings = Readings::parse("batch-apply-idempotent").expect("reading"));
        let (_, first) = apply(&mut w, &apply_body("idem-1", "TRX", "Single", trx_tasks(1..=2)), T0);
        let (code, again) = apply(
            &mut w,
            &apply_body("idem-1", "TRX", "Single", trx_tasks(1..=5)),
            T0 + 10,
        );
        assert_eq!(code, 10000);
        assert_eq!(again["data"], first["data"], "the same ids");
        assert_eq!(stats(&batch(&mut w, "idem-1", T0 + 10))[0], 2, "nothing added");
        assert_eq!(w.batches.len(), 1);
        confirm(&mut w, "idem-1", 0, T0 + 10);
        w.settle_due(T0 + 10_000);
        assert_eq!(w.ledger().tasks_of("idem-1").len(), 2, "paid once");
    }

    #[test]
    fn batch_id_reuse_makes_a_second_batch_that_confirm_and_abort_both_act_on() {
        let mut w = world_with(|c| c.readings = Readings::parse("batch-id-reuse").expect("reading"));
        let (_, first) = apply(&mut w, &apply_body("reuse-1", "TRX", "Single", trx_tasks(1..=2)), T0);
        let (code, second) = apply(&mut w, &apply_body("reuse-1", "TRX", "Single", trx_tasks(1..=3)), T0);
        assert_eq!(code, 10000);
        assert_eq!(second["data"]["batchOrderId"], "reuse-1");
        assert_ne!(second["data"]["billId"], first["data"]["billId"], "another batch");
        // Reads by the id see the first.
        let b = batch(&mut w, "reuse-1", T0);
        assert_eq!(
            (b["billId"].clone(), stats(&b)[0]),
            (first["data"]["billId"].clone(), 2)
        );
        assert_eq!(tasks(&mut w, "reuse-1", T0).len(), 2);
        // Append goes to the first too.
        assert_eq!(append(&mut w, "reuse-1", trx_tasks([9]), T0).0, 10000);
        assert_eq!(stats(&batch(&mut w, "reuse-1", T0))[0], 3);
        // Confirm runs both: five tasks of one id paid, not three.
        let (code, reply) = confirm(&mut w, "reuse-1", 0, T0);
        assert_eq!(code, 10000);
        assert_eq!(reply["data"]["billId"], first["data"]["billId"]);
        w.settle_due(T0 + 10_000);
        let ledger = w.ledger();
        let paid = ledger.tasks_of("reuse-1");
        assert_eq!(paid.len(), 6, "both batches paid");
        assert_eq!(
            paid.iter().filter(|p| p.remark == "row-1").count(),
            2,
            "row-1 paid twice"
        );
        assert_eq!(bal(&w, "USDT"), "999964");
        // Abort by the id reaches both (and both are Completed now).
        assert_eq!(abort(&mut w, "reuse-1", &[], T0 + 10_000).0, 14028);
        let mut w = world_with(|c| c.readings = Readings::parse("batch-id-reuse").expect("reading"));
        apply(&mut w, &apply_body("reuse-2", "TRX", "Single", trx_tasks(1..=2)), T0);
        apply(&mut w, &apply_body("reuse-2", "TRX", "Single", trx_tasks(2..=3)), T0);
        let (code, reply) = abort(&mut w, "reuse-2", &[2], T0);
        assert_eq!(code, 10000);
        assert_eq!(reply["data"]["canceledSeqs"], json!([2, 2]), "seq 2 of each batch");
        confirm(&mut w, "reuse-2", 0, T0);
        w.settle_due(T0 + 10_000);
        let remarks: Vec<String> = w
            .ledger()
            .tasks_of("reuse-2")
            .iter()
            .map(|p| p.remark.clone())
            .collect();
        assert_eq!(remarks, ["row-1", "row-3"]);
        // The snapshot of two batches under one id restores only under the reading.
        let snapshot = w.snapshot();
        let err = world().restore(snapshot.clone()).expect_err("refused");
        assert!(err.contains("reuse-2"), "{err}");
        let mut again = world_with(|c| c.readings = Readings::parse("batch-id-reuse").expect("reading"));
        again.restore(snapshot).expect("restores");
        assert_eq!(again.ledger(), w.ledger());
    }

    #[test]
    fn append_adds_tasks_while_init_and_refuses_duplicate_seqs_whole() {
        let mut w = world();
        assert_eq!(append(&mut w, "nope-1", trx_tasks([1]), T0).0, 11003);
        apply(&mut w, &apply_body("app-1", "TRX", "Single", trx_tasks(1..=2)), T0);
        let (code, reply) = append(&mut w, "app-1", trx_tasks([5, 3]), T0 + 5);
        assert_eq!(code, 10000, "{reply}");
        assert_eq!(reply["data"], json!({}));
        let listed = tasks(&mut w, "app-1", T0 + 5);
        assert_eq!(
            listed.iter().map(|t| t["seq"].as_i64()).collect::<Vec<_>>(),
            [1, 2, 3, 5].map(Some)
        );
        // A seq already in the batch, or twice in the request: 14027, nothing added.
        let (code, reply) = append(&mut w, "app-1", trx_tasks([8, 2]), T0);
        assert_eq!(code, 14027, "{reply}");
        assert_eq!(append(&mut w, "app-1", trx_tasks([8, 9, 8]), T0).0, 14027);
        assert_eq!(append(&mut w, "app-1", vec![], T0).0, 11000);
        assert_eq!(append(&mut w, "app-1", trx_tasks(100..=600), T0).0, 11000);
        assert_eq!(append(&mut w, "app-1", vec![task(8, EVM_ADDR, "5", "")], T0).0, 14007);
        assert_eq!(stats(&batch(&mut w, "app-1", T0))[0], 4);
        // Once confirmed, no more tasks (11000, undocumented).
        confirm(&mut w, "app-1", 60, T0);
        let (code, reply) = append(&mut w, "app-1", trx_tasks([10]), T0);
        assert_eq!(code, 11000);
        assert!(reply["msg"].as_str().is_some_and(|m| m.contains("Pending")), "{reply}");
    }

    #[test]
    fn batch_seq_unchecked_stores_duplicate_seqs_and_pays_them_twice() {
        let mut w = world_with(|c| c.readings = Readings::parse("batch-seq-unchecked").expect("reading"));
        let (code, _) = apply(&mut w, &apply_body("seq-1", "TRX", "Single", trx_tasks([1, 2, 2])), T0);
        assert_eq!(code, 10000);
        assert_eq!(append(&mut w, "seq-1", trx_tasks([1]), T0).0, 10000);
        let listed = tasks(&mut w, "seq-1", T0);
        assert_eq!(
            listed.iter().map(|t| t["seq"].as_i64()).collect::<Vec<_>>(),
            [1, 1, 2, 2].map(Some)
        );
        confirm(&mut w, "seq-1", 0, T0);
        w.settle_due(T0 + 10_000);
        let ledger = w.ledger();
        let seqs: Vec<u32> = ledger.tasks_of("seq-1").iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [1, 1, 2, 2], "in seq order, each one paid");
        assert_eq!(ledger.payouts_by_ref("row-1").len(), 2);
        // Without the reading the same requests are refused.
        let mut plain = world();
        assert_eq!(
            apply(
                &mut plain,
                &apply_body("seq-1", "TRX", "Single", trx_tasks([1, 2, 2])),
                T0
            )
            .0,
            14027
        );
    }

    #[test]
    fn a_single_mode_run_executes_in_seq_order_settles_and_completes() {
        let mut w = world();
        assert_eq!(confirm(&mut w, "run-1", 0, T0).0, 11003);
        apply(&mut w, &apply_body("run-1", "TRX", "Single", trx_tasks([3, 1, 2])), T0);
        assert_eq!(confirm(&mut w, "run-1", 3601, T0).0, 11000);
        assert_eq!(confirm(&mut w, "run-1", -1, T0).0, 11000);
        let (code, reply) = confirm(&mut w, "run-1", 0, T0);
        assert_eq!(code, 10000, "{reply}");
        // The run starts at once: seq 1 is executed in the confirm itself.
        assert_eq!(reply["data"]["status"], "Processing");
        assert_eq!(stats(&reply["data"]), [3, 0, 0, 0, 1, 1]);
        assert_eq!(bal(&w, "USDT"), "999994", "5 and the 1 USDT fee");
        let listed = tasks(&mut w, "run-1", T0);
        assert_eq!(statuses(&listed), ["Processing", "Pending", "Pending"]);
        assert_eq!(listed[0]["networkFee"], "1");
        assert!(listed[0]["recordId"].as_str().is_some_and(|r| r.len() == 20));
        assert!(
            listed[0]["orderId"]
                .as_str()
                .is_some_and(|o| o.starts_with(listed[0]["recordId"].as_str().unwrap_or("?")))
        );
        // One task every 100 ms.
        let b = batch(&mut w, "run-1", T0 + 150);
        assert_eq!(stats(&b), [3, 0, 0, 0, 2, 2]);
        let b = batch(&mut w, "run-1", T0 + 200);
        assert_eq!(stats(&b), [3, 0, 0, 0, 3, 3]);
        assert_eq!(bal(&w, "USDT"), "999982");
        // Settled after the settle delay each.
        let b = batch(&mut w, "run-1", T0 + 2100);
        assert_eq!(
            (b["status"].as_str(), stats(&b)),
            (Some("Processing"), [3, 2, 0, 0, 1, 3])
        );
        let b = batch(&mut w, "run-1", T0 + 2200);
        assert_eq!(
            (b["status"].as_str(), stats(&b)),
            (Some("Completed"), [3, 3, 0, 0, 0, 3])
        );
        assert_eq!(b["networkFee"], "3");
        assert_eq!(b["updatedAt"], (T0 + 2200) / 1000);
        let listed = tasks(&mut w, "run-1", T0 + 2200);
        assert_eq!(statuses(&listed), ["Successful"; 3]);
        assert!(listed.iter().all(|t| t["txId"].as_str().is_some_and(|x| x.len() == 64)));
        let ids: HashSet<&str> = listed.iter().filter_map(|t| t["txId"].as_str()).collect();
        assert_eq!(ids.len(), 3, "a transaction per task");
        // The ledger: one payout per task, CCPayment's own orderId, the remark as the reference.
        let ledger = w.ledger();
        let paid = ledger.tasks_of("run-1");
        assert_eq!(paid.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let p = paid[0];
        assert_eq!(
            (p.merchant_ref(), p.order_id.as_str()),
            ("row-1", listed[0]["orderId"].as_str().unwrap_or(""))
        );
        assert_eq!(
            (p.amount.as_str(), p.receiver_gets.as_str(), p.merchant_pays_fee),
            ("5", "5", true)
        );
        assert_eq!((p.created_ms, p.settled_ms), (T0, Some(T0 + 2000)));
        assert_eq!(p.status, RecordStatus::Success);
        // A confirm of a batch no longer Init changes nothing and answers it (idempotent).
        let (code, again) = confirm(&mut w, "run-1", 0, T0 + 3000);
        assert_eq!((code, again["data"]["status"].as_str()), (10000, Some("Completed")));
        assert_eq!(w.ledger().tasks_of("run-1").len(), 3);
        // No webhooks for batch tasks.
        assert!(w.take_webhooks().is_empty());
    }

    #[test]
    fn review_then_delay_then_the_run() {
        let mut w = world_with(|c| c.readings = Readings::parse("batch-review=1000").expect("reading"));
        apply(&mut w, &apply_body("rev-1", "TRX", "Batch", trx_tasks(1..=2)), T0);
        let (_, reply) = confirm(&mut w, "rev-1", 2, T0);
        assert_eq!(reply["data"]["status"], "Reviewing");
        assert_eq!(statuses(&tasks(&mut w, "rev-1", T0)), ["Pending", "Pending"]);
        assert_eq!(w.next_due_ms(), Some(T0 + 1000));
        assert_eq!(batch(&mut w, "rev-1", T0 + 999)["status"], "Reviewing");
        assert_eq!(batch(&mut w, "rev-1", T0 + 1000)["status"], "Pending");
        assert_eq!(batch(&mut w, "rev-1", T0 + 2999)["status"], "Pending");
        assert!(w.ledger().payouts.is_empty());
        // Batch mode: every task at once when the run starts.
        let b = batch(&mut w, "rev-1", T0 + 3000);
        assert_eq!(
            (b["status"].as_str(), stats(&b)),
            (Some("Processing"), [2, 0, 0, 0, 2, 2])
        );
        // A world that hears nothing meanwhile catches up at each step's own time.
        let mut quiet = world_with(|c| c.readings = Readings::parse("batch-review=1000").expect("reading"));
        apply(&mut quiet, &apply_body("rev-1", "TRX", "Batch", trx_tasks(1..=2)), T0);
        confirm(&mut quiet, "rev-1", 2, T0);
        quiet.settle_due(T0 + 60_000);
        let ledger = quiet.ledger();
        assert!(
            ledger
                .payouts
                .iter()
                .all(|p| p.created_ms == T0 + 3000 && p.settled_ms == Some(T0 + 5000))
        );
        let b = batch(&mut quiet, "rev-1", T0 + 60_000);
        assert_eq!(
            (b["status"].as_str(), b["updatedAt"].as_i64()),
            (Some("Completed"), Some((T0 + 5000) / 1000))
        );
        // Without the reading there is no review.
        let mut plain = world();
        apply(&mut plain, &apply_body("rev-1", "TRX", "Batch", trx_tasks(1..=2)), T0);
        assert_eq!(confirm(&mut plain, "rev-1", 2, T0).1["data"]["status"], "Pending");
    }

    #[test]
    fn some_tasks_fail_and_are_refunded_while_the_others_are_paid() {
        let mut w = world();
        let orders = vec![
            task(1, TRX_ADDR, "5", "ok-1"),
            task(2, DEMO_FAILING_ADDRESS, "7", "fails-2"),
            task(3, TRX_ADDR, "5", "ok-3"),
        ];
        apply(&mut w, &apply_body("part-1", "TRX", "Single", orders), T0);
        confirm(&mut w, "part-1", 0, T0);
        assert_eq!(bal(&w, "USDT"), "999994");
        w.settle_due(T0 + 300);
        assert_eq!(bal(&w, "USDT"), "999980", "all three debited");
        let b = batch(&mut w, "part-1", T0 + 5000);
        assert_eq!(
            (b["status"].as_str(), stats(&b)),
            (Some("Completed"), [3, 2, 1, 0, 0, 3])
        );
        assert_eq!(bal(&w, "USDT"), "999988", "the failed one refunded, fee too");
        let listed = tasks(&mut w, "part-1", T0 + 5000);
        assert_eq!(statuses(&listed), ["Successful", "Failed", "Successful"]);
        assert_eq!(listed[1]["reason"], FAILURE_REASON);
        assert!(listed[1].get("txId").is_none());
        // The same fail rate as single withdrawals.
        let mut w = world_with(|c| c.fail_rate = 1.0);
        apply(&mut w, &apply_body("part-2", "TRX", "Batch", trx_tasks(1..=2)), T0);
        confirm(&mut w, "part-2", 0, T0);
        assert_eq!(stats(&batch(&mut w, "part-2", T0 + 2000)), [2, 0, 2, 0, 0, 2]);
    }

    #[test]
    fn a_task_the_balance_does_not_cover_fails_at_once_without_a_debit() {
        let mut w = world_with(|c| c.balances = vec![("USDT".into(), "13".into())]);
        apply(&mut w, &apply_body("poor-1", "TRX", "Single", trx_tasks(1..=3)), T0);
        confirm(&mut w, "poor-1", 0, T0);
        w.settle_due(T0 + 200);
        assert_eq!(bal(&w, "USDT"), "1", "two tasks of 5 + 1 fee");
        let listed = tasks(&mut w, "poor-1", T0 + 200);
        assert_eq!(statuses(&listed), ["Processing", "Processing", "Failed"]);
        assert_eq!(listed[2]["reason"], BALANCE_REASON);
        assert_eq!(listed[2]["networkFee"], "0");
        assert!(listed[2]["recordId"].as_str().is_some_and(|r| !r.is_empty()));
        let ledger = w.ledger();
        let failed = ledger.tasks_of("poor-1")[2];
        assert_eq!(
            (failed.status.clone(), failed.fee.clone()),
            (RecordStatus::Failed, None)
        );
        assert_eq!(failed.settled_ms, Some(T0 + 200));
        let b = batch(&mut w, "poor-1", T0 + 2200);
        assert_eq!(
            (b["status"].as_str(), stats(&b)),
            (Some("Completed"), [3, 2, 1, 0, 0, 3])
        );
        // A fee in the native coin the balance cannot cover.
        let mut w = world_with(|c| c.balances = vec![("MATIC".into(), "0.01".into())]);
        let orders = vec![task(1, EVM_ADDR, "5", "")];
        apply(&mut w, &apply_body("poor-2", "POLYGON", "Single", orders), T0);
        confirm(&mut w, "poor-2", 0, T0);
        assert_eq!(tasks(&mut w, "poor-2", T0)[0]["reason"], FEE_BALANCE_REASON);
        assert_eq!(bal(&w, "USDT"), "1000000");
    }

    #[test]
    fn batch_mode_charges_one_network_fee_for_the_whole_batch() {
        let mut w = world();
        let orders = (1..=3).map(|seq| task(seq, EVM_ADDR, "5", "")).collect();
        apply(&mut w, &apply_body("fee-b", "POLYGON", "Batch", orders), T0);
        confirm(&mut w, "fee-b", 0, T0);
        assert_eq!(bal(&w, "USDT"), "999985");
        assert_eq!(bal(&w, "MATIC"), "4999.9786186", "one fee of 0.0213814");
        let b = batch(&mut w, "fee-b", T0);
        assert_eq!(
            (b["networkFee"].as_str(), b["networkFeeCoin"]["coin_symbol"].as_str()),
            (Some("0.0213814"), Some("MATIC"))
        );
        let listed = tasks(&mut w, "fee-b", T0);
        let fees: Vec<&str> = listed.iter().filter_map(|t| t["networkFee"].as_str()).collect();
        assert_eq!(fees, ["0.0213814", "0", "0"]);
        w.settle_due(T0 + 2000);
        let listed = tasks(&mut w, "fee-b", T0 + 2000);
        let ids: HashSet<&str> = listed.iter().filter_map(|t| t["txId"].as_str()).collect();
        assert_eq!(ids.len(), 1, "one transaction for the batch");
        assert!(ids.iter().all(|id| id.starts_with("0x")));
        // Single mode: a fee per task.
        let mut w = world();
        let orders = (1..=3).map(|seq| task(seq, EVM_ADDR, "5", "")).collect();
        apply(&mut w, &apply_body("fee-s", "POLYGON", "Single", orders), T0);
        confirm(&mut w, "fee-s", 0, T0);
        w.settle_due(T0 + 200);
        assert_eq!(bal(&w, "MATIC"), "4999.9358558");
        assert_eq!(batch(&mut w, "fee-s", T0 + 200)["networkFee"], "0.0641442");
    }

    #[test]
    fn abort_cancels_what_has_not_run_and_ignores_the_rest() {
        let mut w = world();
        assert_eq!(abort(&mut w, "ab-0", &[], T0).0, 11003);
        apply(&mut w, &apply_body("ab-1", "TRX", "Single", trx_tasks(1..=5)), T0);
        // Before the confirm: the named tasks, and a seq the batch does not have is ignored.
        let (code, reply) = abort(&mut w, "ab-1", &[2, 9], T0);
        assert_eq!(code, 10000, "{reply}");
        assert_eq!(
            reply["data"],
            json!({"batchOrderId": "ab-1", "canceledSeqs": [2], "ignoredSeqs": [9]})
        );
        assert_eq!(batch(&mut w, "ab-1", T0)["status"], "Init");
        confirm(&mut w, "ab-1", 0, T0);
        // Mid-run (Single mode): seqs 1 and 3 executed by T0 + 100, 4 and 5 still waiting.
        let (_, reply) = abort(&mut w, "ab-1", &[], T0 + 100);
        assert_eq!(reply["data"]["canceledSeqs"], json!([2, 4, 5]));
        assert_eq!(reply["data"]["ignoredSeqs"], json!([1, 3]));
        let b = batch(&mut w, "ab-1", T0 + 100);
        assert_eq!(
            (b["status"].as_str(), stats(&b)),
            (Some("Processing"), [5, 0, 0, 3, 2, 3])
        );
        let listed = tasks(&mut w, "ab-1", T0 + 2100);
        assert_eq!(
            statuses(&listed),
            ["Successful", "Canceled", "Successful", "Canceled", "Canceled"]
        );
        assert_eq!(batch(&mut w, "ab-1", T0 + 2100)["status"], "Completed");
        assert_eq!(w.ledger().tasks_of("ab-1").len(), 2);
        assert_eq!(bal(&w, "USDT"), "999988");
        assert_eq!(abort(&mut w, "ab-1", &[], T0 + 3000).0, 14028);
        // Aborting every task of a waiting batch completes it at once.
        apply(&mut w, &apply_body("ab-2", "TRX", "Single", trx_tasks(1..=2)), T0);
        confirm(&mut w, "ab-2", 600, T0);
        let (_, reply) = abort(&mut w, "ab-2", &[], T0 + 1);
        assert_eq!(reply["data"]["canceledSeqs"], json!([1, 2]));
        assert_eq!(batch(&mut w, "ab-2", T0 + 1)["status"], "Completed");
        assert_eq!(w.next_due_ms(), None, "nothing left to run");
        w.settle_due(T0 + 700_000);
        assert!(w.ledger().tasks_of("ab-2").is_empty());
        // Batch mode: once the run started, every task is in the one transaction.
        apply(&mut w, &apply_body("ab-3", "TRX", "Batch", trx_tasks(1..=2)), T0);
        confirm(&mut w, "ab-3", 0, T0);
        let (_, reply) = abort(&mut w, "ab-3", &[1, 2], T0);
        assert_eq!(
            (
                reply["data"]["canceledSeqs"].clone(),
                reply["data"]["ignoredSeqs"].clone()
            ),
            (json!([]), json!([1, 2]))
        );
    }

    #[test]
    fn unknown_batches_follow_the_r1_readings() {
        let mut w = world();
        assert_eq!(get(&mut w, "never-1", T0).0, 11003);
        assert_eq!(get(&mut w, "ab", T0).0, 11000);
        let body = json!({"batchOrderId": "never-1", "verbose": 4});
        assert_eq!(call(&mut w, method::GET_BATCH_WITHDRAW_ORDER, &body, T0).0, 11000);
        let list = json!({"batchOrderId": "never-1"});
        assert_eq!(
            call(&mut w, method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST, &list, T0).0,
            11003
        );

        let mut w = world_with(|c| c.readings = Readings::parse("empty-record").expect("reading"));
        let handled = w.handle(
            Route::V2(method::GET_BATCH_WITHDRAW_ORDER),
            br#"{"batchOrderId":"never-1"}"#,
            T0,
        );
        assert_eq!(handled.body, br#"{"code":10000,"msg":"success","data":{}}"#);
        assert_eq!(
            call(&mut w, method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST, &list, T0).0,
            11003
        );

        let mut w = world_with(|c| c.readings = Readings::parse("other-record").expect("reading"));
        assert_eq!(get(&mut w, "never-1", T0).1["data"], json!({}), "no other batch yet");
        apply(&mut w, &apply_body("other-1", "TRX", "Single", trx_tasks(1..=2)), T0);
        apply(&mut w, &apply_body("other-2", "TRX", "Single", trx_tasks(1..=3)), T0);
        let (code, reply) = get(&mut w, "never-1", T0);
        assert_eq!((code, reply["data"]["batchOrderId"].as_str()), (10000, Some("other-2")));
        assert_eq!(
            batch(&mut w, "other-1", T0)["batchOrderId"],
            "other-1",
            "a known id is its own"
        );
    }

    #[test]
    fn lookup_lag_hides_new_batches_and_tasks_from_reads_only() {
        let mut w = world_with(|c| c.readings = Readings::parse("lookup-lag=1000").expect("reading"));
        apply(&mut w, &apply_body("lag-1", "TRX", "Single", trx_tasks(1..=2)), T0);
        assert_eq!(get(&mut w, "lag-1", T0 + 999).0, 11003);
        let list = json!({"batchOrderId": "lag-1"});
        assert_eq!(
            call(&mut w, method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST, &list, T0 + 999).0,
            11003
        );
        // Writes see it at once.
        assert_eq!(
            apply(&mut w, &apply_body("lag-1", "TRX", "Single", vec![]), T0 + 1).0,
            11007
        );
        assert_eq!(append(&mut w, "lag-1", trx_tasks([3]), T0 + 500).0, 10000);
        assert_eq!(stats(&batch(&mut w, "lag-1", T0 + 1000))[0], 2, "seq 3 not yet");
        assert_eq!(tasks(&mut w, "lag-1", T0 + 1000).len(), 2);
        assert_eq!(tasks(&mut w, "lag-1", T0 + 1500).len(), 3);
        let (code, reply) = confirm(&mut w, "lag-1", 0, T0 + 600);
        assert_eq!(
            (code, stats(&reply["data"])[0]),
            (10000, 3),
            "a confirm sees every task"
        );
        let mut w = world_with(|c| c.readings = Readings::parse("lookup-lag=1000,other-record").expect("reading"));
        apply(&mut w, &apply_body("lag-2", "TRX", "Single", vec![]), T0);
        apply(&mut w, &apply_body("lag-3", "TRX", "Single", vec![]), T0 + 500);
        assert_eq!(get(&mut w, "lag-3", T0 + 1000).1["data"]["batchOrderId"], "lag-2");
    }

    #[test]
    fn the_task_list_pages_in_seq_order_with_an_opaque_cursor() {
        let mut w = world();
        apply(
            &mut w,
            &apply_body("page-1", "TRX", "Single", trx_tasks((1..=45).rev())),
            T0,
        );
        let page = |w: &mut World, limit: u64, next: &str| {
            let body = json!({"batchOrderId": "page-1", "limit": limit, "nextId": next});
            call(w, method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST, &body, T0)
        };
        let (code, first) = page(&mut w, 0, "");
        assert_eq!(code, 10000);
        let seqs = |reply: &Value| {
            reply["data"]["records"]
                .as_array()
                .map(|r| r.iter().filter_map(|t| t["seq"].as_u64()).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert_eq!(seqs(&first), (1..=20).collect::<Vec<_>>(), "20 by default");
        let next = first["data"]["nextId"].as_str().expect("more").to_owned();
        let (_, second) = page(&mut w, 20, &next);
        assert_eq!(seqs(&second), (21..=40).collect::<Vec<_>>());
        let next = second["data"]["nextId"].as_str().expect("more").to_owned();
        let (_, last) = page(&mut w, 20, &next);
        assert_eq!(seqs(&last), (41..=45).collect::<Vec<_>>());
        assert_eq!(last["data"]["nextId"], "");
        assert_eq!(seqs(&page(&mut w, 100, "").1).len(), 45);
        assert_eq!(page(&mut w, 101, "").0, 11000);
        assert_eq!(page(&mut w, 10, "nope").0, 11000);
        // A page whose tasks are exactly the rest says there is no more.
        let (_, exact) = page(&mut w, 45, "");
        assert_eq!(exact["data"]["nextId"], "");
        // An absent limit is the default page.
        let body = json!({"batchOrderId": "page-1"});
        let (_, reply) = call(&mut w, method::GET_BATCH_WITHDRAW_ORDER_RECORD_LIST, &body, T0);
        assert_eq!(seqs(&reply).len(), 20);
    }

    #[test]
    fn task_status_success_spells_a_paid_task_success() {
        let mut w = world_with(|c| c.readings = Readings::parse("task-status-success").expect("reading"));
        let orders = vec![task(1, TRX_ADDR, "5", ""), task(2, DEMO_FAILING_ADDRESS, "5", "")];
        apply(&mut w, &apply_body("spell-1", "TRX", "Batch", orders), T0);
        assert_eq!(statuses(&tasks(&mut w, "spell-1", T0)), ["Init", "Init"]);
        confirm(&mut w, "spell-1", 0, T0);
        assert_eq!(statuses(&tasks(&mut w, "spell-1", T0 + 2000)), ["Success", "Failed"]);
    }

    #[test]
    fn a_lost_reply_after_commit_leaves_the_batch_stored_and_confirmed() {
        let drop_all = Faults {
            drop_after_commit: 1.0,
            ..Faults::default()
        };
        let mut w = world_with(|c| c.faults = drop_all.clone());
        let body = apply_body("lost-1", "TRX", "Single", trx_tasks(1..=2)).to_string();
        let handled = w.handle(Route::V2(method::APPLY_BATCH_WITHDRAW), body.as_bytes(), T0);
        assert_eq!((handled.transport, handled.code), (Transport::Drop, 10000));
        assert_eq!(handled.order_id, "lost-1");
        let body = json!({"batchOrderId": "lost-1", "orders": trx_tasks([3])}).to_string();
        let handled = w.handle(Route::V2(method::APPEND_BATCH_WITHDRAW), body.as_bytes(), T0);
        assert_eq!(handled.transport, Transport::Drop);
        let body = json!({"batchOrderId": "lost-1"}).to_string();
        let handled = w.handle(Route::V2(method::CONFIRM_BATCH_WITHDRAW), body.as_bytes(), T0);
        assert_eq!(handled.transport, Transport::Drop);
        // Reads are not faulted (on_reads is off): the batch, its third task and the run are there.
        let b = batch(&mut w, "lost-1", T0);
        assert_eq!((b["status"].as_str(), stats(&b)[0]), (Some("Processing"), 3));
        let outcomes: Vec<AttemptOutcome> = w.ledger().attempts.into_iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes.len(), 6, "each create: what it did, then the fault");
        assert!(matches!(outcomes[0], AttemptOutcome::Created { .. }));
        assert_eq!(
            outcomes[1],
            AttemptOutcome::Fault {
                fault: "drop_after_commit".into()
            }
        );
        // A resend of the apply is now a repeat (11007); of the confirm, harmless.
        w.set_faults(Faults::default());
        assert_eq!(
            apply(&mut w, &apply_body("lost-1", "TRX", "Single", trx_tasks(1..=2)), T0).0,
            11007
        );
        assert_eq!(confirm(&mut w, "lost-1", 0, T0).0, 10000);
        w.settle_due(T0 + 10_000);
        assert_eq!(w.ledger().tasks_of("lost-1").len(), 3, "paid once each");
        // Before commit: nothing stored.
        let mut w = world_with(|c| {
            c.faults = Faults {
                drop_before_commit: 1.0,
                ..Faults::default()
            }
        });
        let body = apply_body("lost-2", "TRX", "Single", trx_tasks(1..=2)).to_string();
        assert_eq!(
            w.handle(Route::V2(method::APPLY_BATCH_WITHDRAW), body.as_bytes(), T0)
                .transport,
            Transport::Drop
        );
        w.set_faults(Faults::default());
        assert_eq!(get(&mut w, "lost-2", T0).0, 11003);
        // Reads take faults with on_reads.
        let mut w = world_with(|c| {
            c.faults = Faults {
                internal_11002: 1.0,
                on_reads: true,
                ..Faults::default()
            }
        });
        assert_eq!(get(&mut w, "lost-3", T0).0, 11002);
        assert!(w.ledger().attempts.is_empty(), "a read is no create attempt");
    }

    #[test]
    fn single_withdrawal_reads_never_see_batch_tasks() {
        let mut w = world_with(|c| c.readings = Readings::parse("other-record").expect("reading"));
        apply(&mut w, &apply_body("hid-1", "TRX", "Batch", trx_tasks(1..=2)), T0);
        confirm(&mut w, "hid-1", 0, T0);
        w.settle_due(T0 + 2000);
        let listed = tasks(&mut w, "hid-1", T0 + 2000);
        let (_, all) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &json!({}), T0 + 2000);
        assert_eq!(all["data"]["records"], json!([]));
        let by_order = json!({"orderId": listed[0]["orderId"]});
        let (_, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD, &by_order, T0 + 2000);
        assert_eq!(reply["data"], json!({"record": {}}), "not the task, nor another task");
        let by_record = json!({"recordId": listed[0]["recordId"]});
        assert_eq!(
            call(&mut w, method::GET_APP_WITHDRAW_RECORD, &by_record, T0 + 2000).0,
            11003
        );
        let orders = json!({"orderIds": [listed[0]["orderId"]]});
        let (_, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &orders, T0 + 2000);
        assert_eq!(reply["data"]["records"], json!([]));
        // A single withdrawal may even take a task's orderId: another namespace.
        let task_order = listed[0]["orderId"].as_str().expect("orderId").to_owned();
        assert_eq!(create(&mut w, net(&task_order, 1280, "TRX", TRX_ADDR, "5")).0, 10000);
        assert_eq!(w.ledger().payouts.len(), 3);
    }

    #[test]
    fn no_batch_withdraw_takes_the_six_routes_away_like_an_unknown_method() {
        let mut w = world_with(|c| c.readings = Readings::parse("no-batch-withdraw").expect("reading"));
        for m in method::ALL {
            let route = Route::v2(m).expect("a method");
            let handled = w.handle(route, b"{}", T0);
            if route.is_batch() {
                assert!(!w.offers(route), "{m}");
                assert_eq!((handled.transport, handled.code), (Transport::NotFound, 0), "{m}");
                assert_eq!(handled.body, b"404 page not found", "{m}");
            } else {
                assert!(w.offers(route), "{m}");
                assert_ne!(handled.transport, Transport::NotFound, "{m}");
            }
        }
        assert_eq!(
            w.stats().to_endpoint(method::APPLY_BATCH_WITHDRAW),
            0,
            "never reached the API"
        );
        assert!(
            w.ledger()
                .attempts
                .iter()
                .all(|a| Route::v2(&a.endpoint).is_none_or(|r| !r.is_batch()))
        );
        // Single withdrawals work as before.
        assert_eq!(create(&mut w, net("nb-1", 1280, "TRX", TRX_ADDR, "5")).0, 10000);
        // Without the reading every route is there; v1-only refuses them like every v2 route.
        assert!(world().offers(Route::V2(method::APPLY_BATCH_WITHDRAW)));
        let mut v1 = world_with(|c| c.readings = Readings::parse("v1-only").expect("reading"));
        let body = apply_body("v1o-1", "TRX", "Single", trx_tasks(1..=1));
        assert_eq!(apply(&mut v1, &body, T0).0, 11013);
    }

    #[test]
    fn rate_limits_and_daily_caps_cover_the_batch_routes() {
        let mut w = world_with(|c| c.daily_create_limit = Some(2));
        assert_eq!(
            apply(&mut w, &apply_body("cap-1", "TRX", "Single", trx_tasks(1..=2)), T0).0,
            10000
        );
        assert_eq!(append(&mut w, "cap-1", trx_tasks([3]), T0).0, 10000);
        assert_eq!(confirm(&mut w, "cap-1", 0, T0).0, 11009, "a confirm is a create");
        assert_eq!(get(&mut w, "cap-1", T0).0, 10000, "reads do not count as creates");
        let attempts = w.ledger().attempts;
        assert_eq!(
            attempts.last().map(|a| a.outcome.clone()),
            Some(AttemptOutcome::Refused { code: 11009 })
        );
        let mut w = world_with(|c| {
            c.rate_limit = Some(RateLimit {
                per_second: 1.0,
                burst: 1,
            })
        });
        assert_eq!(get(&mut w, "rl-1", T0).0, 11003);
        assert_eq!(get(&mut w, "rl-1", T0).0, 11004);
        assert_eq!(apply(&mut w, &apply_body("rl-1", "TRX", "Single", vec![]), T0).0, 11004);
        assert_eq!(
            apply(&mut w, &apply_body("rl-1", "TRX", "Single", vec![]), T0 + 1000).0,
            10000
        );
    }

    #[test]
    fn batches_survive_a_snapshot_mid_run_and_go_on_identically() {
        let config = |c: &mut crate::sandbox::SandboxConfig| {
            c.fail_rate = 0.5;
            c.seed = 11;
        };
        let mut a = world_with(config);
        apply(&mut a, &apply_body("snap-1", "TRX", "Single", trx_tasks(1..=6)), T0);
        apply(
            &mut a,
            &apply_body("snap-2", "POLYGON", "Batch", vec![task(1, EVM_ADDR, "5", "x")]),
            T0,
        );
        apply(&mut a, &apply_body("snap-3", "TRX", "Batch", trx_tasks(1..=2)), T0);
        confirm(&mut a, "snap-1", 0, T0);
        confirm(&mut a, "snap-2", 5, T0);
        abort(&mut a, "snap-1", &[6], T0);
        a.settle_due(T0 + 250);
        let snapshot = a.snapshot();
        assert_eq!(snapshot.batches.len(), 3);
        let json = serde_json::to_string(&snapshot).expect("json");
        let back: crate::sandbox::persist::Snapshot = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, snapshot);
        let mut b = world_with(config);
        b.restore(back).expect("restore");
        assert_eq!(b.snapshot(), snapshot);
        for w in [&mut a, &mut b] {
            confirm(w, "snap-3", 0, T0 + 300);
            w.settle_due(T0 + 20_000);
        }
        assert_eq!(b.ledger(), a.ledger());
        assert_eq!(b.snapshot(), a.snapshot());
        for id in ["snap-1", "snap-2", "snap-3"] {
            assert_eq!(batch(&mut b, id, T0 + 20_000), batch(&mut a, id, T0 + 20_000), "{id}");
            assert_eq!(tasks(&mut b, id, T0 + 20_000), tasks(&mut a, id, T0 + 20_000), "{id}");
        }
        assert_eq!(batch(&mut b, "snap-1", T0 + 20_000)["status"], "Completed");
        // Record and bill ids never repeat after a restore.
        let (_, reply) = apply(&mut b, &apply_body("snap-4", "TRX", "Single", vec![]), T0 + 20_000);
        let bill = reply["data"]["billId"].as_str().expect("bill").to_owned();
        assert!(b.ledger().payouts.iter().all(|p| p.record_id[14..] < bill[14..]));

        // Inconsistent batches are refused.
        let good = a.snapshot();
        let mut lost_payout = good.clone();
        lost_payout.batches[0].tasks[0].record_id = "20231114221320999999".into();
        let mut bad_state = good.clone();
        bad_state.batches[0].tasks[0].state = "paid".into();
        let mut bad_mode = good.clone();
        bad_mode.batches[0].mode = "Fast".into();
        let mut orphan = good.clone();
        orphan.batches.remove(0);
        for (name, snapshot) in [
            ("lost payout", lost_payout),
            ("bad state", bad_state),
            ("bad mode", bad_mode),
            ("orphan task payout", orphan),
        ] {
            assert!(world().restore(snapshot).is_err(), "{name}");
        }
    }
}
