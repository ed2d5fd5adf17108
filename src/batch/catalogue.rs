//! What CCPayment says can be paid: coins, their networks and the chains' status, as one
//! snapshot built from `getCoinList` and `getChainList`, indexed for validating millions of rows.
//!
//! Rows refer to coins and chains by small indexes into this snapshot instead of carrying the
//! strings, which keeps a validated row compact. The pseudo-chain `CWALLET` (a transfer to a
//! Cwallet account) is [`ChainRef::Cwallet`].
//!
//! This module does no I/O: the preflight fetches the lists and hands them in.

use std::collections::HashMap;

use rust_decimal::Decimal;

use crate::api::types::{ChainInfo, Coin};
use crate::rules::address::AddressFamily;
use crate::rules::amount::parse_api_decimal;

/// The chain name a batch uses for transfers to Cwallet accounts.
pub const CWALLET: &str = "CWALLET";

/// Index of a coin in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoinIdx(pub u16);

/// Where a row pays to: a chain (by index) or a Cwallet account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChainRef {
    Chain(u16),
    Cwallet,
}

/// A coin as far as payouts care.
#[derive(Debug, Clone)]
pub struct CoinEntry {
    pub coin_id: u64,
    pub symbol: String,
    /// `Normal`, `Maintain`, `Pre-delisting`, `Delisted`.
    pub status: String,
    /// USD(T) price; zero when unknown.
    pub price: Decimal,
    /// The coin's networks, keyed by chain index.
    pub networks: Vec<NetworkEntry>,
}

impl CoinEntry {
    /// Whether withdrawals of the coin are possible at all right now. CCPayment's coin list
    /// knows `Normal`, `Maintain` (withdrawals suspended) and `Pre-delisting` (deposits
    /// suspended, withdrawals still work): only maintenance holds a row (ccpayment-api.md §5,
    /// R6), and so does a coin already delisted.
    pub fn is_normal(&self) -> bool {
        !matches!(
            self.status.to_ascii_lowercase().as_str(),
            "maintain" | "maintenance" | "delisted"
        )
    }

    /// The network on a chain, if the coin has one there.
    pub fn network(&self, chain: u16) -> Option<&NetworkEntry> {
        self.networks.iter().find(|n| n.chain == chain)
    }

    /// Decimal places a Cwallet transfer of this coin may have: the finest of its networks.
    pub fn cwallet_precision(&self) -> u32 {
        self.networks.iter().map(|n| n.precision).max().unwrap_or(6)
    }
}

/// A coin on one chain.
#[derive(Debug, Clone)]
pub struct NetworkEntry {
    pub chain: u16,
    pub precision: u32,
    pub can_withdraw: bool,
    pub minimum: Decimal,
    /// `None`: no maximum (the API's `"0"`).
    pub maximum: Option<Decimal>,
    pub supports_memo: bool,
}

/// A chain.
#[derive(Debug, Clone)]
pub struct ChainEntry {
    pub symbol: String,
    pub full_name: String,
    /// `Normal` or `Maintenance`.
    pub status: String,
    /// Explorer transaction URL template (`%s` for the txId).
    pub base_url: String,
    pub supports_memo: bool,
    pub family: AddressFamily,
}

impl ChainEntry {
    pub fn is_normal(&self) -> bool {
        self.status == "Normal"
    }
}

/// The snapshot.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    coins: Vec<CoinEntry>,
    chains: Vec<ChainEntry>,
    coin_by_symbol: HashMap<String, CoinIdx>,
    coin_by_id: HashMap<u64, CoinIdx>,
    chain_by_symbol: HashMap<String, u16>,
}

/// Why a catalogue could not be built: the API returned something unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the coin list from CCPayment is unusable: {0}")]
pub struct CatalogueError(String);

impl Catalogue {
    /// Builds the snapshot from the API's lists. Chains that a coin lists but `getChainList`
    /// does not are added with status `Normal` and no explorer.
    pub fn from_api(coins: &[Coin], chains: &[ChainInfo]) -> Result<Catalogue, CatalogueError> {
        let mut cat = Catalogue::default();
        for chain in chains {
            cat.add_chain(ChainEntry {
                symbol: chain.chain.clone(),
                full_name: chain.chain_full_name.clone(),
                status: chain.status.clone(),
                base_url: chain.base_url.clone(),
                supports_memo: chain.support_memo,
                family: AddressFamily::for_chain(&chain.chain),
            })?;
        }
        for coin in coins {
            let idx = u16::try_from(cat.coins.len()).map_err(|_| CatalogueError("more than 65535 coins".into()))?;
            let mut networks = Vec::with_capacity(coin.networks.len());
            for (key, net) in &coin.networks {
                let symbol = if net.chain.is_empty() {
                    key.clone()
                } else {
                    net.chain.clone()
                };
                let chain = match cat.chain_by_symbol.get(&symbol) {
                    Some(&c) => c,
                    None => cat.add_chain(ChainEntry {
                        family: AddressFamily::for_chain(&symbol),
                        full_name: net.chain_full_name.clone(),
                        symbol,
                        status: "Normal".into(),
                        base_url: String::new(),
                        supports_memo: net.is_support_memo,
                    })?,
                };
                let decimal = |field: &str, text: &str| {
                    parse_api_decimal(text).ok_or_else(|| {
                        CatalogueError(format!(
                            "{} on {}: {field} {text:?} is not a decimal",
                            coin.symbol, net.chain
                        ))
                    })
                };
                let maximum = decimal("maximumWithdrawAmount", &net.maximum_withdraw_amount)?;
                networks.push(NetworkEntry {
                    chain,
                    precision: net.precision,
                    can_withdraw: net.can_withdraw,
                    minimum: decimal("minimumWithdrawAmount", &net.minimum_withdraw_amount)?,
                    maximum: (!maximum.is_zero()).then_some(maximum),
                    supports_memo: net.is_support_memo,
                });
            }
            cat.coin_by_symbol
                .insert(coin.symbol.to_ascii_uppercase(), CoinIdx(idx));
            cat.coin_by_id.insert(coin.coin_id, CoinIdx(idx));
            cat.coins.push(CoinEntry {
                coin_id: coin.coin_id,
                symbol: coin.symbol.clone(),
                status: coin.status.clone(),
                price: parse_api_decimal(&coin.price).unwrap_or_default(),
                networks,
            });
        }
        Ok(cat)
    }

    fn add_chain(&mut self, chain: ChainEntry) -> Result<u16, CatalogueError> {
        let idx = u16::try_from(self.chains.len()).map_err(|_| CatalogueError("more than 65535 chains".into()))?;
        self.chain_by_symbol.insert(chain.symbol.to_ascii_uppercase(), idx);
        self.chains.push(chain);
        Ok(idx)
    }

    /// Finds a coin by symbol (any case) or numeric id.
    pub fn find_coin(&self, text: &str) -> Option<CoinIdx> {
        if let Ok(id) = text.parse::<u64>() {
            return self.coin_by_id.get(&id).copied();
        }
        self.coin_by_symbol.get(&text.to_ascii_uppercase()).copied()
    }

    /// Finds a chain by symbol (any case); `CWALLET` is the Cwallet pseudo-chain.
    pub fn find_chain(&self, text: &str) -> Option<ChainRef> {
        if text.eq_ignore_ascii_case(CWALLET) {
            return Some(ChainRef::Cwallet);
        }
        self.chain_by_symbol
            .get(&text.to_ascii_uppercase())
            .map(|&c| ChainRef::Chain(c))
    }

    pub fn coin(&self, idx: CoinIdx) -> &CoinEntry {
        &self.coins[usize::from(idx.0)]
    }

    pub fn coin_by_id(&self, coin_id: u64) -> Option<&CoinEntry> {
        self.coin_by_id.get(&coin_id).map(|&i| self.coin(i))
    }

    pub fn chain(&self, idx: u16) -> &ChainEntry {
        &self.chains[usize::from(idx)]
    }

    /// The chain's symbol, or `CWALLET`.
    pub fn chain_name(&self, chain: ChainRef) -> &str {
        match chain {
            ChainRef::Chain(c) => &self.chain(c).symbol,
            ChainRef::Cwallet => CWALLET,
        }
    }

    pub fn coins(&self) -> &[CoinEntry] {
        &self.coins
    }

    /// The chains a coin can be paid on, for messages.
    pub fn chains_of(&self, idx: CoinIdx) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .coin(idx)
            .networks
            .iter()
            .map(|n| self.chain(n.chain).symbol.as_str())
            .collect();
        names.sort_unstable();
        names.push(CWALLET);
        names
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::types::CoinNetwork;

    /// A small catalogue: USDT on TRX (prec 6, min 1) and POLYGON (prec 6, max 1000), XRP with a
    /// memo, and POLYGON in maintenance when asked.
    pub(crate) fn sample(polygon_status: &str) -> Catalogue {
        let net = |chain: &str, precision, min: &str, max: &str, memo| CoinNetwork {
            chain: chain.into(),
            precision,
            can_withdraw: true,
            minimum_withdraw_amount: min.into(),
            maximum_withdraw_amount: max.into(),
            is_support_memo: memo,
            ..CoinNetwork::default()
        };
        let coins = vec![
            Coin {
                coin_id: 1280,
                symbol: "USDT".into(),
                status: "Normal".into(),
                price: "1".into(),
                networks: [
                    ("TRX".into(), net("TRX", 6, "1", "0", false)),
                    ("POLYGON".into(), net("POLYGON", 6, "0.1", "1000", false)),
                ]
                .into(),
                ..Coin::default()
            },
            Coin {
                coin_id: 1462,
                symbol: "XRP".into(),
                status: "Normal".into(),
                price: "0.5".into(),
                networks: [("XRP".into(), net("XRP", 6, "1", "0", true))].into(),
                ..Coin::default()
            },
        ];
        let chains = vec![
            ChainInfo {
                chain: "TRX".into(),
                status: "Normal".into(),
                ..ChainInfo::default()
            },
            ChainInfo {
                chain: "POLYGON".into(),
                status: polygon_status.into(),
                ..ChainInfo::default()
            },
        ];
        Catalogue::from_api(&coins, &chains).unwrap()
    }

    #[test]
    fn coins_are_found_by_symbol_in_any_case_or_by_id() {
        let cat = sample("Normal");
        let usdt = cat.find_coin("usdt").unwrap();
        assert_eq!(cat.find_coin("1280"), Some(usdt));
        assert_eq!(cat.coin(usdt).symbol, "USDT");
        assert_eq!(cat.find_coin("DOGE"), None);
        assert_eq!(cat.find_coin("999"), None);
    }

    #[test]
    fn chains_include_cwallet_and_chains_only_coins_mention() {
        let cat = sample("Maintenance");
        assert_eq!(cat.find_chain("cwallet"), Some(ChainRef::Cwallet));
        // XRP was not in getChainList but is a network of XRP.
        let Some(ChainRef::Chain(xrp)) = cat.find_chain("XRP") else {
            panic!("XRP chain")
        };
        assert!(cat.chain(xrp).supports_memo);
        let Some(ChainRef::Chain(polygon)) = cat.find_chain("polygon") else {
            panic!("POLYGON chain")
        };
        assert!(!cat.chain(polygon).is_normal());
        let usdt = cat.find_coin("USDT").unwrap();
        assert_eq!(cat.chains_of(usdt), ["POLYGON", "TRX", "CWALLET"]);
        let network = cat.coin(usdt).network(polygon).unwrap();
        assert_eq!(network.maximum, Some(Decimal::from(1000)));
        assert_eq!(
            cat.coin(usdt)
                .network(
                    cat.find_chain("TRX")
                        .map(|c| match c {
                            ChainRef::Chain(c) => c,
                            ChainRef::Cwallet => 0,
                        })
                        .unwrap()
                )
                .unwrap()
                .maximum,
            None
        );
    }

    #[test]
    fn unusable_numbers_are_reported() {
        let coins = vec![Coin {
            coin_id: 1,
            symbol: "X".into(),
            networks: [(
                "TRX".into(),
                CoinNetwork {
                    chain: "TRX".into(),
                    minimum_withdraw_amount: "1e5".into(),
                    ..CoinNetwork::default()
                },
            )]
            .into(),
            ..Coin::default()
        }];
        let err = Catalogue::from_api(&coins, &[]).unwrap_err();
        assert!(err.to_string().contains("minimumWithdrawAmount"), "{err}");
    }

    /// R6: a coin about to be delisted still withdraws; only maintenance (and a delisted coin)
    /// holds its rows.
    #[test]
    fn pre_delisting_coins_are_payable_and_maintenance_holds() {
        let coin = |status: &str| CoinEntry {
            coin_id: 1,
            symbol: "X".into(),
            status: status.into(),
            price: Decimal::ZERO,
            networks: Vec::new(),
        };
        for payable in ["Normal", "Pre-delisting", "PRE-DELISTING"] {
            assert!(coin(payable).is_normal(), "{payable}");
        }
        for held in ["Maintain", "Maintenance", "maintain", "Delisted"] {
            assert!(!coin(held).is_normal(), "{held}");
        }
    }
}
