//! The withdrawal request a validated row becomes: the one place that decides what is sent.
//!
//! The amount sent is the row's canonical amount string, nothing else; the orderId is the row's
//! order_id, always. Pure.

use super::validate::{Row, Validated};
use crate::batch::catalogue::{Catalogue, ChainRef};
use crate::model::ApiGeneration;
pub use crate::model::call::{CwalletTransfer, NetworkWithdrawal, V1Withdrawal, WithdrawCall};

/// Whether `row` has what its API generation needs for a call (v2 needs a coin and a chain):
/// exactly when [`withdraw_call`] returns `Some`.
pub fn has_call(row: &Row, generation: ApiGeneration) -> bool {
    generation == ApiGeneration::V1 || (row.coin.is_some() && row.chain.is_some())
}

/// Builds the call for `row`. `None` when the row lacks what its API generation needs (v2
/// without coin or chain, see [`has_call`]), which validation already refuses.
pub fn withdraw_call(row: &Row, v: &Validated, cat: &Catalogue, generation: ApiGeneration) -> Option<WithdrawCall> {
    let order_id = v.order_id(row).to_owned();
    let recipient = v.recipient(row).to_owned();
    let memo = Some(v.memo(row).to_owned()).filter(|m| !m.is_empty());
    let amount = row.amount.canonical();
    if generation == ApiGeneration::V1 {
        return Some(WithdrawCall::V1(V1Withdrawal {
            merchant_order_id: order_id,
            address: recipient,
            token_id: v.token_id(row).to_owned(),
            value: amount,
            memo,
            merchant_pays_fee: Some(row.merchant_pays_fee),
        }));
    }
    let coin_id = cat.coin(row.coin?).coin_id;
    Some(match row.chain? {
        ChainRef::Cwallet => WithdrawCall::Cwallet(CwalletTransfer {
            order_id,
            coin_id,
            cwallet_user: recipient,
            amount,
        }),
        chain @ ChainRef::Chain(_) => WithdrawCall::Network(NetworkWithdrawal {
            order_id,
            coin_id,
            chain: cat.chain_name(chain).to_owned(),
            address: recipient,
            memo,
            amount,
            merchant_pay_network_fee: Some(row.merchant_pays_fee),
            network_fee_inquiry_id: None,
            notify_url: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::catalogue::tests::sample;
    use crate::batch::validate::{NoKnownOrders, validate_csv};

    fn one_row(amount: &str) -> (Validated, Catalogue) {
        let cat = sample("Normal");
        let text = format!(
            "order_id,recipient,coin,chain,amount\nprop-0001,TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K,USDT,TRX,{amount}\n"
        );
        let v = validate_csv(&cat, ApiGeneration::V2, false, &text, &NoKnownOrders);
        (v, cat)
    }

    #[test]
    fn a_row_becomes_the_request_it_describes() {
        let (v, cat) = one_row("0012.500");
        let call = withdraw_call(&v.rows[0], &v, &cat, ApiGeneration::V2).unwrap();
        let WithdrawCall::Network(req) = &call else {
            panic!("network call")
        };
        assert_eq!(
            (
                req.order_id.as_str(),
                req.chain.as_str(),
                req.amount.as_str(),
                req.coin_id
            ),
            ("prop-0001", "TRX", "12.5", 1280)
        );
        assert_eq!(req.merchant_pay_network_fee, Some(false));
        assert!(serde_json::to_string(req).unwrap().contains(r#""amount":"12.5""#));
    }

    proptest! {
        /// Every accepted amount string is sent as exactly its canonical decimal string: the
        /// same value, no leading zeros, no trailing fractional zeros, never an exponent.
        #[test]
        fn accepted_amounts_are_sent_as_their_canonical_string(
            int in "[0-9]{1,7}",
            frac in proptest::option::of("[0-9]{1,6}"),
        ) {
            let text = match &frac { Some(f) => format!("{int}.{f}"), None => int.clone() };
            let (v, cat) = one_row(&text);
            let expected: rust_decimal::Decimal = text.parse().unwrap();
            prop_assume!(expected >= rust_decimal::Decimal::ONE); // the sample's TRX minimum
            prop_assert_eq!(v.rows.len(), 1, "{:?}", v.problems);
            let call = withdraw_call(&v.rows[0], &v, &cat, ApiGeneration::V2).unwrap();
            let sent = call.amount();
            let body = serde_json::to_string(&match &call { WithdrawCall::Network(r) => r.clone(), _ => unreachable!() }).unwrap();
            let expected_field = format!("\"amount\":\"{}\"", sent);
            prop_assert!(body.contains(&expected_field));
            prop_assert_eq!(rust_decimal::Decimal::from_str_exact(sent).unwrap(), expected);
            prop_assert!(!sent.contains('e') && !sent.contains('E'));
            prop_assert!(sent == "0" || !sent.starts_with('0') || sent.starts_with("0."));
            prop_assert!(!sent.contains('.') || !sent.ends_with('0'));
            prop_assert!(!sent.ends_with('.'));
            // Canonical means stable: reading what was sent gives the same string again.
            prop_assert_eq!(crate::rules::amount::Amount::parse(sent).unwrap().canonical(), sent);
        }
    }
}
