//! Creating payouts: the three create endpoints (v2 network and Cwallet withdrawals, v1
//! `withdraw`), the orderId check, the validations of a withdrawal in the order CCPayment is
//! assumed to apply them, and [`World`]'s commit, which debits, records and schedules a
//! payout.

use rust_decimal::Decimal;

use super::decimal::{catalogue_decimal, fmt_decimal, parse_amount};
use super::reply::Refusal;
use super::{Payout, World};
use crate::api::types::{
    CwalletWithdrawRequest, FeeAmount, NetworkWithdrawRequest, RecordStatus, V1WithdrawReceipt, V1WithdrawRequest,
    WithdrawReceipt,
};
use crate::rules::address::{AddressFamily, check_address, parse_cwallet_recipient};
use crate::sandbox::LedgerPayout;
use crate::sandbox::demo::hot_wallet;

/// The chain name CCPayment gives Cwallet transfers.
pub const CWALLET_CHAIN: &str = "Cwallet OS";

/// `notifyUrl` is at most this long.
const MAX_NOTIFY_URL_LEN: usize = 150;

/// A validated withdrawal, ready to commit.
#[derive(Debug, Clone)]
struct NewPayout {
    api: &'static str,
    withdraw_type: &'static str,
    coin_id: u64,
    chain: String,
    to_address: String,
    memo: String,
    cwallet_user: String,
    amount: String,
    /// (fee coin id, fee amount).
    fee: Option<(u64, Decimal)>,
    receiver_gets: Decimal,
    merchant_pays_fee: bool,
    debits: Vec<(u64, Decimal)>,
    webhook_url: Option<String>,
}

impl World {
    /// `applyAppWithdrawToNetwork`.
    pub fn apply_network(&mut self, req: NetworkWithdrawRequest, now_ms: i64) -> Result<WithdrawReceipt, Refusal> {
        self.check_new_order(&req.order_id)?;
        if let Some(url) = &req.notify_url
            && url.len() > MAX_NOTIFY_URL_LEN
        {
            return Err(Refusal::invalid(format!(
                "notifyUrl is longer than {MAX_NOTIFY_URL_LEN} characters"
            )));
        }
        let mut new = self.validate_network(
            req.coin_id,
            &req.chain,
            &req.address,
            req.memo.as_deref(),
            &req.amount,
            req.merchant_pay_network_fee.unwrap_or(false),
        )?;
        new.api = "v2";
        new.webhook_url = req
            .notify_url
            .filter(|u| !u.is_empty())
            .or_else(|| self.webhook_url.clone());
        let idx = self.commit(&req.order_id, new, now_ms);
        Ok(WithdrawReceipt {
            record_id: self.payouts[idx].ledger.record_id.clone(),
        })
    }

    /// `applyAppWithdrawToCwallet`.
    pub fn apply_cwallet(&mut self, req: CwalletWithdrawRequest, now_ms: i64) -> Result<WithdrawReceipt, Refusal> {
        self.check_new_order(&req.order_id)?;
        let mut new = self.validate_cwallet(req.coin_id, &req.cwallet_user, &req.amount)?;
        new.api = "v2";
        let idx = self.commit(&req.order_id, new, now_ms);
        Ok(WithdrawReceipt {
            record_id: self.payouts[idx].ledger.record_id.clone(),
        })
    }

    /// v1 `withdraw`: the token id selects coin and network; a Cwallet ID or e-mail as the
    /// address makes it an internal transfer (any token of the coin will do).
    pub fn v1_withdraw(&mut self, req: V1WithdrawRequest, now_ms: i64) -> Result<V1WithdrawReceipt, Refusal> {
        self.check_new_order(&req.merchant_order_id)?;
        let (coin_id, chain) = self
            .catalogue
            .v1_token(&req.token_id)
            .ok_or_else(|| Refusal::code(13000))?;
        let mut new = if parse_cwallet_recipient(&req.address).is_ok() {
            self.validate_cwallet(coin_id, &req.address, &req.value)?
        } else {
            self.validate_network(
                coin_id,
                &chain,
                &req.address,
                req.memo.as_deref(),
                &req.value,
                req.merchant_pays_fee.unwrap_or(false),
            )?
        };
        new.api = "v1";
        // v1 webhooks only go to the account's webhook URL (there is no per-order URL in v1).
        new.webhook_url = self.webhook_url.clone();
        let idx = self.commit(&req.merchant_order_id, new, now_ms);
        let payout = &self.payouts[idx];
        let (fee_coin_id, fee_symbol, fee_amount, fee_value) = self.v1_fee_fields(payout);
        Ok(V1WithdrawReceipt {
            order_id: payout.ccp_order_id.clone(),
            record_id: payout.ledger.record_id.clone(),
            network_fee: fee_amount,
            net_receivable: payout.ledger.receiver_gets.clone(),
            network_coin_id: fee_coin_id,
            network_fee_crypto: fee_symbol,
            network_fee_value: fee_value,
        })
    }

    /// 11000 for a bad orderId, 11007 while its first create's reply is held back, 11011 when
    /// a payout with it exists. Under `no-order-uniqueness` (R3) a used orderId is no refusal.
    fn check_new_order(&self, order_id: &str) -> Result<(), Refusal> {
        let len = order_id.chars().count();
        if !(3..=64).contains(&len) {
            return Err(Refusal::invalid("orderId must be 3 to 64 characters"));
        }
        if self.readings.no_order_uniqueness {
            return Ok(());
        }
        if self.in_flight.contains(order_id) {
            return Err(Refusal::code(11007));
        }
        if self.by_order.contains_key(order_id) {
            return Err(Refusal::code(11011));
        }
        Ok(())
    }

    /// The checks of a chain withdrawal, in the order CCPayment is assumed to apply them.
    fn validate_network(
        &self,
        coin_id: u64,
        chain: &str,
        address: &str,
        memo: Option<&str>,
        amount_str: &str,
        merchant_pays_fee: bool,
    ) -> Result<NewPayout, Refusal> {
        let coin = self.catalogue.coin(coin_id).ok_or_else(|| Refusal::code(13000))?;
        let network = coin.networks.get(chain).ok_or_else(|| Refusal::code(13001))?;
        if !withdrawals_open(&coin.status) {
            return Err(Refusal::code(13005));
        }
        let chain_info = self.catalogue.chain(chain).ok_or_else(|| Refusal::code(13001))?;
        if !chain_info.is_normal() || !network.can_withdraw {
            return Err(Refusal::code(14004));
        }
        if let Err(e) = check_address(AddressFamily::for_chain(chain), address) {
            return Err(Refusal::msg(14007, format!("WithdrawAddrFormat: {e}")));
        }
        if self.refused_addresses.contains(address) {
            return Err(Refusal::code(14002));
        }
        let memo = memo.unwrap_or("");
        if chain_info.support_memo && memo.is_empty() {
            return Err(Refusal::code(14003));
        }
        if !chain_info.support_memo && !memo.is_empty() {
            return Err(Refusal::code(14009));
        }
        let amount = parse_amount(amount_str, "amount")?;
        if amount.normalize().scale() > network.precision {
            return Err(Refusal::msg(
                14013,
                format!("CoinPrecisionLimit: at most {} decimals on {chain}", network.precision),
            ));
        }
        let min = catalogue_decimal(&network.minimum_withdraw_amount);
        if amount < min {
            return Err(Refusal::msg(
                14005,
                format!(
                    "WithdrawValueLessThanLimit: minimum is {}",
                    network.minimum_withdraw_amount
                ),
            ));
        }
        let max = catalogue_decimal(&network.maximum_withdraw_amount);
        if !max.is_zero() && amount > max {
            return Err(Refusal::msg(
                14006,
                format!(
                    "WithdrawValueMoreThanLimit: maximum is {}",
                    network.maximum_withdraw_amount
                ),
            ));
        }

        let fee_spec = self.catalogue.fee(coin_id, chain).ok_or_else(|| Refusal::code(13001))?;
        let fee = catalogue_decimal(fee_spec.amount);
        let balance = self.balance_of(coin_id);
        let out_of_range = || Refusal::invalid("amount is out of range");
        let (receiver_gets, debits) = if fee_spec.fee_coin_id == coin_id {
            if merchant_pays_fee {
                let total = amount.checked_add(fee).ok_or_else(out_of_range)?;
                if balance < total {
                    return Err(Refusal::code(14000));
                }
                (amount, vec![(coin_id, total)])
            } else {
                // The receiver pays: the fee comes out of the amount, and what is left must still
                // reach the minimum (14019, as CCPayment's appendix defines it; §5 R7).
                if amount <= fee || amount - fee < min {
                    return Err(Refusal::code(14019));
                }
                if balance < amount {
                    return Err(Refusal::code(14000));
                }
                (amount - fee, vec![(coin_id, amount)])
            }
        } else {
            // A fee in the chain's native coin is always the merchant's: the receiver gets the
            // whole amount whatever merchantPayNetworkFee says.
            if balance < amount {
                return Err(Refusal::code(14000));
            }
            if self.balance_of(fee_spec.fee_coin_id) < fee {
                return Err(Refusal::code(14011));
            }
            (amount, vec![(coin_id, amount), (fee_spec.fee_coin_id, fee)])
        };
        Ok(NewPayout {
            api: "v2",
            withdraw_type: "Network",
            coin_id,
            chain: chain.to_owned(),
            to_address: address.to_owned(),
            memo: memo.to_owned(),
            cwallet_user: String::new(),
            amount: amount_str.to_owned(),
            fee: Some((fee_spec.fee_coin_id, fee)),
            receiver_gets,
            merchant_pays_fee,
            debits,
            webhook_url: None,
        })
    }

    /// The checks of a Cwallet transfer.
    fn validate_cwallet(&self, coin_id: u64, user: &str, amount_str: &str) -> Result<NewPayout, Refusal> {
        let coin = self.catalogue.coin(coin_id).ok_or_else(|| Refusal::code(13000))?;
        if !withdrawals_open(&coin.status) {
            return Err(Refusal::code(13005));
        }
        if let Err(e) = parse_cwallet_recipient(user) {
            return Err(Refusal::invalid(format!("cwalletUser: {e}")));
        }
        if self.catalogue.cwallet_user(user).is_none() {
            return Err(Refusal::code(11015));
        }
        let amount = parse_amount(amount_str, "amount")?;
        let precision = coin.networks.values().map(|n| n.precision).max().unwrap_or(6);
        if amount.normalize().scale() > precision {
            return Err(Refusal::msg(
                14013,
                format!("CoinPrecisionLimit: at most {precision} decimals"),
            ));
        }
        // The documented minimum is 0.001 USD worth; a coin without a price (testnet) has none.
        let price = catalogue_decimal(&coin.price);
        if !price.is_zero() && amount * price < Decimal::new(1, 3) {
            return Err(Refusal::msg(14005, "WithdrawValueLessThanLimit: minimum is 0.001 USD"));
        }
        if self.balance_of(coin_id) < amount {
            return Err(Refusal::code(14000));
        }
        Ok(NewPayout {
            api: "v2",
            withdraw_type: "Cwallet",
            coin_id,
            chain: CWALLET_CHAIN.to_owned(),
            to_address: user.to_owned(),
            memo: String::new(),
            cwallet_user: user.to_owned(),
            amount: amount_str.to_owned(),
            fee: None,
            receiver_gets: amount,
            merchant_pays_fee: false,
            debits: vec![(coin_id, amount)],
            webhook_url: None,
        })
    }

    /// Debits, records and schedules a validated payout; returns its index.
    fn commit(&mut self, order_id: &str, new: NewPayout, now_ms: i64) -> usize {
        self.generation += 1;
        for &(coin_id, amount) in &new.debits {
            let balance = self.balances.entry(coin_id).or_default();
            *balance -= amount;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let record_id = format!("{}{seq:06}", utc_compact(now_ms));
        let will_fail = self.failing_recipients.contains(&new.to_address)
            || self.failing_recipients.contains(&new.cwallet_user)
            || (self.fail_rate > 0.0 && self.rng.next_f64() < self.fail_rate);
        let coin_symbol = self.symbol(new.coin_id);
        let fee = new.fee.map(|(fee_coin_id, amount)| FeeAmount {
            coin_id: fee_coin_id,
            coin_symbol: self.symbol(fee_coin_id),
            amount: fmt_decimal(amount),
        });
        let contract = self
            .catalogue
            .coin(new.coin_id)
            .and_then(|c| c.networks.get(&new.chain))
            .map(|n| n.contract.clone())
            .unwrap_or_default();
        let from_address = if new.withdraw_type == "Network" {
            hot_wallet(&new.chain).to_owned()
        } else {
            String::new()
        };
        let due_ms = now_ms.saturating_add(self.settle_delay_ms);
        let payout = Payout {
            ledger: LedgerPayout {
                record_id: record_id.clone(),
                order_id: order_id.to_owned(),
                api: new.api.to_owned(),
                withdraw_type: new.withdraw_type.to_owned(),
                coin_id: new.coin_id,
                coin_symbol,
                chain: new.chain,
                to_address: new.to_address,
                memo: new.memo,
                cwallet_user: new.cwallet_user,
                amount: new.amount,
                fee,
                receiver_gets: fmt_decimal(new.receiver_gets),
                merchant_pays_fee: new.merchant_pays_fee,
                status: RecordStatus::Processing,
                reason: String::new(),
                tx_id: String::new(),
                created_ms: now_ms,
                settled_ms: None,
                batch_order_id: String::new(),
                seq: 0,
                remark: String::new(),
            },
            from_address,
            contract,
            ccp_order_id: format!("{record_id}01"),
            debits: new.debits,
            due_ms,
            will_fail,
            webhook_url: new.webhook_url,
        };
        let idx = self.payouts.len();
        self.payouts.push(payout);
        self.index_order(order_id, idx);
        self.by_record.insert(record_id, idx);
        self.due.insert((due_ms, idx));
        self.enqueue_processing_webhook(idx);
        idx
    }
}

/// Whether a coin in this status can be withdrawn: `Normal`, and `Pre-delisting`, which
/// suspends deposits only (getCoinList's documentation); `Maintain` and anything else refuse.
pub(super) fn withdrawals_open(status: &str) -> bool {
    matches!(status, "Normal" | "Pre-delisting")
}

/// `yyyyMMddHHmmss` in UTC: the prefix of CCPayment record ids.
pub(super) fn utc_compact(now_ms: i64) -> String {
    // "2026-11-21T10:32:40.123Z" → "20261121103240"
    crate::util::time::rfc3339_ms(now_ms)
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashSet;

    use serde_json::Value;

    use crate::api::types::method;
    use crate::sandbox::AttemptOutcome;
    use crate::sandbox::world::testkit::*;

    #[test]
    fn network_withdraw_validation_codes() {
        let with = |mut v: Value, key: &str, val: Value| {
            v[key] = val;
            v
        };
        let base = net("order-1", 1280, "TRX", TRX_ADDR, "10");
        let cases: Vec<(&str, Value, i64)> = vec![
            ("ok", base.clone(), 10000),
            ("short orderId", with(base.clone(), "orderId", "ab".into()), 11000),
            (
                "long orderId",
                with(base.clone(), "orderId", "x".repeat(65).into()),
                11000,
            ),
            ("coinId as string", with(base.clone(), "coinId", "1280".into()), 11000),
            (
                "missing amount",
                {
                    let mut v = base.clone();
                    v.as_object_mut().expect("object").remove("amount");
                    v
                },
                11000,
            ),
            ("unknown coin", with(base.clone(), "coinId", 9999.into()), 13000),
            ("chain not a network", with(base.clone(), "chain", "XRP".into()), 13001),
            ("unknown chain", with(base.clone(), "chain", "SOL".into()), 13001),
            (
                "coin in Maintain",
                net("order-1", 1201, "DOGE", "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L", "10"),
                13005,
            ),
            (
                "chain in maintenance",
                net("order-1", 1280, "ARBITRUM", EVM_ADDR, "10"),
                14004,
            ),
            ("canWithdraw false", net("order-1", 1276, "BSC", EVM_ADDR, "10"), 14004),
            ("bad address", with(base.clone(), "address", EVM_ADDR.into()), 14007),
            ("empty address", with(base.clone(), "address", "".into()), 14007),
            (
                "memo missing on XRP",
                net("order-1", 1462, "XRP", XRP_ADDR, "10"),
                14003,
            ),
            ("memo on TRX", with(base.clone(), "memo", "123".into()), 14009),
            ("negative amount", with(base.clone(), "amount", "-1".into()), 11000),
            ("exponent", with(base.clone(), "amount", "1e3".into()), 11000),
            ("zero amount", with(base.clone(), "amount", "0".into()), 11000),
            ("leading dot", with(base.clone(), "amount", ".5".into()), 11000),
            ("amount as number", with(base.clone(), "amount", 10.into()), 11000),
            (
                "too many decimals",
                with(base.clone(), "amount", "10.1234567".into()),
                14013,
            ),
            (
                "trailing zeros are fine",
                with(base.clone(), "amount", "10.1000000".into()),
                10000,
            ),
            ("below min", with(base.clone(), "amount", "0.5".into()), 14005),
            ("above max", net("order-1", 1280, "ETH", EVM_ADDR, "100000.5"), 14006),
            ("at max", net("order-1", 1280, "ETH", EVM_ADDR, "100000"), 10000),
            ("fee exceeds amount", with(base.clone(), "amount", "1".into()), 14019),
            ("balance", with(base.clone(), "amount", "1000001".into()), 14000),
            (
                "testnet max",
                net("order-1", 1891, "ETH_SEPOLIA", EVM_ADDR, "10.5"),
                14006,
            ),
            (
                "notifyUrl too long",
                with(base.clone(), "notifyUrl", "h".repeat(151).into()),
                11000,
            ),
        ];
        for (name, body, code) in cases {
            let mut w = world();
            let (got, reply) = create(&mut w, body);
            assert_eq!(got, code, "{name}: {reply}");
            if code != 10000 {
                assert!(reply.get("data").is_none(), "{name}");
                assert!(w.ledger().payouts.is_empty(), "{name}");
                assert_eq!(bal(&w, "USDT"), "1000000", "{name}: nothing debited");
            }
        }
    }

    #[test]
    fn receiver_pays_fee_in_the_same_coin() {
        let mut w = world();
        let (code, reply) = create(&mut w, net("order-1", 1280, "TRX", TRX_ADDR, "10.5"));
        assert_eq!(code, 10000);
        assert_eq!(reply["msg"], "success");
        assert_eq!(bal(&w, "USDT"), "999989.5");
        let p = &w.ledger().payouts[0];
        assert_eq!(p.receiver_gets, "9.5");
        assert_eq!(p.amount, "10.5");
        assert_eq!(p.status, RecordStatus::Processing);
        assert_eq!(p.fee.as_ref().map(|f| f.amount.as_str()), Some("1"));
        assert_eq!(p.record_id, reply["data"]["recordId"]);
        assert_eq!(&p.record_id[..14], "20231114221320");
    }

    #[test]
    fn merchant_pays_fee_in_the_same_coin() {
        let mut w = world();
        let mut body = net("order-1", 1280, "ETH", EVM_ADDR, "10");
        body["merchantPayNetworkFee"] = true.into();
        assert_eq!(create(&mut w, body).0, 10000);
        assert_eq!(bal(&w, "USDT"), "999987.5");
        assert_eq!(w.ledger().payouts[0].receiver_gets, "10");
        // The balance must cover amount + fee.
        w.set_balance("USDT", "12.4").expect("set");
        let mut body = net("order-2", 1280, "ETH", EVM_ADDR, "10");
        body["merchantPayNetworkFee"] = true.into();
        assert_eq!(create(&mut w, body).0, 14000);
        w.set_balance("USDT", "12.5").expect("set");
        let mut body = net("order-3", 1280, "ETH", EVM_ADDR, "10");
        body["merchantPayNetworkFee"] = true.into();
        assert_eq!(create(&mut w, body).0, 10000);
        assert_eq!(bal(&w, "USDT"), "0");
    }

    #[test]
    fn native_fee_is_charged_in_the_native_coin() {
        let mut w = world();
        assert_eq!(create(&mut w, net("order-1", 1280, "POLYGON", EVM_ADDR, "5")).0, 10000);
        assert_eq!(bal(&w, "USDT"), "999995");
        assert_eq!(bal(&w, "MATIC"), "4999.9786186");
        let p = &w.ledger().payouts[0];
        assert_eq!(p.receiver_gets, "5");
        let fee = p.fee.clone().expect("fee");
        assert_eq!(
            (fee.coin_id, fee.coin_symbol.as_str(), fee.amount.as_str()),
            (1329, "MATIC", "0.0213814")
        );
        // Not enough MATIC for the fee: 14011, nothing debited.
        w.set_balance("MATIC", "0.02").expect("set");
        assert_eq!(create(&mut w, net("order-2", 1280, "POLYGON", EVM_ADDR, "5")).0, 14011);
        assert_eq!(bal(&w, "USDT"), "999995");
        assert_eq!(bal(&w, "MATIC"), "0.02");
        // Not enough USDT is reported first.
        w.set_balance("USDT", "1").expect("set");
        assert_eq!(create(&mut w, net("order-3", 1280, "POLYGON", EVM_ADDR, "5")).0, 14000);
    }

    #[test]
    fn duplicate_order_ids_are_refused_across_v1_and_v2() {
        let mut w = world();
        assert_eq!(create(&mut w, net("dup-1", 1280, "TRX", TRX_ADDR, "5")).0, 10000);
        // Same payload, different payload, after settlement, and through Cwallet and v1.
        assert_eq!(create(&mut w, net("dup-1", 1280, "TRX", TRX_ADDR, "5")).0, 11011);
        assert_eq!(create(&mut w, net("dup-1", 1280, "TRX", TRX_ADDR, "6")).0, 11011);
        w.settle_due(T0 + 5000);
        assert_eq!(create(&mut w, net("dup-1", 1280, "TRX", TRX_ADDR, "5")).0, 11011);
        let cwallet = serde_json::json!({"orderId": "dup-1", "coinId": 1280, "cwalletUser": "9558861", "amount": "1"});
        assert_eq!(
            call(&mut w, method::APPLY_APP_WITHDRAW_TO_CWALLET, &cwallet, T0).0,
            11011
        );
        let token = w.v1_token_id("USDT", "TRX").expect("token");
        let v1 =
            serde_json::json!({"merchant_order_id": "dup-1", "address": TRX_ADDR, "token_id": token, "value": "5"});
        assert_eq!(call(&mut w, "v1/withdraw", &v1, T0).0, 11011);
        // A duplicate is detected before the balance check, so it cannot look like a new error.
        w.set_balance("USDT", "0").expect("set");
        assert_eq!(create(&mut w, net("dup-1", 1280, "TRX", TRX_ADDR, "5")).0, 11011);
        let ledger = w.ledger();
        assert_eq!(ledger.payouts_for("dup-1").len(), 1);
        let codes: Vec<_> = ledger.attempts_for("dup-1").iter().map(|a| a.outcome.clone()).collect();
        assert!(matches!(codes[0], AttemptOutcome::Created { .. }));
        assert!(codes[1..].iter().all(|o| *o == AttemptOutcome::Refused { code: 11011 }));
        assert_eq!(codes.len(), 7);
    }

    #[test]
    fn cwallet_transfers() {
        let mut w = world();
        let body = |order: &str, user: &str, amount: &str| serde_json::json!({"orderId": order, "coinId": 1280, "cwalletUser": user, "amount": amount});
        let cases = [
            (body("cw-1", "9558861", "10"), 10000),
            (body("cw-2", "bob@example.org", "0.001"), 10000),
            (body("cw-3", "12345", "1"), 11015),
            (body("cw-4", "not a user", "1"), 11000),
            (body("cw-5", "9558861", "0.0009"), 14005),
            (body("cw-6", "9558861", "0.123456789"), 14013),
            (body("cw-7", "9558861", "2000000"), 14000),
            (body("cw-8", "9558861", "abc"), 11000),
            (
                serde_json::json!({"orderId": "cw-9", "coinId": 1201, "cwalletUser": "9558861", "amount": "100"}),
                13005,
            ),
            (
                serde_json::json!({"orderId": "cw-10", "coinId": 1, "cwalletUser": "9558861", "amount": "100"}),
                13000,
            ),
        ];
        for (b, code) in cases {
            assert_eq!(
                call(&mut w, method::APPLY_APP_WITHDRAW_TO_CWALLET, &b, T0).0,
                code,
                "{b}"
            );
        }
        assert_eq!(bal(&w, "USDT"), "999989.999");
        let p = &w.ledger().payouts_for("cw-1")[0].clone();
        assert_eq!((p.chain.as_str(), p.withdraw_type.as_str()), (CWALLET_CHAIN, "Cwallet"));
        assert_eq!(p.fee, None);
        assert_eq!(p.receiver_gets, "10");
        w.settle_due(T0 + 2000);
        let (_, reply) = call(
            &mut w,
            method::GET_APP_WITHDRAW_RECORD,
            &serde_json::json!({"orderId": "cw-1"}),
            T0 + 2000,
        );
        let record = &reply["data"]["record"];
        assert_eq!(record["status"], "Success");
        assert_eq!(record["txId"], "");
        assert_eq!(record["cwalletUser"], "9558861");
        assert!(record.get("fee").is_none());
        assert!(record.get("fromAddress").is_none());
        assert!(w.take_webhooks().is_empty(), "no webhooks without a URL");
    }

    #[test]
    fn record_ids_are_dated_and_unique() {
        assert_eq!(utc_compact(1_677_152_720_000), "20230223114520");
        assert_eq!(utc_compact(0), "19700101000000");
        assert_eq!(utc_compact(951_782_400_000), "20000229000000");
        let mut w = world();
        for i in 0..3 {
            create(&mut w, net(&format!("id-{i}"), 1280, "TRX", TRX_ADDR, "2"));
        }
        let ids: HashSet<_> = w.ledger().payouts.iter().map(|p| p.record_id.clone()).collect();
        assert_eq!(ids.len(), 3);
    }
}
