//! The read endpoints over the catalogue and the balances: assets, coins, prices, withdrawal
//! fees, address validity (one at a time, and up to 500 of a chain at once), Cwallet users and
//! chains.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::World;
use super::decimal::fmt_decimal;
use super::reply::Refusal;
use crate::api::types::{
    AddressValidity, AddressValidityQuery, ChainList, ChainListQuery, CheckWithdrawAddressReply,
    CheckWithdrawAddressRequest, CoinAsset, CoinAssetData, CoinAssetList, CoinData, CoinIdQuery, CoinPriceQuery,
    CoinPrices, CwalletUserQuery, FeeAmount, MAX_TASKS_PER_REQUEST, WithdrawAddressResult, WithdrawFeeData,
    WithdrawFeeQuery,
};
use crate::rules::address::{AddressFamily, check_address};

/// The code `checkWithdrawAddress` gives an address that is not one of its chain's: 14024
/// AddressFormatErr, the 2026 definitions' name for it (the batch routes come from those). A
/// create still answers 14007 WithdrawAddrFormat, as the 2025 table has it.
pub const INVALID_ADDRESS_CODE: i64 = 14024;

/// The code of a well-formed address the sandbox was told to refuse (`World::refuse_address`):
/// 14002 AddressNotActive, "the receiving address is invalid or inactive".
pub const REFUSED_ADDRESS_CODE: i64 = 14002;

impl World {
    /// `getAppCoinAsset`.
    pub fn coin_asset(&self, q: &CoinIdQuery) -> Result<CoinAssetData, Refusal> {
        let coin = self.catalogue.coin(q.coin_id).ok_or_else(|| Refusal::code(13000))?;
        Ok(CoinAssetData {
            asset: CoinAsset {
                coin_id: coin.coin_id,
                coin_symbol: coin.symbol.clone(),
                available: fmt_decimal(self.balance_of(coin.coin_id)),
            },
        })
    }

    /// `getAppCoinAssetList`.
    pub fn coin_asset_list(&self) -> CoinAssetList {
        CoinAssetList {
            assets: self
                .catalogue
                .coins
                .iter()
                .map(|coin| CoinAsset {
                    coin_id: coin.coin_id,
                    coin_symbol: coin.symbol.clone(),
                    available: fmt_decimal(self.balance_of(coin.coin_id)),
                })
                .collect(),
        }
    }

    /// `getCoin`.
    pub fn coin(&self, q: &CoinIdQuery) -> Result<CoinData, Refusal> {
        let coin = self.catalogue.coin(q.coin_id).ok_or_else(|| Refusal::code(13000))?;
        Ok(CoinData { coin: coin.clone() })
    }

    /// `getCoinUSDTPrice`: unknown coin ids are left out.
    pub fn prices(&self, q: &CoinPriceQuery) -> CoinPrices {
        CoinPrices {
            prices: q
                .coin_ids
                .iter()
                .filter_map(|&id| self.catalogue.coin(id).map(|c| (id.to_string(), c.price.clone())))
                .collect(),
        }
    }

    /// `getWithdrawFee`.
    pub fn withdraw_fee(&mut self, q: &WithdrawFeeQuery) -> Result<WithdrawFeeData, Refusal> {
        let coin = self.catalogue.coin(q.coin_id).ok_or_else(|| Refusal::code(13000))?;
        if !coin.networks.contains_key(&q.chain) {
            return Err(Refusal::code(13001));
        }
        let fee = self
            .catalogue
            .fee(q.coin_id, &q.chain)
            .ok_or_else(|| Refusal::code(13001))?;
        let fee = FeeAmount {
            coin_id: fee.fee_coin_id,
            coin_symbol: self.symbol(fee.fee_coin_id),
            amount: fee.amount.to_owned(),
        };
        self.fee_quotes += 1;
        let digest = Sha256::digest(format!("{}/{}/{}", q.coin_id, q.chain, self.fee_quotes));
        Ok(WithdrawFeeData {
            fee,
            network_fee_inquiry_id: hex::encode(&digest[..12]),
        })
    }

    /// `checkWithdrawalAddressValidity`.
    pub fn address_validity(&self, q: &AddressValidityQuery) -> Result<AddressValidity, Refusal> {
        if self.catalogue.chain(&q.chain).is_none() {
            return Err(Refusal::code(13001));
        }
        Ok(AddressValidity {
            addr_is_valid: check_address(AddressFamily::for_chain(&q.chain), &q.address).is_ok()
                && !self.refused_addresses.contains(&q.address),
        })
    }

    /// `checkWithdrawAddress`: up to [`MAX_TASKS_PER_REQUEST`] addresses of one chain, a result
    /// per seq in the order asked. An address judged as `checkWithdrawalAddressValidity` judges
    /// it and found malformed gets 14024 (AddressFormatErr), one the sandbox was told to refuse
    /// 14002 (AddressNotActive); a missing memo where the chain takes one
    /// gets 14003 (AddressEmptyMemo), and a memo where it takes none 14009 (CoinNoSupportMemo),
    /// as a create would answer. No codes: nothing found wrong.
    ///
    /// The request itself is refused with 11000 for an empty chain, no addresses, more than 500
    /// or a seq of 0; with 13001 for a chain the account does not have (as the single check);
    /// with 14027 (SeqDuplicate) when a seq is repeated.
    pub fn check_withdraw_address(
        &self,
        q: &CheckWithdrawAddressRequest,
    ) -> Result<CheckWithdrawAddressReply, Refusal> {
        if q.chain.trim().is_empty() {
            return Err(Refusal::invalid("chain must not be empty"));
        }
        let chain = self.catalogue.chain(&q.chain).ok_or_else(|| Refusal::code(13001))?;
        let n = q.address_info_list.len();
        if n == 0 || n > MAX_TASKS_PER_REQUEST {
            return Err(Refusal::invalid(format!(
                "addressInfoList must hold 1 to {MAX_TASKS_PER_REQUEST} addresses, not {n}"
            )));
        }
        let mut seqs = BTreeSet::new();
        for entry in &q.address_info_list {
            if entry.seq == 0 {
                return Err(Refusal::invalid("seq must be at least 1"));
            }
            if !seqs.insert(entry.seq) {
                return Err(Refusal::msg(
                    14027,
                    format!("SeqDuplicate: seq {} is repeated", entry.seq),
                ));
            }
        }
        let family = AddressFamily::for_chain(&q.chain);
        let address_info_results = q
            .address_info_list
            .iter()
            .map(|entry| {
                let mut codes = Vec::new();
                if check_address(family, &entry.address).is_err() {
                    codes.push(INVALID_ADDRESS_CODE);
                } else if self.refused_addresses.contains(&entry.address) {
                    codes.push(REFUSED_ADDRESS_CODE);
                }
                if chain.support_memo && entry.memo.is_empty() {
                    codes.push(14003);
                }
                if !chain.support_memo && !entry.memo.is_empty() {
                    codes.push(14009);
                }
                WithdrawAddressResult { seq: entry.seq, codes }
            })
            .collect();
        Ok(CheckWithdrawAddressReply { address_info_results })
    }

    /// `getCwalletUserId`.
    pub fn cwallet_user(&self, q: &CwalletUserQuery) -> Result<crate::api::types::CwalletUser, Refusal> {
        let user = self
            .catalogue
            .cwallet_user(&q.cwallet_user_id)
            .ok_or_else(|| Refusal::code(11015))?;
        Ok(crate::api::types::CwalletUser {
            cwallet_user_id: user.id.to_owned(),
            cwallet_user_name: user.masked_name.to_owned(),
        })
    }

    /// `getChainList`: all chains, or the named ones (unknown names are skipped).
    pub fn chain_list(&self, q: &ChainListQuery) -> ChainList {
        ChainList {
            chains: self
                .catalogue
                .chains
                .iter()
                .filter(|c| q.chains.is_empty() || q.chains.contains(&c.chain))
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::types::{CoinList, method};
    use crate::sandbox::world::Route;
    use crate::sandbox::world::testkit::*;

    #[test]
    fn read_endpoints() {
        let mut w = world();
        let (code, reply) = call(
            &mut w,
            method::GET_APP_COIN_ASSET,
            &serde_json::json!({"coinId": 1329}),
            T0,
        );
        assert_eq!(code, 10000);
        assert_eq!(reply["data"]["asset"]["available"], "5000");
        assert_eq!(
            call(
                &mut w,
                method::GET_APP_COIN_ASSET,
                &serde_json::json!({"coinId": 1}),
                T0
            )
            .0,
            13000
        );
        let (_, reply) = call(&mut w, method::GET_APP_COIN_ASSET_LIST, &serde_json::json!({}), T0);
        let assets: CoinAssetList = serde_json::from_value(reply["data"].clone()).expect("assets");
        assert!(
            assets
                .assets
                .iter()
                .any(|a| a.coin_symbol == "DOGE" && a.available == "0")
        );
        let (_, reply) = call(&mut w, method::GET_COIN_LIST, &serde_json::json!({}), T0);
        let coins: CoinList = serde_json::from_value(reply["data"].clone()).expect("coins");
        assert_eq!(coins.coins.len(), 10);
        let (_, reply) = call(&mut w, method::GET_COIN, &serde_json::json!({"coinId": 1280}), T0);
        assert_eq!(
            reply["data"]["coin"]["networks"]["ETH"]["maximumWithdrawAmount"],
            "100000"
        );
        assert_eq!(
            call(&mut w, method::GET_COIN, &serde_json::json!({"coinId": 2}), T0).0,
            13000
        );
        let (_, reply) = call(
            &mut w,
            method::GET_COIN_USDT_PRICE,
            &serde_json::json!({"coinIds": [1280, 1155, 7]}),
            T0,
        );
        assert_eq!(
            reply["data"]["prices"],
            serde_json::json!({"1280": "1", "1155": "3000"})
        );
        let (_, reply) = call(
            &mut w,
            method::GET_WITHDRAW_FEE,
            &serde_json::json!({"coinId": 1280, "chain": "POLYGON"}),
            T0,
        );
        assert_eq!(
            reply["data"]["fee"],
            serde_json::json!({"coinId": 1329, "coinSymbol": "MATIC", "amount": "0.0213814"})
        );
        assert!(
            reply["data"]["networkFeeInquiryID"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        assert_eq!(
            call(
                &mut w,
                method::GET_WITHDRAW_FEE,
                &serde_json::json!({"coinId": 1280, "chain": "XRP"}),
                T0
            )
            .0,
            13001
        );
        assert_eq!(
            call(
                &mut w,
                method::GET_WITHDRAW_FEE,
                &serde_json::json!({"coinId": 3, "chain": "XRP"}),
                T0
            )
            .0,
            13000
        );
        let check = |w: &mut World, chain: &str, address: &str| {
            call(
                w,
                method::CHECK_WITHDRAWAL_ADDRESS_VALIDITY,
                &serde_json::json!({"chain": chain, "address": address}),
                T0,
            )
        };
        assert_eq!(check(&mut w, "TRX", TRX_ADDR).1["data"]["addrIsValid"], true);
        assert_eq!(check(&mut w, "TRX", EVM_ADDR).1["data"]["addrIsValid"], false);
        assert_eq!(check(&mut w, "NOPE", EVM_ADDR).0, 13001);
        let (_, reply) = call(
            &mut w,
            method::GET_CWALLET_USER_ID,
            &serde_json::json!({"cwalletUserId": "35255142"}),
            T0,
        );
        assert_eq!(
            reply["data"],
            serde_json::json!({"cwalletUserId": "35255142", "cwalletUserName": "bo***@example.org"})
        );
        assert_eq!(
            call(
                &mut w,
                method::GET_CWALLET_USER_ID,
                &serde_json::json!({"cwalletUserId": "777777"}),
                T0
            )
            .0,
            11015
        );
        let (_, reply) = call(
            &mut w,
            method::GET_CHAIN_LIST,
            &serde_json::json!({"chains": ["TRX", "ARBITRUM", "NOPE"]}),
            T0,
        );
        let chains: ChainList = serde_json::from_value(reply["data"].clone()).expect("chains");
        assert_eq!(chains.chains.len(), 2);
        assert_eq!(
            chains.chains[0].tx_url("abc").as_deref(),
            Some("https://tronscan.org/#/transaction/abc")
        );
        assert!(!chains.chains[1].is_normal());
        let (_, reply) = call(&mut w, method::GET_CHAIN_LIST, &serde_json::json!({}), T0);
        assert_eq!(reply["data"]["chains"].as_array().map(Vec::len), Some(9));
        let (_, reply) = call(&mut w, method::GET_FIAT_LIST, &serde_json::json!({}), T0);
        assert!(reply["data"]["fiats"].as_array().is_some_and(|f| f.len() >= 5));
        let (_, reply) = call(&mut w, method::GET_SWAP_COIN_LIST, &serde_json::json!({}), T0);
        assert!(reply["data"]["coins"].as_array().is_some_and(|f| f.len() >= 5));
    }

    fn check_batch(w: &mut World, body: serde_json::Value) -> (i64, serde_json::Value) {
        call(w, method::CHECK_WITHDRAW_ADDRESS, &body, T0)
    }

    /// The codes per seq, in the order of the reply.
    fn verdicts(reply: &serde_json::Value) -> Vec<(u64, Vec<i64>)> {
        let results = reply["data"]["addressInfoResults"].as_array().expect("results");
        results
            .iter()
            .map(|r| {
                let codes = r["codes"].as_array().expect("codes");
                (
                    r["seq"].as_u64().expect("seq"),
                    codes.iter().map(|c| c.as_i64().expect("a code")).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn check_withdraw_address_judges_each_address_as_the_single_check_does() {
        let mut w = world();
        let (code, reply) = check_batch(
            &mut w,
            serde_json::json!({"chain": "TRX", "addressInfoList": [
                {"address": TRX_ADDR, "seq": 1},
                {"address": EVM_ADDR, "seq": 7},
                {"address": "", "seq": 3},
                {"address": TRX_ADDR, "memo": "42", "seq": 2},
            ]}),
        );
        assert_eq!(code, 10000, "{reply}");
        assert_eq!(
            verdicts(&reply),
            vec![
                (1, vec![]),
                (7, vec![INVALID_ADDRESS_CODE]),
                (3, vec![INVALID_ADDRESS_CODE]),
                (2, vec![14009])
            ]
        );
        assert_eq!(crate::api::codes::name(INVALID_ADDRESS_CODE), "AddressFormatErr");
        // The same verdicts as the single check, address by address.
        for (address, valid) in [(TRX_ADDR, true), (EVM_ADDR, false), ("", false)] {
            let (_, single) = call(
                &mut w,
                method::CHECK_WITHDRAWAL_ADDRESS_VALIDITY,
                &serde_json::json!({"chain": "TRX", "address": address}),
                T0,
            );
            assert_eq!(single["data"]["addrIsValid"], valid, "{address:?}");
        }
        // A chain that takes a memo: one missing is named, one given is fine.
        let (code, reply) = check_batch(
            &mut w,
            serde_json::json!({"chain": "XRP", "addressInfoList": [
                {"address": XRP_ADDR, "memo": "12345", "seq": 1},
                {"address": XRP_ADDR, "seq": 2},
                {"address": TRX_ADDR, "seq": 3},
            ]}),
        );
        assert_eq!(code, 10000, "{reply}");
        assert_eq!(
            verdicts(&reply),
            vec![(1, vec![]), (2, vec![14003]), (3, vec![INVALID_ADDRESS_CODE, 14003])]
        );
        // The wire types read the reply.
        let typed: crate::api::types::CheckWithdrawAddressReply =
            serde_json::from_value(reply["data"].clone()).expect("the client's type");
        assert_eq!(typed.address_info_results[2].codes, vec![INVALID_ADDRESS_CODE, 14003]);
    }

    #[test]
    fn a_refused_address_is_refused_by_both_checks_and_by_a_create() {
        let mut w = world();
        w.refuse_address(TRX_ADDR);
        let (_, single) = call(
            &mut w,
            method::CHECK_WITHDRAWAL_ADDRESS_VALIDITY,
            &serde_json::json!({"chain": "TRX", "address": TRX_ADDR}),
            T0,
        );
        assert_eq!(single["data"]["addrIsValid"], false);
        let (code, reply) = check_batch(
            &mut w,
            serde_json::json!({"chain": "TRX", "addressInfoList": [
                {"address": TRX_ADDR, "seq": 1}, {"address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "seq": 2}]}),
        );
        assert_eq!(code, 10000);
        assert_eq!(verdicts(&reply), vec![(1, vec![REFUSED_ADDRESS_CODE]), (2, vec![])]);
        let (code, _) = create(&mut w, net("refused-1", 1280, "TRX", TRX_ADDR, "10"));
        assert_eq!(code, REFUSED_ADDRESS_CODE);
        assert!(w.ledger().payouts.is_empty());
    }

    #[test]
    fn check_withdraw_address_refuses_a_malformed_request() {
        let mut w = world();
        let entries = |n: u32| -> Vec<serde_json::Value> {
            (1..=n)
                .map(|seq| serde_json::json!({"address": TRX_ADDR, "seq": seq}))
                .collect()
        };
        let (code, reply) = check_batch(
            &mut w,
            serde_json::json!({"chain": "TRX", "addressInfoList": entries(500)}),
        );
        assert_eq!(code, 10000);
        assert_eq!(verdicts(&reply).len(), 500);
        let (code, reply) = check_batch(
            &mut w,
            serde_json::json!({"chain": "TRX", "addressInfoList": entries(501)}),
        );
        assert_eq!(code, 11000, "{reply}");
        assert!(reply["msg"].as_str().is_some_and(|m| m.contains("501")), "{reply}");
        assert!(reply.get("data").is_none_or(serde_json::Value::is_null), "{reply}");
        for (body, expected) in [
            (serde_json::json!({"chain": "TRX", "addressInfoList": []}), 11000),
            (
                serde_json::json!({"chain": "TRX", "addressInfoList": [{"address": TRX_ADDR, "seq": 0}]}),
                11000,
            ),
            (
                serde_json::json!({"chain": "TRX", "addressInfoList": [{"address": TRX_ADDR, "seq": -1}]}),
                11000,
            ),
            (
                serde_json::json!({"chain": "TRX", "addressInfoList": [{"address": TRX_ADDR}]}),
                11000,
            ),
            (
                serde_json::json!({"chain": "", "addressInfoList": [{"address": TRX_ADDR, "seq": 1}]}),
                11000,
            ),
            (
                serde_json::json!({"addressInfoList": [{"address": TRX_ADDR, "seq": 1}]}),
                11000,
            ),
            (serde_json::json!({"chain": "TRX"}), 11000),
            (
                serde_json::json!({"chain": "TRX", "addressInfoList": [TRX_ADDR]}),
                11000,
            ),
            (
                serde_json::json!({"chain": "NOPE", "addressInfoList": [{"address": TRX_ADDR, "seq": 1}]}),
                13001,
            ),
            (
                serde_json::json!({"chain": "TRX", "addressInfoList": [
                    {"address": TRX_ADDR, "seq": 4}, {"address": EVM_ADDR, "seq": 4}]}),
                14027,
            ),
        ] {
            let (code, reply) = check_batch(&mut w, body.clone());
            assert_eq!(code, expected, "{body} → {reply}");
        }
        let (_, reply) = check_batch(
            &mut w,
            serde_json::json!({"chain": "TRX", "addressInfoList": [{"address": TRX_ADDR, "seq": 0}]}),
        );
        assert_eq!(reply["msg"], "seq must be at least 1");
    }

    #[test]
    fn no_address_batch_check_takes_the_route_away_and_only_that_one() {
        let plain = world();
        assert!(plain.has_route(Route::V2(method::CHECK_WITHDRAW_ADDRESS)));
        let w = world_with(|c| c.readings.no_address_batch_check = true);
        assert!(!w.has_route(Route::V2(method::CHECK_WITHDRAW_ADDRESS)));
        for name in method::ALL.iter().filter(|m| **m != method::CHECK_WITHDRAW_ADDRESS) {
            assert!(w.has_route(Route::V2(name)), "{name}");
        }
        assert!(w.has_route(Route::V1Withdraw));
    }
}
