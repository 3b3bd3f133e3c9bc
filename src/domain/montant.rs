//! Exact amounts in FCFA. Owns: parsing decimal text without floats, bounds, formatting.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// An amount in FCFA as exact cents. Invariant: 0 < cents < 10^12 (below 10^10 FCFA, 2 decimals).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Montant(i64);

/// Exclusive upper bound, in cents (10^10 FCFA).
const MAX_CENTS: i64 = 1_000_000_000_000;

/// Why a text is not a valid amount; `Display` is the French message shown to users.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MontantError {
    #[error("le montant doit être un nombre décimal (ex. 1500 ou 750000.50)")]
    NotANumber,
    #[error("le montant doit être strictement positif")]
    NotPositive,
    #[error("le montant ne peut avoir plus de 2 décimales")]
    TooPrecise,
    #[error("le montant doit être inférieur à 10 000 000 000 FCFA")]
    TooLarge,
    #[error("en texte, le montant s'écrit en chiffres avec un point et 2 décimales au plus (ex. \"750000.50\")")]
    NotPlain,
}

impl Montant {
    /// Builds from cents, checking the invariant (used by stores reading their own rows).
    pub fn from_cents(cents: i64) -> Result<Self, MontantError> {
        match cents {
            c if c <= 0 => Err(MontantError::NotPositive),
            c if c >= MAX_CENTS => Err(MontantError::TooLarge),
            c => Ok(Self(c)),
        }
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    /// The exact decimal value with scale 2 (PostgreSQL `numeric(12,2)`).
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    /// From an exact decimal; rejects more than 2 significant decimals and out-of-range values.
    pub fn from_decimal(value: Decimal) -> Result<Self, MontantError> {
        let value = value.normalize();
        if value.is_sign_negative() || value.is_zero() {
            return Err(MontantError::NotPositive);
        }
        if value.scale() > 2 {
            return Err(MontantError::TooPrecise);
        }
        let cents = value.checked_mul(Decimal::ONE_HUNDRED).ok_or(MontantError::TooLarge)?;
        let cents = i64::try_from(cents).map_err(|_| MontantError::TooLarge)?;
        Self::from_cents(cents)
    }
}

impl FromStr for Montant {
    type Err = MontantError;

    /// Reads decimal text as written in JSON (`1500`, `750000.50`, `1.5e3`, `1.500`), exactly:
    /// digits and exponent are read as integers, never through a float, so any JSON number text
    /// gets the right answer (`5e-324` is too precise, `1e400` too large, `0.00000001e8` is 1).
    /// Surrounding whitespace and a leading `+` are tolerated (CSV); the API's string form is
    /// stricter (`Montant::parse_plain`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (negative, unsigned) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
            None => (unsigned, None),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part) {
            return Err(MontantError::NotANumber);
        }
        // The value is `digits × 10^scale`.
        let digits = format!("{int_part}{frac_part}");
        let exponent = match exponent {
            None => 0,
            Some(e) => {
                let unsigned_e = e.strip_prefix(['+', '-']).unwrap_or(e);
                if unsigned_e.is_empty() || !all_digits(unsigned_e) {
                    return Err(MontantError::NotANumber);
                }
                // An exponent beyond ±10^15 is absurd either way; saturate, the sign decides.
                let magnitude = unsigned_e.trim_start_matches('0');
                let magnitude: i64 = if magnitude.len() > 15 { 1_000_000_000_000_000 } else { magnitude.parse().unwrap_or(0) };
                if e.starts_with('-') { -magnitude } else { magnitude }
            }
        };
        let significant = digits.trim_start_matches('0');
        let trimmed = significant.trim_end_matches('0');
        if trimmed.is_empty() || negative {
            return Err(MontantError::NotPositive);
        }
        let frac_len = i64::try_from(frac_part.len()).unwrap_or(i64::MAX);
        let zeros = i64::try_from(significant.len() - trimmed.len()).unwrap_or(0);
        let scale = exponent - frac_len + zeros; // value = trimmed × 10^scale
        if scale < -2 {
            return Err(MontantError::TooPrecise);
        }
        let len = i64::try_from(trimmed.len()).unwrap_or(i64::MAX);
        if len + scale > 10 {
            return Err(MontantError::TooLarge);
        }
        // Now at most 12 digits of cents: `trimmed` followed by `scale + 2` zeros.
        let zeros = usize::try_from(scale + 2).unwrap_or(0);
        let cents: i64 = format!("{trimmed}{}", "0".repeat(zeros)).parse().map_err(|_| MontantError::TooLarge)?;
        Self::from_cents(cents)
    }
}

impl Montant {
    /// The exact form the API accepts for an amount given as a JSON string (ECMA-262 regex):
    /// plain digits, no sign, no leading zero, at most 10 integer digits and 2 decimals, above 0.
    pub const PLAIN_PATTERN: &str = r"^(?:[1-9][0-9]{0,9}(?:\.[0-9]{1,2})?|0\.(?:0[1-9]|[1-9][0-9]?))$";

    /// Reads an amount written as `PLAIN_PATTERN` (`"750000.50"`, `"1500"`). Text that is a valid
    /// amount in another form (`" 1500"`, `"1.5e3"`, `"1500.000"`) is refused as `NotPlain`;
    /// otherwise the error says what is wrong with the value.
    pub fn parse_plain(text: &str) -> Result<Self, MontantError> {
        let montant = text.parse::<Self>()?;
        let (int_part, frac_part) = text.split_once('.').map_or((text, None), |(i, f)| (i, Some(f)));
        let int_ok = !int_part.is_empty()
            && int_part.len() <= 10
            && int_part.bytes().all(|b| b.is_ascii_digit())
            && (int_part == "0" || !int_part.starts_with('0'));
        let frac_ok = frac_part.is_none_or(|f| (1..=2).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()));
        if int_ok && frac_ok { Ok(montant) } else { Err(MontantError::NotPlain) }
    }
}

impl fmt::Display for Montant {
    /// Always two decimals: `750000.50`, `1500.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Montant {
    /// French display: `500 000 FCFA`, `1 250,50 FCFA` (narrow no-break space between groups).
    pub fn to_fcfa(self) -> String {
        let units = (self.0 / 100).to_string();
        let mut grouped = String::with_capacity(units.len() + units.len() / 3 * 3);
        for (i, digit) in units.chars().enumerate() {
            if i > 0 && (units.len() - i) % 3 == 0 {
                grouped.push('\u{202f}');
            }
            grouped.push(digit);
        }
        match self.0 % 100 {
            0 => format!("{grouped} FCFA"),
            cents => format!("{grouped},{cents:02} FCFA"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_decimals() {
        assert_eq!("750000.50".parse::<Montant>().unwrap().cents(), 75_000_050);
        assert_eq!("1500".parse::<Montant>().unwrap().cents(), 150_000);
        assert_eq!("1.5e3".parse::<Montant>().unwrap().cents(), 150_000);
        assert_eq!("0.01".parse::<Montant>().unwrap().cents(), 1);
        assert_eq!("1.500".parse::<Montant>().unwrap().cents(), 150);
        assert_eq!("9999999999.99".parse::<Montant>().unwrap().cents(), 999_999_999_999);
        assert_eq!("1E+2".parse::<Montant>().unwrap().cents(), 10_000);
        assert_eq!("100e-2".parse::<Montant>().unwrap().cents(), 100);
        assert_eq!("0.00000001e8".parse::<Montant>().unwrap().cents(), 100);
        assert_eq!("0.000000000000000000000000000000001e33".parse::<Montant>().unwrap().cents(), 100);
        assert_eq!(" +12.5 ".parse::<Montant>().unwrap().cents(), 1_250);
    }

    #[test]
    fn the_plain_form_is_exactly_its_pattern() {
        for ok in ["1", "0.01", "0.1", "0.5", "1500", "750000.50", "9999999999.99", "10.0"] {
            assert!(Montant::parse_plain(ok).is_ok(), "{ok}");
        }
        for (text, err) in [
            (" 1500", MontantError::NotPlain),
            ("+1500", MontantError::NotPlain),
            ("1.5e3", MontantError::NotPlain),
            ("1500.000", MontantError::NotPlain),
            ("01500", MontantError::NotPlain),
            ("1500.", MontantError::NotPlain),
            (".5", MontantError::NotPlain),
            ("0", MontantError::NotPositive),
            ("0.00", MontantError::NotPositive),
            ("-3", MontantError::NotPositive),
            ("1.505", MontantError::TooPrecise),
            ("10000000000", MontantError::TooLarge),
            ("abc", MontantError::NotANumber),
        ] {
            assert_eq!(Montant::parse_plain(text), Err(err), "{text}");
        }
        let pattern = regex::Regex::new(Montant::PLAIN_PATTERN).unwrap();
        for text in ["1", "0.01", "0.10", "9999999999.99", "10000000000", "0", "0.0", "00.5", "1.", "1.234", "１"] {
            assert_eq!(pattern.is_match(text), Montant::parse_plain(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn refuses_invalid_amounts() {
        for (text, err) in [
            ("0", MontantError::NotPositive),
            ("-5", MontantError::NotPositive),
            ("1.505", MontantError::TooPrecise),
            ("10000000000", MontantError::TooLarge),
            ("NaN", MontantError::NotANumber),
            ("Infinity", MontantError::NotANumber),
            ("", MontantError::NotANumber),
            ("12abc", MontantError::NotANumber),
            ("1e400", MontantError::TooLarge),
            ("5e-324", MontantError::TooPrecise),
            ("1e99999999999999999999999", MontantError::TooLarge),
            ("-0", MontantError::NotPositive),
            ("1e", MontantError::NotANumber),
            ("1.2.3", MontantError::NotANumber),
            (".", MontantError::NotANumber),
            ("--1", MontantError::NotANumber),
            ("1-2", MontantError::NotANumber),
            ("123456789012345678901234567890", MontantError::TooLarge),
            ("0.0000000000000000000000000000001", MontantError::TooPrecise),
        ] {
            assert_eq!(text.parse::<Montant>(), Err(err), "{text}");
        }
    }

    #[test]
    fn formats_for_people_and_machines() {
        let m = Montant::from_cents(50_000_000).unwrap();
        assert_eq!(m.to_string(), "500000.00");
        assert_eq!(m.to_fcfa(), "500\u{202f}000 FCFA");
        assert_eq!(Montant::from_cents(125_050).unwrap().to_fcfa(), "1\u{202f}250,50 FCFA");
    }
}
