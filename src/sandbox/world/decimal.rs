//! Exact decimals: the plain grammar amounts must follow, reading catalogue values and writing
//! amounts the way CCPayment does (no trailing zeros).

use rust_decimal::Decimal;

use super::reply::Refusal;

/// An amount as the sandbox writes it: exact, without trailing zeros.
pub(super) fn fmt_decimal(d: Decimal) -> String {
    d.normalize().to_string()
}

/// A catalogue value; the catalogue's tests prove these all parse.
pub(super) fn catalogue_decimal(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap_or_default()
}

/// `^[0-9]+(\.[0-9]+)?$` as an exact decimal, or `None`.
pub(super) fn parse_plain_decimal(s: &str) -> Option<Decimal> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    Decimal::from_str_exact(s).ok()
}

/// An amount: plain decimal grammar and strictly positive, else 11000 naming the field.
pub(super) fn parse_amount(s: &str, field: &str) -> Result<Decimal, Refusal> {
    let value = parse_plain_decimal(s)
        .ok_or_else(|| Refusal::invalid(format!("{field} must be a plain positive decimal string")))?;
    if value.is_zero() {
        return Err(Refusal::invalid(format!("{field} must be greater than 0")));
    }
    Ok(value)
}
