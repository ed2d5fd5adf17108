//! Request parsing: each endpoint's fields with their JSON types, and [`parse`], which checks
//! them before serde sees the body so a wrong type answers 11000 with a message naming the
//! field.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::reply::Refusal;

/// The JSON type a request field must have.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Str,
    U64,
    I64,
    Bool,
    StrList,
    U64List,
    /// An array of objects, each with these fields (a batch's tasks).
    ObjList(&'static [Field]),
}

impl Kind {
    fn accepts(self, v: &Value) -> bool {
        match self {
            Kind::Str => v.is_string(),
            Kind::U64 => v.is_u64(),
            Kind::I64 => v.is_i64() || v.is_u64() && v.as_i64().is_some(),
            Kind::Bool => v.is_boolean(),
            Kind::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            Kind::U64List => v.as_array().is_some_and(|a| a.iter().all(Value::is_u64)),
            Kind::ObjList(_) => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::U64 => "an unsigned integer",
            Kind::I64 => "an integer",
            Kind::Bool => "a boolean",
            Kind::StrList => "an array of strings",
            Kind::U64List => "an array of unsigned integers",
            Kind::ObjList(_) => "an array of objects",
        }
    }
}

/// (field name, type, required)
pub(super) type Field = (&'static str, Kind, bool);

pub(super) const NETWORK_FIELDS: &[Field] = &[
    ("orderId", Kind::Str, true),
    ("coinId", Kind::U64, true),
    ("chain", Kind::Str, true),
    ("address", Kind::Str, true),
    ("memo", Kind::Str, false),
    ("amount", Kind::Str, true),
    ("merchantPayNetworkFee", Kind::Bool, false),
    ("networkFeeInquiryID", Kind::Str, false),
    ("notifyUrl", Kind::Str, false),
];

pub(super) const CWALLET_FIELDS: &[Field] = &[
    ("orderId", Kind::Str, true),
    ("coinId", Kind::U64, true),
    ("cwalletUser", Kind::Str, true),
    ("amount", Kind::Str, true),
];

pub(super) const RECORD_FIELDS: &[Field] = &[("recordId", Kind::Str, false), ("orderId", Kind::Str, false)];

pub(super) const LIST_FIELDS: &[Field] = &[
    ("coinId", Kind::U64, false),
    ("orderIds", Kind::StrList, false),
    ("chain", Kind::Str, false),
    ("toAddress", Kind::Str, false),
    ("startAt", Kind::I64, false),
    ("endAt", Kind::I64, false),
    ("nextId", Kind::Str, false),
];

pub(super) const COIN_ID_FIELDS: &[Field] = &[("coinId", Kind::U64, true)];

pub(super) const PRICE_FIELDS: &[Field] = &[("coinIds", Kind::U64List, true)];

pub(super) const FEE_FIELDS: &[Field] = &[("coinId", Kind::U64, true), ("chain", Kind::Str, true)];

pub(super) const ADDRESS_FIELDS: &[Field] = &[("chain", Kind::Str, true), ("address", Kind::Str, true)];

pub(super) const CHECK_ADDRESS_FIELDS: &[Field] = &[
    ("chain", Kind::Str, true),
    ("addressInfoList", Kind::ObjList(&[]), true),
];

pub(super) const CWALLET_USER_FIELDS: &[Field] = &[("cwalletUserId", Kind::Str, true)];

pub(super) const CHAIN_LIST_FIELDS: &[Field] = &[("chains", Kind::StrList, false)];

pub(super) const V1_WITHDRAW_FIELDS: &[Field] = &[
    ("merchant_order_id", Kind::Str, true),
    ("address", Kind::Str, true),
    ("token_id", Kind::Str, true),
    ("value", Kind::Str, true),
    ("memo", Kind::Str, false),
    ("merchant_pays_fee", Kind::Bool, false),
];

pub(super) const V1_BILL_FIELDS: &[Field] = &[("merchant_order_ids", Kind::StrList, true)];

/// A task of `applyBatchWithdraw` and `appendBatchWithdraw` as the merchant sends it (what
/// CCPayment adds, recordId and the rest, is ignored if sent).
pub(super) const BATCH_TASK_FIELDS: &[Field] = &[
    ("seq", Kind::U64, true),
    ("address", Kind::Str, true),
    ("memo", Kind::Str, false),
    ("amount", Kind::Str, true),
    ("remark", Kind::Str, false),
];

pub(super) const APPLY_BATCH_FIELDS: &[Field] = &[
    ("batchOrderId", Kind::Str, true),
    ("coinId", Kind::U64, true),
    ("chain", Kind::Str, true),
    ("productName", Kind::Str, false),
    ("orders", Kind::ObjList(BATCH_TASK_FIELDS), false),
    ("mode", Kind::Str, true),
    ("notifyUrl", Kind::Str, false),
];

pub(super) const APPEND_BATCH_FIELDS: &[Field] = &[
    ("batchOrderId", Kind::Str, true),
    ("orders", Kind::ObjList(BATCH_TASK_FIELDS), true),
];

pub(super) const CONFIRM_BATCH_FIELDS: &[Field] =
    &[("batchOrderId", Kind::Str, true), ("delaySeconds", Kind::I64, false)];

pub(super) const ABORT_BATCH_FIELDS: &[Field] = &[("batchOrderId", Kind::Str, true), ("seqs", Kind::U64List, false)];

pub(super) const BATCH_ORDER_FIELDS: &[Field] = &[("batchOrderId", Kind::Str, true), ("verbose", Kind::U64, false)];

pub(super) const BATCH_RECORDS_FIELDS: &[Field] = &[
    ("batchOrderId", Kind::Str, true),
    ("nextId", Kind::Str, false),
    ("limit", Kind::U64, false),
];

/// Parses a request body into its wire type. An empty body is `{}`. Field types are checked
/// against `fields` first, so a wrong type answers 11000 with a message naming the field
/// (serde's own messages do not name it). Optional fields sent as `null` count as absent.
pub(super) fn parse<T: DeserializeOwned>(body: &[u8], fields: &[Field]) -> Result<T, Refusal> {
    let mut value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| Refusal::invalid(format!("the body is not valid JSON: {e}")))?
    };
    let Some(object) = value.as_object_mut() else {
        return Err(Refusal::invalid("the body must be a JSON object"));
    };
    check_fields(object, fields, "")?;
    serde_json::from_value(value).map_err(|e| Refusal::invalid(e.to_string()))
}

/// Checks (and drops the `null`s of) the fields of one object; `prefix` names where it sits
/// (`orders[2].` for a task), so a message names the very field.
fn check_fields(object: &mut serde_json::Map<String, Value>, fields: &[Field], prefix: &str) -> Result<(), Refusal> {
    for &(name, kind, required) in fields {
        match object.get_mut(name) {
            None | Some(Value::Null) => {
                if required {
                    return Err(Refusal::invalid(format!("{prefix}{name} is required")));
                }
                object.remove(name);
            }
            Some(v) if !kind.accepts(v) => {
                return Err(Refusal::invalid(format!("{prefix}{name} must be {}", kind.expected())));
            }
            Some(v) => {
                if let (Kind::ObjList(item_fields), Some(items)) = (kind, v.as_array_mut()) {
                    for (i, item) in items.iter_mut().enumerate() {
                        if let Some(item) = item.as_object_mut() {
                            check_fields(item, item_fields, &format!("{prefix}{name}[{i}]."))?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::api::types::method;
    use crate::sandbox::world::Route;
    use crate::sandbox::world::testkit::*;

    #[test]
    fn invalid_argument_messages_name_the_field() {
        let mut w = world();
        let mut body = net("order-1", 1280, "TRX", TRX_ADDR, "10");
        body["coinId"] = "1280".into();
        let (_, reply) = create(&mut w, body);
        assert_eq!(reply["msg"], "coinId must be an unsigned integer");
        let (_, reply) = create(&mut w, serde_json::json!({"orderId": "abc"}));
        assert_eq!(reply["msg"], "coinId is required");
        let handled = w.handle(Route::V2(method::APPLY_APP_WITHDRAW_TO_NETWORK), b"{not json", T0);
        assert_eq!(handled.code, 11000);
        let handled = w.handle(Route::V2(method::GET_COIN_LIST), b"", T0);
        assert_eq!(handled.code, 10000, "an empty body is {{}}");
        let handled = w.handle(Route::V2(method::GET_COIN_LIST), b"[1]", T0);
        assert_eq!(handled.code, 11000);
    }
}
