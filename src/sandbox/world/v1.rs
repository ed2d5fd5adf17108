//! The v1 reads a payout job of a v1 account makes besides `withdraw` and `bill/info`: the
//! token list (`coin/all`, `support/token`), a coin's networks (`token/chain`), the network fee
//! (`network/fee`), balances (`assets`) and the Cwallet user check (`check/user`).
//!
//! All of it is the demo catalogue seen through v1: coins and tokens are named by UUID
//! ([`v1_coin_id`], [`v1_token_id`]), statuses are numbers (1 normal, 2 maintenance, 3 to be
//! delisted), and a network's fee coin is named by a token UUID (R8). v1 publishes one minimum
//! and one precision per coin; the sandbox gives the strictest of the coin's networks (the
//! largest minimum, the fewest decimals), so a row that respects them is never refused for its
//! amount by the `withdraw` behind them, which checks the network's own.

use rust_decimal::Decimal;

use super::World;
use super::decimal::{catalogue_decimal, fmt_decimal};
use super::parse::{Field, Kind};
use super::reply::Refusal;
use crate::api::types::{
    Coin, CoinNetwork, V1Asset, V1AssetList, V1AssetsQuery, V1Coin, V1CoinList, V1CwalletUser, V1NetworkFee,
    V1NetworkFeeQuery, V1Token, V1TokenList, V1TokenQuery, V1UserQuery, v1_status_code,
};
use crate::rules::address::parse_cwallet_recipient;
use crate::sandbox::demo::{v1_coin_id, v1_token_id};

pub(super) const V1_TOKEN_FIELDS: &[Field] = &[("token_id", Kind::Str, true)];

pub(super) const V1_FEE_FIELDS: &[Field] = &[
    ("token_id", Kind::Str, true),
    ("address", Kind::Str, false),
    ("memo", Kind::Str, false),
];

/// Older documentation names the coin of `assets` by `token_id`; either is taken.
pub(super) const V1_ASSETS_FIELDS: &[Field] = &[("coin_id", Kind::Str, false), ("token_id", Kind::Str, false)];

pub(super) const V1_USER_FIELDS: &[Field] = &[("c_id", Kind::Str, true)];

/// The v1 status number of a coin's v2 status: `Maintain` (and anything unknown) is
/// maintenance, `Pre-delisting` is "to be delisted".
fn coin_status(status: &str) -> u32 {
    match status {
        "Normal" => v1_status_code::NORMAL,
        "Pre-delisting" => v1_status_code::TO_BE_DELISTED,
        _ => v1_status_code::MAINTENANCE,
    }
}

impl World {
    /// `/v1/coin/all` and `/v1/support/token`: every coin with its tokens, without the fee
    /// fields (as documented for this list).
    pub fn v1_coin_list(&self) -> V1CoinList {
        V1CoinList {
            list: self
                .catalogue
                .coins
                .iter()
                .map(|coin| {
                    let networks = coin.networks.values();
                    let min = networks
                        .clone()
                        .map(|n| catalogue_decimal(&n.minimum_withdraw_amount))
                        .max()
                        .unwrap_or(Decimal::ZERO);
                    V1Coin {
                        symbol: coin.symbol.clone(),
                        crypto: coin.symbol.clone(),
                        name: coin.coin_full_name.clone(),
                        logo: coin.logo_url.clone(),
                        min: fmt_decimal(min),
                        price: coin.price.clone(),
                        precision: networks.clone().map(|n| n.precision).min(),
                        coin_id: v1_coin_id(&coin.symbol),
                        status: Some(coin_status(&coin.status)),
                        tokens: networks.map(|n| self.v1_token(coin, n, false)).collect(),
                    }
                })
                .collect(),
        }
    }

    /// `/v1/token/chain`: the networks of the token's coin, each with its fee coin.
    pub fn v1_token_chain(&self, q: &V1TokenQuery) -> Result<V1TokenList, Refusal> {
        let coin = self.v1_token_coin(&q.token_id)?;
        Ok(V1TokenList {
            list: coin.networks.values().map(|n| self.v1_token(coin, n, true)).collect(),
        })
    }

    /// `/v1/network/fee`: the fee of one withdrawal of the token, in the coin that pays it. An
    /// address of a Cwallet user is internal and pays none.
    pub fn v1_network_fee(&self, q: &V1NetworkFeeQuery) -> Result<V1NetworkFee, Refusal> {
        let (coin_id, chain) = self
            .catalogue
            .v1_token(&q.token_id)
            .ok_or_else(|| Refusal::code(13000))?;
        let internal = q
            .address
            .as_deref()
            .is_some_and(|a| parse_cwallet_recipient(a).is_ok() && self.catalogue.cwallet_user(a).is_some());
        let (crypto, fee) = if internal {
            (self.symbol(coin_id), "0".to_owned())
        } else {
            let fee = self
                .catalogue
                .fee(coin_id, &chain)
                .ok_or_else(|| Refusal::code(13001))?;
            (self.symbol(fee.fee_coin_id), fee.amount.to_owned())
        };
        Ok(V1NetworkFee {
            token_id: q.token_id.clone(),
            crypto,
            fee,
        })
    }

    /// `/v1/assets`: every balance, or the one of the coin named (by coin or token id).
    pub fn v1_assets(&self, q: &V1AssetsQuery) -> Result<V1AssetList, Refusal> {
        let coins: Vec<&Coin> = match &q.coin_id {
            Some(uuid) => vec![self.catalogue.v1_coin(uuid).ok_or_else(|| Refusal::code(13000))?],
            None => self.catalogue.coins.iter().collect(),
        };
        Ok(V1AssetList {
            list: coins
                .into_iter()
                .map(|coin| V1Asset {
                    coin_id: v1_coin_id(&coin.symbol),
                    crypto: coin.symbol.clone(),
                    name: coin.coin_full_name.clone(),
                    value: fmt_decimal(self.balance_of(coin.coin_id)),
                    price: coin.price.clone(),
                    logo: coin.logo_url.clone(),
                })
                .collect(),
        })
    }

    /// `/v1/check/user`: a Cwallet ID and its masked name. The v1 code for an unknown user is
    /// not published; the sandbox answers 11015 (UserIdNotFound), as its v2 lookup does.
    pub fn v1_check_user(&self, q: &V1UserQuery) -> Result<V1CwalletUser, Refusal> {
        let user = self
            .catalogue
            .cwallet_users
            .iter()
            .find(|u| u.id == q.c_id)
            .ok_or_else(|| Refusal::code(11015))?;
        Ok(V1CwalletUser {
            c_id: user.id.to_owned(),
            nickname: user.masked_name.to_owned(),
        })
    }

    /// The coin of a v1 token id; 13000 for an unknown token.
    fn v1_token_coin(&self, token_id: &str) -> Result<&Coin, Refusal> {
        self.catalogue
            .v1_token(token_id)
            .and_then(|(coin_id, _)| self.catalogue.coin(coin_id))
            .ok_or_else(|| Refusal::code(13000))
    }

    /// A network of a coin as a v1 token. A chain in maintenance or a network without
    /// withdrawals is in maintenance; `with_fee` adds the fee coin.
    fn v1_token(&self, coin: &Coin, network: &CoinNetwork, with_fee: bool) -> V1Token {
        let chain = self.catalogue.chain(&network.chain);
        let normal = network.can_withdraw && chain.is_some_and(|c| c.is_normal());
        let fee = self.catalogue.fee(coin.coin_id, &network.chain).filter(|_| with_fee);
        V1Token {
            token_id: v1_token_id(&coin.symbol, &network.chain),
            crypto: coin.symbol.clone(),
            name: network.chain_full_name.clone(),
            logo: coin.logo_url.clone(),
            is_support_memo: network.is_support_memo,
            network: if network.protocol.is_empty() {
                network.chain.clone()
            } else {
                network.protocol.clone()
            },
            chain: network.chain.clone(),
            contract: network.contract.clone(),
            chain_logo: chain.map(|c| c.logo_url.clone()).unwrap_or_default(),
            status: Some(if normal {
                v1_status_code::NORMAL
            } else {
                v1_status_code::MAINTENANCE
            }),
            network_fee_crypto: fee.map(|f| self.symbol(f.fee_coin_id)).unwrap_or_default(),
            network_coin_id: fee
                .map(|f| self.catalogue.v1_fee_token(f.fee_coin_id, &network.chain))
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sandbox::world::testkit::*;

    #[test]
    fn the_token_list_is_the_demo_catalogue_in_v1_terms() {
        let mut w = world();
        let (code, reply) = call(&mut w, "v1/coin/all", &serde_json::json!({}), T0);
        assert_eq!(code, 10000);
        let list: V1CoinList = serde_json::from_value(reply["data"].clone()).expect("list");
        assert_eq!(list.list.len(), 10);
        let usdt = list.list.iter().find(|c| c.symbol == "USDT").expect("USDT");
        assert_eq!(usdt.coin_id, v1_coin_id("USDT"));
        // The strictest of the networks: ETH's minimum, TRX's decimals.
        assert_eq!((usdt.min.as_str(), usdt.precision), ("10", Some(6)));
        assert_eq!(usdt.status, Some(1));
        let trx = usdt.tokens.iter().find(|t| t.chain == "TRX").expect("TRX");
        assert_eq!(trx.token_id, v1_token_id("USDT", "TRX"));
        assert_eq!((trx.network.as_str(), trx.status), ("TRC20", Some(1)));
        // The list carries no fee fields; ARBITRUM is in maintenance.
        assert!(trx.network_coin_id.is_empty() && trx.network_fee_crypto.is_empty());
        let arbitrum = usdt.tokens.iter().find(|t| t.chain == "ARBITRUM").expect("ARB");
        assert_eq!(arbitrum.status, Some(2));
        let doge = list.list.iter().find(|c| c.symbol == "DOGE").expect("DOGE");
        assert_eq!(doge.status, Some(2));
        let xrp = list.list.iter().find(|c| c.symbol == "XRP").expect("XRP");
        assert!(xrp.tokens[0].is_support_memo);
        // The other documented path answers the same.
        let (_, again) = call(&mut w, "v1/support/token", &serde_json::json!({}), T0);
        assert_eq!(again["data"], reply["data"]);
    }

    #[test]
    fn networks_name_their_fee_coin_by_a_token_uuid() {
        let mut w = world();
        let polygon = v1_token_id("USDT", "POLYGON");
        let (code, reply) = call(
            &mut w,
            "v1/token/chain",
            &serde_json::json!({ "token_id": polygon }),
            T0,
        );
        assert_eq!(code, 10000);
        let list: V1TokenList = serde_json::from_value(reply["data"].clone()).expect("list");
        assert_eq!(list.list.len(), 5);
        let on_polygon = list.list.iter().find(|t| t.token_id == polygon).expect("POLYGON");
        assert_eq!(on_polygon.network_fee_crypto, "MATIC");
        assert_eq!(on_polygon.network_coin_id, v1_token_id("MATIC", "POLYGON"));
        let on_trx = list.list.iter().find(|t| t.chain == "TRX").expect("TRX");
        assert_eq!(on_trx.network_coin_id, v1_token_id("USDT", "TRX"));
        let unknown = serde_json::json!({"token_id": "00000000-0000-0000-0000-000000000000"});
        assert_eq!(call(&mut w, "v1/token/chain", &unknown, T0).0, 13000);
        assert_eq!(call(&mut w, "v1/token/chain", &serde_json::json!({}), T0).0, 11000);
    }

    #[test]
    fn fees_balances_and_users() {
        let mut w = world_with(|c| c.balances = vec![("USDT".into(), "12.5".into())]);
        let fee = |w: &mut World, body: serde_json::Value| call(w, "v1/network/fee", &body, T0);
        let (_, reply) = fee(&mut w, serde_json::json!({"token_id": v1_token_id("USDT", "POLYGON")}));
        assert_eq!(reply["data"]["crypto"], "MATIC");
        assert_eq!(reply["data"]["fee"], "0.0213814");
        let (_, reply) = fee(
            &mut w,
            serde_json::json!({"token_id": v1_token_id("USDT", "TRX"), "address": TRX_ADDR, "memo": ""}),
        );
        assert_eq!(
            (reply["data"]["crypto"].as_str(), reply["data"]["fee"].as_str()),
            (Some("USDT"), Some("1"))
        );
        // A Cwallet user's address is internal: no fee.
        let (_, reply) = fee(
            &mut w,
            serde_json::json!({"token_id": v1_token_id("USDT", "TRX"), "address": "9558861"}),
        );
        assert_eq!(reply["data"]["fee"], "0");

        let (_, reply) = call(&mut w, "v1/assets", &serde_json::json!({}), T0);
        let assets: V1AssetList = serde_json::from_value(reply["data"].clone()).expect("assets");
        assert_eq!(assets.list.len(), 10);
        let usdt = assets.list.iter().find(|a| a.crypto == "USDT").expect("USDT");
        assert_eq!(
            (usdt.coin_id.as_str(), usdt.value.as_str()),
            (v1_coin_id("USDT").as_str(), "12.5")
        );
        // One coin, by its coin id or (as older documentation has it) a token id.
        for body in [
            serde_json::json!({"coin_id": v1_coin_id("MATIC")}),
            serde_json::json!({"token_id": v1_token_id("MATIC", "POLYGON")}),
        ] {
            let (_, reply) = call(&mut w, "v1/assets", &body, T0);
            assert_eq!(reply["data"]["list"][0]["value"], "5000", "{body}");
        }
        assert_eq!(
            call(&mut w, "v1/assets", &serde_json::json!({"coin_id": "nope"}), T0).0,
            13000
        );

        let (code, reply) = call(&mut w, "v1/check/user", &serde_json::json!({"c_id": "9558861"}), T0);
        assert_eq!(code, 10000);
        assert_eq!(
            reply["data"],
            serde_json::json!({"c_id": "9558861", "nickname": "al***@example.com"})
        );
        assert_eq!(
            call(&mut w, "v1/check/user", &serde_json::json!({"c_id": "777"}), T0).0,
            11015
        );
    }
}
