//! What CCPayment says can be paid: coins, their networks and the chains' status, as one
//! snapshot built from `getCoinList` and `getChainList` (v2) or from the v1 token list
//! (`/v1/coin/all`), indexed for validating millions of rows.
//!
//! Rows refer to coins and chains by small indexes into this snapshot instead of carrying the
//! strings, which keeps a validated row compact. The pseudo-chain `CWALLET` (a transfer to a
//! Cwallet account) is [`ChainRef::Cwallet`].
//!
//! # The v1 catalogue
//!
//! A v1 account names coins and tokens (a coin on one network) by UUID, and a v1 row names the
//! token it pays. [`Catalogue::from_v1`] builds the same snapshot from the v1 list, so v1 rows
//! are validated by the same rules as v2 rows, with what v1 publishes:
//!
//! - the coin's `min` is the minimum on each of its networks, and its `precision` (when the
//!   list gives one) the decimals on each; there is no maximum;
//! - a coin or token in maintenance (status 2) holds its rows; a coin "to be delisted"
//!   (status 3) can still be withdrawn, so its rows are payable (R6's v1 form);
//! - every v1 coin gets a stable number, [`v1_coin_number`] of its UUID, because the rest of
//!   the batch (balances, fees, totals, the plan digest) keys coins by number. The number is
//!   ccpayout's own and never goes on the wire; UUIDs the API sends (an asset's `coin_id`, a
//!   network's `network_coin_id`) are resolved with [`Catalogue::resolve_v1_coin`].
//!
//! This module does no I/O: the preflight fetches the lists and hands them in.

use std::collections::HashMap;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::api::types::{ChainInfo, Coin, V1Coin, v1_status_code};
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
    /// Whether the coin's status is `Normal`.
    pub fn is_normal(&self) -> bool {
        self.status == "Normal"
    }

    /// Whether rows of this coin wait. CCPayment's v2 coin list knows `Normal`, `Maintain`
    /// (withdrawals suspended) and `Pre-delisting` (deposits suspended, withdrawals still work),
    /// and v1's "to be delisted" is the same as the last: those two are payable (ccpayment-api.md
    /// §5, R6). Maintenance holds the rows, and so does any status the documentation does not
    /// name: an unknown word is not taken as permission to pay.
    pub fn withdrawals_suspended(&self) -> bool {
        suspends_withdrawals(&self.status)
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

/// A v1 token: the coin and the network a v1 row pays when it names this token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// As the list writes it.
    pub token_id: String,
    pub coin: CoinIdx,
    pub chain: u16,
    /// Index into the coin's [`CoinEntry::networks`].
    pub network: usize,
}

/// The status text of a v1 coin "to be delisted" (status 3): still withdrawable.
pub const V1_TO_BE_DELISTED: &str = "To be delisted";

/// Whether a coin status (v2's word, or v1's status as [`CoinEntry`] names it) stops its
/// withdrawals: anything but `Normal`, `Pre-delisting` and v1's "to be delisted" (R6). `check`
/// and `doctor` apply the same rule.
pub fn suspends_withdrawals(status: &str) -> bool {
    !(status == "Normal" || status.eq_ignore_ascii_case("Pre-delisting") || status == V1_TO_BE_DELISTED)
}

/// The precision of v1 networks whose coin has none in the list: decimals are then not checked
/// here, and CCPayment judges them.
pub const V1_UNPUBLISHED_PRECISION: u32 = u32::MAX;

/// The snapshot.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    coins: Vec<CoinEntry>,
    chains: Vec<ChainEntry>,
    coin_by_symbol: HashMap<String, CoinIdx>,
    coin_by_id: HashMap<u64, CoinIdx>,
    chain_by_symbol: HashMap<String, u16>,
    /// v1 tokens, and the index of each by lower-case token UUID.
    tokens: Vec<TokenEntry>,
    token_by_id: HashMap<String, usize>,
    /// v1 coins by lower-case coin UUID.
    coin_by_v1_id: HashMap<String, CoinIdx>,
}

/// ccpayout's number for a v1 coin: the first 53 bits of SHA-256 of its lower-case UUID (at
/// least 1). Stable across runs and machines, exact in any JSON reader, and only ever used
/// inside ccpayout (plans, balances, totals); the wire keeps the UUID.
pub fn v1_coin_number(coin_id: &str) -> u64 {
    let digest = Sha256::digest(coin_id.trim().to_ascii_lowercase().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) & ((1 << 53) - 1)).max(1)
}

/// The status text of a v1 coin's status number: the v2 words where they mean the same, so
/// messages and holds read alike. A status the documentation does not list is kept as a
/// number and holds the coin's rows; an absent one is taken as normal.
pub fn v1_status_text(status: Option<u32>) -> String {
    match status {
        None | Some(v1_status_code::NORMAL) => "Normal".to_owned(),
        Some(v1_status_code::MAINTENANCE) => "Maintain".to_owned(),
        Some(v1_status_code::TO_BE_DELISTED) => V1_TO_BE_DELISTED.to_owned(),
        Some(other) => format!("status {other}"),
    }
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

    /// Builds the snapshot from the v1 token list: each coin with one network per token.
    /// Chains come from the tokens (v1 has no chain list): status `Normal`, no explorer; a
    /// token in maintenance cannot be withdrawn for now.
    pub fn from_v1(coins: &[V1Coin]) -> Result<Catalogue, CatalogueError> {
        let mut cat = Catalogue::default();
        for coin in coins {
            let idx =
                CoinIdx(u16::try_from(cat.coins.len()).map_err(|_| CatalogueError("more than 65535 coins".into()))?);
            let symbol = if coin.symbol.is_empty() {
                coin.crypto.clone()
            } else {
                coin.symbol.clone()
            };
            let minimum = parse_api_decimal(&coin.min)
                .ok_or_else(|| CatalogueError(format!("{symbol}: min {:?} is not a decimal", coin.min)))?;
            let coin_key = coin.coin_id.trim().to_ascii_lowercase();
            if coin_key.is_empty() {
                return Err(CatalogueError(format!("{symbol} has no coin_id")));
            }
            if cat.coin_by_v1_id.insert(coin_key, idx).is_some() {
                return Err(CatalogueError(format!("coin_id {:?} is listed twice", coin.coin_id)));
            }
            let coin_id = v1_coin_number(&coin.coin_id);
            if cat.coin_by_id.insert(coin_id, idx).is_some() {
                return Err(CatalogueError(format!(
                    "two coins share the number {coin_id}; the second is {symbol}"
                )));
            }
            let precision = coin.precision.unwrap_or(V1_UNPUBLISHED_PRECISION);
            let mut networks = Vec::with_capacity(coin.tokens.len());
            for token in &coin.tokens {
                if token.chain.is_empty() {
                    return Err(CatalogueError(format!(
                        "{symbol}: token {:?} names no chain",
                        token.token_id
                    )));
                }
                let chain = match cat.chain_by_symbol.get(&token.chain.to_ascii_uppercase()) {
                    Some(&c) => c,
                    None => cat.add_chain(ChainEntry {
                        symbol: token.chain.clone(),
                        full_name: token.name.clone(),
                        status: "Normal".into(),
                        base_url: String::new(),
                        supports_memo: token.is_support_memo,
                        family: AddressFamily::for_chain(&token.chain),
                    })?,
                };
                // Only maintenance (and statuses the documentation does not list) stops a
                // token; "to be delisted" can still be withdrawn.
                let can_withdraw = matches!(
                    token.status,
                    None | Some(v1_status_code::NORMAL | v1_status_code::TO_BE_DELISTED)
                );
                if !token.token_id.is_empty() {
                    let key = token.token_id.trim().to_ascii_lowercase();
                    if cat.token_by_id.insert(key, cat.tokens.len()).is_some() {
                        return Err(CatalogueError(format!("token_id {:?} is listed twice", token.token_id)));
                    }
                    cat.tokens.push(TokenEntry {
                        token_id: token.token_id.clone(),
                        coin: idx,
                        chain,
                        network: networks.len(),
                    });
                }
                networks.push(NetworkEntry {
                    chain,
                    precision,
                    can_withdraw,
                    minimum,
                    maximum: None,
                    supports_memo: token.is_support_memo,
                });
            }
            cat.coin_by_symbol.insert(symbol.to_ascii_uppercase(), idx);
            cat.coins.push(CoinEntry {
                coin_id,
                symbol,
                status: v1_status_text(coin.status),
                price: parse_api_decimal(&coin.price).unwrap_or_default(),
                networks,
            });
        }
        Ok(cat)
    }

    /// The v1 token with this UUID (any case).
    pub fn find_token(&self, token_id: &str) -> Option<&TokenEntry> {
        let i = *self.token_by_id.get(&token_id.trim().to_ascii_lowercase())?;
        self.tokens.get(i)
    }

    /// The coin a v1 UUID names: a coin's `coin_id`, or a token of the coin. `network_coin_id`
    /// and balances name coins this way (R8); which of the two CCPayment sends is not
    /// documented, and both resolve.
    pub fn resolve_v1_coin(&self, uuid: &str) -> Option<CoinIdx> {
        let key = uuid.trim().to_ascii_lowercase();
        if let Some(&idx) = self.coin_by_v1_id.get(&key) {
            return Some(idx);
        }
        self.find_token(&key).map(|t| t.coin)
    }

    /// The network a v1 token pays on.
    pub fn token_network(&self, token: &TokenEntry) -> Option<&NetworkEntry> {
        self.coin(token.coin).networks.get(token.network)
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

    /// Token ids of [`sample_v1`].
    pub(crate) const V1_USDT_TRX: &str = "a0000000-0000-0000-0000-000000000001";
    pub(crate) const V1_USDT_POLYGON: &str = "a0000000-0000-0000-0000-000000000002";
    pub(crate) const V1_XRP: &str = "a0000000-0000-0000-0000-000000000003";
    pub(crate) const V1_DOGE: &str = "a0000000-0000-0000-0000-000000000004";
    pub(crate) const V1_OLD_TRX: &str = "a0000000-0000-0000-0000-000000000005";
    pub(crate) const V1_USDT_COIN: &str = "c0000000-0000-0000-0000-000000000001";

    /// A small v1 catalogue: USDT (min 1, 6 decimals, price 1) on TRX and on POLYGON (the
    /// POLYGON token in maintenance), XRP with a memo, DOGE in maintenance and OLD to be
    /// delisted, on TRX.
    pub(crate) fn sample_v1() -> Catalogue {
        use crate::api::types::V1Token;
        let token = |id: &str, chain: &str, status, memo| V1Token {
            token_id: id.into(),
            chain: chain.into(),
            name: format!("{chain} chain"),
            status: Some(status),
            is_support_memo: memo,
            ..V1Token::default()
        };
        let coin = |symbol: &str, id: &str, status, tokens| V1Coin {
            symbol: symbol.into(),
            crypto: symbol.into(),
            coin_id: id.into(),
            min: "1".into(),
            price: "1".into(),
            precision: Some(6),
            status: Some(status),
            tokens,
            ..V1Coin::default()
        };
        Catalogue::from_v1(&[
            coin(
                "USDT",
                V1_USDT_COIN,
                1,
                vec![
                    token(V1_USDT_TRX, "TRX", 1, false),
                    token(V1_USDT_POLYGON, "POLYGON", 2, false),
                ],
            ),
            coin(
                "XRP",
                "c0000000-0000-0000-0000-000000000002",
                1,
                vec![token(V1_XRP, "XRP", 1, true)],
            ),
            coin(
                "DOGE",
                "c0000000-0000-0000-0000-000000000003",
                2,
                vec![token(V1_DOGE, "DOGE", 1, false)],
            ),
            coin(
                "OLD",
                "c0000000-0000-0000-0000-000000000004",
                3,
                vec![token(V1_OLD_TRX, "TRX", 3, false)],
            ),
        ])
        .unwrap()
    }

    #[test]
    fn a_v1_catalogue_resolves_tokens_and_uuids_and_keeps_the_v1_rules() {
        let cat = sample_v1();
        let token = cat.find_token(&V1_USDT_TRX.to_uppercase()).expect("any case");
        let usdt = cat.coin(token.coin);
        assert_eq!(
            (usdt.symbol.as_str(), cat.chain(token.chain).symbol.as_str()),
            ("USDT", "TRX")
        );
        assert_eq!(usdt.coin_id, v1_coin_number(V1_USDT_COIN));
        assert_eq!(cat.find_coin("usdt"), Some(token.coin));
        // A coin's UUID and any of its tokens' UUIDs name the coin; a v2 number names nothing.
        assert_eq!(cat.resolve_v1_coin(V1_USDT_COIN), Some(token.coin));
        assert_eq!(cat.resolve_v1_coin(V1_USDT_POLYGON), Some(token.coin));
        assert_eq!(cat.resolve_v1_coin("1280"), None);
        assert!(cat.find_token(V1_USDT_COIN).is_none());
        // The coin's minimum and precision on every network, no maximum.
        let network = cat.token_network(token).expect("network");
        assert_eq!(
            (network.minimum, network.precision, network.maximum),
            (Decimal::ONE, 6, None)
        );
        assert!(network.can_withdraw && !usdt.withdrawals_suspended());
        // A token in maintenance cannot be withdrawn; a coin in maintenance holds; a coin to be
        // delisted can still be withdrawn (R6's v1 form).
        let polygon = cat.find_token(V1_USDT_POLYGON).expect("token");
        assert!(!cat.token_network(polygon).expect("network").can_withdraw);
        let doge = cat.find_token(V1_DOGE).expect("token");
        assert!(cat.coin(doge.coin).withdrawals_suspended());
        let old = cat.find_token(V1_OLD_TRX).expect("token");
        assert!(!cat.coin(old.coin).withdrawals_suspended());
        assert!(cat.token_network(old).expect("network").can_withdraw);
        // The chains come from the tokens.
        let Some(ChainRef::Chain(xrp)) = cat.find_chain("xrp") else {
            panic!("XRP chain")
        };
        assert!(cat.chain(xrp).supports_memo && cat.chain(xrp).is_normal());
    }

    #[test]
    fn v1_lists_ccpayout_cannot_use_are_refused() {
        let coin = |id: &str, token: &str| V1Coin {
            symbol: "X".into(),
            coin_id: id.into(),
            tokens: vec![crate::api::types::V1Token {
                token_id: token.into(),
                chain: "TRX".into(),
                ..Default::default()
            }],
            ..V1Coin::default()
        };
        let twice = Catalogue::from_v1(&[coin("c1", "t1"), coin("C1", "t2")]).unwrap_err();
        assert!(twice.to_string().contains("listed twice"), "{twice}");
        let shared = Catalogue::from_v1(&[coin("c1", "t1"), coin("c2", "T1")]).unwrap_err();
        assert!(shared.to_string().contains("token_id"), "{shared}");
        let bad_min = Catalogue::from_v1(&[V1Coin {
            min: "1e3".into(),
            ..coin("c1", "t1")
        }])
        .unwrap_err();
        assert!(bad_min.to_string().contains("min"), "{bad_min}");
        // An undocumented status holds the coin; an absent one is normal.
        let odd = Catalogue::from_v1(&[V1Coin {
            status: Some(7),
            ..coin("c1", "t1")
        }])
        .unwrap();
        assert!(odd.coins()[0].withdrawals_suspended());
        let plain = Catalogue::from_v1(&[coin("c1", "t1")]).unwrap();
        assert!(!plain.coins()[0].withdrawals_suspended());
        assert_eq!(plain.coins()[0].networks[0].precision, V1_UNPUBLISHED_PRECISION);
    }

    #[test]
    fn v1_coin_numbers_are_stable_exact_and_case_blind() {
        let n = v1_coin_number("F36AD1CF-222A-4933-9AD0-86DF8069F916");
        assert_eq!(n, v1_coin_number("f36ad1cf-222a-4933-9ad0-86df8069f916"));
        assert!((1..(1 << 53)).contains(&n));
        assert_ne!(n, v1_coin_number("f36ad1cf-222a-4933-9ad0-86df8069f917"));
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

    /// R6: a coin about to be delisted still withdraws; maintenance holds its rows, and so does a
    /// status nobody documented.
    #[test]
    fn pre_delisting_coins_are_payable_and_maintenance_holds() {
        let coin = |status: &str| CoinEntry {
            coin_id: 1,
            symbol: "X".into(),
            status: status.into(),
            price: Decimal::ZERO,
            networks: Vec::new(),
        };
        for payable in ["Normal", "Pre-delisting", "PRE-DELISTING", V1_TO_BE_DELISTED] {
            assert!(!coin(payable).withdrawals_suspended(), "{payable}");
        }
        for held in ["Maintain", "Maintenance", "Delisted", "Something new"] {
            assert!(coin(held).withdrawals_suspended(), "{held}");
        }
    }
}
