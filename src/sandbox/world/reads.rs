//! The read endpoints over the catalogue and the balances: assets, coins, prices, withdrawal
//! fees, address validity, Cwallet users and chains.

use sha2::{Digest, Sha256};

use super::World;
use super::decimal::fmt_decimal;
use super::reply::Refusal;
use crate::api::types::{
    AddressValidity, AddressValidityQuery, ChainList, ChainListQuery, CoinAsset, CoinAssetData, CoinAssetList,
    CoinData, CoinIdQuery, CoinPriceQuery, CoinPrices, CwalletUserQuery, FeeAmount, WithdrawFeeData, WithdrawFeeQuery,
};
use crate::rules::address::{AddressFamily, check_address};

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
            addr_is_valid: check_address(AddressFamily::for_chain(&q.chain), &q.address).is_ok(),
        })
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
}
