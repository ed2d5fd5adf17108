//! The preflight of a v1 account: the questions [`super::preflight`] asks, asked of the v1 API
//! only, because a v1-only account answers every v2 call with 11013 NoSupportVersion (R15).
//!
//! - the catalogue: one `/v1/coin/all` (every coin with its tokens), built by
//!   [`Catalogue::from_v1`] (in [`super::preflight::prepare`]);
//! - fees: one `/v1/network/fee` per distinct token among the accepted rows paid on a chain.
//!   A fee in the coin itself needs nothing more. A fee in another coin is named by symbol
//!   only, so the network's fee coin is looked up by its UUID (`network_coin_id`, R8) in
//!   `/v1/token/chain`, once per coin, and resolved through the token list; never parsed as a
//!   number;
//! - balances: one `/v1/assets`;
//! - Cwallet users: one `/v1/check/user` per distinct Cwallet ID, when the configuration allows
//!   remote checks for a batch of this size. Any refusal flags the rows with that ID (R10); only
//!   a request that got no answer stops the preflight.
//!
//! v1 has no address check: addresses are checked locally only, and the plan says so.
//!
//! Every question is one read through the client, so it passes the process's one pacing, and
//! is retried like any preflight read (`preflight::read`).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use futures_util::StreamExt;

use super::plan::{FeeQuote, PreflightAnswers, RemoteCheckSummary};
use super::preflight::{Settings, concurrency, read, remote_checks_skipped};
use super::validate::Validated;
use crate::api::types::{V1NetworkFeeQuery, V1Token};
use crate::api::{CallError, Client, ErrorClass, codes};
use crate::batch::catalogue::{Catalogue, ChainRef, CoinIdx, v1_coin_number};
use crate::rules::address::{CwalletRecipient, parse_cwallet_recipient};
use crate::rules::amount::parse_api_decimal;

/// What the plan says about addresses of a v1 batch whose recipients were checked.
pub const NO_ADDRESS_CHECK: &str = "the v1 API has no address check; addresses were checked locally only";

/// One fee quote per distinct token among the accepted rows paid on a chain, keyed like v2
/// quotes by (coin number, chain) so the plan reads both alike.
pub async fn ask_fees(
    client: &Client,
    cat: &Catalogue,
    v: &Validated,
    answers: &mut PreflightAnswers,
) -> Result<(), CallError> {
    // Ordered: the questions go out in the same order every time (a replayed simulation sees
    // the same requests).
    // Keyed by the lower-case id (rows may write it in any case), sent as the list spells it.
    let mut tokens: BTreeMap<String, (String, CoinIdx, u16)> = BTreeMap::new();
    for row in &v.rows {
        let (Some(ChainRef::Chain(_)), Some(token)) = (row.chain, cat.find_token(v.token_id(row))) else {
            continue;
        };
        tokens
            .entry(token.token_id.to_ascii_lowercase())
            .or_insert_with(|| (token.token_id.clone(), token.coin, token.chain));
    }
    // The networks of each coin asked about, for fee coins named by symbol only.
    let mut networks: HashMap<CoinIdx, Vec<V1Token>> = HashMap::new();
    for (token_id, coin, chain) in tokens.into_values() {
        let query = V1NetworkFeeQuery {
            token_id: token_id.clone(),
            address: None,
            memo: None,
        };
        let quote = read(|| client.v1_network_fee(&query)).await?;
        answers.requests += 1;
        let amount = parse_api_decimal(&quote.fee).ok_or_else(|| CallError::Ambiguous {
            endpoint: "v1/network/fee".into(),
            detail: format!("the fee {:?} is not a decimal", quote.fee),
        })?;
        let coin_entry = cat.coin(coin);
        // A quote without a coin, or in the coin's own symbol, is in the withdrawn coin.
        let fee = if quote.crypto.is_empty() || quote.crypto.eq_ignore_ascii_case(&coin_entry.symbol) {
            FeeQuote {
                coin_id: coin_entry.coin_id,
                symbol: coin_entry.symbol.clone(),
                amount,
            }
        } else {
            let list = match networks.entry(coin) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(slot) => {
                    let list = read(|| client.v1_token_chain(&token_id)).await?;
                    answers.requests += 1;
                    slot.insert(list)
                }
            };
            let network = list.iter().find(|n| n.token_id.eq_ignore_ascii_case(&token_id));
            fee_in_other_coin(cat, network, &quote.crypto, amount)
        };
        answers
            .fees
            .insert((coin_entry.coin_id, cat.chain(chain).symbol.clone()), fee);
    }
    Ok(())
}

/// The quote of a fee paid in another coin than the one withdrawn: the coin the network's
/// `network_coin_id` names (a coin or token UUID, R8), else the coin of the fee's symbol. A fee
/// coin the account's list does not have keeps the symbol, with a number from its UUID (or
/// symbol): its balance then reads as zero, and the plan says the balance is short rather than
/// guessing which coin pays.
fn fee_in_other_coin(
    cat: &Catalogue,
    network: Option<&V1Token>,
    crypto: &str,
    amount: rust_decimal::Decimal,
) -> FeeQuote {
    let uuid = network.map_or("", |n| n.network_coin_id.as_str());
    let by_uuid = (!uuid.is_empty()).then(|| cat.resolve_v1_coin(uuid)).flatten();
    let symbol = network
        .map(|n| n.network_fee_crypto.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(crypto);
    // Symbols only: a fee coin is never looked up by a number.
    let by_symbol = || {
        cat.coins()
            .iter()
            .position(|c| c.symbol.eq_ignore_ascii_case(symbol))
            .and_then(|i| u16::try_from(i).ok())
            .map(CoinIdx)
    };
    match by_uuid.or_else(by_symbol) {
        Some(idx) => {
            let c = cat.coin(idx);
            FeeQuote {
                coin_id: c.coin_id,
                symbol: c.symbol.clone(),
                amount,
            }
        }
        None => FeeQuote {
            coin_id: v1_coin_number(if uuid.is_empty() { symbol } else { uuid }),
            symbol: symbol.to_owned(),
            amount,
        },
    }
}

/// Every balance, from `/v1/assets`, keyed by coin number. A balance of a coin the token list
/// does not have is kept under its UUID's number: no row pays it, but a fee might.
pub async fn ask_balances(client: &Client, cat: &Catalogue, answers: &mut PreflightAnswers) -> Result<(), CallError> {
    let assets = read(|| client.v1_assets(None)).await?;
    answers.requests += 1;
    for asset in assets {
        let coin_id = cat
            .resolve_v1_coin(&asset.coin_id)
            .map_or_else(|| v1_coin_number(&asset.coin_id), |idx| cat.coin(idx).coin_id);
        answers
            .balances
            .insert(coin_id, parse_api_decimal(&asset.value).unwrap_or_default());
    }
    Ok(())
}

/// Cwallet IDs checked with `/v1/check/user` when the configuration allows it for a batch of
/// this size. E-mail recipients cannot be looked up (the call takes a Cwallet ID), and v1 has no
/// address check, which the summary says.
pub async fn remote_checks(
    client: &Client,
    settings: &Settings,
    v: &Validated,
    answers: &mut PreflightAnswers,
) -> Result<(), CallError> {
    if let Some(skipped) = remote_checks_skipped(settings, v.rows.len() as u64) {
        answers.remote_checks = skipped;
        return Ok(());
    }
    // Ordered: same questions in the same order every time, problems in line order.
    let mut users: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for row in &v.rows {
        let recipient = v.recipient(row);
        if row.chain == Some(ChainRef::Cwallet)
            && matches!(parse_cwallet_recipient(recipient), Ok(CwalletRecipient::Id(_)))
        {
            users.entry(recipient.to_owned()).or_default().push(u64::from(row.line));
        }
    }
    let mut summary = RemoteCheckSummary {
        performed: true,
        note: Some(NO_ADDRESS_CHECK.to_owned()),
        ..Default::default()
    };
    let mut results = futures_util::stream::iter(users)
        .map(|(user, lines)| async move {
            let verdict = match read(|| client.v1_check_user(&user)).await {
                Ok(_) => Ok(None),
                // The pacing's answers (11004, 11009) and passing trouble say nothing about the
                // user: the preflight stops and the file is tried again later.
                Err(CallError::Api(e))
                    if matches!(
                        e.class,
                        ErrorClass::RateLimited | ErrorClass::DailyLimit | ErrorClass::RetryLater | ErrorClass::Clock
                    ) =>
                {
                    Err(CallError::Api(e))
                }
                // Any other answer but yes means the payout cannot be trusted to arrive (R10).
                Err(CallError::Api(e)) => Ok(Some(user_refused(&user, e.code, &e.msg))),
                Err(e) => Err(e),
            };
            (lines, verdict)
        })
        .buffer_unordered(concurrency(client));
    while let Some((lines, verdict)) = results.next().await {
        answers.requests += 1;
        summary.cwallet_users_checked += 1;
        if let Some(problem) = verdict? {
            for line in lines {
                answers.remote_problems.entry(line).or_default().push(problem.clone());
            }
        }
    }
    answers.remote_checks = summary;
    Ok(())
}

/// The problem of a row whose Cwallet ID CCPayment did not confirm.
fn user_refused(user: &str, code: i64, msg: &str) -> String {
    let what = codes::lookup(code).map_or(msg, |c| c.meaning);
    format!("CCPayment did not confirm the Cwallet ID {user:?}: {code} {what}")
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::api::types::V1Coin;

    fn cat() -> Catalogue {
        let token = |id: &str, chain: &str| V1Token {
            token_id: id.into(),
            chain: chain.into(),
            status: Some(1),
            ..V1Token::default()
        };
        let coins = vec![
            V1Coin {
                symbol: "USDT".into(),
                coin_id: "c0000000-0000-0000-0000-000000000001".into(),
                min: "1".into(),
                tokens: vec![token("70000000-0000-0000-0000-000000000001", "POLYGON")],
                ..V1Coin::default()
            },
            V1Coin {
                symbol: "MATIC".into(),
                coin_id: "c0000000-0000-0000-0000-000000000002".into(),
                min: "0.1".into(),
                tokens: vec![token("70000000-0000-0000-0000-000000000002", "POLYGON")],
                ..V1Coin::default()
            },
        ];
        Catalogue::from_v1(&coins).unwrap()
    }

    #[test]
    fn a_fee_coin_is_resolved_by_its_uuid_never_by_a_number() {
        let cat = cat();
        let matic = v1_coin_number("c0000000-0000-0000-0000-000000000002");
        let network = |uuid: &str, crypto: &str| V1Token {
            network_coin_id: uuid.into(),
            network_fee_crypto: crypto.into(),
            ..V1Token::default()
        };
        let amount = Decimal::new(2, 2);
        // By the coin's UUID, by one of its tokens' UUIDs, and (without a UUID) by symbol.
        for n in [
            network("c0000000-0000-0000-0000-000000000002", "MATIC"),
            network("70000000-0000-0000-0000-000000000002", ""),
            network("", "matic"),
        ] {
            let quote = fee_in_other_coin(&cat, Some(&n), "MATIC", amount);
            assert_eq!((quote.coin_id, quote.symbol.as_str()), (matic, "MATIC"), "{n:?}");
        }
        // A numeric-looking id is not a coin number.
        let quote = fee_in_other_coin(&cat, Some(&network("1329", "POL")), "POL", amount);
        assert_eq!(quote.symbol, "POL");
        assert_eq!(quote.coin_id, v1_coin_number("1329"));
        assert_ne!(quote.coin_id, 1329);
        assert!(cat.coin_by_id(quote.coin_id).is_none());
    }

    #[test]
    fn refusals_of_a_cwallet_id_name_the_code() {
        assert_eq!(
            user_refused("9558861", 11015, "UserIdNotFound"),
            "CCPayment did not confirm the Cwallet ID \"9558861\": 11015 the user id does not exist"
        );
        assert_eq!(
            user_refused("1", 999999, "who"),
            "CCPayment did not confirm the Cwallet ID \"1\": 999999 who"
        );
    }
}
