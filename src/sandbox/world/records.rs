//! Record queries: `getAppWithdrawRecord`, the paged `getAppWithdrawRecordList` with its
//! cursor, and v1 `bill/info`, all built from the committed single withdrawals (the payouts of
//! batch tasks are not indexed by orderId or recordId and are left out of lists); also the fee
//! fields v1 reports (in receipts, bills and webhooks).

use super::decimal::{catalogue_decimal, fmt_decimal};
use super::readings::RecordAnswer;
use super::reply::Refusal;
use super::{Payout, World};
use crate::api::types::{
    MAX_ORDER_IDS_PER_LIST_QUERY, RECORD_LIST_PAGE_SIZE, RecordStatus, V1_MAX_ORDER_IDS_PER_QUERY, V1Bill,
    V1BillInfoRequest, V1OrderDetail, V1Trade, WithdrawRecord, WithdrawRecordData, WithdrawRecordListQuery,
    WithdrawRecordPage, WithdrawRecordQuery,
};

/// The default and maximum window of `getAppWithdrawRecordList`.
const LIST_WINDOW_SECS: i64 = 90 * 24 * 60 * 60;

impl World {
    pub(super) fn to_record(&self, payout: &Payout) -> WithdrawRecord {
        let l = &payout.ledger;
        WithdrawRecord {
            record_id: l.record_id.clone(),
            withdraw_type: l.withdraw_type.clone(),
            coin_id: l.coin_id,
            coin_symbol: l.coin_symbol.clone(),
            chain: l.chain.clone(),
            from_address: payout.from_address.clone(),
            to_address: l.to_address.clone(),
            to_memo: l.memo.clone(),
            cwallet_user: l.cwallet_user.clone(),
            order_id: l.order_id.clone(),
            tx_id: l.tx_id.clone(),
            status: l.status.clone(),
            amount: l.amount.clone(),
            fee: l.fee.clone(),
            reason: l.reason.clone(),
            coin_usd_price: fmt_decimal(self.price(l.coin_id)),
        }
    }

    /// `getAppWithdrawRecord`. A payout not yet visible (`lookup-lag`) is not found; what an
    /// orderId that is not found answers depends on the `empty-record`/`other-record` readings.
    pub fn get_record(&self, q: &WithdrawRecordQuery, now_ms: i64) -> Result<RecordAnswer, Refusal> {
        let record_id = q.record_id.as_deref().filter(|s| !s.is_empty());
        let order_id = q.order_id.as_deref().filter(|s| !s.is_empty());
        let idx = match (record_id, order_id) {
            (None, None) => {
                return Err(Refusal::invalid("recordId or orderId is required"));
            }
            (Some(record_id), order_id) => self
                .by_record
                .get(record_id)
                .copied()
                .filter(|&i| order_id.is_none_or(|o| self.payouts[i].ledger.order_id == o))
                .filter(|&i| self.visible(i, now_ms)),
            (None, Some(order_id)) => self.order_payouts(order_id).find(|&i| self.visible(i, now_ms)),
        };
        match (idx, record_id, order_id) {
            (Some(idx), _, _) => Ok(RecordAnswer::Found(Box::new(WithdrawRecordData {
                record: self.to_record(&self.payouts[idx]),
            }))),
            // R1 is about lookups by orderId; an unknown recordId stays "data does not exist".
            (None, None, Some(order_id)) => self.unknown_order(order_id, now_ms),
            (None, _, _) => Err(Refusal::code(11003)),
        }
    }

    /// `getAppWithdrawRecordList`.
    pub fn list_records(&self, q: &WithdrawRecordListQuery, now_ms: i64) -> Result<WithdrawRecordPage, Refusal> {
        if q.order_ids.len() > MAX_ORDER_IDS_PER_LIST_QUERY {
            return Err(Refusal::msg(
                11010,
                format!("QueryNumMax: at most {MAX_ORDER_IDS_PER_LIST_QUERY} orderIds"),
            ));
        }
        let now_secs = now_ms.div_euclid(1000);
        let end = q.end_at.filter(|&e| e > 0).unwrap_or(now_secs);
        let start = q.start_at.filter(|&s| s > 0).unwrap_or(end - LIST_WINDOW_SECS);
        if start > end {
            return Err(Refusal::invalid("startAt is after endAt"));
        }
        if end - start > LIST_WINDOW_SECS {
            return Err(Refusal::code(11008));
        }
        let from = match q.next_id.as_deref().filter(|s| !s.is_empty()) {
            None => 0,
            Some(cursor) => {
                decode_cursor(cursor).ok_or_else(|| Refusal::invalid("nextId is not a cursor from this server"))?
            }
        };
        let matches = |p: &Payout| {
            let l = &p.ledger;
            let created_secs = l.created_ms.div_euclid(1000);
            // Batch tasks are the batch routes' business: single withdrawal reads never see them.
            !l.is_batch_task()
                && q.coin_id.is_none_or(|c| c == l.coin_id)
                && q.chain.as_deref().is_none_or(|c| c.is_empty() || c == l.chain)
                && q.to_address
                    .as_deref()
                    .is_none_or(|a| a.is_empty() || a == l.to_address)
                && (start..=end).contains(&created_secs)
        };
        // With orderIds the candidates come from the index, so tracking a batch of 20 orders
        // costs the same however many payouts exist.
        let candidates: Vec<usize> = if q.order_ids.is_empty() {
            (from..self.payouts.len()).collect()
        } else {
            let mut ids: Vec<usize> = q
                .order_ids
                .iter()
                .flat_map(|o| self.order_payouts(o))
                .filter(|&i| i >= from)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let mut records = Vec::new();
        let mut next_id = String::new();
        for idx in candidates {
            let payout = &self.payouts[idx];
            if !matches(payout) || !self.visible(idx, now_ms) {
                continue;
            }
            if records.len() == RECORD_LIST_PAGE_SIZE {
                next_id = encode_cursor(idx);
                break;
            }
            records.push(self.to_record(payout));
        }
        Ok(WithdrawRecordPage { records, next_id })
    }

    /// v1 `bill/info`: the bills of the given merchant order ids that exist (and are visible,
    /// under `lookup-lag`), one per payout.
    pub fn v1_bill_info(&self, req: &V1BillInfoRequest, now_ms: i64) -> Result<Vec<V1Bill>, Refusal> {
        if req.merchant_order_ids.len() > V1_MAX_ORDER_IDS_PER_QUERY {
            return Err(Refusal::msg(
                11010,
                format!("QueryNumMax: at most {V1_MAX_ORDER_IDS_PER_QUERY} merchant_order_ids"),
            ));
        }
        Ok(req
            .merchant_order_ids
            .iter()
            .flat_map(|o| self.order_payouts(o))
            .filter(|&idx| self.visible(idx, now_ms))
            .map(|idx| self.v1_bill(&self.payouts[idx]))
            .collect())
    }

    fn v1_bill(&self, payout: &Payout) -> V1Bill {
        let l = &payout.ledger;
        let status = match l.status {
            RecordStatus::Success => "Successful",
            RecordStatus::Failed => "Failed",
            _ => "Processing",
        };
        let rate = fmt_decimal(self.price(l.coin_id));
        let (fee_coin_id, fee_symbol, fee_amount, fee_value) = self.v1_fee_fields(payout);
        V1Bill {
            order_detail: V1OrderDetail {
                merchant_order_id: l.order_id.clone(),
                chain: l.chain.clone(),
                contract: payout.contract.clone(),
                crypto: l.coin_symbol.clone(),
                order_amount: l.amount.clone(),
                token_rate: rate.clone(),
                status: status.to_owned(),
                created: l.created_ms.div_euclid(1000),
                order_id: payout.ccp_order_id.clone(),
            },
            trade_list: vec![V1Trade {
                amount: l.amount.clone(),
                chain: l.chain.clone(),
                contract: payout.contract.clone(),
                crypto: l.coin_symbol.clone(),
                service_fee: "0".to_owned(),
                network_fee: fee_amount,
                network_coin_id: fee_coin_id,
                network_fee_crypto: fee_symbol,
                network_fee_value: fee_value,
                txid: l.tx_id.clone(),
                pay_time: l.settled_ms.map_or(0, |ms| ms.div_euclid(1000)),
                token_rate: rate,
                status: status.to_owned(),
            }],
        }
    }

    /// (fee coin as a v1 token id, fee coin symbol, fee amount, fee in USD) as v1 reports them.
    pub(super) fn v1_fee_fields(&self, payout: &Payout) -> (String, String, String, String) {
        match &payout.ledger.fee {
            // v1 names the fee coin by a token UUID, never by the v2 number (R8).
            Some(fee) => {
                let amount = catalogue_decimal(&fee.amount);
                (
                    self.catalogue.v1_fee_token(fee.coin_id, &payout.ledger.chain),
                    fee.coin_symbol.clone(),
                    fee.amount.clone(),
                    fmt_decimal(amount * self.price(fee.coin_id)),
                )
            }
            None => (
                self.catalogue.v1_fee_token(payout.ledger.coin_id, &payout.ledger.chain),
                payout.ledger.coin_symbol.clone(),
                "0".to_owned(),
                "0".to_owned(),
            ),
        }
    }
}

/// The `nextId` of a page that starts at payout `idx`.
fn encode_cursor(idx: usize) -> String {
    format!("n{idx:x}")
}

/// The payout index in a `nextId` this server gave out; `None` for anything else.
fn decode_cursor(cursor: &str) -> Option<usize> {
    usize::from_str_radix(cursor.strip_prefix('n')?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::types::{V1WithdrawReceipt, V1WithdrawWebhook, method};
    use crate::sandbox::demo::hot_wallet;
    use crate::sandbox::world::WebhookScheme;
    use crate::sandbox::world::testkit::*;

    #[test]
    fn record_query_by_either_id_and_not_found() {
        let mut w = world();
        let (_, reply) = create(&mut w, net("order-1", 1280, "POLYGON", EVM_ADDR, "5"));
        let record_id = reply["data"]["recordId"].as_str().expect("id").to_owned();
        let by_record = serde_json::json!({"recordId": record_id});
        let (code, r1) = call(&mut w, method::GET_APP_WITHDRAW_RECORD, &by_record, T0);
        assert_eq!(code, 10000);
        let (_, r2) = call(
            &mut w,
            method::GET_APP_WITHDRAW_RECORD,
            &serde_json::json!({"orderId": "order-1"}),
            T0,
        );
        assert_eq!(r1, r2);
        let record = &r1["data"]["record"];
        assert_eq!(record["status"], "Processing");
        assert_eq!(record["withdrawType"], "Network");
        assert_eq!(record["fromAddress"], hot_wallet("POLYGON"));
        assert_eq!(record["fee"]["coinSymbol"], "MATIC");
        assert_eq!(record["coinUSDPrice"], "1");
        let (_, r3) = call(&mut w, method::GET_APP_WITHDRAW_RECORD, &by_record, T0 + 2000);
        assert_eq!(r3["data"]["record"]["status"], "Success", "settled lazily");
        for (body, code) in [
            (serde_json::json!({"orderId": "nope"}), 11003),
            (serde_json::json!({"recordId": "123"}), 11003),
            (serde_json::json!({"recordId": record_id, "orderId": "other"}), 11003),
            (serde_json::json!({}), 11000),
            (serde_json::json!({"orderId": ""}), 11000),
        ] {
            assert_eq!(
                call(&mut w, method::GET_APP_WITHDRAW_RECORD, &body, T0).0,
                code,
                "{body}"
            );
        }
    }

    #[test]
    fn record_list_pages_with_next_id_and_filters() {
        let mut w = world();
        for i in 0..45 {
            let (code, _) = call(
                &mut w,
                method::APPLY_APP_WITHDRAW_TO_NETWORK,
                &net(&format!("order-{i:02}"), 1280, "TRX", TRX_ADDR, "2"),
                T0 + i * 1000,
            );
            assert_eq!(code, 10000);
        }
        let now = T0 + 100_000;
        let mut seen = Vec::new();
        let mut next = String::new();
        let mut pages = 0;
        loop {
            let q = serde_json::json!({"nextId": next});
            let (code, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now);
            assert_eq!(code, 10000);
            let page: WithdrawRecordPage = serde_json::from_value(reply["data"].clone()).expect("page");
            pages += 1;
            seen.extend(page.records.iter().map(|r| r.order_id.clone()));
            if page.next_id.is_empty() {
                break;
            }
            next = page.next_id;
        }
        assert_eq!(pages, 3);
        let expected: Vec<String> = (0..45).map(|i| format!("order-{i:02}")).collect();
        assert_eq!(seen, expected);

        // orderIds filter, in creation order whatever the query order.
        let q = serde_json::json!({"orderIds": ["order-30", "order-02", "missing"]});
        let (_, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now);
        let ids: Vec<_> = reply["data"]["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["orderId"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(ids, ["order-02", "order-30"]);
        assert_eq!(reply["data"]["nextId"], "");
        let too_many: Vec<String> = (0..21).map(|i| format!("order-{i:02}")).collect();
        let q = serde_json::json!({"orderIds": too_many});
        assert_eq!(call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now).0, 11010);

        // Time window (seconds), coin and chain filters.
        let start = (T0 + 40_000) / 1000;
        let q = serde_json::json!({"startAt": start, "endAt": start + 2});
        let (_, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now);
        assert_eq!(reply["data"]["records"].as_array().map(Vec::len), Some(3));
        let q = serde_json::json!({"coinId": 1482});
        let (_, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now);
        assert_eq!(reply["data"]["records"].as_array().map(Vec::len), Some(0));
        let q = serde_json::json!({"chain": "TRX", "toAddress": TRX_ADDR, "coinId": 1280});
        let (_, reply) = call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now);
        assert_eq!(reply["data"]["records"].as_array().map(Vec::len), Some(20));
        // Records older than 90 days fall out of the default window.
        let later = T0 + 91 * 24 * 3600 * 1000;
        let (_, reply) = call(
            &mut w,
            method::GET_APP_WITHDRAW_RECORD_LIST,
            &serde_json::json!({}),
            later,
        );
        assert_eq!(reply["data"]["records"].as_array().map(Vec::len), Some(0));
        for (q, code) in [
            (serde_json::json!({"nextId": "garbage"}), 11000),
            (serde_json::json!({"startAt": 10, "endAt": 5}), 11000),
            (serde_json::json!({"startAt": 1, "endAt": 100_000_000}), 11008),
        ] {
            assert_eq!(
                call(&mut w, method::GET_APP_WITHDRAW_RECORD_LIST, &q, now).0,
                code,
                "{q}"
            );
        }
    }

    #[test]
    fn v1_withdraw_and_bill_info() {
        let mut w = world_with(|c| c.webhook_url = Some("http://127.0.0.1:9/hook".into()));
        let trx = w.v1_token_id("USDT", "TRX").expect("token");
        let polygon = w.v1_token_id("USDT", "POLYGON").expect("token");
        let body = serde_json::json!({"merchant_order_id": "v1-1", "address": TRX_ADDR, "token_id": trx, "value": "10", "merchant_pays_fee": false});
        let (code, reply) = call(&mut w, "v1/withdraw", &body, T0);
        assert_eq!(code, 10000, "{reply}");
        let data: V1WithdrawReceipt = serde_json::from_value(reply["data"].clone()).expect("receipt");
        assert_eq!(data.net_receivable, "9");
        assert_eq!(data.network_fee, "1");
        // The fee coin is named by a token UUID, not by its v2 number (R8).
        assert_eq!(data.network_coin_id, w.v1_token_id("USDT", "TRX").expect("token"));
        assert_eq!(data.network_fee_crypto, "USDT");
        assert_eq!(data.network_fee_value, "1");
        assert!(!data.order_id.is_empty() && !data.record_id.is_empty());
        // Native fee, priced in USD.
        let body =
            serde_json::json!({"merchant_order_id": "v1-2", "address": EVM_ADDR, "token_id": polygon, "value": "5"});
        let (_, reply) = call(&mut w, "v1/withdraw", &body, T0);
        assert_eq!(reply["data"]["network_fee_crypto"], "MATIC");
        assert_eq!(
            reply["data"]["network_coin_id"].as_str(),
            w.v1_token_id("MATIC", "POLYGON").as_deref()
        );
        assert_eq!(reply["data"]["network_fee_value"], "0.01175977");
        // A Cwallet address with any token of the coin is an internal transfer.
        let body = serde_json::json!({"merchant_order_id": "v1-3", "address": "alice@example.com", "token_id": polygon, "value": "3"});
        let (_, reply) = call(&mut w, "v1/withdraw", &body, T0);
        assert_eq!(reply["data"]["network_fee"], "0");
        assert_eq!(reply["data"]["net_receivable"], "3");
        assert_eq!(w.ledger().payouts_for("v1-3")[0].withdraw_type, "Cwallet");
        for (body, code) in [
            (
                serde_json::json!({"merchant_order_id": "v1-4", "address": TRX_ADDR, "token_id": "00000000-0000-0000-0000-000000000000", "value": "10"}),
                13000,
            ),
            (
                serde_json::json!({"merchant_order_id": "v1-4", "address": EVM_ADDR, "token_id": trx, "value": "10"}),
                14007,
            ),
            (
                serde_json::json!({"merchant_order_id": "v1-4", "address": "12345", "token_id": trx, "value": "10"}),
                11015,
            ),
            (
                serde_json::json!({"merchant_order_id": "v1-4", "address": TRX_ADDR, "token_id": trx, "value": 10}),
                11000,
            ),
        ] {
            assert_eq!(call(&mut w, "v1/withdraw", &body, T0).0, code, "{body}");
        }
        // No v1 webhook before the final status.
        assert!(w.take_webhooks().is_empty());

        let q = serde_json::json!({"merchant_order_ids": ["v1-1", "v1-3", "missing"]});
        let (code, reply) = call(&mut w, "v1/bill/info", &q, T0);
        assert_eq!(code, 10000);
        let bills: Vec<V1Bill> = serde_json::from_value(reply["data"].clone()).expect("bills");
        assert_eq!(bills.len(), 2);
        assert_eq!(bills[0].order_detail.status, "Processing");
        assert_eq!(bills[0].order_detail.merchant_order_id, "v1-1");
        w.settle_due(T0 + 2000);
        let (_, reply) = call(&mut w, "v1/bill/info", &q, T0 + 2000);
        let bills: Vec<V1Bill> = serde_json::from_value(reply["data"].clone()).expect("bills");
        assert_eq!(bills[0].order_detail.status, "Successful");
        assert_eq!(bills[0].trade_list[0].txid.len(), 64);
        assert_eq!(bills[0].trade_list[0].pay_time, (T0 + 2000) / 1000);
        assert_eq!(bills[1].trade_list[0].txid, "");
        let too_many: Vec<String> = (0..101).map(|i| format!("o-{i}")).collect();
        let q = serde_json::json!({"merchant_order_ids": too_many});
        assert_eq!(call(&mut w, "v1/bill/info", &q, T0).0, 11010);

        // Final v1 webhooks, flat and with "internal transfer" for the Cwallet payout.
        let hooks = w.take_webhooks();
        assert_eq!(hooks.len(), 3);
        assert!(hooks.iter().all(|h| h.scheme == WebhookScheme::V1));
        let cwallet: V1WithdrawWebhook = serde_json::from_slice(&hooks[2].body).expect("v1 hook");
        assert_eq!(cwallet.txid, "internal transfer");
        assert_eq!(cwallet.pay_status, "success");
        assert_eq!(cwallet.merchant_order_id, "v1-3");
        let hook: V1WithdrawWebhook = serde_json::from_slice(&hooks[1].body).expect("v1 hook");
        assert_eq!(Some(hook.network_coin_id), w.v1_token_id("MATIC", "POLYGON"));
    }

    #[test]
    fn a_cursor_decodes_to_its_index() {
        assert_eq!(decode_cursor(&encode_cursor(12345)), Some(12345));
    }
}
