//! What readers ask and get: a listing request and its keyset cursor, a page, per-region
//! analytics. Owns: the cursor's wire form. Leaves: how a store answers (store/), parsing the
//! query string (web/).

use chrono::{DateTime, NaiveDate, Utc};

use super::{RegionName, Vente, VenteId};

/// A listing request: live sales, newest write first, keyset-paged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub region: Option<RegionName>,
    /// A folded (lower-case, accent-free) product substring.
    pub q: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub limit: u32,
    pub after: Option<Cursor>,
}

/// A position in the listing order `(updated_at DESC, id DESC)`: the last row of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub updated_at: DateTime<Utc>,
    pub id: VenteId,
}

impl Cursor {
    pub fn of(vente: &Vente) -> Self {
        Self { updated_at: vente.updated_at, id: vente.id }
    }

    /// Opaque to clients, but plain: `micros_uuid` (the row's `updated_at` in microseconds since
    /// the epoch, then its hyphenated id), so the API document can state its exact form (`PATTERN`).
    pub fn encode(&self) -> String {
        format!("{}_{}", self.updated_at.timestamp_micros(), self.id.0.hyphenated())
    }

    /// The exact form `decode` accepts, as an ECMA-262 regular expression.
    pub const PATTERN: &str = "^[0-9]{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

    /// Reads exactly `PATTERN`; anything else is `None`.
    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('_')?;
        if micros.is_empty() || micros.len() > 16 || !micros.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id = VenteId::parse_hyphenated(id)?;
        let updated_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        Some(Self { updated_at, id })
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub items: Vec<Vente>,
    /// Present when more rows may follow.
    pub next: Option<Cursor>,
}

/// Live sales of one region as one database sees them (`Store::analytics`). Totals are exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSales {
    pub region: RegionName,
    pub count: u64,
    pub total: rust_decimal::Decimal,
    /// Days with at least one sale, oldest first.
    pub per_day: Vec<DaySales>,
    /// Newest write first.
    pub recent: Vec<Vente>,
}

/// Sales of one region on one calendar day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaySales {
    pub date: NaiveDate,
    pub count: u64,
    pub total: rust_decimal::Decimal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = Cursor { updated_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(), id: VenteId::generate() };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        let id = cursor.id;
        for bad in [
            String::new(),
            "abc".into(),
            "%%%".into(),
            "12_notauuid".into(),
            format!("_{id}"),
            format!("-1_{id}"),
            format!(" 12_{id}"),
            format!("12345678901234567_{id}"),
            format!("12_{{{id}}}"),
            format!("12_{}", id.0.simple()),
            format!("12_urn:uuid:{id}"),
        ] {
            assert_eq!(Cursor::decode(&bad), None, "{bad}");
        }
    }
}
