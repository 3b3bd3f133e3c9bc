//! The listing's parameters, read once for the API (`GET /api/ventes`) and the list page (`/`).
//! Owns: limits, filters and cursor as text → `ListQuery`, with French errors. Leaves: what each
//! caller does with errors (the API answers 400/422, the page shows them and drops the filter).

use chrono::NaiveDate;

use crate::domain::vente::parse_iso_date;
use crate::domain::{Cursor, FieldError, ListQuery, Regions, fold};

/// Longest product search, in characters.
pub const MAX_Q_CHARS: usize = 200;

/// How dates are written: the API's `AAAA-MM-JJ`, or the page's `JJ/MM/AAAA` (ISO accepted too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateForm {
    Iso,
    French,
}

/// The listing's parameters as sent; an empty one is the same as an absent one.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListText<'a> {
    pub region: Option<&'a str>,
    pub q: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub cursor: Option<&'a str>,
}

/// A read listing request: the query (filters in error left out), the errors, and whether a
/// cursor was given that is not one of ours.
#[derive(Debug)]
pub struct ReadList {
    pub query: ListQuery,
    pub errors: Vec<FieldError>,
    pub bad_cursor: bool,
}

/// Reads a `limit` parameter: absent or empty is `default`, else an integer from 1 to `max`.
pub fn read_limit(text: Option<&str>, default: u32, max: u32) -> Result<u32, FieldError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n) && !text.starts_with('+'))
            .ok_or_else(|| FieldError::new("limit", format!("doit être un entier de 1 à {max}"))),
    }
}

impl ListText<'_> {
    /// The store query for a page of `limit` sales.
    pub fn read(&self, limit: u32, regions: &Regions, dates: DateForm) -> ReadList {
        let present = |text: Option<&str>| text.map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
        let mut errors = Vec::new();
        let region = present(self.region).and_then(|text| {
            let found = regions.resolve(&text).cloned();
            if found.is_none() {
                errors.push(FieldError::new("region", format!("région inconnue ; régions possibles : {}", regions.describe())));
            }
            found
        });
        let mut date = |name: &str, text: Option<&str>| {
            let text = present(text)?;
            let (date, expected) = match dates {
                DateForm::Iso => (parse_iso_date(&text), "date au format AAAA-MM-JJ attendue"),
                DateForm::French => (parse_iso_date(&french_date(&text)), "date au format JJ/MM/AAAA attendue"),
            };
            if date.is_none() {
                errors.push(FieldError::new(name, expected));
            }
            date
        };
        let (from, to): (Option<NaiveDate>, Option<NaiveDate>) = (date("from", self.from), date("to", self.to));
        let q = match present(self.q) {
            Some(q) if q.chars().count() > MAX_Q_CHARS => {
                errors.push(FieldError::new("q", format!("{MAX_Q_CHARS} caractères au plus")));
                None
            }
            q => q.map(|q| fold(&q)).filter(|q| !q.is_empty()),
        };
        let cursor = present(self.cursor);
        let after = cursor.as_deref().and_then(Cursor::decode);
        let bad_cursor = cursor.is_some() && after.is_none();
        ReadList { query: ListQuery { region, q, from, to, limit, after }, errors, bad_cursor }
    }
}

/// French dates: `24/11/2026` (or `4/1/2026`) is read as `2026-11-24`; anything else is left as is.
pub fn french_date(text: &str) -> String {
    let text = text.trim();
    let parts: Vec<&str> = text.split('/').collect();
    let digits = |s: &str, len: std::ops::RangeInclusive<usize>| len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    match parts[..] {
        [d, m, y] if digits(d, 1..=2) && digits(m, 1..=2) && digits(y, 4..=4) => format!("{y}-{m:0>2}-{d:0>2}"),
        _ => text.to_owned(),
    }
}
