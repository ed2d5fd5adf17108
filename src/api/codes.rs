//! Every documented CCPayment result code, what it means, and what ccpayout does about it.
//!
//! The engine decides on [`ErrorClass`], never on the `msg` text (CCPayment writes both
//! `success` and `Success`, and free text is not a contract). Codes we do not know keep their
//! number and message and are classed [`ErrorClass::Unknown`], which is never taken for success.
//!
//! Sources: the official v2 error table (ccpayment-api.md §2.9, seeds/002), the newer proto
//! list (S2), and for v1 the codes its documentation shows (§1.1, see [`V1_CODES`]). This
//! module does no I/O.

use std::fmt;

/// The success code of every CCPayment reply.
pub const SUCCESS: i64 = 10000;

/// What the caller should do about an error code. One variant per decision the engine makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// A transient server-side problem: try again later with backoff. For a withdrawal the
    /// order is ambiguous first and is reconciled by orderId before any resend.
    RetryLater,
    /// 11004: too many requests; every sender backs off.
    RateLimited,
    /// 11009: the daily request cap is reached; submission pauses until the daily reset.
    DailyLimit,
    /// 11007/11011: the orderId is already known to CCPayment; reconcile by querying it.
    DuplicateReconcile,
    /// 11003: the record does not exist (for an orderId query: it was never created).
    NotFound,
    /// 11006: the request timestamp was outside the window; check the machine's clock.
    Clock,
    /// The request itself is wrong (bad argument, coin, chain, address, amount): it will never
    /// succeed as it is, and the order is rejected with the reason.
    Permanent,
    /// The account or its balance needs a person: credentials, IP whitelist, verification,
    /// top-up, unpaid fees. Retrying without that action is pointless.
    OperatorAction,
    /// A code we have no entry for. Kept with its message, never taken for success, and treated
    /// as ambiguous for withdrawals.
    Unknown,
}

impl ErrorClass {
    /// The stable snake_case name used in reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RetryLater => "retry_later",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::DailyLimit => "daily_limit",
            ErrorClass::DuplicateReconcile => "duplicate_reconcile",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Clock => "clock",
            ErrorClass::Permanent => "permanent",
            ErrorClass::OperatorAction => "operator_action",
            ErrorClass::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// The numeric code.
    pub code: i64,
    /// CCPayment's name for it (`VerifySignFailed`).
    pub name: &'static str,
    /// What it means, in our words.
    pub meaning: &'static str,
    /// What ccpayout does about it.
    pub class: ErrorClass,
    /// What an operator should check, when there is something to check.
    pub hint: Option<&'static str>,
}

use ErrorClass::*;

macro_rules! codes {
    ($( $code:literal $name:literal $class:ident $meaning:literal $(hint $hint:literal)? ;)*) => {
        /// The table of known codes, sorted by code.
        pub const CODES: &[CodeInfo] = &[
            $( CodeInfo { code: $code, name: $name, meaning: $meaning, class: $class, hint: codes!(@hint $($hint)?) }, )*
        ];
    };
    (@hint) => { None };
    (@hint $hint:literal) => { Some($hint) };
}

codes! {
    10001 "Failed" Unknown "generic failure, the message says why"
        hint "read the msg text; for a withdrawal ccpayout queries the order before doing anything else";
    11000 "InvalidArgument" Permanent "a request parameter is invalid";
    11001 "HeaderInvalidArgument" Permanent "a request header (Appid, Timestamp or Sign) is missing or malformed"
        hint "check that the app id is set and the Timestamp header is 10-digit seconds";
    11002 "Internal" RetryLater "CCPayment had an internal problem; try again later";
    11003 "NotFound" NotFound "the requested record does not exist";
    11004 "RateLimit" RateLimited "too many requests; the rate limit was reached"
        hint "lower [limits] rate in the config, or ask the CCPayment account manager for a higher limit";
    11005 "VerifySignFailed" OperatorAction "the request signature did not verify"
        hint "check the app secret (CCPAYOUT_APP_SECRET or the secret file) belongs to this app id, and that the body is sent byte for byte as signed (no re-formatting by a proxy)";
    11006 "ReqExpired" Clock "the request timestamp is outside the 2-minute window"
        hint "check this machine's clock: run `timedatectl` and make sure NTP is synchronised";
    11007 "RepeatedSubmit" DuplicateReconcile "the same request was submitted repeatedly"
        hint "ccpayout queries the order by its orderId to learn what happened";
    11008 "QueryDurationTooMax" Permanent "the query time range is too large";
    11009 "ReqDailyLimit" DailyLimit "the daily request limit was reached"
        hint "submission resumes after the daily reset; ask the CCPayment account manager to raise the cap";
    11010 "QueryNumMax" Permanent "too many ids in one query";
    11011 "OrderDuplicate" DuplicateReconcile "this orderId was already used"
        hint "ccpayout queries the order by its orderId to learn what happened";
    11012 "ExpiredAtTooMax" Permanent "the validity period is longer than 10 days";
    11013 "NoSupportVersion" OperatorAction "this account can only use the v1 API"
        hint "set api.version = \"v1\" in the config and give rows a token_id";
    11014 "MaliciousReq" OperatorAction "this IP address has been banned for malicious requests"
        hint "contact CCPayment support; check that the app id is right";
    11015 "UserIdNotFound" Permanent "the user id does not exist";
    11016 "NotOnlineDeposit" Permanent "online deposit is not enabled";
    11017 "CwalletClosed" Permanent "the Cwallet account is closed";
    11018 "FrequentOperation" RetryLater "operation too frequent; try again shortly";
    12000 "MerchantDisabled" OperatorAction "the merchant account is disabled"
        hint "contact CCPayment support";
    12001 "MerchantNotFound" OperatorAction "no merchant has this app id"
        hint "check the app id (CCPAYOUT_APP_ID) against the developer page of the dashboard";
    12002 "IpNotInWhitelist" OperatorAction "this machine's IP address is not on the app's IP whitelist"
        hint "add this server's public egress IP to the IP whitelist on the developer page";
    12003 "MerchantApiDisabled" OperatorAction "API access is disabled until the website is verified"
        hint "complete website verification on the dashboard";
    13000 "InvalidCoin" Permanent "the coin is not supported";
    13001 "InvalidChain" Permanent "the chain is not supported for this coin";
    13002 "AbnormalCoinPrice" RetryLater "the coin price is abnormal right now";
    13003 "AbnormalCoinPriceNotSupportMode" Permanent "the coin price is abnormal; only merchant-pays-fee withdrawals are possible"
        hint "set merchant_pays_fee = true for this coin";
    13004 "UnstableBlockchain" RetryLater "the blockchain is unstable; withdrawals are paused, try later";
    13005 "AbnormalCoinStatus" RetryLater "trading of this coin is halted";
    13006 "CoinStopSwap" Permanent "swapping this coin is stopped";
    14000 "BalanceInsufficient" OperatorAction "the balance is not enough for this withdrawal"
        hint "top up the coin's balance on the dashboard, then resume";
    14001 "WithdrawFeeTooLow" RetryLater "the quoted network fee is too low; quote it again";
    14002 "AddressNotActive" Permanent "the receiving address is invalid or inactive";
    14003 "AddressEmptyMemo" Permanent "this chain needs a memo and none was given";
    14004 "ChainStopWithdraw" RetryLater "withdrawals on this chain are suspended for now";
    14005 "WithdrawValueLessThanLimit" Permanent "the amount is below the minimum withdrawal";
    14006 "WithdrawValueMoreThanLimit" Permanent "the amount is above the maximum withdrawal";
    14007 "WithdrawAddrFormat" Permanent "the address format is wrong";
    14008 "WithdrawCannotSelf" Permanent "cannot withdraw to the merchant's own CCPayment address";
    14009 "CoinNoSupportMemo" Permanent "this coin does not take a memo";
    14010 "NoSupportCoin" OperatorAction "the coin is not enabled for this merchant"
        hint "enable the coin under \"Tokens for your business\" on the dashboard";
    14011 "WithdrawFeeBalanceNotEnough" OperatorAction "not enough of the chain's native coin to pay the network fee"
        hint "top up the native coin of the chain (for example MATIC on POLYGON, TRX on TRX)";
    14012 "NotSupportMerchantTransfer" Permanent "transfers by merchant account id only work between main and sub-accounts";
    14013 "CoinPrecisionLimit" Permanent "the amount has more decimals than the coin allows on this chain";
    14014 "NotFinishCollection" OperatorAction "unpaid asset aggregation fees block withdrawals"
        hint "pay the outstanding aggregation fees shown on the dashboard";
    14015 "WithdrawToContractAddress" Permanent "cannot withdraw to a contract address";
    14016 "WithdrawInvalidAddressType" Permanent "the address type is not supported";
    14017 "AddressInBlackList" Permanent "the address is blacklisted";
    14018 "DisabledWithdraw" OperatorAction "withdrawals are disabled for this account"
        hint "check the withdrawal settings on the dashboard";
    14019 "WithdrawAmountFeeTooLittle" Permanent "the amount minus the network fee is below the minimum allowed amount";
    14020 "NotWhitelistDisabledWithdraw" OperatorAction "withdrawals to addresses off the whitelist are disabled"
        hint "add the address to the withdrawal whitelist on the dashboard";
    14021 "NotWhitelistDisabledSwap" Permanent "swaps to addresses off the whitelist are disabled";
    14022 "TestModeLimitAmount" Permanent "test mode limits the amount";
    14023 "TestModeSingleLimitAmount" Permanent "test mode limits the amount of a single withdrawal";
    14024 "AddressFormatErr" Permanent "the address format is wrong";
    14025 "AddressMemoFormatErr" Permanent "the memo format is wrong";
    14026 "RiskAddress" Permanent "the address is flagged as risky";
    14027 "SeqDuplicate" DuplicateReconcile "a batch sequence number is repeated";
    14028 "UnableAbort" Permanent "the batch can no longer be aborted";
    14029 "AddressBlackList" Permanent "the address is blacklisted";
    15000 "GenerateAddressFailed" RetryLater "generating an address failed; try again";
    15001 "PaymentAddressNumTooMuch" Permanent "the deposit address limit is reached";
    15002 "OrderExpired" Permanent "the order has expired";
    15003 "ChainStopDeposit" RetryLater "deposits on this chain are suspended";
    15004 "OrderUrlExpired" Permanent "the order URL has expired";
    // The v1 API answers with 6-digit codes and its error table is not public (ccpayment-api.md
    // §1.1, R9). What the v1 pages and changelog show is named here; none of it is classed
    // anything a create could be wrong about: see `V1_CODES`.
    100804 "V1Unpublished100804" Unknown "a v1 code CCPayment added on 2023-09-06; its meaning is not published"
        hint "read the msg text; for a withdrawal ccpayout looks the order up by its merchant_order_id before doing anything else";
    224066 "V1ServiceErr" Unknown "the v1 service failed (\"service err, please try again\"); try again later"
        hint "ccpayout asks again later; for a withdrawal it first looks the order up by its merchant_order_id, since the failure may have come after the order was taken";
    225110 "V1Unpublished225110" Unknown "a v1 code CCPayment added on 2023-09-06; its meaning is not published"
        hint "read the msg text; for a withdrawal ccpayout looks the order up by its merchant_order_id before doing anything else";
}

/// The documented v1 codes (ccpayment-api.md §1.1: the network-fee page's error example and the
/// 2023-09-06 changelog entry). Their class is [`ErrorClass::Unknown`] on purpose:
///
/// - 224066 says "try again", which a read may do at once (the preflight retries it), but on a
///   `withdraw` a generic service error may come after the order was taken, like 11002; the
///   engine resolves an `Unknown` answer by looking the order up before any resend, which is
///   what a retry of a withdrawal must do, and v1 may not refuse a reused `merchant_order_id`
///   (R3). (The engine treats only 11002 of the `RetryLater` class as ambiguous.)
/// - 100804 and 225110 were announced without a meaning in any source we have; a create that
///   meets one is ambiguous until a lookup says otherwise, never success or failure (R9).
pub const V1_CODES: &[i64] = &[100804, 224066, 225110];

/// Codes a read may simply ask again after a pause: the server said "try again" and a read
/// changes nothing. Creates never use this: their answers go through the engine's outcome.
pub fn read_retryable(code: i64) -> bool {
    matches!(code, 11002 | 11004 | 11018 | 224066)
}

/// The table entry for `code`, if it is documented.
pub fn lookup(code: i64) -> Option<&'static CodeInfo> {
    CODES.binary_search_by_key(&code, |c| c.code).ok().map(|i| &CODES[i])
}

/// The class of `code`. Undocumented codes are [`ErrorClass::Unknown`], except that the
/// account-state range 12xxx always needs an operator.
pub fn classify(code: i64) -> ErrorClass {
    match lookup(code) {
        Some(info) => info.class,
        None if (12000..13000).contains(&code) => OperatorAction,
        None => Unknown,
    }
}

/// CCPayment's name for `code`, or `"unknown"`.
pub fn name(code: i64) -> &'static str {
    lookup(code).map_or("unknown", |c| c.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique_so_lookup_works() {
        for pair in CODES.windows(2) {
            assert!(pair[0].code < pair[1].code, "{} before {}", pair[0].code, pair[1].code);
        }
        for info in CODES {
            assert_eq!(lookup(info.code).map(|c| c.code), Some(info.code));
        }
    }

    #[test]
    fn the_engine_classes_of_the_issue_hold() {
        let expect = [
            (11002, RetryLater),
            (13004, RetryLater),
            (14004, RetryLater),
            (11018, RetryLater),
            (11004, RateLimited),
            (11009, DailyLimit),
            (11007, DuplicateReconcile),
            (11011, DuplicateReconcile),
            (11003, NotFound),
            (11006, Clock),
            (11000, Permanent),
            (14013, Permanent),
            (14007, Permanent),
            (12000, OperatorAction),
            (12001, OperatorAction),
            (12002, OperatorAction),
            (12003, OperatorAction),
            (12999, OperatorAction),
            (14000, OperatorAction),
            (14011, OperatorAction),
            (14014, OperatorAction),
            (11005, OperatorAction),
            (10001, Unknown),
            (99999, Unknown),
            (224066, Unknown),
        ];
        for (code, class) in expect {
            assert_eq!(classify(code), class, "code {code}");
        }
    }

    #[test]
    fn documented_v1_codes_are_named_and_never_success_or_failure() {
        for &code in V1_CODES {
            let info = lookup(code).expect("named");
            assert!(info.name.starts_with("V1"), "{code}");
            assert!(info.hint.is_some(), "{code}");
            // An answer that may have created a withdrawal is resolved by a lookup.
            assert_eq!(classify(code), Unknown, "{code}");
        }
        assert_eq!(name(224066), "V1ServiceErr");
        // "please try again": a read asks again; a create goes through the engine's lookup.
        assert!(read_retryable(224066));
        assert!(!read_retryable(100804) && !read_retryable(225110));
        for code in [11002, 11004, 11018] {
            assert!(read_retryable(code), "{code}");
        }
        assert!(!read_retryable(11005));
        // Undocumented 6-digit codes stay unknown.
        assert_eq!(classify(224067), Unknown);
        assert_eq!(name(224067), "unknown");
    }

    #[test]
    fn success_is_not_in_the_error_table() {
        assert!(lookup(SUCCESS).is_none());
        assert_eq!(classify(SUCCESS), Unknown);
    }

    #[test]
    fn operator_codes_named_in_the_issue_carry_a_hint() {
        for code in [11005, 11006, 12002, 14000, 14011, 14014] {
            assert!(lookup(code).and_then(|c| c.hint).is_some(), "code {code}");
        }
    }
}
