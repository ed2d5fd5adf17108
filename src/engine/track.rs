//! Tracking: following submitted orders to their final status with record queries, 20 orderIds
//! per request (v1: 100), in the background like sends, each page its own paced request.

use std::collections::{HashMap, HashSet};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, ms};
use crate::api::types::{
    FeeAmount, MAX_ORDER_IDS_PER_LIST_QUERY, RecordStatus, V1_MAX_ORDER_IDS_PER_QUERY, WithdrawRecord,
    WithdrawRecordListQuery, v1_status,
};
use crate::api::{CallError, Payouts};
use crate::model::ids::OrderId;
use crate::model::record::OrderRecord;
use crate::model::state::{Event, FinalStatus, StateKind};
use crate::store::Change;

/// The most pages one status query follows. With orderIds the answer fits one page; a server
/// that keeps paging is not followed for ever (the orders not seen are asked about again).
const MAX_PAGES: usize = 10;

/// Records by the orderId they carry. More than one may carry an orderId (a server that does
/// not refuse a reused orderId, R3): [`pick`] chooses the order's own.
pub(super) type Records = HashMap<String, Vec<WithdrawRecord>>;

/// A status query's orders and what CCPayment said about them.
pub(super) type Checked = (Vec<OrderRecord>, Result<Records, CallError>);

/// The status queries one batch's loop has in flight, and the orders they ask about (not asked
/// about again until the answer is in).
#[derive(Default)]
pub(super) struct Tracking {
    pub(super) tasks: JoinSet<Checked>,
    pub(super) asking: HashSet<OrderId>,
}

impl Engine {
    /// Submitted orders of `batch_id` that were hinted, taken out of the hint set. Hints for
    /// orders that are not (or no longer) submitted are dropped.
    fn take_hinted(&self, batch_id: &str) -> Result<Vec<OrderRecord>, EngineError> {
        let mut ids: Vec<String> = match self.hints.lock() {
            Ok(hints) if !hints.is_empty() => hints.iter().cloned().collect(),
            _ => return Ok(Vec::new()),
        };
        // The set's order is not stable; the queries must be, for the simulation to replay.
        ids.sort_unstable();
        let mut mine = Vec::new();
        let mut done = Vec::new();
        for id in ids {
            match self.store.order(&id)? {
                Some(order) if order.batch_id == batch_id => {
                    if order.kind() == StateKind::Submitted {
                        mine.push(order);
                    }
                    done.push(id);
                }
                Some(order) if order.kind() == StateKind::Submitted => {}
                // Unknown orders and orders that are not submitted need no hint.
                _ => done.push(id),
            }
        }
        if let Ok(mut hints) = self.hints.lock() {
            for id in done {
                hints.remove(&id);
            }
        }
        Ok(mine)
    }

    /// Starts status queries for the batch's submitted orders that are due, 20 (v1: 100)
    /// orderIds per request, while fewer than [`Engine::max_queries`] are in flight. The answers
    /// come back through `tracking.tasks` to [`Engine::take_statuses`].
    pub(super) fn start_tracking(
        &self,
        batch_id: &str,
        tracking: &mut Tracking,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let room = self.max_queries().saturating_sub(tracking.tasks.len());
        if room == 0 {
            return Ok(());
        }
        // Orders come due one by one as they were created; asking about each trickle would cost
        // nearly a request per order. So a query waits until it is full (20 orderIds) or until
        // its oldest order has waited `slack`, and orders due within `slack` ride along early.
        // The decision is made on the state index alone; only the orders asked about are read.
        let now = self.now();
        let slack = ms(self.settings.track_first_delay) / 2;
        let mut hinted = self.take_hinted(batch_id)?;
        // An order already being asked about keeps its hint for the pass after that answer.
        hinted.retain(|o| {
            let asking = tracking.asking.contains(&o.order_id);
            if asking {
                self.hint(&o.order_id);
            }
            !asking
        });
        let keys: Vec<(i64, String)> = self
            .store
            .due_keys(
                StateKind::Submitted,
                Some(batch_id),
                Some(now + slack),
                tracking.asking.len() + room * V1_MAX_ORDER_IDS_PER_QUERY,
            )?
            .into_iter()
            .filter(|(_, id)| !tracking.asking.contains(id.as_str()))
            .collect();
        if keys.is_empty() && hinted.is_empty() {
            return Ok(());
        }
        // A batch is built for one API version; its first order tells the query size.
        let chunk_size = match hinted.first() {
            Some(order) => query_size(order),
            None => match keys.first() {
                Some((_, id)) => self.query_size_of(id)?,
                None => MAX_ORDER_IDS_PER_LIST_QUERY,
            },
        };
        // A hinted order is asked about now: it goes first, so its query is sent even when it is
        // not full. The rest follow in due order, so only the last chunk can be partial.
        let hinted_ids: HashSet<&str> = hinted.iter().map(|o| o.order_id.as_str()).collect();
        let candidates: Vec<(bool, &str)> = hinted
            .iter()
            .map(|o| (true, o.order_id.as_str()))
            .chain(
                keys.iter()
                    .filter(|(_, id)| !hinted_ids.contains(id.as_str()))
                    .map(|(due, id)| (*due <= now - slack, id.as_str())),
            )
            .collect();
        let mut wanted: Vec<String> = Vec::new();
        for chunk in candidates.chunks(chunk_size).take(room) {
            if chunk.len() == chunk_size || chunk.iter().any(|(overdue, _)| *overdue) {
                wanted.extend(chunk.iter().map(|(_, id)| (*id).to_owned()));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let due: Vec<OrderRecord> = self
            .store
            .orders(&wanted)?
            .into_iter()
            .filter(|o| o.kind() == StateKind::Submitted)
            .collect();
        let (v1, v2): (Vec<OrderRecord>, Vec<OrderRecord>) = due.into_iter().partition(|o| o.call.is_v1());
        for (chunk_size, group, v1) in [
            (MAX_ORDER_IDS_PER_LIST_QUERY, v2, false),
            (V1_MAX_ORDER_IDS_PER_QUERY, v1, true),
        ] {
            for chunk in group.chunks(chunk_size) {
                let chunk = chunk.to_vec();
                tracking.asking.extend(chunk.iter().map(|o| o.order_id.clone()));
                let payouts = self.payouts.clone();
                let cancel = cancel.clone();
                tracking.tasks.spawn(async move {
                    let result = if v1 {
                        statuses_v1(payouts.as_ref(), &chunk, &cancel).await
                    } else {
                        statuses_v2(payouts.as_ref(), &chunk, &cancel).await
                    };
                    (chunk, result)
                });
            }
        }
        Ok(())
    }

    /// Adds to `changes` what the answered status queries (`first`, and any other that has
    /// answered) say: final orders become final, the others are asked again later, less often
    /// each time.
    pub(super) fn take_statuses(
        &self,
        tracking: &mut Tracking,
        first: Vec<Checked>,
        changes: &mut Vec<Change>,
    ) -> Result<(), EngineError> {
        let mut answers = first;
        while let Some(done) = tracking.tasks.try_join_next() {
            answers.push(done.map_err(|e| EngineError::Invariant(format!("a status task failed: {e}")))?);
        }
        for (chunk, result) in answers {
            // A refused or unanswered query changes nothing but when to ask again; the pacing
            // has already heard what it said about the rate.
            let statuses = result.unwrap_or_default();
            for mut order in chunk {
                tracking.asking.remove(&order.order_id);
                order.checks += 1;
                if let Some(record) = pick(&order, &statuses) {
                    order = with_record(order, record);
                    if let Some(status) = final_status(&record.status, &record.reason) {
                        changes.push(self.apply(order, &Event::Final(status), None)?);
                        continue;
                    }
                }
                // Not final yet (or not listed yet): ask again later, less often each time.
                let delay = self.settings.track_backoff.ceiling(order.checks);
                order.next_check_ms = Some(self.now() + ms(delay));
                order.updated_ms = self.now();
                changes.push(Change {
                    from: Some(order.kind()),
                    event: "check",
                    detail: None,
                    order,
                });
            }
        }
        Ok(())
    }
}

/// How many orderIds one status query of `order` asks about: 20 on v2, 100 on v1.
pub(super) fn query_size(order: &OrderRecord) -> usize {
    if order.call.is_v1() {
        V1_MAX_ORDER_IDS_PER_QUERY
    } else {
        MAX_ORDER_IDS_PER_LIST_QUERY
    }
}

impl Engine {
    /// [`query_size`] of the stored order `order_id` (a batch's orders share one API version).
    pub(super) fn query_size_of(&self, order_id: &str) -> Result<usize, EngineError> {
        Ok(self
            .store
            .order(order_id)?
            .map_or(MAX_ORDER_IDS_PER_LIST_QUERY, |o| query_size(&o)))
    }
}

/// The records of `orders` by orderId, following `nextId` pages; each page is its own request
/// and passes the pacing on its own.
async fn statuses_v2(
    payouts: &dyn Payouts,
    orders: &[OrderRecord],
    cancel: &CancellationToken,
) -> Result<Records, CallError> {
    let mut out = Records::new();
    let mut query = WithdrawRecordListQuery {
        order_ids: orders.iter().map(|o| o.order_id.to_string()).collect(),
        ..WithdrawRecordListQuery::default()
    };
    for _ in 0..MAX_PAGES {
        let page = payouts.record_page(&query, cancel).await?;
        for record in page.records {
            out.entry(record.order_id.clone()).or_default().push(record);
        }
        if page.next_id.is_empty() {
            break;
        }
        query.next_id = Some(page.next_id);
    }
    Ok(out)
}

/// The v1 bills of `orders`, as records.
pub(super) async fn statuses_v1(
    payouts: &dyn Payouts,
    orders: &[OrderRecord],
    cancel: &CancellationToken,
) -> Result<Records, CallError> {
    let ids: Vec<String> = orders.iter().map(|o| o.order_id.to_string()).collect();
    let bills = payouts.v1_bills(&ids, cancel).await?;
    let mut out = Records::new();
    for bill in bills {
        let trade = bill.trade_list.first().cloned().unwrap_or_default();
        let record = WithdrawRecord {
            // A bill names CCPayment's order id, which is not the record id a v1 withdraw
            // answers with: the order keeps the record id it was given, if any.
            record_id: String::new(),
            order_id: bill.order_detail.merchant_order_id.clone(),
            status: v1_status(&bill.order_detail.status),
            tx_id: trade.txid.clone(),
            chain: bill.order_detail.chain.clone(),
            amount: bill.order_detail.order_amount.clone(),
            // The fee's coin is named by its symbol: v1's `network_coin_id` is a token UUID, not
            // a v2 coin id (R8), so it is never read as a number.
            fee: (!trade.network_fee.is_empty()).then(|| FeeAmount {
                coin_id: 0,
                coin_symbol: trade.network_fee_crypto.clone(),
                amount: trade.network_fee.clone(),
            }),
            ..WithdrawRecord::default()
        };
        out.entry(record.order_id.clone()).or_default().push(record);
    }
    Ok(out)
}

/// Whether `record` is the order's: its orderId is the order's, and so is its recordId once the
/// order knows one (R1: an empty record, or one for another orderId, is "no such order"; R3: a
/// second payout under the same orderId is not this order's).
pub(super) fn is_this_order(order: &OrderRecord, record: &WithdrawRecord) -> bool {
    if record.order_id.is_empty() || order.order_id != record.order_id {
        return false;
    }
    match &order.record_id {
        Some(known) if !record.record_id.is_empty() => *known == record.record_id,
        _ => true,
    }
}

/// The order's own record among those an answer carried.
pub(super) fn pick<'a>(order: &OrderRecord, records: &'a Records) -> Option<&'a WithdrawRecord> {
    records
        .get(order.order_id.as_str())?
        .iter()
        .find(|record| is_this_order(order, record))
}

/// Says once per process that CCPayment reported a status ccpayout does not know: the order is
/// not final and is followed on (a status is never taken for an end it does not name).
fn note_unknown_status(status: &RecordStatus) {
    static SEEN: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeSet<String>>> = std::sync::OnceLock::new();
    let RecordStatus::Other(name) = status else { return };
    let seen = SEEN.get_or_init(Default::default);
    if seen.lock().map(|mut s| s.insert(name.clone())).unwrap_or(false) {
        tracing::warn!(
            status = %name,
            "CCPayment reported a withdrawal status ccpayout does not know; such orders are followed until they end in one it knows"
        );
    }
}

/// The final status a record shows, if it shows one.
pub(super) fn final_status(status: &RecordStatus, reason: &str) -> Option<FinalStatus> {
    note_unknown_status(status);
    match status {
        RecordStatus::Success => Some(FinalStatus::Success),
        RecordStatus::Failed => Some(FinalStatus::Failed {
            reason: if reason.is_empty() {
                "CCPayment reports the withdrawal failed".into()
            } else {
                reason.to_owned()
            },
        }),
        RecordStatus::Rejected => Some(FinalStatus::Failed {
            reason: "rejected on the CCPayment dashboard".into(),
        }),
        _ => None,
    }
}

/// Copies what a record tells about the payout into the order.
pub(super) fn with_record(mut order: OrderRecord, record: &WithdrawRecord) -> OrderRecord {
    if !record.record_id.is_empty() {
        order.record_id = Some(record.record_id.clone());
    }
    if !record.tx_id.is_empty() {
        order.tx_id = Some(record.tx_id.clone());
    }
    if let Some(fee) = &record.fee {
        order.fee = Some(fee.clone().into());
    }
    order
}
