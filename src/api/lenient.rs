//! Tolerant decoding of CCPayment's replies (ccpayment-api.md §5, R4): every id, count and
//! amount field accepts a JSON number or a numeric string, every flag a boolean or its string,
//! and a list of records survives one record that does not decode.
//!
//! The v2 reference types `fee.coinId` as a String while its examples (and every SDK) show a
//! number; nothing says which other fields may vary the same way. A reply that cannot be read
//! stops a batch from ever finishing (its orders stay `submitted`), so the reader takes either
//! form everywhere and is strict only about meaning: an id that is neither a number nor a string
//! of digits is an error, and amounts keep their exact text.
//!
//! Amounts given as JSON numbers are read through serde_json's shortest round-trip text of the
//! number (`12.5`, `0.0213814`), which is the text sent for any amount of up to 15 significant
//! digits; the API's documented amounts are strings, so this is the fallback, not the rule.
//!
//! Pure. Used with `#[serde(deserialize_with = "…")]` on the reply types of [`super::types`].

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

/// An unsigned id or count from a number or a string of digits; an empty string or `null` is 0
/// (a field the reply left blank).
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(UnsignedVisitor)
}

/// Like [`u64()`], narrowed to `u32`.
pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u64(d)?;
    u32::try_from(n).map_err(|_| de::Error::custom(format!("{n} does not fit 32 bits")))
}

/// An optional count: absent, `null` or `""` is `None`.
pub fn option_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<Loose>::deserialize(d)? {
        None | Some(Loose::Empty) => Ok(None),
        Some(Loose::Text(s)) if s.trim().is_empty() => Ok(None),
        Some(loose) => loose
            .unsigned()
            .and_then(|n| u32::try_from(n).map_err(|_| format!("{n} does not fit 32 bits")))
            .map(Some)
            .map_err(de::Error::custom),
    }
}

/// A list of unsigned 32-bit numbers (seqs), each a number or a string of digits; `null` is empty.
pub fn u32_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    let values = Option::<Vec<Loose>>::deserialize(d)?.unwrap_or_default();
    values
        .into_iter()
        .map(|loose| {
            loose
                .unsigned()
                .and_then(|n| u32::try_from(n).map_err(|_| format!("{n} does not fit 32 bits")))
                .map_err(de::Error::custom)
        })
        .collect()
}

/// A list of signed numbers (codes), each a number or a numeric string; `null` is empty.
pub fn i64_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    let values = Option::<Vec<Loose>>::deserialize(d)?.unwrap_or_default();
    values
        .into_iter()
        .map(|loose| loose.signed().map_err(de::Error::custom))
        .collect()
}

/// A signed number (a timestamp, an envelope code) from a number or a numeric string.
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Loose::deserialize(d)?.signed().map_err(de::Error::custom)
}

/// A flag from a boolean, `"true"`/`"false"`, or 0/1 in either form.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Loose::deserialize(d)? {
        Loose::Bool(b) => Ok(b),
        Loose::Empty => Ok(false),
        Loose::Text(s) => match s.trim() {
            "true" | "TRUE" | "True" | "1" => Ok(true),
            "false" | "FALSE" | "False" | "0" | "" => Ok(false),
            other => Err(de::Error::custom(format!("expected a boolean, got {other:?}"))),
        },
        Loose::Number(n) => match n.as_u64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(de::Error::custom(format!("expected a boolean, got {n}"))),
        },
    }
}

/// Text (an amount, an id CCPayment may send as a number) from a string or a number; `null` is
/// the empty string. A number keeps its shortest round-trip text.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Text(s) => s,
        Loose::Number(n) => n.to_string(),
        Loose::Bool(b) => b.to_string(),
        Loose::Empty => String::new(),
    })
}

/// Every element of a list that decodes; one that does not is left out (and logged) rather
/// than failing the whole list, so one odd record never blocks the others of its page. An
/// order whose record was left out is simply not seen in this answer and is asked about again.
pub fn each<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let values = Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        match serde_json::from_value::<T>(value) {
            Ok(item) => out.push(item),
            Err(e) => tracing::warn!(
                error = %e,
                kind = std::any::type_name::<T>(),
                "an element of a CCPayment reply does not decode; left out"
            ),
        }
    }
    Ok(out)
}

/// A whole reply that is a list (v1 `bill/info`), read with [`each`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Each<T>(pub Vec<T>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Each<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Each<T>, D::Error> {
        each(d).map(Each)
    }
}

/// What a field held, before it is read as what the type wants.
#[derive(Debug)]
enum Loose {
    Number(serde_json::Number),
    Text(String),
    Bool(bool),
    /// `null`.
    Empty,
}

impl Loose {
    fn unsigned(self) -> Result<u64, String> {
        match self {
            Loose::Number(n) => n
                .as_u64()
                .ok_or_else(|| format!("expected an unsigned integer, got {n}")),
            Loose::Text(s) if s.trim().is_empty() => Ok(0),
            Loose::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("expected an unsigned integer, got {s:?}")),
            Loose::Bool(b) => Err(format!("expected an unsigned integer, got {b}")),
            Loose::Empty => Ok(0),
        }
    }

    fn signed(self) -> Result<i64, String> {
        match self {
            Loose::Number(n) => n.as_i64().ok_or_else(|| format!("expected an integer, got {n}")),
            Loose::Text(s) if s.trim().is_empty() => Ok(0),
            Loose::Text(s) => s.trim().parse().map_err(|_| format!("expected an integer, got {s:?}")),
            Loose::Bool(b) => Err(format!("expected an integer, got {b}")),
            Loose::Empty => Ok(0),
        }
    }
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Loose, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, a string or a boolean")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Loose, E> {
        Ok(Loose::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Loose, E> {
        Ok(Loose::Number(v.into()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Loose, E> {
        Ok(Loose::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Loose, E> {
        serde_json::Number::from_f64(v)
            .map(Loose::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose, E> {
        Ok(Loose::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Loose, E> {
        Ok(Loose::Text(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
        Ok(Loose::Empty)
    }

    fn visit_none<E: de::Error>(self) -> Result<Loose, E> {
        Ok(Loose::Empty)
    }
}

/// Reads an unsigned integer without going through [`Loose`] for the common case.
struct UnsignedVisitor;

impl<'de> Visitor<'de> for UnsignedVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an unsigned integer or a string of digits")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("expected an unsigned integer, got {v}")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        Err(E::custom(format!("expected an unsigned integer, got {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        if v.trim().is_empty() {
            return Ok(0);
        }
        v.trim()
            .parse()
            .map_err(|_| E::custom(format!("expected an unsigned integer, got {v:?}")))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<u64, E> {
        Err(E::custom(format!("expected an unsigned integer, got {v}")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<u64, E> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", default)]
    struct Sample {
        #[serde(deserialize_with = "super::u64")]
        coin_id: u64,
        #[serde(deserialize_with = "super::u32")]
        precision: u32,
        #[serde(deserialize_with = "super::option_u32")]
        confirmations: Option<u32>,
        #[serde(deserialize_with = "super::bool")]
        can_withdraw: bool,
        #[serde(deserialize_with = "super::string")]
        amount: String,
        #[serde(deserialize_with = "super::i64")]
        created: i64,
    }

    fn read(json: &str) -> Result<Sample, String> {
        // Through a Value, as the client decodes `data`.
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_and_numeric_strings_read_the_same() {
        let as_numbers = read(
            r#"{"coinId":1280,"precision":6,"confirmations":12,"canWithdraw":true,"amount":12.5,"created":1700000000}"#,
        )
        .unwrap();
        let as_strings = read(
            r#"{"coinId":"1280","precision":"6","confirmations":"12","canWithdraw":"true","amount":"12.5","created":"1700000000"}"#,
        )
        .unwrap();
        assert_eq!(as_numbers, as_strings);
        assert_eq!(
            (as_numbers.coin_id, as_numbers.precision, as_numbers.amount.as_str()),
            (1280, 6, "12.5")
        );
        assert_eq!(as_numbers.confirmations, Some(12));
    }

    #[test]
    fn blank_fields_read_as_empty_and_nonsense_is_an_error() {
        let blank = read(r#"{"coinId":"","confirmations":"","amount":null,"canWithdraw":""}"#).unwrap();
        assert_eq!(blank, Sample::default());
        assert!(read(r#"{"coinId":"12a"}"#).unwrap_err().contains("\"12a\""));
        assert!(read(r#"{"coinId":-3}"#).is_err());
        assert!(read(r#"{"coinId":1.5}"#).is_err());
        assert!(read(r#"{"canWithdraw":"maybe"}"#).is_err());
        assert!(read(r#"{"precision":5000000000}"#).is_err());
    }

    #[test]
    fn amounts_keep_their_text() {
        for (json, text) in [
            (r#""0.000001""#, "0.000001"),
            ("0.0213814", "0.0213814"),
            ("2500", "2500"),
        ] {
            let s = read(&format!(r#"{{"amount":{json}}}"#)).unwrap();
            assert_eq!(s.amount, text);
        }
    }

    #[derive(Debug, Deserialize)]
    struct Page {
        #[serde(deserialize_with = "super::each")]
        records: Vec<Sample>,
    }

    #[test]
    fn one_odd_element_does_not_block_the_rest() {
        let page: Page = serde_json::from_value(serde_json::json!({
            "records": [{"coinId": 1}, {"coinId": "not a number"}, {"coinId": "3"}]
        }))
        .unwrap();
        let ids: Vec<u64> = page.records.iter().map(|r| r.coin_id).collect();
        assert_eq!(ids, [1, 3]);
        let empty: Page = serde_json::from_value(serde_json::json!({"records": null})).unwrap();
        assert!(empty.records.is_empty());
    }
}
