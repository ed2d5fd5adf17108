//! Report rows: one per row of the batch file, accepted or not, in file line order.
//!
//! An accepted row becomes a row from its [`OrderRecord`] (input columns as the file gave them,
//! the amount actually sent, CCPayment's ids, fee, status, error, attempts, times). A refused row
//! becomes a row from its [`RefusedRow`], status `refused`, or `duplicate` when it repeats an
//! order of an earlier batch; the batch record keeps no raw text for those rows, so only `line`
//! and `order_id` of their input columns are filled.
//!
//! Pure: no I/O.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::iter::Peekable;

use crate::model::call::WithdrawCall;
use crate::model::record::Fee;
use crate::model::record::{BatchRecord, OrderRecord, RefusedRow};
use crate::model::state::{OrderState, StateKind};
use crate::util::time::rfc3339_ms;

/// The status column: an order's state, or why a row never became an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowStatus {
    Success,
    Failed,
    Rejected,
    Cancelled,
    /// Not accepted: the row has problems of its own.
    Refused,
    /// Not accepted: the same order was already in an earlier batch (and is not paid again).
    Duplicate,
    Submitted,
    Unknown,
    Queued,
    Deferred,
    Submitting,
    AwaitingApproval,
    Planned,
}

impl RowStatus {
    /// Every status, in the order reports list them: final ones first.
    pub const ALL: [RowStatus; 13] = [
        RowStatus::Success,
        RowStatus::Failed,
        RowStatus::Rejected,
        RowStatus::Cancelled,
        RowStatus::Refused,
        RowStatus::Duplicate,
        RowStatus::Submitted,
        RowStatus::Unknown,
        RowStatus::Queued,
        RowStatus::Deferred,
        RowStatus::Submitting,
        RowStatus::AwaitingApproval,
        RowStatus::Planned,
    ];

    /// The name in the reports; for orders, the same as [`StateKind::as_str`].
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Refused => "refused",
            RowStatus::Duplicate => "duplicate",
            RowStatus::Success => StateKind::Success.as_str(),
            RowStatus::Failed => StateKind::Failed.as_str(),
            RowStatus::Rejected => StateKind::Rejected.as_str(),
            RowStatus::Cancelled => StateKind::Cancelled.as_str(),
            RowStatus::Submitted => StateKind::Submitted.as_str(),
            RowStatus::Unknown => StateKind::Unknown.as_str(),
            RowStatus::Queued => StateKind::Queued.as_str(),
            RowStatus::Deferred => StateKind::Deferred.as_str(),
            RowStatus::Submitting => StateKind::Submitting.as_str(),
            RowStatus::AwaitingApproval => StateKind::AwaitingApproval.as_str(),
            RowStatus::Planned => StateKind::Planned.as_str(),
        }
    }

    /// Nothing will change this row any more: a final order, or a row that never became one.
    pub fn is_final(self) -> bool {
        match self {
            RowStatus::Refused | RowStatus::Duplicate => true,
            RowStatus::Success | RowStatus::Failed | RowStatus::Rejected | RowStatus::Cancelled => true,
            RowStatus::Submitted
            | RowStatus::Unknown
            | RowStatus::Queued
            | RowStatus::Deferred
            | RowStatus::Submitting
            | RowStatus::AwaitingApproval
            | RowStatus::Planned => false,
        }
    }

    /// The position in [`RowStatus::ALL`].
    pub fn index(self) -> usize {
        // ALL is in declaration order, so the discriminant is the index.
        self as usize
    }
}

impl From<StateKind> for RowStatus {
    fn from(kind: StateKind) -> RowStatus {
        match kind {
            StateKind::Planned => RowStatus::Planned,
            StateKind::AwaitingApproval => RowStatus::AwaitingApproval,
            StateKind::Queued => RowStatus::Queued,
            StateKind::Deferred => RowStatus::Deferred,
            StateKind::Submitting => RowStatus::Submitting,
            StateKind::Unknown => RowStatus::Unknown,
            StateKind::Submitted => RowStatus::Submitted,
            StateKind::Success => RowStatus::Success,
            StateKind::Failed => RowStatus::Failed,
            StateKind::Rejected => RowStatus::Rejected,
            StateKind::Cancelled => RowStatus::Cancelled,
        }
    }
}

impl fmt::Display for RowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RowStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What the summary adds amounts up by: the coin the call pays in. The coin id for v2 calls
/// (so `USDT`, `usdt` and `1280` in a file are one coin), the token id for v1 calls (a token
/// names coin and network together).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CoinKey {
    Id(u64),
    Token(String),
}

/// The column names, in order: the input columns, then what became of the row.
pub const COLUMNS: [&str; 23] = [
    "line",
    "order_id",
    "recipient",
    "coin",
    "chain",
    "amount",
    "memo",
    "merchant_pays_fee",
    "reference",
    "token_id",
    "status",
    "amount_sent",
    "record_id",
    "tx_id",
    "explorer_url",
    "fee",
    "fee_coin",
    "error_code",
    "error_message",
    "attempts",
    "created_at",
    "first_sent_at",
    "final_at",
];

/// The columns a batch paid through CCPayment's batch withdrawals adds after [`COLUMNS`]: the
/// task's batch, its seq there and CCPayment's own orderId for it.
pub const TASK_COLUMNS: [&str; 3] = ["batch_order_id", "task_seq", "ccpayment_order_id"];

/// The column a batch of retries adds (after [`TASK_COLUMNS`], when there are any): the order
/// each row retries, its `original_order_id` input column.
pub const ORIGINAL_COLUMN: &str = "original_order_id";

/// The column a batch some of whose orders were retried adds last: the order that retries the
/// row (see [`Links`]).
pub const RETRIED_AS_COLUMN: &str = "retried_as";

/// How a batch's reports link it with other batches through retries (`ccpayout retry`): the
/// batches it retries orders of, the batches that retry its orders, and which order retries
/// each of its own. Empty for a batch that has nothing to do with a retry, whose reports then
/// are exactly what they were before retries existed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// Batches whose orders this batch retries, each with how many.
    pub retry_of: Vec<LinkedBatch>,
    /// Batches that retry orders of this one, each with how many.
    pub retried_by: Vec<LinkedBatch>,
    /// This batch's order_id → the order_id that retries it (`; `-separated if ever several).
    pub retried_as: BTreeMap<String, String>,
}

impl Links {
    /// Whether the reports say nothing of retries.
    pub fn is_empty(&self) -> bool {
        self.retry_of.is_empty() && self.retried_by.is_empty() && self.retried_as.is_empty()
    }
}

/// A batch named in another's reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkedBatch {
    /// Its name (`payroll-e8fb3ef69cb5`).
    pub batch: String,
    pub batch_id: String,
    /// How many orders the link is about.
    pub orders: u64,
}

/// Index of `line` in [`COLUMNS`]; written as a number in JSON.
pub const LINE_COLUMN: usize = 0;
/// Index of `attempts` in [`COLUMNS`]; written as a number in JSON.
pub const ATTEMPTS_COLUMN: usize = 19;

/// One row of the result reports. Text fields are empty when they do not apply (written empty in
/// CSV and `null` in JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// Line of the row in the batch file.
    pub line: u64,
    pub order_id: String,
    pub recipient: String,
    pub coin: String,
    pub chain: String,
    /// The amount as the file wrote it (`007.50`).
    pub amount: String,
    pub memo: String,
    pub merchant_pays_fee: String,
    pub reference: String,
    pub token_id: String,
    pub status: RowStatus,
    /// The canonical amount that is sent (`7.5`); what the summary adds up.
    pub amount_sent: String,
    pub record_id: String,
    pub tx_id: String,
    pub explorer_url: String,
    /// The fee in plain digits, or CCPayment's text verbatim if it is not a plain decimal.
    pub fee: String,
    /// The fee's coin symbol (or its coin id when CCPayment gave no symbol).
    pub fee_coin: String,
    pub error_code: String,
    pub error_message: String,
    /// The order's task in a CCPayment batch withdrawal: batchOrderId, seq, CCPayment's orderId.
    pub task: Option<[String; 3]>,
    /// The order this row retries, as the file gave it (empty: none).
    pub original_order_id: String,
    /// The order that retries this one (empty: none; see [`Links`]).
    pub retried_as: String,
    /// Sends so far; `None` for rows that never became orders.
    pub attempts: Option<u32>,
    pub created_at: String,
    pub first_sent_at: String,
    pub final_at: String,
    /// Not a column: the coin the amount is in, for the summary. `None` for refused rows.
    pub coin_key: Option<CoinKey>,
}

impl ReportRow {
    /// The row of an accepted order. `explorers` maps a chain symbol to its transaction URL
    /// template (`ChainInfo::base_url`: `%s` marks the txId, or the txId is appended).
    pub fn from_order(order: &OrderRecord, explorers: &BTreeMap<String, String>) -> ReportRow {
        let input = &order.input;
        let tx_id = order.tx_id.clone().unwrap_or_default();
        let explorer_url = lookup_explorer(explorers, chain_of(order))
            .map(|base| explorer_link(base, &tx_id))
            .unwrap_or_default();
        // The fee the record says was charged, not the quote (R12: in which coin a fee of
        // another coin is charged is not documented).
        let (fee, fee_coin) = fee_cells(order.fee.as_ref());
        let (error_code, error_message) = error_cells(order);
        ReportRow {
            line: order.line,
            order_id: input.order_id.clone(),
            recipient: input.recipient.clone(),
            coin: input.coin.clone(),
            chain: input.chain.clone(),
            amount: input.amount.clone(),
            memo: input.memo.clone(),
            merchant_pays_fee: input.merchant_pays_fee.clone(),
            reference: input.reference.clone(),
            token_id: input.token_id.clone(),
            status: order.kind().into(),
            amount_sent: order.call.amount().to_owned(),
            record_id: order.record_id.clone().unwrap_or_default(),
            tx_id,
            explorer_url,
            fee,
            fee_coin,
            error_code,
            error_message,
            task: order.task.as_ref().map(|t| {
                [
                    t.bundle.clone(),
                    t.seq.to_string(),
                    t.ccp_order_id.clone().unwrap_or_default(),
                ]
            }),
            original_order_id: input.original_order_id.clone(),
            retried_as: String::new(),
            attempts: Some(order.attempts),
            created_at: rfc3339_ms(order.created_ms),
            first_sent_at: order.first_sent_ms.map(rfc3339_ms).unwrap_or_default(),
            final_at: order.final_ms.map(rfc3339_ms).unwrap_or_default(),
            coin_key: Some(match &order.call {
                WithdrawCall::Network(r) => CoinKey::Id(r.coin_id),
                WithdrawCall::Cwallet(r) => CoinKey::Id(r.coin_id),
                WithdrawCall::V1(r) => CoinKey::Token(r.token_id.clone()),
            }),
        }
    }

    /// The row of a row that was not accepted.
    pub fn from_refused(row: &RefusedRow) -> ReportRow {
        let (status, error_message) = match &row.duplicate_of_batch {
            Some(batch) => (RowStatus::Duplicate, format!("already in batch {batch}")),
            None => (RowStatus::Refused, row.problems.join("; ")),
        };
        ReportRow {
            line: row.line,
            order_id: row.order_id.clone().unwrap_or_default(),
            recipient: String::new(),
            coin: String::new(),
            chain: String::new(),
            amount: String::new(),
            memo: String::new(),
            merchant_pays_fee: String::new(),
            reference: String::new(),
            token_id: String::new(),
            status,
            amount_sent: String::new(),
            record_id: String::new(),
            tx_id: String::new(),
            explorer_url: String::new(),
            fee: String::new(),
            fee_coin: String::new(),
            error_code: String::new(),
            error_message,
            task: None,
            original_order_id: String::new(),
            retried_as: String::new(),
            attempts: None,
            created_at: String::new(),
            first_sent_at: String::new(),
            final_at: String::new(),
            coin_key: None,
        }
    }

    /// The text cells in [`COLUMNS`] order, with `line` and `attempts` already formatted by the
    /// caller (who can reuse the buffers).
    /// The [`TASK_COLUMNS`] cells (empty for a single create).
    pub fn task_cells(&self) -> [&str; 3] {
        match &self.task {
            Some([a, b, c]) => [a, b, c],
            None => ["", "", ""],
        }
    }

    pub fn cells<'a>(&'a self, line: &'a str, attempts: &'a str) -> [&'a str; 23] {
        [
            line,
            &self.order_id,
            &self.recipient,
            &self.coin,
            &self.chain,
            &self.amount,
            &self.memo,
            &self.merchant_pays_fee,
            &self.reference,
            &self.token_id,
            self.status.as_str(),
            &self.amount_sent,
            &self.record_id,
            &self.tx_id,
            &self.explorer_url,
            &self.fee,
            &self.fee_coin,
            &self.error_code,
            &self.error_message,
            attempts,
            &self.created_at,
            &self.first_sent_at,
            &self.final_at,
        ]
    }
}

/// The transaction link for `tx_id` from a chain's URL template, with `ChainInfo::tx_url`'s
/// rule: the first `%s` is replaced by the txId, or the txId is appended. Empty when there is no
/// txId or no template.
pub fn explorer_link(base: &str, tx_id: &str) -> String {
    if tx_id.is_empty() || base.is_empty() {
        String::new()
    } else if base.contains("%s") {
        base.replacen("%s", tx_id, 1)
    } else {
        format!("{base}{tx_id}")
    }
}

/// The chain an order's transaction is on: the catalogue's symbol in the call for network
/// payouts, otherwise the file's text (v1 calls name no chain; Cwallet payouts have no
/// transaction but are looked up like any other).
fn chain_of(order: &OrderRecord) -> &str {
    match &order.call {
        WithdrawCall::Network(r) => &r.chain,
        WithdrawCall::Cwallet(_) | WithdrawCall::V1(_) => &order.input.chain,
    }
}

/// The explorer template for a chain; chain symbols are upper case in the catalogue but a file
/// may write them in any case.
fn lookup_explorer<'a>(explorers: &'a BTreeMap<String, String>, chain: &str) -> Option<&'a str> {
    if chain.is_empty() {
        return None;
    }
    explorers
        .get(chain)
        .or_else(|| explorers.get(&chain.to_ascii_uppercase()))
        .map(String::as_str)
}

/// The fee and fee coin cells. Amounts are shown in plain digits like every other amount
/// (`"1.000"` from the API is `1`); text that is not a decimal is kept verbatim, so nothing
/// CCPayment said is lost.
fn fee_cells(fee: Option<&Fee>) -> (String, String) {
    let Some(fee) = fee else {
        return (String::new(), String::new());
    };
    let amount = crate::rules::amount::parse_api_decimal(&fee.amount)
        .map(crate::rules::amount::plain)
        .unwrap_or_else(|| fee.amount.clone());
    let coin = if !fee.coin_symbol.is_empty() {
        fee.coin_symbol.clone()
    } else if fee.coin_id != 0 {
        fee.coin_id.to_string()
    } else {
        String::new()
    };
    (amount, coin)
}

/// Error code and message. A failed or rejected order shows why it ended; any other order its
/// last error, or, without one, why it is waiting (a deferral's reason, an unknown outcome's
/// detail).
fn error_cells(order: &OrderRecord) -> (String, String) {
    let code_text = |code: Option<i64>| code.map(|c| c.to_string()).unwrap_or_default();
    match (&order.state, &order.error) {
        (OrderState::Failed { reason }, _) => (String::new(), reason.clone()),
        (OrderState::Rejected { code, reason }, _) => (code_text(*code), reason.clone()),
        (_, Some(error)) => (code_text(error.code), error.message.clone()),
        (OrderState::Deferred { reason, .. }, None) => (String::new(), reason.clone()),
        (OrderState::Unknown { detail, .. }, None) => (String::new(), detail.clone()),
        (_, None) => (String::new(), String::new()),
    }
}

/// The refused rows of a batch in line order, handed out as the accepted orders (which come in
/// seq order, that is line order) pass them.
#[derive(Debug)]
pub struct Interleave<'a> {
    refused: Vec<&'a RefusedRow>,
    next: usize,
}

impl<'a> Interleave<'a> {
    pub fn new(batch: &'a BatchRecord) -> Interleave<'a> {
        let mut refused: Vec<&RefusedRow> = batch.refused.iter().collect();
        // Stable, so two records for one line (which should not happen) keep their order.
        refused.sort_by_key(|r| r.line);
        Interleave { refused, next: 0 }
    }

    /// The next refused row before `line`, or the next one at all when `line` is `None` (no more
    /// orders).
    pub fn next_before(&mut self, line: Option<u64>) -> Option<&'a RefusedRow> {
        let row = *self.refused.get(self.next)?;
        if line.is_some_and(|line| row.line >= line) {
            return None;
        }
        self.next += 1;
        Some(row)
    }
}

/// Every report row of a batch in line order, from its orders in seq order.
pub fn report_rows<'a, I>(
    batch: &'a BatchRecord,
    orders: I,
    explorers: &'a BTreeMap<String, String>,
) -> ReportRows<'a, I::IntoIter>
where
    I: IntoIterator,
    I::Item: Borrow<OrderRecord>,
{
    ReportRows {
        refused: Interleave::new(batch),
        orders: orders.into_iter().peekable(),
        explorers,
    }
}

/// The iterator of [`report_rows`].
pub struct ReportRows<'a, I: Iterator> {
    refused: Interleave<'a>,
    orders: Peekable<I>,
    explorers: &'a BTreeMap<String, String>,
}

impl<I> Iterator for ReportRows<'_, I>
where
    I: Iterator,
    I::Item: Borrow<OrderRecord>,
{
    type Item = ReportRow;

    fn next(&mut self) -> Option<ReportRow> {
        let next_order_line = self.orders.peek().map(|o| o.borrow().line);
        if let Some(refused) = self.refused.next_before(next_order_line) {
            return Some(ReportRow::from_refused(refused));
        }
        let order = self.orders.next()?;
        Some(ReportRow::from_order(order.borrow(), self.explorers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::ErrorInfo;
    use crate::report::fixture;

    #[test]
    fn statuses_have_their_state_names_and_finality() {
        for kind in StateKind::ALL {
            let status = RowStatus::from(kind);
            assert_eq!(status.as_str(), kind.as_str());
            assert_eq!(status.is_final(), kind.is_final(), "{kind}");
        }
        for (i, status) in RowStatus::ALL.into_iter().enumerate() {
            assert_eq!(status.index(), i);
        }
        assert!(RowStatus::Refused.is_final() && RowStatus::Duplicate.is_final());
        assert_eq!(COLUMNS[LINE_COLUMN], "line");
        assert_eq!(COLUMNS[ATTEMPTS_COLUMN], "attempts");
    }

    #[test]
    fn an_order_row_carries_input_call_ids_fee_and_times() {
        let order = fixture::orders().remove(0);
        let row = ReportRow::from_order(&order, &fixture::explorers());
        assert_eq!(row.line, 2);
        assert_eq!((row.amount.as_str(), row.amount_sent.as_str()), ("000.10", "0.1"));
        assert_eq!(row.status, RowStatus::Success);
        assert_eq!(row.explorer_url, "https://polygonscan.com/tx/0xabc");
        assert_eq!((row.fee.as_str(), row.fee_coin.as_str()), ("0.000123", "MATIC"));
        assert_eq!(row.created_at, "2026-11-21T10:32:40.123Z");
        assert_eq!(row.first_sent_at, "2026-11-21T10:32:41.000Z");
        assert_eq!(row.final_at, "2026-11-21T10:33:40.123Z");
        assert_eq!(row.coin_key, Some(CoinKey::Id(1280)));
        assert_eq!(row.attempts, Some(1));
    }

    #[test]
    fn error_cells_say_why_an_order_ended_or_waits() {
        let mut order = fixture::orders().remove(0);
        order.error = Some(ErrorInfo {
            code: Some(11004),
            message: "RateLimit".into(),
        });
        let cells = |o: &OrderRecord| {
            let r = ReportRow::from_order(o, &BTreeMap::new());
            (r.error_code, r.error_message)
        };
        order.state = OrderState::Failed {
            reason: "chain failure".into(),
        };
        assert_eq!(cells(&order), (String::new(), "chain failure".into()));
        order.state = OrderState::Rejected {
            code: Some(14007),
            reason: "bad address".into(),
        };
        assert_eq!(cells(&order), ("14007".into(), "bad address".into()));
        order.state = OrderState::Submitted;
        assert_eq!(cells(&order), ("11004".into(), "RateLimit".into()));
        order.error = None;
        assert_eq!(cells(&order), (String::new(), String::new()));
        order.state = OrderState::Deferred {
            until_ms: 5,
            reason: "chain in maintenance".into(),
        };
        assert_eq!(cells(&order), (String::new(), "chain in maintenance".into()));
        order.state = OrderState::Unknown {
            attempt: 1,
            detail: "timeout".into(),
        };
        assert_eq!(cells(&order), (String::new(), "timeout".into()));
    }

    #[test]
    fn fees_are_plain_digits_or_kept_verbatim() {
        let fee = |amount: &str, symbol: &str, id| {
            fee_cells(Some(&Fee {
                coin_id: id,
                coin_symbol: symbol.into(),
                amount: amount.into(),
            }))
        };
        assert_eq!(fee("1.000", "USDT", 1280), ("1".into(), "USDT".into()));
        assert_eq!(fee("0.5", "", 1280), ("0.5".into(), "1280".into()));
        assert_eq!(fee("", "TRX", 0), ("0".into(), "TRX".into()));
        assert_eq!(fee("1e-3", "TRX", 0), ("1e-3".into(), "TRX".into()));
        assert_eq!(fee_cells(None), (String::new(), String::new()));
    }

    #[test]
    fn refused_and_duplicate_rows() {
        let batch = fixture::batch();
        let refused = ReportRow::from_refused(&batch.refused[0]);
        assert_eq!(refused.status, RowStatus::Refused);
        assert_eq!(
            refused.error_message,
            "amount: amount has a sign; write it without + or -; chain: unknown chain XYZ"
        );
        assert_eq!(
            (refused.order_id.as_str(), refused.attempts, refused.coin_key.as_ref()),
            ("pay-003", None, None)
        );
        let duplicate = ReportRow::from_refused(&batch.refused[1]);
        assert_eq!(duplicate.status, RowStatus::Duplicate);
        assert_eq!(duplicate.error_message, "already in batch 0123456789ab");
    }

    #[test]
    fn refused_rows_interleave_by_line_even_if_stored_out_of_order() {
        let mut batch = fixture::batch();
        batch.refused.reverse();
        let orders = fixture::orders();
        let lines: Vec<(u64, RowStatus)> = report_rows(&batch, &orders, &fixture::explorers())
            .map(|r| (r.line, r.status))
            .collect();
        assert_eq!(
            lines,
            [
                (2, RowStatus::Success),
                (3, RowStatus::Refused),
                (4, RowStatus::Success),
                (5, RowStatus::Failed),
                (6, RowStatus::Duplicate),
                (7, RowStatus::Rejected),
                (8, RowStatus::Submitted),
                (9, RowStatus::Success),
                (10, RowStatus::Refused),
            ]
        );
        // Only refused rows, or only orders.
        assert_eq!(
            report_rows(&batch, Vec::<OrderRecord>::new(), &BTreeMap::new()).count(),
            3
        );
        batch.refused.clear();
        assert_eq!(report_rows(&batch, orders, &BTreeMap::new()).count(), 6);
    }
}
