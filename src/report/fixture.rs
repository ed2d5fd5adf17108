//! A sample batch for the report tests: nine rows with every kind of outcome, amounts that a
//! float would get wrong, fees in the payout coin and in a chain's native coin.
//!
//! | line | row | outcome |
//! |---|---|---|
//! | 2 | pay-002 USDT POLYGON `000.10` | success, tx `0xabc`, fee 0.000123 MATIC |
//! | 3 | pay-003 | refused (two problems) |
//! | 4 | pay-004 USDT trx `0.2` | success, fee `1.000` USDT |
//! | 5 | pay-005 USDT TRX `5` | failed, fee 1 USDT |
//! | 6 | pay-006 | duplicate of batch 0123456789ab |
//! | 7 | pay-007 `1280` CWALLET `2.5` | rejected 14007 |
//! | 8 | pay-008 ETH ETH `0.000000000000000001` | submitted, 2 attempts, last error 11004 |
//! | 9 | pay-009 `usdt` TRX `0.20` | success, fee 1 USDT, reference with a comma and quotes |
//! | 10 | (no order_id) | refused |
//!
//! Test-only; pure.

use std::collections::BTreeMap;

use crate::model::call::WithdrawCall;
use crate::model::call::{CwalletTransfer, NetworkWithdrawal};
use crate::model::record::Fee;
use crate::model::record::{Approval, BatchRecord, BatchState, ErrorInfo, InputRow, OrderRecord, RefusedRow};
use crate::model::state::OrderState;

pub const CREATED_MS: i64 = 1_795_257_160_123; // 2026-11-21T10:32:40.123Z
pub const BATCH_ID: &str = "abababababababababababababababababababababababababababababababab";

pub fn batch() -> BatchRecord {
    BatchRecord {
        batch_id: BATCH_ID.into(),
        name: "payroll-abababababab".into(),
        source: "inbox/payroll.csv".into(),
        format: "csv".into(),
        api: crate::model::ApiGeneration::V2,
        plan_digest: "d".repeat(64),
        created_ms: CREATED_MS,
        updated_ms: CREATED_MS,
        rows: 9,
        orders: 6,
        refused: vec![
            RefusedRow {
                line: 3,
                order_id: Some("pay-003".into()),
                problems: vec![
                    "amount: amount has a sign; write it without + or -".into(),
                    "chain: unknown chain XYZ".into(),
                ],
                duplicate_of_batch: None,
            },
            RefusedRow {
                line: 6,
                order_id: Some("pay-006".into()),
                problems: Vec::new(),
                duplicate_of_batch: Some("0123456789ab".into()),
            },
            RefusedRow {
                line: 10,
                order_id: None,
                problems: vec!["order_id: missing".into()],
                duplicate_of_batch: None,
            },
        ],
        approval: Approval::NotNeeded,
        state: BatchState::Open,
        signer: None,
        maker_may_approve: true,
        recipients: None,
        bundles: None,
        retry_of: None,
    }
}

pub fn explorers() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("POLYGON".to_owned(), "https://polygonscan.com/tx/%s".to_owned()),
        ("TRX".to_owned(), "https://tronscan.org/#/transaction/".to_owned()),
    ])
}

fn fee(symbol: &str, coin_id: u64, amount: &str) -> Option<Fee> {
    Some(Fee {
        coin_id,
        coin_symbol: symbol.into(),
        amount: amount.into(),
    })
}

/// An order as the engine would have stored it; `amount_sent` is the canonical form of `amount`.
fn order(seq: u32, line: u64, coin: &str, chain: &str, amount: &str, amount_sent: &str) -> OrderRecord {
    let order_id = format!("pay-{line:03}");
    let coin_id = if coin.eq_ignore_ascii_case("ETH") { 1 } else { 1280 };
    let recipient = if chain == "CWALLET" {
        "9558861".to_owned()
    } else {
        format!("addr-{line}")
    };
    let call = if chain == "CWALLET" {
        WithdrawCall::Cwallet(CwalletTransfer {
            order_id: order_id.clone(),
            coin_id,
            cwallet_user: recipient.clone(),
            amount: amount_sent.into(),
        })
    } else {
        WithdrawCall::Network(NetworkWithdrawal {
            order_id: order_id.clone(),
            coin_id,
            chain: chain.to_ascii_uppercase(),
            address: recipient.clone(),
            memo: None,
            amount: amount_sent.into(),
            merchant_pay_network_fee: Some(false),
            network_fee_inquiry_id: None,
            notify_url: None,
        })
    };
    OrderRecord {
        order_id: order_id.clone().into(),
        batch_id: BATCH_ID.into(),
        seq,
        line,
        input: InputRow {
            order_id,
            recipient,
            coin: coin.into(),
            chain: chain.into(),
            amount: amount.into(),
            ..InputRow::default()
        },
        call,
        payload_digest: "p".repeat(64),
        state: OrderState::Queued,
        attempts: 0,
        record_id: None,
        tx_id: None,
        fee: None,
        error: None,
        created_ms: CREATED_MS,
        updated_ms: CREATED_MS,
        first_sent_ms: None,
        last_sent_ms: None,
        final_ms: None,
        next_check_ms: None,
        checks: 0,
        absent: None,
        review: None,
        task: None,
    }
}

/// Marks an order sent once and final `state`.
fn finished(mut o: OrderRecord, state: OrderState, tx: Option<&str>, fee: Option<Fee>) -> OrderRecord {
    o.state = state;
    o.attempts = 1;
    o.record_id = Some(format!("rec-{}", o.line));
    o.tx_id = tx.map(str::to_owned);
    o.fee = fee;
    o.first_sent_ms = Some(CREATED_MS + 877); // 10:32:41.000
    o.last_sent_ms = o.first_sent_ms;
    o.final_ms = Some(CREATED_MS + 60_000);
    o
}

/// The batch's orders in seq order.
pub fn orders() -> Vec<OrderRecord> {
    let mut submitted = order(4, 8, "ETH", "ETH", "0.000000000000000001", "0.000000000000000001");
    submitted.state = OrderState::Submitted;
    submitted.attempts = 2;
    submitted.record_id = Some("rec-8".into());
    submitted.first_sent_ms = Some(CREATED_MS + 877);
    submitted.error = Some(ErrorInfo {
        code: Some(11004),
        message: "RateLimit: too many requests".into(),
    });

    let mut rejected = order(3, 7, "1280", "CWALLET", "2.5", "2.5");
    rejected.state = OrderState::Rejected {
        code: Some(14007),
        reason: "Cwallet user does not exist".into(),
    };
    rejected.attempts = 1;
    rejected.first_sent_ms = Some(CREATED_MS + 877);
    rejected.final_ms = Some(CREATED_MS + 1_000);

    let mut last = finished(
        order(5, 9, "usdt", "TRX", "0.20", "0.2"),
        OrderState::Success,
        Some("trx999"),
        fee("USDT", 1280, "1"),
    );
    last.input.merchant_pays_fee = "false".into();
    last.input.reference = "June, \"bonus\"".into();

    vec![
        finished(
            order(0, 2, "USDT", "POLYGON", "000.10", "0.1"),
            OrderState::Success,
            Some("0xabc"),
            fee("MATIC", 1806, "0.000123"),
        ),
        finished(
            order(1, 4, "USDT", "trx", "0.2", "0.2"),
            OrderState::Success,
            Some("trx4"),
            fee("USDT", 1280, "1.000"),
        ),
        finished(
            order(2, 5, "USDT", "TRX", "5", "5"),
            OrderState::Failed {
                reason: "insufficient energy".into(),
            },
            None,
            fee("USDT", 1280, "1"),
        ),
        rejected,
        submitted,
        last,
    ]
}
