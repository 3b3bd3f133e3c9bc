//! Product names. Owns: trimming, length and character rules, the folded search key.

use std::fmt;

/// A product name: trimmed, 1–200 characters, any Unicode except control characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Produit(String);

pub const PRODUIT_MAX_CHARS: usize = 200;

impl Produit {
    /// The exact rule of `parse` as an ECMA-262 regular expression, for the API document:
    /// optional white space (what `str::trim` removes), then 1 to 200 characters that start and
    /// end with a non-space and contain no control character, then optional white space.
    pub const PATTERN: &str = concat!(
        r"^[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*",
        r"[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        r"(?:[^\u0000-\u001F\u007F-\u009F]{0,198}",
        r"[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?",
        r"[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProduitError {
    #[error("le produit est obligatoire")]
    Empty,
    #[error("le produit ne peut dépasser 200 caractères")]
    TooLong,
    #[error("le produit contient des caractères de contrôle")]
    ControlCharacter,
}

impl Produit {
    pub fn parse(text: &str) -> Result<Self, ProduitError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ProduitError::Empty);
        }
        if text.chars().count() > PRODUIT_MAX_CHARS {
            return Err(ProduitError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(ProduitError::ControlCharacter);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key used by case- and accent-insensitive search, stored beside the name.
    pub fn search_key(&self) -> String {
        super::fold(&self.0)
    }
}

impl fmt::Display for Produit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_bounds() {
        assert_eq!(Produit::parse("  Riz brisé ").unwrap().as_str(), "Riz brisé");
        assert_eq!(Produit::parse("   "), Err(ProduitError::Empty));
        assert_eq!(Produit::parse(&"é".repeat(200)).unwrap().as_str().chars().count(), 200);
        assert_eq!(Produit::parse(&"é".repeat(201)), Err(ProduitError::TooLong));
        assert_eq!(Produit::parse("a\u{0}b"), Err(ProduitError::ControlCharacter));
        assert_eq!(Produit::parse("<b>'; DROP TABLE vente;--").unwrap().as_str(), "<b>'; DROP TABLE vente;--");
    }

    #[test]
    fn the_pattern_states_the_rule() {
        let pattern = regex::Regex::new(Produit::PATTERN).unwrap();
        let long = "x".repeat(200);
        let samples = [
            "Riz",
            " Riz ",
            "\u{3000}Thé\u{a0}",
            "a b",
            "<b>'; --",
            "\n\tMil\r\n",
            &long,
            &format!(" {long} "),
            &format!("{long}x"),
            "",
            " ",
            "\u{85}",
            "a\u{0}b",
            "a\u{1c}",
            "\u{1c}a",
            "a\u{9f}b",
            "a\u{7f}",
            "\u{200b}",
        ];
        for text in samples {
            assert_eq!(pattern.is_match(text), Produit::parse(text).is_ok(), "the pattern and the rule disagree on {text:?}");
        }
    }

    #[test]
    fn search_key_ignores_case_and_accents() {
        assert_eq!(Produit::parse("Thiéboudienne ÉPICÉE").unwrap().search_key(), "thieboudienne epicee");
    }
}
