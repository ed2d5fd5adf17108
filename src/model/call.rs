//! The withdrawal call an order makes, exactly as it is stored and sent on every attempt.
//!
//! These are the *stored* shapes: the order record keeps them, versioned with it, so their
//! serialized form is part of the store's format and must not change. The API client converts
//! them into its wire types (`api::types`) at the moment of sending, field by field; a test in
//! the client holds the two encodings equal, so nothing is lost on the way. Keeping the two
//! apart means a change to what CCPayment expects never silently changes what old stores hold.
//!
//! Pure data.

use serde::{Deserialize, Serialize};

/// A withdrawal call, ready to sign and send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "api", content = "request", rename_all = "snake_case")]
pub enum WithdrawCall {
    /// v2 `applyAppWithdrawToNetwork`.
    Network(NetworkWithdrawal),
    /// v2 `applyAppWithdrawToCwallet`.
    Cwallet(CwalletTransfer),
    /// v1 `withdraw`.
    V1(V1Withdrawal),
}

impl WithdrawCall {
    /// The amount string that goes on the wire.
    pub fn amount(&self) -> &str {
        match self {
            WithdrawCall::Network(r) => &r.amount,
            WithdrawCall::Cwallet(r) => &r.amount,
            WithdrawCall::V1(r) => &r.value,
        }
    }

    /// The orderId that goes on the wire.
    pub fn order_id(&self) -> &str {
        match self {
            WithdrawCall::Network(r) => &r.order_id,
            WithdrawCall::Cwallet(r) => &r.order_id,
            WithdrawCall::V1(r) => &r.merchant_order_id,
        }
    }

    /// Whether the call goes to the v1 API (its orders are followed through `bill/info`).
    pub fn is_v1(&self) -> bool {
        matches!(self, WithdrawCall::V1(_))
    }
}

/// A withdrawal to a chain address (v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkWithdrawal {
    pub order_id: String,
    pub coin_id: u64,
    pub chain: String,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    pub amount: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_pay_network_fee: Option<bool>,
    #[serde(default, rename = "networkFeeInquiryID", skip_serializing_if = "Option::is_none")]
    pub network_fee_inquiry_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
}

/// A transfer to a Cwallet account, by ID or e-mail (v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwalletTransfer {
    pub order_id: String,
    pub coin_id: u64,
    pub cwallet_user: String,
    pub amount: String,
}

/// A withdrawal through the legacy v1 API: a token id selects coin and network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Withdrawal {
    pub merchant_order_id: String,
    /// A chain address, or a Cwallet ID / e-mail for an internal payout.
    pub address: String,
    pub token_id: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_pays_fee: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored form of a call is part of the store's format: these are the bytes a store
    /// written by the previous release holds.
    #[test]
    fn the_stored_form_is_stable() {
        let call = WithdrawCall::Network(NetworkWithdrawal {
            order_id: "o-1".into(),
            coin_id: 1280,
            chain: "TRX".into(),
            address: "TAddr".into(),
            memo: None,
            amount: "12.5".into(),
            merchant_pay_network_fee: Some(false),
            network_fee_inquiry_id: None,
            notify_url: None,
        });
        assert_eq!(
            serde_json::to_string(&call).unwrap(),
            r#"{"api":"network","request":{"orderId":"o-1","coinId":1280,"chain":"TRX","address":"TAddr","amount":"12.5","merchantPayNetworkFee":false}}"#
        );
        let v1 = WithdrawCall::V1(V1Withdrawal {
            merchant_order_id: "o-2".into(),
            address: "x".into(),
            token_id: "t".into(),
            value: "1".into(),
            memo: Some("m".into()),
            merchant_pays_fee: None,
        });
        assert_eq!(
            serde_json::to_string(&v1).unwrap(),
            r#"{"api":"v1","request":{"merchant_order_id":"o-2","address":"x","token_id":"t","value":"1","memo":"m"}}"#
        );
        assert!(v1.is_v1() && !call.is_v1());
        assert_eq!((call.order_id(), call.amount()), ("o-1", "12.5"));
    }
}
