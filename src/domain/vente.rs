//! A sale (`vente`) and its parts. Owns: identity, the calendar-date rule, what a valid new sale is.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, NaiveDate, Utc};
use uuid::Uuid;

use super::{FieldError, Montant, Produit, RegionName, Regions};
pub use crate::domain::version::Version;

/// A sale's id: a UUID, v7 (time-ordered) when the server makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct VenteId(pub Uuid);

impl VenteId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Reads exactly the hyphenated form (`8-4-4-4-12` hex digits, either case), as JSON Schema's
    /// `uuid` format says; `FromStr` is more lenient (spaces, braces, `urn:uuid:`, no hyphens).
    pub fn parse_hyphenated(text: &str) -> Option<Self> {
        // Of the forms `Uuid` reads, only the hyphenated one is 36 characters long.
        (text.len() == 36).then(|| Uuid::try_parse(text).ok().map(Self)).flatten()
    }
}

impl FromStr for VenteId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(Self)
    }
}

impl fmt::Display for VenteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The calendar date of a sale: from 1900-01-01 to tomorrow (UTC), so a sale made late at night
/// west of Greenwich is still accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateVente(NaiveDate);

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("la date doit être au format AAAA-MM-JJ (ex. 2026-11-24)")]
    Format,
    #[error("la date ne peut pas être plus d'un jour dans le futur")]
    Future,
    #[error("la date doit être postérieure au 01/01/1900")]
    TooOld,
}

impl DateVente {
    /// The earliest date a sale may carry.
    pub fn earliest() -> NaiveDate {
        NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The latest date a sale may carry when it is `today` (UTC): tomorrow.
    pub fn latest(today: NaiveDate) -> NaiveDate {
        today.checked_add_days(Days::new(1)).unwrap_or(NaiveDate::MAX)
    }

    pub fn new(date: NaiveDate, today: NaiveDate) -> Result<Self, DateError> {
        if date < Self::earliest() {
            return Err(DateError::TooOld);
        }
        if date > Self::latest(today) {
            return Err(DateError::Future);
        }
        Ok(Self(date))
    }

    /// Parses `YYYY-MM-DD` (exactly that form).
    pub fn parse(text: &str, today: NaiveDate) -> Result<Self, DateError> {
        Self::new(parse_iso_date(text).ok_or(DateError::Format)?, today)
    }

    /// A date read back from a store, already validated when written.
    pub fn from_stored(date: NaiveDate) -> Self {
        Self(date)
    }

    pub fn get(self) -> NaiveDate {
        self.0
    }
}

impl fmt::Display for DateVente {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// Reads exactly `YYYY-MM-DD` (RFC 3339 `full-date`): four-digit year, no sign, no spaces.
pub fn parse_iso_date(text: &str) -> Option<NaiveDate> {
    let well_formed =
        text.len() == 10 && text.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if !well_formed {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// What a client asks to record: every field valid, the region one of the configured ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewVente {
    pub produit: Produit,
    pub montant: Montant,
    pub date_vente: DateVente,
    pub region: RegionName,
}

/// The text of each field as received; `NewVente::parse` checks them all and reports every error.
#[derive(Clone, Debug, Default)]
pub struct VenteFields<'a> {
    pub produit: Option<&'a str>,
    pub montant: Option<&'a str>,
    pub date_vente: Option<&'a str>,
    pub region: Option<&'a str>,
}

impl NewVente {
    /// Validates every field, naming each one that is missing or wrong (JSON names).
    pub fn parse<'a>(fields: &VenteFields<'a>, regions: &Regions, today: NaiveDate) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut need = |name: &str, value: Option<&'a str>| -> Option<&'a str> {
            if value.is_none() {
                errors.push(FieldError::new(name, "ce champ est obligatoire"));
            }
            value
        };
        let produit = need("produit", fields.produit);
        let montant = need("montant", fields.montant);
        let date_vente = need("dateVente", fields.date_vente);
        let region = need("region", fields.region);

        let produit = produit.and_then(|t| Produit::parse(t).map_err(|e| errors.push(FieldError::new("produit", e.to_string()))).ok());
        let montant = montant.and_then(|t| t.parse::<Montant>().map_err(|e| errors.push(FieldError::new("montant", e.to_string()))).ok());
        let date_vente =
            date_vente.and_then(|t| DateVente::parse(t, today).map_err(|e| errors.push(FieldError::new("dateVente", e.to_string()))).ok());
        let region = region.and_then(|t| {
            let found = regions.resolve(t).cloned();
            if found.is_none() {
                errors.push(FieldError::new("region", format!("région inconnue ; régions possibles : {}", regions.describe())));
            }
            found
        });
        match (produit, montant, date_vente, region) {
            (Some(produit), Some(montant), Some(date_vente), Some(region)) if errors.is_empty() => {
                Ok(Self { produit, montant, date_vente, region })
            }
            _ => Err(errors),
        }
    }
}

/// A sale as stored in every region: content, wall-clock time of its last write, and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vente {
    pub id: VenteId,
    pub produit: Produit,
    pub montant: Montant,
    pub date_vente: DateVente,
    pub region: RegionName,
    /// Wall-clock time of the last write, UTC, microsecond precision (what both stores keep).
    pub updated_at: DateTime<Utc>,
    /// Soft delete: a tombstone replicates like any write.
    pub deleted: bool,
    /// The replication order of this row's writes (hybrid logical clock, then origin region).
    pub version: Version,
    /// What this version's writer had seen of the row's history (tells edits from conflicts).
    pub seen: crate::domain::lww::Seen,
}

impl Vente {
    /// True when the sale carries the same client-visible content as `new`.
    pub fn same_content(&self, new: &NewVente) -> bool {
        self.produit == new.produit && self.montant == new.montant && self.date_vente == new.date_vente && self.region == new.region
    }
}

/// Truncates a time to the microsecond, the precision both stores keep.
pub fn to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    #[test]
    fn dates_are_strict_and_not_far_future() {
        assert!(DateVente::parse("2026-11-25", today()).is_ok());
        assert_eq!(DateVente::parse("2026-11-26", today()), Err(DateError::Future));
        assert_eq!(DateVente::parse("2026-02-30", today()), Err(DateError::Format));
        assert_eq!(DateVente::parse("24/11/2026", today()), Err(DateError::Format));
        assert_eq!(DateVente::parse("+2026-11-24", today()), Err(DateError::Format));
        assert_eq!(DateVente::parse(" 2026-11-24", today()), Err(DateError::Format));
        assert_eq!(DateVente::parse("2026-1-24", today()), Err(DateError::Format));
        assert_eq!(DateVente::parse("1899-12-31", today()), Err(DateError::TooOld));
    }

    #[test]
    fn parse_reports_every_bad_field() {
        let regions = Regions::new(vec![RegionName::new("Dakar")]);
        let fields = VenteFields { produit: Some(" "), montant: Some("1.234"), date_vente: None, region: Some("Kaolack") };
        let errors = NewVente::parse(&fields, &regions, today()).unwrap_err();
        let names: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(names, ["dateVente", "produit", "montant", "region"]);
    }
}
