//! Amounts as Beckn writes them (`"1499.50"`), from decimal strings or minor units (paise,
//! cents), and back. Exact: done on digits and integers, never through `f64`.

use super::HelperError;

/// Most digits an amount may have; keeps every value inside `i128`.
const MAX_DIGITS: usize = 30;

/// The most minor digits [`from_minor`] can write (`10^38` still fits in `u128`).
pub const MAX_SCALE: u32 = 38;

/// `49900` -> `"499.00"` with `scale` minor digits (2: paise, cents; 0: no minor unit).
/// `scale` is at most [`MAX_SCALE`]; callers check it.
pub fn from_minor(minor: i128, scale: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{abs}");
    }
    let factor = 10u128.pow(scale);
    format!(
        "{sign}{}.{:0width$}",
        abs / factor,
        abs % factor,
        width = scale as usize
    )
}

/// `"1499.5"` -> `149950` with `scale` minor digits. Refuses more decimals than `scale`
/// (unless they are zeros) rather than rounding money silently.
pub fn to_minor(decimal: &str, scale: u32) -> Result<i128, HelperError> {
    const NAME: &str = "to_minor";
    to_minor_as(NAME, decimal, scale)
}

/// `"1499.5"` -> `"1499.50"`: a decimal string as the Beckn price value with `places`
/// decimals. More non-zero decimals than `places` are an error, not rounded away.
pub fn decimal(value: &str, places: u32) -> Result<String, HelperError> {
    to_minor_as("decimal", value, places).map(|m| from_minor(m, places))
}

fn to_minor_as(helper: &'static str, decimal: &str, scale: u32) -> Result<i128, HelperError> {
    let bad = |reason: String| HelperError::new(helper, decimal, reason);
    if scale > 12 {
        return Err(bad(format!("cannot use {scale} decimals (at most 12)")));
    }
    let s = decimal.trim();
    let (negative, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (whole, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(bad("is not a decimal number (like 1499.50)".into()));
    }
    if whole.len() + scale as usize > MAX_DIGITS {
        return Err(bad("is too large an amount".into()));
    }
    let kept = frac.len().min(scale as usize);
    if frac[kept..].bytes().any(|b| b != b'0') {
        return Err(bad(format!(
            "has more than {scale} decimals; round it in the backend or give more places"
        )));
    }
    let mut minor: i128 = 0;
    let padded = frac[..kept]
        .chars()
        .chain(std::iter::repeat('0'))
        .take(scale as usize);
    for c in whole.chars().chain(padded) {
        minor = minor * 10 + i128::from(c as u8 - b'0');
    }
    Ok(if negative { -minor } else { minor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_to_decimal() {
        assert_eq!(from_minor(49900, 2), "499.00");
        assert_eq!(from_minor(5, 2), "0.05");
        assert_eq!(from_minor(-5, 2), "-0.05");
        assert_eq!(from_minor(1234, 0), "1234");
        assert_eq!(from_minor(1234, 3), "1.234");
    }

    #[test]
    fn decimal_to_minor_units() {
        assert_eq!(to_minor("1499.50", 2), Ok(149950));
        assert_eq!(to_minor("1499.5", 2), Ok(149950));
        assert_eq!(to_minor("1499", 2), Ok(149900));
        assert_eq!(to_minor(".5", 2), Ok(50));
        assert_eq!(to_minor("-0.05", 2), Ok(-5));
        assert_eq!(to_minor("10.500", 2), Ok(1050));
        assert_eq!(to_minor("7", 0), Ok(7));
    }

    #[test]
    fn decimals_become_price_values() {
        assert_eq!(decimal("1499.5", 2).unwrap(), "1499.50");
        assert_eq!(decimal(" 1499 ", 2).unwrap(), "1499.00");
        assert_eq!(decimal("0.1", 2).unwrap(), "0.10");
        assert_eq!(decimal("+2.345", 3).unwrap(), "2.345");
        // The classic f64 trap stays exact.
        assert_eq!(decimal("0.30", 2).unwrap(), "0.30");
    }

    #[test]
    fn errors_name_the_bad_input() {
        let e = decimal("1,499.50", 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "decimal: `1,499.50` is not a decimal number (like 1499.50)"
        );
        let e = to_minor("1499.505", 2).unwrap_err();
        assert!(e.reason.contains("more than 2 decimals"), "{e}");
        assert!(to_minor("", 2).is_err());
        assert!(to_minor(".", 2).is_err());
        assert!(to_minor("1e3", 2).is_err());
        assert!(to_minor(&"9".repeat(40), 2).is_err());
    }
}
