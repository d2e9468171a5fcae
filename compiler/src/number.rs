//! Exact decimal numbers, parsed from their text.
//!
//! Money never passes through `f64`. This module owns the one routine that turns
//! text into a [`Decimal`]: it accepts plain decimals and scientific notation and
//! refuses, rather than rounds, any value the decimal type cannot hold exactly.

use rust_decimal::Decimal;

/// Largest mantissa a [`Decimal`] holds: 2^96 - 1.
const MAX_MANTISSA: u128 = (1u128 << 96) - 1;
/// Largest scale a [`Decimal`] holds.
const MAX_SCALE: i64 = 28;

/// Parses `text` as an exact decimal.
///
/// Accepts an optional sign, digits with an optional fraction, and an optional
/// exponent (`5E2`, `1.5e-3`). Returns `None` for anything else: empty text,
/// `NaN`, `inf`, hexadecimal, surrounding spaces, and every value that cannot be
/// held without rounding (more than 28 fractional digits that are not zeros, a
/// magnitude above 2^96 - 1).
///
/// ```
/// use capfence_compiler::number::parse_exact;
/// use rust_decimal::Decimal;
///
/// assert_eq!(parse_exact("500.00"), parse_exact("500"));
/// assert_eq!(parse_exact("5E2"), Some(Decimal::from(500)));
/// assert!(parse_exact("500.0000000000000001") > parse_exact("500"));
/// assert_eq!(parse_exact("10000.0000000000000000000000001"), None); // would round
/// assert_eq!(parse_exact("NaN"), None);
/// ```
pub fn parse_exact(text: &str) -> Option<Decimal> {
    let bytes = text.as_bytes();
    let (negative, rest) = match bytes.first()? {
        b'-' => (true, bytes.get(1..)?),
        b'+' => (false, bytes.get(1..)?),
        _ => (false, bytes),
    };
    // Split mantissa and exponent.
    let (mantissa, exponent) = match rest.iter().position(|b| *b == b'e' || *b == b'E') {
        Some(at) => (rest.get(..at)?, Some(rest.get(at + 1..)?)),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa.iter().position(|b| *b == b'.') {
        Some(at) => (mantissa.get(..at)?, mantissa.get(at + 1..)?),
        None => (mantissa, &[][..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.iter().chain(frac_part).all(u8::is_ascii_digit) {
        return None;
    }
    let mut exp: i64 = match exponent {
        None => 0,
        Some(e) => parse_exponent(e)?,
    };
    // Significant digits: integer part then fraction; the fraction shifts the exponent.
    exp = exp.checked_sub(i64::try_from(frac_part.len()).ok()?)?;
    let digits = int_part.iter().chain(frac_part).copied();
    // Drop leading zeros; count trailing zeros to fold them into the exponent.
    let significant: Vec<u8> = digits.skip_while(|d| *d == b'0').collect();
    let trailing = significant.iter().rev().take_while(|d| **d == b'0').count();
    let kept = significant
        .get(..significant.len() - trailing)
        .unwrap_or(&[]);
    if kept.is_empty() {
        return Some(Decimal::ZERO);
    }
    exp = exp.checked_add(i64::try_from(trailing).ok()?)?;
    // A mantissa of more than 29 significant digits never fits in 96 bits.
    if kept.len() > 29 {
        return None;
    }
    let mut value: u128 = 0;
    for d in kept {
        value = value * 10 + u128::from(d - b'0');
    }
    // Positive exponent: scale the mantissa up (checked); negative: it becomes the scale.
    while exp > 0 {
        value = value.checked_mul(10)?;
        if value > MAX_MANTISSA {
            return None;
        }
        exp -= 1;
    }
    if value > MAX_MANTISSA || -exp > MAX_SCALE {
        return None;
    }
    let scale = u32::try_from(-exp).ok()?;
    let signed = i128::try_from(value).ok()?;
    let signed = if negative { -signed } else { signed };
    Decimal::try_from_i128_with_scale(signed, scale).ok()
}

fn parse_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first()? {
        b'-' => (true, text.get(1..)?),
        b'+' => (false, text.get(1..)?),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Exponents beyond a few hundred can only overflow or underflow; cap the work.
    let mut value: i64 = 0;
    for d in digits {
        value = value.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
        if value > 10_000 {
            return None;
        }
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn equal_spellings_are_equal() {
        for text in [
            "500", "500.0", "500.00", "5E2", "5e+2", "0.5e3", "+500", "50000e-2",
        ] {
            assert_eq!(parse_exact(text), Some(d("500")), "{text}");
        }
    }

    #[test]
    fn small_steps_are_kept() {
        let above = parse_exact("500.0000000000000001").unwrap();
        assert!(above > d("500"));
        assert_eq!(
            parse_exact("0.0000000000000000000000000001")
                .unwrap()
                .scale(),
            28
        );
    }

    #[test]
    fn values_that_would_round_are_refused() {
        assert_eq!(parse_exact("10000.0000000000000000000000001"), None);
        assert_eq!(parse_exact("0.00000000000000000000000000001"), None);
        assert_eq!(parse_exact("79228162514264337593543950336"), None); // 2^96
        assert_eq!(parse_exact("1e29"), None);
        assert_eq!(parse_exact("1e-29"), None);
        assert_eq!(parse_exact("1e99999999999999999999"), None);
    }

    #[test]
    fn limits_are_accepted() {
        assert_eq!(
            parse_exact("79228162514264337593543950335"),
            Some(Decimal::MAX)
        );
        assert_eq!(
            parse_exact("-79228162514264337593543950335"),
            Some(Decimal::MIN)
        );
        assert_eq!(
            parse_exact("1e28"),
            Some(d("10000000000000000000000000000"))
        );
        assert_eq!(parse_exact("0e99999"), None); // exponent too large to bother with
        assert_eq!(parse_exact("0.000"), Some(Decimal::ZERO));
        assert_eq!(parse_exact("-0"), Some(Decimal::ZERO));
    }

    #[test]
    fn non_numbers_are_refused() {
        for text in [
            "", "-", "+", ".", "e5", "NaN", "nan", "inf", "-inf", ".inf", "1.2.3", " 1", "1 ",
            "0x10", "1_000", "1e", "1e+", "--1", "1,5", "true",
        ] {
            assert_eq!(parse_exact(text), None, "{text:?}");
        }
    }

    #[test]
    fn leading_and_trailing_dot_forms() {
        assert_eq!(parse_exact(".5"), Some(d("0.5")));
        assert_eq!(parse_exact("5."), Some(d("5")));
    }
}
