//! Wire types of the CCPayment API: request bodies and reply `data` objects, v2 and v1.
//!
//! These are a serialisation boundary, kept apart from the domain types of the batch and the
//! engine. Amounts, fees, balances and prices are decimal *strings* end to end: they are never
//! parsed into floats here. Replies are read leniently (missing fields default, unknown fields
//! are ignored) because CCPayment adds fields over time; requests are written exactly, with
//! optional fields left out rather than sent as `null`.
//!
//! The sandbox uses the same types for the other side of the wire, so client and simulator
//! cannot drift apart on a field name.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::call;
use crate::model::record::Fee;

/// The v2 method names, as they appear after `/ccpayment/v2/`.
pub mod method {
    pub const APPLY_APP_WITHDRAW_TO_NETWORK: &str = "applyAppWithdrawToNetwork";
    pub const APPLY_APP_WITHDRAW_TO_CWALLET: &str = "applyAppWithdrawToCwallet";
    pub const GET_APP_WITHDRAW_RECORD: &str = "getAppWithdrawRecord";
    pub const GET_APP_WITHDRAW_RECORD_LIST: &str = "getAppWithdrawRecordList";
    pub const GET_APP_COIN_ASSET: &str = "getAppCoinAsset";
    pub const GET_APP_COIN_ASSET_LIST: &str = "getAppCoinAssetList";
    pub const GET_COIN_LIST: &str = "getCoinList";
    pub const GET_COIN: &str = "getCoin";
    pub const GET_COIN_USDT_PRICE: &str = "getCoinUSDTPrice";
    pub const GET_WITHDRAW_FEE: &str = "getWithdrawFee";
    pub const CHECK_WITHDRAWAL_ADDRESS_VALIDITY: &str = "checkWithdrawalAddressValidity";
    pub const GET_CWALLET_USER_ID: &str = "getCwalletUserId";
    pub const GET_CHAIN_LIST: &str = "getChainList";
    pub const GET_FIAT_LIST: &str = "getFiatList";
    pub const GET_SWAP_COIN_LIST: &str = "getSwapCoinList";
    /// The batch withdrawal family (ccpayment-api.md §2.8; 2026 definitions).
    pub const CHECK_WITHDRAW_ADDRESS: &str = "checkWithdrawAddress";
    pub const APPLY_BATCH_WITHDRAW: &str = "applyBatchWithdraw";
    pub const APPEND_BATCH_WITHDRAW: &str = "appendBatchWithdraw";
    pub const CONFIRM_BATCH_WITHDRAW: &str = "confirmBatchWithdraw";
    pub const ABORT_BATCH_WITHDRAW: &str = "abortBatchWithdraw";
    pub const GET_BATCH_WITHDRAW_ORDER: &str = "getBatchWithdrawOrder";
    pub const GET_BATCH_WITHDRAW_ORDER_RECORD_LIST: &str = "getBatchWithdrawOrderRecordList";

    /// Every v2 method the client and the sandbox know.
    pub const ALL: &[&str] = &[
        APPLY_APP_WITHDRAW_TO_NETWORK,
        APPLY_APP_WITHDRAW_TO_CWALLET,
        GET_APP_WITHDRAW_RECORD,
        GET_APP_WITHDRAW_RECORD_LIST,
        GET_APP_COIN_ASSET,
        GET_APP_COIN_ASSET_LIST,
        GET_COIN_LIST,
        GET_COIN,
        GET_COIN_USDT_PRICE,
        GET_WITHDRAW_FEE,
        CHECK_WITHDRAWAL_ADDRESS_VALIDITY,
        GET_CWALLET_USER_ID,
        GET_CHAIN_LIST,
        GET_FIAT_LIST,
        GET_SWAP_COIN_LIST,
        CHECK_WITHDRAW_ADDRESS,
        APPLY_BATCH_WITHDRAW,
        APPEND_BATCH_WITHDRAW,
        CONFIRM_BATCH_WITHDRAW,
        ABORT_BATCH_WITHDRAW,
        GET_BATCH_WITHDRAW_ORDER,
        GET_BATCH_WITHDRAW_ORDER_RECORD_LIST,
    ];

    /// v1 paths, after `/ccpayment/v1/`.
    pub const V1_WITHDRAW: &str = "withdraw";
    pub const V1_BILL_INFO: &str = "bill/info";
    /// The v1 reads a payout job needs (`api.version = "v1"` uses these and nothing of v2).
    pub const V1_COIN_ALL: &str = "coin/all";
    pub const V1_SUPPORT_TOKEN: &str = "support/token";
    pub const V1_TOKEN_CHAIN: &str = "token/chain";
    pub const V1_NETWORK_FEE: &str = "network/fee";
    pub const V1_ASSETS: &str = "assets";
    pub const V1_CHECK_USER: &str = "check/user";

    /// Every v1 path the client and the sandbox know.
    pub const V1_ALL: &[&str] = &[
        V1_WITHDRAW,
        V1_BILL_INFO,
        V1_COIN_ALL,
        V1_SUPPORT_TOKEN,
        V1_TOKEN_CHAIN,
        V1_NETWORK_FEE,
        V1_ASSETS,
        V1_CHECK_USER,
    ];

    /// Methods that create a payout or commit to one (a batch's apply, append and confirm): they
    /// take the pacing's turn for creates, and `doctor` never sends them.
    pub fn creates_payout(name: &str) -> bool {
        matches!(
            name,
            APPLY_APP_WITHDRAW_TO_NETWORK
                | APPLY_APP_WITHDRAW_TO_CWALLET
                | V1_WITHDRAW
                | APPLY_BATCH_WITHDRAW
                | APPEND_BATCH_WITHDRAW
                | CONFIRM_BATCH_WITHDRAW
        )
    }
}

/// The reply envelope shared by every endpoint: `{"code":10000,"msg":"success","data":{...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    #[serde(deserialize_with = "super::lenient::i64")]
    pub code: i64,
    #[serde(default)]
    #[serde(deserialize_with = "super::lenient::string")]
    pub msg: String,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

/// A body with no parameters. Serialises as `{}`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Empty {}

// ---------------------------------------------------------------------------------------------
// Withdrawals (v2)
// ---------------------------------------------------------------------------------------------

/// `applyAppWithdrawToNetwork`: a withdrawal to a chain address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkWithdrawRequest {
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

/// `applyAppWithdrawToCwallet`: a transfer to a Cwallet account (ID or e-mail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwalletWithdrawRequest {
    pub order_id: String,
    pub coin_id: u64,
    pub cwallet_user: String,
    pub amount: String,
}

/// The reply to either withdrawal call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WithdrawReceipt {
    #[serde(deserialize_with = "super::lenient::string")]
    pub record_id: String,
}

/// `getAppWithdrawRecord`: one record by `recordId` or `orderId` (at least one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithdrawRecordQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// The reply to `getAppWithdrawRecord`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WithdrawRecordData {
    pub record: WithdrawRecord,
}

/// `getAppWithdrawRecordList`: records filtered by coin, orderIds (at most 20), chain, address
/// and time, in pages of 20; a non-empty `nextId` in the reply means there is another page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithdrawRecordListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coin_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_address: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<i64>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_id: Option<String>,
}

/// The most orderIds one `getAppWithdrawRecordList` query may carry.
pub const MAX_ORDER_IDS_PER_LIST_QUERY: usize = 20;
/// The page size of `getAppWithdrawRecordList`.
pub const RECORD_LIST_PAGE_SIZE: usize = 20;

/// One page of withdrawal records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WithdrawRecordPage {
    #[serde(deserialize_with = "super::lenient::each")]
    pub records: Vec<WithdrawRecord>,
    #[serde(deserialize_with = "super::lenient::string")]
    pub next_id: String,
}

/// A withdrawal record, as `getAppWithdrawRecord[List]` returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WithdrawRecord {
    #[serde(deserialize_with = "super::lenient::string")]
    pub record_id: String,
    /// `Network` or `Cwallet`.
    #[serde(deserialize_with = "super::lenient::string")]
    pub withdraw_type: String,
    #[serde(deserialize_with = "super::lenient::u64")]
    pub coin_id: u64,
    #[serde(deserialize_with = "super::lenient::string")]
    pub coin_symbol: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub chain: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "super::lenient::string")]
    pub from_address: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub to_address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "super::lenient::string")]
    pub to_memo: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "super::lenient::string")]
    pub cwallet_user: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub order_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub tx_id: String,
    pub status: RecordStatus,
    #[serde(deserialize_with = "super::lenient::string")]
    pub amount: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<FeeAmount>,
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "super::lenient::string")]
    pub reason: String,
    #[serde(rename = "coinUSDPrice", skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "super::lenient::string")]
    pub coin_usd_price: String,
}

/// A fee: in which coin, and how much.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FeeAmount {
    #[serde(deserialize_with = "super::lenient::u64")]
    pub coin_id: u64,
    #[serde(deserialize_with = "super::lenient::string")]
    pub coin_symbol: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub amount: String,
}

/// The status of a withdrawal record or webhook. Unknown values are kept verbatim and are
/// never taken for a final state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RecordStatus {
    /// Held for manual approval on the dashboard.
    WaitingApproval,
    /// Being processed or on chain.
    #[default]
    Processing,
    /// Paid.
    Success,
    /// Failed; the amount is refunded.
    Failed,
    /// Rejected by the merchant on the dashboard.
    Rejected,
    /// Anything else, verbatim.
    Other(String),
}

impl RecordStatus {
    /// Whether no further change is expected (Success, Failed, Rejected).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RecordStatus::Success | RecordStatus::Failed | RecordStatus::Rejected
        )
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            RecordStatus::WaitingApproval => "WaitingApproval",
            RecordStatus::Processing => "Processing",
            RecordStatus::Success => "Success",
            RecordStatus::Failed => "Failed",
            RecordStatus::Rejected => "Rejected",
            RecordStatus::Other(s) => s,
        }
    }
}

impl From<String> for RecordStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "WaitingApproval" => RecordStatus::WaitingApproval,
            "Processing" => RecordStatus::Processing,
            "Success" => RecordStatus::Success,
            "Failed" => RecordStatus::Failed,
            "Rejected" => RecordStatus::Rejected,
            _ => RecordStatus::Other(s),
        }
    }
}

impl From<RecordStatus> for String {
    fn from(s: RecordStatus) -> Self {
        match s {
            RecordStatus::Other(s) => s,
            other => other.as_str().to_owned(),
        }
    }
}

impl fmt::Display for RecordStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Balances
// ---------------------------------------------------------------------------------------------

/// `getAppCoinAsset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoinIdQuery {
    pub coin_id: u64,
}

/// A balance. `available` may be `""`, which means zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CoinAsset {
    #[serde(deserialize_with = "super::lenient::u64")]
    pub coin_id: u64,
    #[serde(deserialize_with = "super::lenient::string")]
    pub coin_symbol: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub available: String,
}

/// The reply to `getAppCoinAsset`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoinAssetData {
    pub asset: CoinAsset,
}

/// The reply to `getAppCoinAssetList`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoinAssetList {
    #[serde(deserialize_with = "super::lenient::each")]
    pub assets: Vec<CoinAsset>,
}

// ---------------------------------------------------------------------------------------------
// Coins, chains, fees, addresses, users
// ---------------------------------------------------------------------------------------------

/// A coin with its networks, from `getCoinList` / `getCoin`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Coin {
    #[serde(deserialize_with = "super::lenient::u64")]
    pub coin_id: u64,
    #[serde(deserialize_with = "super::lenient::string")]
    pub symbol: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub coin_full_name: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub logo_url: String,
    /// `Normal`, `Maintain` (withdrawals suspended), `Pre-delisting`, `Delisted`.
    #[serde(deserialize_with = "super::lenient::string")]
    pub status: String,
    /// Keyed by chain symbol.
    pub networks: BTreeMap<String, CoinNetwork>,
    #[serde(deserialize_with = "super::lenient::string")]
    pub price: String,
}

/// One network a coin can be withdrawn on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CoinNetwork {
    #[serde(deserialize_with = "super::lenient::string")]
    pub chain: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub chain_full_name: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub contract: String,
    /// Decimal places allowed in an amount on this network.
    #[serde(deserialize_with = "super::lenient::u32")]
    pub precision: u32,
    #[serde(deserialize_with = "super::lenient::bool")]
    pub can_deposit: bool,
    #[serde(deserialize_with = "super::lenient::bool")]
    pub can_withdraw: bool,
    #[serde(deserialize_with = "super::lenient::string")]
    pub minimum_deposit_amount: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub minimum_withdraw_amount: String,
    /// `"0"` means no maximum.
    #[serde(deserialize_with = "super::lenient::string")]
    pub maximum_withdraw_amount: String,
    #[serde(deserialize_with = "super::lenient::bool")]
    pub is_support_memo: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "super::lenient::string")]
    pub protocol: String,
}

/// The reply to `getCoinList`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoinList {
    #[serde(deserialize_with = "super::lenient::each")]
    pub coins: Vec<Coin>,
}

/// The reply to `getCoin`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoinData {
    pub coin: Coin,
}

/// `getCoinUSDTPrice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoinPriceQuery {
    pub coin_ids: Vec<u64>,
}

/// The reply to `getCoinUSDTPrice`: price strings keyed by the coin id as a string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoinPrices {
    pub prices: BTreeMap<String, String>,
}

/// `getWithdrawFee`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithdrawFeeQuery {
    pub coin_id: u64,
    pub chain: String,
}

/// The reply to `getWithdrawFee`. The fee coin may be the chain's native coin rather than the
/// coin withdrawn (USDT on POLYGON is charged in MATIC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WithdrawFeeData {
    pub fee: FeeAmount,
    #[serde(rename = "networkFeeInquiryID", skip_serializing_if = "String::is_empty")]
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee_inquiry_id: String,
}

/// `checkWithdrawalAddressValidity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressValidityQuery {
    pub chain: String,
    pub address: String,
}

/// The reply to `checkWithdrawalAddressValidity`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AddressValidity {
    #[serde(deserialize_with = "super::lenient::bool")]
    pub addr_is_valid: bool,
}

/// `getCwalletUserId`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CwalletUserQuery {
    pub cwallet_user_id: String,
}

/// The reply to `getCwalletUserId`; the name comes back masked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CwalletUser {
    #[serde(deserialize_with = "super::lenient::string")]
    pub cwallet_user_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub cwallet_user_name: String,
}

/// `getChainList`; no chains means all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainListQuery {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<String>,
}

/// The reply to `getChainList`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChainList {
    #[serde(deserialize_with = "super::lenient::each")]
    pub chains: Vec<ChainInfo>,
}

/// A chain's status and explorer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChainInfo {
    #[serde(deserialize_with = "super::lenient::string")]
    pub chain: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub chain_full_name: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub explorer: String,
    /// A transaction URL template with `%s` where the txId goes.
    #[serde(deserialize_with = "super::lenient::string")]
    pub base_url: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub logo_url: String,
    /// `Normal` or `Maintenance` (some sources say `Maintain`).
    #[serde(deserialize_with = "super::lenient::string")]
    pub status: String,
    #[serde(rename = "isEVM")]
    #[serde(deserialize_with = "super::lenient::bool")]
    pub is_evm: bool,
    #[serde(deserialize_with = "super::lenient::bool")]
    pub support_memo: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "super::lenient::option_u32")]
    pub confirmations: Option<u32>,
}

impl ChainInfo {
    /// Whether the chain is operating normally (both spellings of maintenance are accepted).
    pub fn is_normal(&self) -> bool {
        self.status == "Normal"
    }

    /// The explorer link of a transaction, if the chain has a template and there is a txId.
    pub fn tx_url(&self, tx_id: &str) -> Option<String> {
        if tx_id.is_empty() || self.base_url.is_empty() {
            return None;
        }
        Some(if self.base_url.contains("%s") {
            self.base_url.replacen("%s", tx_id, 1)
        } else {
            format!("{}{}", self.base_url, tx_id)
        })
    }
}

/// The reply to `getFiatList`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FiatList {
    pub fiats: Vec<Fiat>,
}

/// A fiat currency and its rate to the US dollar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Fiat {
    #[serde(deserialize_with = "super::lenient::u64")]
    pub fiat_id: u64,
    #[serde(deserialize_with = "super::lenient::string")]
    pub symbol: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub logo_url: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub mark: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub usd_rate: String,
}

/// The reply to `getSwapCoinList`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwapCoinList {
    pub coins: Vec<SwapCoin>,
}

/// A coin that can be swapped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SwapCoin {
    #[serde(deserialize_with = "super::lenient::u64")]
    pub coin_id: u64,
    #[serde(deserialize_with = "super::lenient::string")]
    pub symbol: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub logo_url: String,
}

// ---------------------------------------------------------------------------------------------
// Batch withdrawals (v2, 2026 definitions: ccpayment-api.md §2.8)
// ---------------------------------------------------------------------------------------------

/// At most this many tasks in one `applyBatchWithdraw` or `appendBatchWithdraw`, and addresses
/// in one `checkWithdrawAddress`.
pub const MAX_TASKS_PER_REQUEST: usize = 500;
/// At most this many tasks in one page of `getBatchWithdrawOrderRecordList`.
pub const BATCH_RECORD_PAGE_SIZE: usize = 100;
/// A task's memo is at most this many characters.
pub const MAX_TASK_MEMO_CHARS: usize = 16;
/// A task's remark is at most this many characters.
pub const MAX_TASK_REMARK_CHARS: usize = 64;
/// The longest `delaySeconds` a confirm may ask for.
pub const MAX_CONFIRM_DELAY_SECS: u64 = 3600;

/// One address to check in `checkWithdrawAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithdrawAddress {
    pub address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memo: String,
    /// From 1; the answer names the address by it.
    pub seq: u32,
}

/// `checkWithdrawAddress`: up to 500 addresses of one chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckWithdrawAddressRequest {
    pub chain: String,
    pub address_info_list: Vec<WithdrawAddress>,
}

/// The verdict on one address: no codes means CCPayment found nothing wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WithdrawAddressResult {
    #[serde(deserialize_with = "super::lenient::u32")]
    pub seq: u32,
    #[serde(deserialize_with = "super::lenient::i64_list")]
    pub codes: Vec<i64>,
}

/// The reply to `checkWithdrawAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckWithdrawAddressReply {
    #[serde(deserialize_with = "super::lenient::each")]
    pub address_info_results: Vec<WithdrawAddressResult>,
}

/// A task of a batch withdrawal: what ccpayout sends (seq, address, memo, amount, remark) and
/// what CCPayment adds once it runs (recordId, orderId, status, fee, txId, reason).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchTask {
    #[serde(deserialize_with = "super::lenient::u32")]
    pub seq: u32,
    #[serde(deserialize_with = "super::lenient::string")]
    pub address: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub memo: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub amount: String,
    /// ccpayout puts the row's order_id here: the task's identity beside its seq.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub remark: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub record_id: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub order_id: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub status: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub network_fee: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub tx_id: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub reason: String,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "super::lenient::i64")]
    pub created_at: i64,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "super::lenient::i64")]
    pub updated_at: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Where a task is, read from CCPayment's spelling. The statuses are not enumerated by the
/// sources (the abort reply names `Successful` and `Processing`), so every plausible spelling of
/// an end is read, and anything else is not final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Paid.
    Succeeded,
    /// Not paid: failed or rejected (the amount stays with the merchant).
    Failed,
    /// Cancelled (aborted) before it ran: not paid.
    Canceled,
    /// Anything else: waiting, pending, processing, or a spelling not seen before.
    Open,
}

impl TaskStatus {
    /// Reads CCPayment's spelling.
    pub fn of(status: &str) -> TaskStatus {
        match status.to_ascii_lowercase().as_str() {
            "success" | "successful" | "succeeded" | "completed" => TaskStatus::Succeeded,
            "failed" | "failure" | "fail" | "rejected" => TaskStatus::Failed,
            "canceled" | "cancelled" | "aborted" => TaskStatus::Canceled,
            _ => TaskStatus::Open,
        }
    }

    /// Whether no further change is expected.
    pub fn is_final(self) -> bool {
        self != TaskStatus::Open
    }
}

/// `applyBatchWithdraw`: a batch of one coin on one chain, with 0–500 tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyBatchWithdrawRequest {
    pub batch_order_id: String,
    pub coin_id: u64,
    pub chain: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product_name: String,
    /// Optional (0–500 tasks; an empty batch is filled by `append`): absent reads as none.
    #[serde(default)]
    pub orders: Vec<BatchTask>,
    /// `Single` (one transaction per task) or `Batch` (many tasks in one transaction).
    pub mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notify_url: String,
}

/// The reply to `applyBatchWithdraw`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ApplyBatchWithdrawReply {
    #[serde(deserialize_with = "super::lenient::string")]
    pub batch_order_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub bill_id: String,
}

/// `appendBatchWithdraw`: 1–500 more tasks for a batch not yet confirmed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppendBatchWithdrawRequest {
    pub batch_order_id: String,
    pub orders: Vec<BatchTask>,
}

/// `confirmBatchWithdraw`: run the batch, after `delaySeconds` (0–3600).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmBatchWithdrawRequest {
    pub batch_order_id: String,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub delay_seconds: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// `abortBatchWithdraw`: cancel the listed tasks (none listed: the whole batch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortBatchWithdrawRequest {
    pub batch_order_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seqs: Vec<u32>,
}

/// The reply to `abortBatchWithdraw`: which tasks were cancelled, and which were not because
/// they had already run or been handed to the fund service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AbortBatchWithdrawReply {
    #[serde(deserialize_with = "super::lenient::string")]
    pub batch_order_id: String,
    #[serde(deserialize_with = "super::lenient::u32_list")]
    pub canceled_seqs: Vec<u32>,
    #[serde(deserialize_with = "super::lenient::u32_list")]
    pub ignored_seqs: Vec<u32>,
}

/// `getBatchWithdrawOrder`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchOrderQuery {
    pub batch_order_id: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub verbose: u32,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// A coin as the batch replies name it (snake_case, unlike the rest of v2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchCoin {
    #[serde(deserialize_with = "super::lenient::u64")]
    pub coin_id: u64,
    #[serde(deserialize_with = "super::lenient::string")]
    pub coin_symbol: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub coin_price: String,
}

/// A batch's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchStats {
    #[serde(deserialize_with = "super::lenient::i64")]
    pub total: i64,
    #[serde(deserialize_with = "super::lenient::i64")]
    pub succeeded: i64,
    #[serde(deserialize_with = "super::lenient::i64")]
    pub failed: i64,
    #[serde(deserialize_with = "super::lenient::i64")]
    pub canceled: i64,
    #[serde(deserialize_with = "super::lenient::i64")]
    pub processing: i64,
    #[serde(deserialize_with = "super::lenient::u32")]
    pub exec_seq: u32,
}

/// A batch withdrawal, as `getBatchWithdrawOrder` and `confirmBatchWithdraw` return it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchWithdrawOrder {
    #[serde(deserialize_with = "super::lenient::string")]
    pub batch_order_id: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub product_name: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub bill_id: String,
    pub coin: BatchCoin,
    #[serde(deserialize_with = "super::lenient::string")]
    pub amount: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee: String,
    pub network_fee_coin: BatchCoin,
    /// `Init`, `Reviewing`, `Rejected`, `Pending`, `Processing`, `Completed`.
    #[serde(deserialize_with = "super::lenient::string")]
    pub status: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "super::lenient::string"
    )]
    pub reason: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub mode: String,
    pub stats: BatchStats,
    #[serde(deserialize_with = "super::lenient::i64")]
    pub created_at: i64,
    #[serde(deserialize_with = "super::lenient::i64")]
    pub updated_at: i64,
}

/// `getBatchWithdrawOrderRecordList`: a page of a batch's tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecordListQuery {
    pub batch_order_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_id: String,
    /// Optional (at most 100); absent reads as 0, which CCPayment's default page size answers.
    #[serde(default)]
    pub limit: u64,
}

/// One page of a batch's tasks; an empty `nextId` is the last page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchRecordPage {
    #[serde(deserialize_with = "super::lenient::string")]
    pub next_id: String,
    #[serde(deserialize_with = "super::lenient::each")]
    pub records: Vec<BatchTask>,
}

// ---------------------------------------------------------------------------------------------
// Webhooks (v2)
// ---------------------------------------------------------------------------------------------

/// The v2 webhook body: `{"type":"ApiWithdrawal","msg":{...}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookEvent {
    #[serde(rename = "type")]
    #[serde(deserialize_with = "super::lenient::string")]
    pub kind: String,
    pub msg: WebhookWithdrawal,
}

/// The `msg` of an `ApiWithdrawal` webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookWithdrawal {
    #[serde(deserialize_with = "super::lenient::string")]
    pub record_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub order_id: String,
    #[serde(deserialize_with = "super::lenient::u64")]
    pub coin_id: u64,
    #[serde(deserialize_with = "super::lenient::string")]
    pub coin_symbol: String,
    pub status: RecordStatus,
}

// ---------------------------------------------------------------------------------------------
// v1
// ---------------------------------------------------------------------------------------------

/// v1 `POST /ccpayment/v1/withdraw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1WithdrawRequest {
    pub merchant_order_id: String,
    /// A chain address, or a Cwallet ID / e-mail for an internal payout.
    pub address: String,
    /// Selects coin and network.
    pub token_id: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_pays_fee: Option<bool>,
}

/// The reply to a v1 withdrawal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1WithdrawReceipt {
    #[serde(deserialize_with = "super::lenient::string")]
    pub order_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub record_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub net_receivable: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_coin_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee_crypto: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee_value: String,
}

/// v1 `POST /ccpayment/v1/bill/info`: at most 100 merchant order ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1BillInfoRequest {
    pub merchant_order_ids: Vec<String>,
}

/// The most order ids one v1 `bill/info` query may carry.
pub const V1_MAX_ORDER_IDS_PER_QUERY: usize = 100;

/// One v1 bill: the order and its trades (a withdrawal has exactly one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1Bill {
    pub order_detail: V1OrderDetail,
    pub trade_list: Vec<V1Trade>,
}

/// The order part of a v1 bill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1OrderDetail {
    #[serde(deserialize_with = "super::lenient::string")]
    pub merchant_order_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub chain: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub contract: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub crypto: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub order_amount: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub token_rate: String,
    /// `Pending`, `Processing`, `Successful` or `Failed`.
    #[serde(deserialize_with = "super::lenient::string")]
    pub status: String,
    #[serde(deserialize_with = "super::lenient::i64")]
    pub created: i64,
    #[serde(deserialize_with = "super::lenient::string")]
    pub order_id: String,
}

/// The trade part of a v1 bill.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1Trade {
    #[serde(deserialize_with = "super::lenient::string")]
    pub amount: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub chain: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub contract: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub crypto: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub service_fee: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_coin_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee_crypto: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee_value: String,
    /// Empty for internal (Cwallet) transfers.
    #[serde(deserialize_with = "super::lenient::string")]
    pub txid: String,
    #[serde(deserialize_with = "super::lenient::i64")]
    pub pay_time: i64,
    #[serde(deserialize_with = "super::lenient::string")]
    pub token_rate: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub status: String,
}

/// The v1 withdrawal webhook body (flat, snake_case).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1WithdrawWebhook {
    /// `success` or `failed`.
    #[serde(deserialize_with = "super::lenient::string")]
    pub pay_status: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub order_type: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub order_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub record_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub withdraw_amount: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub net_receivable: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee_crypto: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_coin_id: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub network_fee_value: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub chain: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub contract: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub crypto: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub to_address: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub memo: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub txid: String,
    #[serde(deserialize_with = "super::lenient::string")]
    pub merchant_order_id: String,
    #[serde(deserialize_with = "super::lenient::bool")]
    pub merchant_pays_fee: bool,
}

/// Maps a v1 bill status onto the v2 record status.
pub fn v1_status(status: &str) -> RecordStatus {
    match status {
        "Successful" | "Success" | "success" => RecordStatus::Success,
        "Failed" | "failed" => RecordStatus::Failed,
        "Pending" | "Processing" => RecordStatus::Processing,
        other => RecordStatus::Other(other.to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// v1 reads: tokens, networks, fees, balances, Cwallet users
//
// Everything a payout job of a v1-only account asks besides `withdraw` and `bill/info` (R15).
// v1 names coins and tokens by UUID strings, never by number: `coin_id` is the coin, `token_id`
// the coin on one network (the same UUID may serve as both), and `network_coin_id` names the
// coin a network's fee is paid in by one of these UUIDs (R8). Statuses and precisions are
// documented as integers; they are read from a number or a numeric string (R4).

/// The v1 status of a coin or token: 1 normal, 2 under maintenance (transfers suspended), 3 to
/// be delisted (the merchant can still withdraw it).
pub mod v1_status_code {
    pub const NORMAL: u32 = 1;
    pub const MAINTENANCE: u32 = 2;
    pub const TO_BE_DELISTED: u32 = 3;
}

/// A number or a numeric string, as v1 sends integers.
#[derive(Deserialize)]
#[serde(untagged)]
enum LenientU32 {
    Number(u32),
    Text(String),
}

/// Reads an optional integer sent as a number, a numeric string, `null` or not at all. Text that
/// is not a number reads as absent rather than failing the whole reply: a status or precision
/// we cannot read is treated as not given.
fn lenient_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(match Option::<LenientU32>::deserialize(d)? {
        Some(LenientU32::Number(n)) => Some(n),
        Some(LenientU32::Text(t)) => t.trim().parse().ok(),
        None => None,
    })
}

/// A coin of `/v1/coin/all` or `/v1/support/token`, with its tokens (one per network).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1Coin {
    pub symbol: String,
    pub crypto: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub logo: String,
    /// The minimum amount of one transaction, for every network of the coin.
    pub min: String,
    /// USD price.
    pub price: String,
    /// Decimal places, when the list gives them (the documented example does).
    #[serde(deserialize_with = "lenient_u32", skip_serializing_if = "Option::is_none")]
    pub precision: Option<u32>,
    /// The coin's UUID.
    pub coin_id: String,
    /// See [`v1_status_code`]; `None` when not given.
    #[serde(deserialize_with = "lenient_u32", skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    pub tokens: Vec<V1Token>,
}

/// The reply to `/v1/coin/all` and `/v1/support/token`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1CoinList {
    pub list: Vec<V1Coin>,
}

/// `/v1/token/chain`: the networks of the coin this token belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1TokenQuery {
    pub token_id: String,
}

/// A token: one coin on one network. In `/v1/coin/all` it comes without the fee fields;
/// `/v1/token/chain` adds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1Token {
    pub token_id: String,
    pub crypto: String,
    /// The chain's full name.
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub logo: String,
    pub is_support_memo: bool,
    /// The token standard (`TRC20`, `ERC20`).
    pub network: String,
    /// The chain's symbol (`TRX`, `POLYGON`).
    pub chain: String,
    pub contract: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub chain_logo: String,
    /// See [`v1_status_code`]; `None` when not given.
    #[serde(deserialize_with = "lenient_u32", skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// The symbol of the coin the network fee is paid in.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network_fee_crypto: String,
    /// The UUID of the coin (or of a token of the coin) the network fee is paid in. Never a
    /// number (R8).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network_coin_id: String,
}

/// The reply to `/v1/token/chain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1TokenList {
    pub list: Vec<V1Token>,
}

/// `/v1/network/fee`. With `address`, CCPayment tells an internal address (fee 0) apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1NetworkFeeQuery {
    pub token_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
}

/// The reply to `/v1/network/fee`: the fee of one withdrawal of the token, in `crypto`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1NetworkFee {
    pub token_id: String,
    pub crypto: String,
    pub fee: String,
}

/// `/v1/assets`: one coin's balance, or every balance without `coin_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1AssetsQuery {
    #[serde(default, alias = "token_id", skip_serializing_if = "Option::is_none")]
    pub coin_id: Option<String>,
}

/// A balance. Older documentation names the coin by `token_id` instead of `coin_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1Asset {
    #[serde(alias = "token_id")]
    pub coin_id: String,
    pub crypto: String,
    pub name: String,
    /// The balance; `""` means zero.
    pub value: String,
    /// USD price.
    pub price: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub logo: String,
}

/// The reply to `/v1/assets`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1AssetList {
    pub list: Vec<V1Asset>,
}

/// `/v1/check/user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1UserQuery {
    pub c_id: String,
}

/// The reply to `/v1/check/user`: the Cwallet ID and its masked nickname (one documentation
/// page spells it `nikename`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct V1CwalletUser {
    pub c_id: String,
    #[serde(alias = "nikename")]
    pub nickname: String,
}

// ---------------------------------------------------------------------------------------------
// The stored call and fee (crate::model) and their wire forms

impl From<&call::NetworkWithdrawal> for NetworkWithdrawRequest {
    fn from(c: &call::NetworkWithdrawal) -> Self {
        NetworkWithdrawRequest {
            order_id: c.order_id.clone(),
            coin_id: c.coin_id,
            chain: c.chain.clone(),
            address: c.address.clone(),
            memo: c.memo.clone(),
            amount: c.amount.clone(),
            merchant_pay_network_fee: c.merchant_pay_network_fee,
            network_fee_inquiry_id: c.network_fee_inquiry_id.clone(),
            notify_url: c.notify_url.clone(),
        }
    }
}

impl From<&call::CwalletTransfer> for CwalletWithdrawRequest {
    fn from(c: &call::CwalletTransfer) -> Self {
        CwalletWithdrawRequest {
            order_id: c.order_id.clone(),
            coin_id: c.coin_id,
            cwallet_user: c.cwallet_user.clone(),
            amount: c.amount.clone(),
        }
    }
}

impl From<&call::V1Withdrawal> for V1WithdrawRequest {
    fn from(c: &call::V1Withdrawal) -> Self {
        V1WithdrawRequest {
            merchant_order_id: c.merchant_order_id.clone(),
            address: c.address.clone(),
            token_id: c.token_id.clone(),
            value: c.value.clone(),
            memo: c.memo.clone(),
            merchant_pays_fee: c.merchant_pays_fee,
        }
    }
}

impl From<FeeAmount> for Fee {
    fn from(f: FeeAmount) -> Self {
        Fee {
            coin_id: f.coin_id,
            coin_symbol: f.coin_symbol,
            amount: f.amount,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_withdraw_leaves_out_absent_optionals_and_keeps_amount_a_string() {
        let req = NetworkWithdrawRequest {
            order_id: "payout-0001".into(),
            coin_id: 1280,
            chain: "POLYGON".into(),
            address: "0xBb9C4e7F3687aca1AE2828c18f9E3ae067F569FE".into(),
            memo: None,
            amount: "0.001".into(),
            merchant_pay_network_fee: None,
            network_fee_inquiry_id: None,
            notify_url: None,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"orderId":"payout-0001","coinId":1280,"chain":"POLYGON","address":"0xBb9C4e7F3687aca1AE2828c18f9E3ae067F569FE","amount":"0.001"}"#
        );
    }

    #[test]
    fn record_reads_the_documented_example_and_keeps_unknown_statuses() {
        let json = r#"{"record":{"recordId":"20240313120722176788","withdrawType":"Network","coinId":1280,
            "coinSymbol":"USDT","chain":"POLYGON","fromAddress":"0x1","toAddress":"0x2","orderId":"o1",
            "txId":"0xabc","status":"Success","amount":"1.5","fee":{"coinId":1329,"coinSymbol":"MATIC","amount":"0.02"},
            "someNewField":1}}"#;
        let data: WithdrawRecordData = serde_json::from_str(json).unwrap();
        assert_eq!(data.record.status, RecordStatus::Success);
        assert!(data.record.status.is_final());
        assert_eq!(data.record.fee.as_ref().map(|f| f.coin_id), Some(1329));

        let odd: RecordStatus = serde_json::from_str(r#""Queued""#).unwrap();
        assert_eq!(odd, RecordStatus::Other("Queued".into()));
        assert!(!odd.is_final());
        assert_eq!(serde_json::to_string(&odd).unwrap(), r#""Queued""#);
    }

    #[test]
    fn chain_tx_url_fills_the_template() {
        let chain = ChainInfo {
            base_url: "https://polygonscan.com/tx/%s".into(),
            ..ChainInfo::default()
        };
        assert_eq!(
            chain.tx_url("0xabc").as_deref(),
            Some("https://polygonscan.com/tx/0xabc")
        );
        assert_eq!(chain.tx_url(""), None);
    }

    #[test]
    fn v1_statuses_map_to_record_statuses() {
        assert_eq!(v1_status("Successful"), RecordStatus::Success);
        assert_eq!(v1_status("Failed"), RecordStatus::Failed);
        assert_eq!(v1_status("Pending"), RecordStatus::Processing);
        assert_eq!(v1_status("Weird"), RecordStatus::Other("Weird".into()));
    }

    #[test]
    fn the_documented_v1_token_list_reads_and_numbers_may_be_text() {
        // The documented `/v1/coin/all` example, with a status and precision sent as text.
        let json = r#"{"list":[{"symbol":"BTC","crypto":"BTC","name":"Bitcoin","logo":"https://x/btc.png",
            "min":"0.00008","price":"29196.27","precision":8,"coin_id":"f36ad1cf-222a-4933-9ad0-86df8069f916",
            "status":1,"tokens":[{"token_id":"0912e09a-d8e2-41d7-a0bc-a25530892988","crypto":"BTC","logo":"",
            "name":"Bitcoin","is_support_memo":false,"network":"BTC","chain":"BTC","contract":"BTC",
            "chain_logo":"","status":"2"}]},
            {"symbol":"USDT","coin_id":"c1","precision":"six","status":null,"tokens":[]}]}"#;
        let list: V1CoinList = serde_json::from_str(json).unwrap();
        let btc = &list.list[0];
        assert_eq!(
            (btc.precision, btc.status, btc.min.as_str()),
            (Some(8), Some(1), "0.00008")
        );
        assert_eq!(btc.tokens[0].status, Some(v1_status_code::MAINTENANCE));
        assert!(btc.tokens[0].network_coin_id.is_empty());
        assert_eq!((list.list[1].precision, list.list[1].status), (None, None));
    }

    #[test]
    fn v1_read_requests_and_replies_use_the_documented_names() {
        let fee = V1NetworkFeeQuery {
            token_id: "t".into(),
            address: None,
            memo: None,
        };
        assert_eq!(serde_json::to_string(&fee).unwrap(), r#"{"token_id":"t"}"#);
        assert_eq!(serde_json::to_string(&V1AssetsQuery::default()).unwrap(), "{}");
        // Older pages name a balance's coin `token_id`; one page spells the nickname `nikename`.
        let asset: V1Asset = serde_json::from_str(r#"{"token_id":"u","crypto":"USDT","value":"1.5"}"#).unwrap();
        assert_eq!((asset.coin_id.as_str(), asset.value.as_str()), ("u", "1.5"));
        let user: V1CwalletUser = serde_json::from_str(r#"{"c_id":"9454818","nikename":"alvin"}"#).unwrap();
        assert_eq!(user.nickname, "alvin");
        // A network's fee coin is a UUID string (R8).
        let token: V1Token = serde_json::from_str(
            r#"{"token_id":"a","chain":"POLYGON","network_fee_crypto":"USDT","network_coin_id":"217d4c3b-0000-0000-0000-000000000000"}"#,
        )
        .unwrap();
        assert_eq!(token.network_coin_id, "217d4c3b-0000-0000-0000-000000000000");
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        assert_eq!(serde_json::to_string(&Empty {}).unwrap(), "{}");
    }

    /// What is stored and what is sent are separate types; the conversion must send exactly
    /// the stored call, field for field, byte for byte.
    #[test]
    fn a_stored_call_is_sent_as_exactly_its_stored_form() {
        let network = call::NetworkWithdrawal {
            order_id: "o-1".into(),
            coin_id: 1280,
            chain: "TRX".into(),
            address: "TAddr".into(),
            memo: Some("m".into()),
            amount: "12.5".into(),
            merchant_pay_network_fee: Some(true),
            network_fee_inquiry_id: Some("q".into()),
            notify_url: Some("https://example.com/n".into()),
        };
        let wire = NetworkWithdrawRequest::from(&network);
        assert_eq!(
            serde_json::to_value(&wire).unwrap(),
            serde_json::to_value(&network).unwrap()
        );
        let cwallet = call::CwalletTransfer {
            order_id: "o-2".into(),
            coin_id: 1280,
            cwallet_user: "9558861".into(),
            amount: "3".into(),
        };
        let wire = CwalletWithdrawRequest::from(&cwallet);
        assert_eq!(
            serde_json::to_value(&wire).unwrap(),
            serde_json::to_value(&cwallet).unwrap()
        );
        let v1 = call::V1Withdrawal {
            merchant_order_id: "o-3".into(),
            address: "a".into(),
            token_id: "t".into(),
            value: "1.25".into(),
            memo: None,
            merchant_pays_fee: Some(false),
        };
        let wire = V1WithdrawRequest::from(&v1);
        assert_eq!(serde_json::to_value(&wire).unwrap(), serde_json::to_value(&v1).unwrap());
        let fee = Fee::from(FeeAmount {
            coin_id: 1280,
            coin_symbol: "USDT".into(),
            amount: "0.1".into(),
        });
        assert_eq!(
            (fee.coin_id, fee.coin_symbol.as_str(), fee.amount.as_str()),
            (1280, "USDT", "0.1")
        );
    }
}
