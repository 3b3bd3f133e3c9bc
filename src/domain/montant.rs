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

    /// Reads decimal text as written in JSON (`1500`, `750000.50`, `1.5e3`), never through a float.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let plain = text.strip_prefix('+').unwrap_or(text);
        if plain.is_empty() || !plain.chars().all(|c| c.is_ascii_digit() || "-.eE+".contains(c)) {
            return Err(MontantError::NotANumber);
        }
        let value = if plain.contains(['e', 'E']) { Decimal::from_scientific(plain) } else { Decimal::from_str_exact(plain) };
        match value {
            Ok(value) => Self::from_decimal(value),
            // Too many digits for 96 bits: either huge or absurdly precise; both are refused.
            Err(_) if plain.trim_start_matches('-').split('.').next().is_some_and(|i| i.len() > 10) => Err(MontantError::TooLarge),
            Err(_) if plain.contains('.') => Err(MontantError::TooPrecise),
            Err(_) => Err(MontantError::NotANumber),
        }
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
            ("1e400", MontantError::NotANumber),
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
