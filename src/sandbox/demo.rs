//! The sandbox's demo catalogue: coins and their networks, chains, network fees, prices, fiats,
//! swap coins, Cwallet users, demo balances, hot-wallet addresses and v1 coin and token ids.
//!
//! Pure data, built once per sandbox. The values are realistic (real contract addresses, real
//! explorer templates, coin ids as in the CCPayment docs where the docs give them) but they are
//! demo values: nothing here is fetched from CCPayment. The catalogue deliberately covers every
//! validation path of a withdrawal: a chain in maintenance (ARBITRUM), a network with
//! `canWithdraw = false` (USDC on BSC), a coin in `Maintain` status (DOGE), a memo chain (XRP),
//! a fee charged in the chain's native coin (USDT on POLYGON pays MATIC), a real maximum
//! (USDT on ETH) and a testnet coin (TETH on ETH_SEPOLIA).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::api::types::{ChainInfo, Coin, CoinNetwork, Fiat, SwapCoin};
use crate::rules::address::AddressFamily;

/// A TRON address that the default sandbox configuration always fails at settlement.
pub const DEMO_FAILING_ADDRESS: &str = "TWRqh3zEVj4v3qr1pLoFXs4x2ZjcTCAUsZ";

/// Valid demo payee addresses, one per chain family, for examples and tests: (chain, address).
pub const DEMO_ADDRESSES: &[(&str, &str)] = &[
    ("TRX", "TPSFu3gV4D7SwHS3HkXs3S8QZauZpyQtWH"),
    ("POLYGON", "0x93b748adfd258333e5d1243d1e2160ee0c169afe"),
    ("ETH", "0x93b748adfd258333e5d1243d1e2160ee0c169afe"),
    ("BSC", "0x93b748adfd258333e5d1243d1e2160ee0c169afe"),
    ("ARBITRUM", "0x93b748adfd258333e5d1243d1e2160ee0c169afe"),
    ("ETH_SEPOLIA", "0x93b748adfd258333e5d1243d1e2160ee0c169afe"),
    ("XRP", "rN7stzJku7zV8f4Q67t9XHSGeowEbeWgVJ"),
    ("BTC", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"),
    ("DOGE", "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L"),
];

/// A Cwallet account the sandbox knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwalletAccount {
    /// The numeric Cwallet ID.
    pub id: &'static str,
    /// The masked name `getCwalletUserId` returns.
    pub masked_name: &'static str,
    /// E-mail addresses that also identify this account (compared case-insensitively).
    pub emails: &'static [&'static str],
}

/// A network fee: which coin pays it and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSpec {
    pub fee_coin_id: u64,
    pub amount: &'static str,
}

/// Everything the sandbox knows about the (simulated) CCPayment world that is not state.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// Coins in `getCoinList` order, with their networks.
    pub coins: Vec<Coin>,
    /// Chains in `getChainList` order.
    pub chains: Vec<ChainInfo>,
    /// Network fee per (coin id, chain).
    pub fees: BTreeMap<(u64, String), FeeSpec>,
    /// Cwallet accounts.
    pub cwallet_users: Vec<CwalletAccount>,
    /// Fiat currencies for `getFiatList`.
    pub fiats: Vec<Fiat>,
    /// Coins for `getSwapCoinList`.
    pub swap_coins: Vec<SwapCoin>,
    /// Starting balances per coin id (decimal strings).
    pub balances: BTreeMap<u64, &'static str>,
}

/// The static description of one coin: (id, symbol, full name, status, price, networks).
struct CoinRow {
    id: u64,
    symbol: &'static str,
    name: &'static str,
    status: &'static str,
    price: &'static str,
    balance: &'static str,
    networks: &'static [NetRow],
}

/// One network of a coin. `fee_coin` is the symbol of the coin that pays the network fee.
struct NetRow {
    chain: &'static str,
    contract: &'static str,
    protocol: &'static str,
    precision: u32,
    min: &'static str,
    max: &'static str,
    can_withdraw: bool,
    fee_coin: &'static str,
    fee: &'static str,
}

// Positional arguments keep the tables below compact and readable as rows.
#[allow(clippy::too_many_arguments)]
const fn net(
    chain: &'static str,
    contract: &'static str,
    protocol: &'static str,
    precision: u32,
    min: &'static str,
    max: &'static str,
    fee_coin: &'static str,
    fee: &'static str,
) -> NetRow {
    NetRow {
        chain,
        contract,
        protocol,
        precision,
        min,
        max,
        can_withdraw: true,
        fee_coin,
        fee,
    }
}

const USDT_NETWORKS: &[NetRow] = &[
    net(
        "TRX",
        "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        "TRC20",
        6,
        "1",
        "0",
        "USDT",
        "1",
    ),
    // The documented example: USDT on POLYGON is charged in the chain's native coin.
    net(
        "POLYGON",
        "0xc2132d05d31c914a87c6611c10748aeb04b58e8f",
        "ERC20",
        6,
        "0.1",
        "0",
        "MATIC",
        "0.0213814",
    ),
    net(
        "ETH",
        "0xdac17f958d2ee523a2206206994597c13d831ec7",
        "ERC20",
        6,
        "10",
        "100000",
        "USDT",
        "2.5",
    ),
    net(
        "BSC",
        "0x55d398326f99059ff775485246999027b3197955",
        "BEP20",
        8,
        "0.1",
        "0",
        "USDT",
        "0.3",
    ),
    net(
        "ARBITRUM",
        "0xfd086bc7cd5c481dcc9c85ebe478a1c0b69fcbb9",
        "ERC20",
        6,
        "1",
        "0",
        "USDT",
        "0.2",
    ),
];

const USDC_NETWORKS: &[NetRow] = &[
    net(
        "POLYGON",
        "0x3c499c542cef5e3811e1192ce70d8cc03d5c3359",
        "ERC20",
        6,
        "0.1",
        "0",
        "MATIC",
        "0.0213814",
    ),
    // Withdrawals of USDC on BSC are switched off: the `canWithdraw = false` path.
    NetRow {
        can_withdraw: false,
        ..net(
            "BSC",
            "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d",
            "BEP20",
            8,
            "0.1",
            "0",
            "USDC",
            "0.3",
        )
    },
];

const COINS: &[CoinRow] = &[
    CoinRow {
        id: 1280,
        symbol: "USDT",
        name: "Tether USD",
        status: "Normal",
        price: "1",
        balance: "1000000",
        networks: USDT_NETWORKS,
    },
    CoinRow {
        id: 1276,
        symbol: "USDC",
        name: "USD Coin",
        status: "Normal",
        price: "1",
        balance: "50000",
        networks: USDC_NETWORKS,
    },
    CoinRow {
        id: 1482,
        symbol: "TRX",
        name: "TRON",
        status: "Normal",
        price: "0.12",
        balance: "100000",
        networks: &[net("TRX", "TRX", "", 6, "1", "0", "TRX", "1")],
    },
    CoinRow {
        id: 1329,
        symbol: "MATIC",
        name: "Polygon",
        status: "Normal",
        price: "0.55",
        balance: "5000",
        networks: &[net("POLYGON", "MATIC", "", 8, "0.1", "0", "MATIC", "0.01")],
    },
    CoinRow {
        id: 1155,
        symbol: "ETH",
        name: "Ethereum",
        status: "Normal",
        price: "3000",
        balance: "50",
        networks: &[
            net("ETH", "ETH", "", 8, "0.005", "0", "ETH", "0.0006"),
            net("ARBITRUM", "ETH", "", 8, "0.001", "0", "ETH", "0.0001"),
        ],
    },
    CoinRow {
        id: 1247,
        symbol: "BNB",
        name: "BNB",
        status: "Normal",
        price: "600",
        balance: "20",
        networks: &[net("BSC", "BNB", "", 8, "0.01", "0", "BNB", "0.0005")],
    },
    CoinRow {
        id: 1462,
        symbol: "XRP",
        name: "XRP",
        status: "Normal",
        price: "0.6",
        balance: "100000",
        networks: &[net("XRP", "XRP", "", 6, "1", "0", "XRP", "0.2")],
    },
    CoinRow {
        id: 1157,
        symbol: "BTC",
        name: "Bitcoin",
        status: "Normal",
        price: "65000",
        balance: "2",
        networks: &[net("BTC", "BTC", "", 8, "0.0005", "0", "BTC", "0.0001")],
    },
    CoinRow {
        id: 1891,
        symbol: "TETH",
        name: "Test Ether (Sepolia)",
        status: "Normal",
        // Testnet coins have no market value; a zero price skips the Cwallet USD minimum.
        price: "0",
        balance: "10",
        networks: &[net("ETH_SEPOLIA", "TETH", "", 8, "0.001", "10", "TETH", "0.0005")],
    },
    // A coin whose trading is halted: every withdrawal of it answers 13005.
    CoinRow {
        id: 1201,
        symbol: "DOGE",
        name: "Dogecoin",
        status: "Maintain",
        price: "0.15",
        balance: "0",
        networks: &[net("DOGE", "DOGE", "", 8, "5", "0", "DOGE", "2")],
    },
];

/// (chain, full name, explorer, tx URL template, isEVM, supportMemo, status, confirmations)
type ChainRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    &'static str,
    u32,
);

const CHAINS: &[ChainRow] = &[
    (
        "TRX",
        "Tron",
        "https://tronscan.org",
        "https://tronscan.org/#/transaction/%s",
        false,
        false,
        "Normal",
        20,
    ),
    (
        "POLYGON",
        "Polygon PoS",
        "https://polygonscan.com",
        "https://polygonscan.com/tx/%s",
        true,
        false,
        "Normal",
        128,
    ),
    (
        "ETH",
        "Ethereum",
        "https://etherscan.io",
        "https://etherscan.io/tx/%s",
        true,
        false,
        "Normal",
        12,
    ),
    (
        "BSC",
        "BNB Smart Chain",
        "https://bscscan.com",
        "https://bscscan.com/tx/%s",
        true,
        false,
        "Normal",
        15,
    ),
    // In maintenance: every withdrawal on it answers 14004.
    (
        "ARBITRUM",
        "Arbitrum One",
        "https://arbiscan.io",
        "https://arbiscan.io/tx/%s",
        true,
        false,
        "Maintenance",
        20,
    ),
    (
        "XRP",
        "XRP Ledger",
        "https://xrpscan.com",
        "https://xrpscan.com/tx/%s",
        false,
        true,
        "Normal",
        1,
    ),
    (
        "BTC",
        "Bitcoin",
        "https://mempool.space",
        "https://mempool.space/tx/%s",
        false,
        false,
        "Normal",
        2,
    ),
    (
        "ETH_SEPOLIA",
        "Ethereum Sepolia (testnet)",
        "https://sepolia.etherscan.io",
        "https://sepolia.etherscan.io/tx/%s",
        true,
        false,
        "Normal",
        12,
    ),
    (
        "DOGE",
        "Dogecoin",
        "https://dogechain.info",
        "https://dogechain.info/tx/%s",
        false,
        false,
        "Normal",
        6,
    ),
];

const CWALLET_USERS: &[CwalletAccount] = &[
    CwalletAccount {
        id: "9558861",
        masked_name: "al***@example.com",
        emails: &["alice@example.com"],
    },
    CwalletAccount {
        id: "35255142",
        masked_name: "bo***@example.org",
        emails: &["bob@example.org"],
    },
    CwalletAccount {
        id: "10000001",
        masked_name: "Ca***l",
        emails: &[],
    },
];

/// (id, symbol, mark, USD rate)
const FIATS: &[(u64, &str, &str, &str)] = &[
    (1, "USD", "$", "1"),
    (2, "EUR", "€", "1.087"),
    (3, "GBP", "£", "1.27"),
    (4, "JPY", "¥", "0.0067"),
    (5, "CNY", "¥", "0.138"),
    (6, "BRL", "R$", "0.18"),
];

const SWAP_SYMBOLS: &[&str] = &["USDT", "USDC", "TRX", "ETH", "BNB", "BTC"];

impl Catalogue {
    /// The demo catalogue.
    pub fn demo() -> Catalogue {
        let id_of = |symbol: &str| {
            COINS
                .iter()
                .find(|c| c.symbol == symbol)
                .map(|c| c.id)
                .unwrap_or_else(|| unreachable!("fee coin {symbol} is in the demo table"))
        };
        let mut coins = Vec::new();
        let mut fees = BTreeMap::new();
        let mut balances = BTreeMap::new();
        for row in COINS {
            let mut networks = BTreeMap::new();
            for n in row.networks {
                let full_name = CHAINS.iter().find(|c| c.0 == n.chain).map_or(n.chain, |c| c.1);
                networks.insert(
                    n.chain.to_owned(),
                    CoinNetwork {
                        chain: n.chain.to_owned(),
                        chain_full_name: full_name.to_owned(),
                        contract: n.contract.to_owned(),
                        precision: n.precision,
                        can_deposit: true,
                        can_withdraw: n.can_withdraw,
                        minimum_deposit_amount: "0".to_owned(),
                        minimum_withdraw_amount: n.min.to_owned(),
                        maximum_withdraw_amount: n.max.to_owned(),
                        is_support_memo: n.chain == "XRP",
                        protocol: n.protocol.to_owned(),
                    },
                );
                fees.insert(
                    (row.id, n.chain.to_owned()),
                    FeeSpec {
                        fee_coin_id: id_of(n.fee_coin),
                        amount: n.fee,
                    },
                );
            }
            coins.push(Coin {
                coin_id: row.id,
                symbol: row.symbol.to_owned(),
                coin_full_name: row.name.to_owned(),
                logo_url: format!(
                    "https://resource.cwallet.com/token/icon/{}.png",
                    row.symbol.to_lowercase()
                ),
                status: row.status.to_owned(),
                networks,
                price: row.price.to_owned(),
            });
            balances.insert(row.id, row.balance);
        }
        let chains = CHAINS
            .iter()
            .map(
                |&(chain, full, explorer, base_url, is_evm, memo, status, confirmations)| ChainInfo {
                    chain: chain.to_owned(),
                    chain_full_name: full.to_owned(),
                    explorer: explorer.to_owned(),
                    base_url: base_url.to_owned(),
                    logo_url: format!("https://resource.cwallet.com/chain/icon/{}.png", chain.to_lowercase()),
                    status: status.to_owned(),
                    is_evm,
                    support_memo: memo,
                    confirmations: Some(confirmations),
                },
            )
            .collect();
        let fiats = FIATS
            .iter()
            .map(|&(fiat_id, symbol, mark, rate)| Fiat {
                fiat_id,
                symbol: symbol.to_owned(),
                logo_url: format!("https://resource.cwallet.com/fiat/icon/{}.png", symbol.to_lowercase()),
                mark: mark.to_owned(),
                usd_rate: rate.to_owned(),
            })
            .collect();
        let swap_coins = SWAP_SYMBOLS
            .iter()
            .map(|&symbol| SwapCoin {
                coin_id: id_of(symbol),
                symbol: symbol.to_owned(),
                logo_url: format!("https://resource.cwallet.com/token/icon/{}.png", symbol.to_lowercase()),
            })
            .collect();
        Catalogue {
            coins,
            chains,
            fees,
            cwallet_users: CWALLET_USERS.to_vec(),
            fiats,
            swap_coins,
            balances,
        }
    }

    /// The coin with this id.
    pub fn coin(&self, coin_id: u64) -> Option<&Coin> {
        self.coins.iter().find(|c| c.coin_id == coin_id)
    }

    /// The coin with this symbol (exact, upper-case as CCPayment writes it).
    pub fn coin_by_symbol(&self, symbol: &str) -> Option<&Coin> {
        self.coins.iter().find(|c| c.symbol == symbol)
    }

    /// The chain with this symbol.
    pub fn chain(&self, chain: &str) -> Option<&ChainInfo> {
        self.chains.iter().find(|c| c.chain == chain)
    }

    /// The chain with this symbol, for changing its status.
    pub fn chain_mut(&mut self, chain: &str) -> Option<&mut ChainInfo> {
        self.chains.iter_mut().find(|c| c.chain == chain)
    }

    /// The network fee of withdrawing `coin_id` on `chain`.
    pub fn fee(&self, coin_id: u64, chain: &str) -> Option<&FeeSpec> {
        self.fees.get(&(coin_id, chain.to_owned()))
    }

    /// The Cwallet account with this ID or e-mail address.
    pub fn cwallet_user(&self, id_or_email: &str) -> Option<&CwalletAccount> {
        self.cwallet_users
            .iter()
            .find(|u| u.id == id_or_email || u.emails.iter().any(|e| e.eq_ignore_ascii_case(id_or_email)))
    }

    /// The v1 token id of (coin, chain), if the coin has that network.
    pub fn v1_token_id(&self, coin_symbol: &str, chain: &str) -> Option<String> {
        let coin = self.coin_by_symbol(coin_symbol)?;
        coin.networks
            .contains_key(chain)
            .then(|| v1_token_id(coin_symbol, chain))
    }

    /// The coin a v1 coin id (see [`v1_coin_id`]) or token id names.
    pub fn v1_coin(&self, uuid: &str) -> Option<&Coin> {
        self.coins
            .iter()
            .find(|c| v1_coin_id(&c.symbol).eq_ignore_ascii_case(uuid))
            .or_else(|| self.v1_token(uuid).and_then(|(coin_id, _)| self.coin(coin_id)))
    }

    /// The v1 token that names the coin a network fee on `chain` is paid in, as v1 sends it in
    /// `network_coin_id` (a UUID, never the v2 number): the fee coin's token on that chain, or,
    /// for a coin without a network there, its first token.
    pub fn v1_fee_token(&self, fee_coin_id: u64, chain: &str) -> String {
        let Some(coin) = self.coin(fee_coin_id) else {
            return String::new();
        };
        let chain = if coin.networks.contains_key(chain) {
            chain
        } else {
            coin.networks.keys().next().map_or(chain, String::as_str)
        };
        v1_token_id(&coin.symbol, chain)
    }

    /// The (coin id, chain) a v1 token id selects.
    pub fn v1_token(&self, token_id: &str) -> Option<(u64, String)> {
        // The catalogue is small (about 20 networks): a linear scan is cheaper than keeping an
        // index in sync with it.
        self.coins.iter().find_map(|coin| {
            coin.networks
                .keys()
                .find(|chain| v1_token_id(&coin.symbol, chain).eq_ignore_ascii_case(token_id))
                .map(|chain| (coin.coin_id, chain.clone()))
        })
    }
}

/// A deterministic UUID-formatted v1 token id for (coin, chain): the first 16 bytes of
/// SHA-256("SYMBOL/CHAIN"), so ids are stable across runs and machines.
pub fn v1_token_id(coin_symbol: &str, chain: &str) -> String {
    uuid_of(&format!("{coin_symbol}/{chain}"))
}

/// A deterministic UUID-formatted v1 coin id: the first 16 bytes of SHA-256("coin:SYMBOL").
/// Distinct from every token id (those hash "SYMBOL/CHAIN").
pub fn v1_coin_id(coin_symbol: &str) -> String {
    uuid_of(&format!("coin:{coin_symbol}"))
}

/// The first 16 bytes of SHA-256(`text`), written as a UUID.
fn uuid_of(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let hex = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The fixed hot-wallet address payouts are sent from, per chain family. UTXO chains (Bitcoin,
/// Dogecoin) have none, as in CCPayment's records.
pub fn hot_wallet(chain: &str) -> &'static str {
    match AddressFamily::for_chain(chain) {
        AddressFamily::Evm => "0x71473b39d2069b032fdb489857f6c580c91e3624",
        AddressFamily::Tron => "TLJAgycT3g82xN343VKpCjovNotGEgoLn8",
        AddressFamily::Xrp => "rBKxgvN5txrnoByRTDgagbf87p3xsKcm2Z",
        AddressFamily::Bitcoin | AddressFamily::Solana | AddressFamily::Other => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::address::{check_address, parse_cwallet_recipient};
    use rust_decimal::Decimal;

    #[test]
    fn demo_addresses_are_valid_for_their_chains() {
        for &(chain, address) in DEMO_ADDRESSES {
            assert_eq!(
                check_address(AddressFamily::for_chain(chain), address),
                Ok(()),
                "{chain} {address}"
            );
        }
        assert_eq!(check_address(AddressFamily::Tron, DEMO_FAILING_ADDRESS), Ok(()));
        for chain in ["ETH", "TRX", "XRP"] {
            let hot = hot_wallet(chain);
            assert_eq!(check_address(AddressFamily::for_chain(chain), hot), Ok(()));
        }
        assert_eq!(hot_wallet("BTC"), "");
    }

    #[test]
    fn every_network_has_a_chain_a_fee_and_exact_decimal_limits() {
        let cat = Catalogue::demo();
        for coin in &cat.coins {
            assert!(Decimal::from_str_exact(&coin.price).is_ok(), "{}", coin.symbol);
            assert!(cat.balances.contains_key(&coin.coin_id));
            for (chain, network) in &coin.networks {
                assert_eq!(chain, &network.chain);
                assert!(cat.chain(chain).is_some(), "{chain}");
                let fee = cat.fee(coin.coin_id, chain).expect("fee");
                assert!(cat.coin(fee.fee_coin_id).is_some());
                for amount in [
                    fee.amount,
                    &network.minimum_withdraw_amount,
                    &network.maximum_withdraw_amount,
                ] {
                    assert!(Decimal::from_str_exact(amount).is_ok(), "{amount}");
                }
                assert_eq!(
                    network.is_support_memo,
                    cat.chain(chain).is_some_and(|c| c.support_memo)
                );
            }
        }
        let polygon_fee = cat.fee(1280, "POLYGON").expect("fee");
        assert_eq!((polygon_fee.fee_coin_id, polygon_fee.amount), (1329, "0.0213814"));
    }

    #[test]
    fn cwallet_users_parse_and_resolve_by_id_or_email() {
        let cat = Catalogue::demo();
        for user in &cat.cwallet_users {
            assert!(parse_cwallet_recipient(user.id).is_ok());
            for email in user.emails {
                assert!(parse_cwallet_recipient(email).is_ok());
                assert_eq!(cat.cwallet_user(email).map(|u| u.id), Some(user.id));
            }
        }
        assert_eq!(cat.cwallet_user("ALICE@example.com").map(|u| u.id), Some("9558861"));
        assert!(cat.cwallet_user("99999").is_none());
    }

    #[test]
    fn v1_token_ids_are_stable_uuids_and_round_trip() {
        let cat = Catalogue::demo();
        let id = cat.v1_token_id("USDT", "TRX").expect("USDT on TRX");
        assert_eq!(id, v1_token_id("USDT", "TRX"));
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(cat.v1_token(&id), Some((1280, "TRX".to_owned())));
        assert_eq!(cat.v1_token(&id.to_uppercase()), Some((1280, "TRX".to_owned())));
        assert!(cat.v1_token_id("USDT", "XRP").is_none());
        assert!(cat.v1_token("00000000-0000-0000-0000-000000000000").is_none());
        // Coin ids are UUIDs of their own; a coin is found by its id or any of its tokens.
        let coin = v1_coin_id("USDT");
        assert_eq!((coin.len(), coin.matches('-').count()), (36, 4));
        assert_ne!(coin, id);
        assert_eq!(cat.v1_coin(&coin).map(|c| c.coin_id), Some(1280));
        assert_eq!(cat.v1_coin(&id).map(|c| c.coin_id), Some(1280));
        assert!(cat.v1_coin("1280").is_none());
        // A fee is named by the fee coin's token on the chain (MATIC on POLYGON), or its first.
        assert_eq!(cat.v1_fee_token(1329, "POLYGON"), v1_token_id("MATIC", "POLYGON"));
        assert_eq!(cat.v1_fee_token(1280, "TRX"), v1_token_id("USDT", "TRX"));
        assert_eq!(cat.v1_fee_token(1482, "Cwallet OS"), v1_token_id("TRX", "TRX"));
    }
}
