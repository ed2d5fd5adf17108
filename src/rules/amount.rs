//! Exact payout amounts, read from strings by a strict grammar.
//!
//! An amount is written as digits, optionally followed by `.` and digits: `25`, `0.5`, `1200.75`.
//! No sign, exponent, spaces, thousands separators, leading or trailing `.`. It is parsed into a
//! [`rust_decimal::Decimal`] with `from_str_exact` — never through a float — and its **canonical
//! string** (no leading zeros, no trailing fractional zeros) is what is stored and sent to the
//! API, so `"007.50"` in a file is sent as `"7.5"`.
//!
//! This module does no I/O.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// Most digits before the point. 20 digits is far beyond any balance and well inside Decimal's
/// 96-bit mantissa together with [`MAX_FRACTION_DIGITS`].
pub const MAX_INTEGER_DIGITS: usize = 20;
/// Most digits after the point (the largest precision any chain uses is 18).
pub const MAX_FRACTION_DIGITS: usize = 18;

/// A positive, exact amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

/// Why a string is not an amount. Messages are lowercase and do not quote the input (the caller
/// does, with file, line and field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount has a sign; write it without + or -")]
    Sign,
    #[error("amount has an exponent; write it out in plain digits")]
    Exponent,
    #[error("amount contains a space")]
    Space,
    #[error("amount uses a thousands separator or a comma; use only digits and one `.`")]
    Separator,
    #[error("amount has more than one `.`")]
    SeveralPoints,
    #[error("amount needs digits on both sides of the `.`")]
    BarePoint,
    #[error("amount contains {0:?}; only digits and one `.` are allowed")]
    BadCharacter(char),
    #[error("amount has more than {MAX_INTEGER_DIGITS} digits before the `.`")]
    TooManyIntegerDigits,
    #[error("amount has more than {MAX_FRACTION_DIGITS} digits after the `.`")]
    TooManyFractionDigits,
    #[error("amount must be greater than zero")]
    Zero,
}

impl Amount {
    /// Parses an amount by the strict grammar.
    pub fn parse(text: &str) -> Result<Amount, AmountError> {
        check_grammar(text)?;
        // The grammar guarantees a plain decimal within Decimal's range, so this cannot fail;
        // map the impossible error rather than panic.
        let value = Decimal::from_str_exact(text).map_err(|_| AmountError::TooManyIntegerDigits)?;
        if value.is_zero() {
            return Err(AmountError::Zero);
        }
        Ok(Amount(value.normalize()))
    }

    /// The value.
    pub fn value(self) -> Decimal {
        self.0
    }

    /// Significant decimal places: `1.50` has 1.
    pub fn scale(self) -> u32 {
        self.0.scale()
    }

    /// The canonical string: what is stored and sent.
    pub fn canonical(self) -> String {
        self.0.to_string()
    }

    /// An amount from a decimal computed elsewhere (a sum of amounts); `None` unless positive.
    pub fn from_decimal(value: Decimal) -> Option<Amount> {
        (value > Decimal::ZERO).then(|| Amount(value.normalize()))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse(s)
    }
}

/// Parses a decimal string from the API (a fee, a balance, a limit), where the API's own
/// conventions apply: `""` means zero. Not for amounts from a batch file.
pub fn parse_api_decimal(text: &str) -> Option<Decimal> {
    if text.is_empty() {
        return Some(Decimal::ZERO);
    }
    check_grammar(text).ok()?;
    Decimal::from_str_exact(text).ok().map(|d| d.normalize())
}

/// Formats a decimal the way amounts are written: plain digits, no trailing zeros.
pub fn plain(value: Decimal) -> String {
    value.normalize().to_string()
}

fn check_grammar(text: &str) -> Result<(), AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    // Name the most likely mistake first: a sign, an exponent, a space, a separator.
    let mut points = 0;
    for c in text.chars() {
        match c {
            '0'..='9' => {}
            '.' => points += 1,
            '+' | '-' => return Err(AmountError::Sign),
            'e' | 'E' => return Err(AmountError::Exponent),
            c if c.is_whitespace() => return Err(AmountError::Space),
            ',' | '\'' | '_' | '\u{a0}' | '\u{202f}' => return Err(AmountError::Separator),
            other => return Err(AmountError::BadCharacter(other)),
        }
    }
    if points > 1 {
        return Err(AmountError::SeveralPoints);
    }
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (text, None),
    };
    if int.is_empty() || frac.is_some_and(str::is_empty) {
        return Err(AmountError::BarePoint);
    }
    if int.trim_start_matches('0').len() > MAX_INTEGER_DIGITS {
        return Err(AmountError::TooManyIntegerDigits);
    }
    if frac.is_some_and(|f| f.len() > MAX_FRACTION_DIGITS) {
        return Err(AmountError::TooManyFractionDigits);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_strings() {
        for (input, canonical) in [
            ("25", "25"),
            ("0.5", "0.5"),
            ("007.50", "7.5"),
            ("1.000", "1"),
            ("1200.75", "1200.75"),
            ("0.000000000000000001", "0.000000000000000001"),
            ("99999999999999999999.999999", "99999999999999999999.999999"),
        ] {
            assert_eq!(
                Amount::parse(input).map(Amount::canonical),
                Ok(canonical.to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn grammar_violations_are_named() {
        use AmountError::*;
        for (input, error) in [
            ("", Empty),
            ("-1", Sign),
            ("+1", Sign),
            ("1e5", Exponent),
            ("1E5", Exponent),
            (" 1", Space),
            ("1 000", Space),
            ("1\t", Space),
            ("1,000", Separator),
            ("1,5", Separator),
            ("1'000", Separator),
            ("1_000", Separator),
            ("1.2.3", SeveralPoints),
            (".5", BarePoint),
            ("5.", BarePoint),
            (".", BarePoint),
            ("0x10", BadCharacter('x')),
            ("NaN", BadCharacter('N')),
            ("١٢", BadCharacter('١')),
            ("$5", BadCharacter('$')),
            ("123456789012345678901", TooManyIntegerDigits),
            ("1.1234567890123456789", TooManyFractionDigits),
            ("0", Zero),
            ("0.000", Zero),
            ("000", Zero),
        ] {
            assert_eq!(Amount::parse(input), Err(error), "{input:?}");
        }
    }

    #[test]
    fn scale_counts_significant_decimals() {
        assert_eq!(Amount::parse("1.50").unwrap().scale(), 1);
        assert_eq!(Amount::parse("100").unwrap().scale(), 0);
        assert_eq!(Amount::parse("0.000001").unwrap().scale(), 6);
    }

    #[test]
    fn api_decimals_accept_empty_as_zero() {
        assert_eq!(parse_api_decimal(""), Some(Decimal::ZERO));
        assert_eq!(parse_api_decimal("0.0213814").map(plain).as_deref(), Some("0.0213814"));
        assert_eq!(parse_api_decimal("1e3"), None);
    }

    #[test]
    fn ordering_is_by_value() {
        assert!(Amount::parse("10").unwrap() > Amount::parse("9.99").unwrap());
        assert_eq!(Amount::parse("1.0").unwrap(), Amount::parse("1").unwrap());
    }
}
