//! A stored row in plain values, the one place where both stores turn columns into a `Vente`.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use rust_decimal::Decimal;

use super::quarantine::Bad;
use super::{FeedPage, FeedPosition, StoreError};
use crate::domain::DaySales;
use crate::domain::RegionSales;
use crate::domain::lww::Seen;
use crate::domain::vente::DateVente;
use crate::domain::version::Hlc;
use crate::domain::{Montant, Produit, RegionName, Vente, VenteId, Version};

/// The columns both stores share, in the same order as `COLUMNS`.
pub(crate) struct VenteRow {
    pub id: Uuid,
    pub produit: String,
    pub montant_cents: i64,
    pub date_vente: NaiveDate,
    pub region: String,
    pub updated_at: DateTime<Utc>,
    pub deleted: bool,
    pub hlc: i64,
    pub origin: String,
    pub seen: String,
}

impl VenteRow {
    /// The sale, or why this row cannot be one (it goes to quarantine, see `quarantine.rs`).
    pub fn decode(self) -> Result<Vente, Bad> {
        let bad = |field: &'static str, reason: String| Bad { id: self.id, field, reason, hlc: Some(self.hlc) };
        let produit = Produit::parse(&self.produit).map_err(|e| bad("produit", format!("produit invalide : {e}")))?;
        let montant = Montant::from_cents(self.montant_cents).map_err(|e| bad("montant", format!("montant hors limites : {e}")))?;
        let seen = Seen::decode(&self.seen).ok_or_else(|| bad("seen", format!("historique (seen) illisible : « {} »", self.seen)))?;
        Ok(Vente {
            id: VenteId(self.id),
            produit,
            montant,
            date_vente: DateVente::from_stored(self.date_vente),
            region: RegionName::new(&self.region),
            updated_at: self.updated_at,
            deleted: self.deleted,
            version: Version { hlc: Hlc(self.hlc), origin: RegionName::new(&self.origin) },
            seen,
        })
    }

    pub fn into_vente(self, region: &RegionName) -> Result<Vente, StoreError> {
        self.decode().map_err(|bad| bad.corrupt(region))
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` substring pattern.
pub(crate) fn like_pattern(folded: &str) -> String {
    let mut pattern = String::with_capacity(folded.len() + 2);
    pattern.push('%');
    for c in folded.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A row as JSON for the conflict log (the sale's fields and its version).
pub(crate) fn snapshot(v: &Vente) -> String {
    serde_json::json!({
        "produit": v.produit.as_str(),
        "montant": v.montant.to_string(),
        "dateVente": v.date_vente.to_string(),
        "region": v.region.as_str(),
        "updatedAt": v.updated_at.timestamp_micros(),
        "deleted": v.deleted,
        "hlc": v.version.hlc.0,
        "origin": v.version.origin.as_str(),
        "seen": v.seen.encode(),
    })
    .to_string()
}

/// Reads back a `snapshot`.
pub(crate) fn from_snapshot(id: Uuid, text: &str, region: &RegionName) -> Result<Vente, StoreError> {
    let corrupt = || StoreError::Corrupt { region: region.clone(), message: format!("conflit {id} : instantané illisible") };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| corrupt())?;
    let text = |key: &str| value[key].as_str().map(str::to_owned).ok_or_else(corrupt);
    let montant: Montant = text("montant")?.parse().map_err(|_| corrupt())?;
    VenteRow {
        id,
        produit: text("produit")?,
        montant_cents: montant.cents(),
        date_vente: NaiveDate::parse_from_str(&text("dateVente")?, "%Y-%m-%d").map_err(|_| corrupt())?,
        region: text("region")?,
        updated_at: value["updatedAt"].as_i64().and_then(DateTime::from_timestamp_micros).ok_or_else(corrupt)?,
        deleted: value["deleted"].as_bool().ok_or_else(corrupt)?,
        hlc: value["hlc"].as_i64().ok_or_else(corrupt)?,
        origin: text("origin")?,
        seen: text("seen")?,
    }
    .into_vente(region)
}

/// One region's analytics from the rows both stores' queries return: its totals, the per-day
/// rows of every region (only its own are kept) and its newest sales.
pub(crate) fn region_sales(
    region: &str,
    count: i64,
    total: Decimal,
    days: &[(String, NaiveDate, i64, Decimal)],
    recent: Vec<Vente>,
) -> RegionSales {
    let per_day = days
        .iter()
        .filter(|d| d.0 == region)
        .map(|&(_, date, count, total)| DaySales { date, count: u64::try_from(count).unwrap_or(0), total })
        .collect();
    RegionSales { region: RegionName::new(region), count: u64::try_from(count).unwrap_or(0), total, per_day, recent }
}

/// A feed page from rows that carry `pos`, `id`, `known` (a version the reader sent) and
/// `quarantined` (the row is in this database's quarantine) besides the sale's columns: every row
/// moves the page's end, only those not known are decoded. A row that cannot be decoded is left
/// out (returned among the bad ones, to be quarantined) so the feed moves past it; a quarantined
/// row that decodes again is returned among the healed ids (to leave quarantine).
pub(crate) fn feed_page<R: sqlx::Row>(
    rows: &[R],
    region: &RegionName,
    vente: impl Fn(&R) -> Result<Result<Vente, Bad>, StoreError>,
) -> Result<(FeedPage, Vec<Bad>, Vec<Uuid>), StoreError>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let err = |e| StoreError::from_sqlx(region, e);
    let mut page = FeedPage { rows: Vec::with_capacity(rows.len()), scanned: rows.len(), ..FeedPage::default() };
    let (mut bad, mut healed) = (Vec::new(), Vec::new());
    for row in rows {
        let position = FeedPosition { pos: row.try_get("pos").map_err(err)?, id: row.try_get("id").map_err(err)? };
        page.end = Some(position);
        if !row.try_get::<bool, _>("known").map_err(err)? {
            match vente(row)? {
                Ok(vente) => {
                    if row.try_get::<bool, _>("quarantined").map_err(err)? {
                        healed.push(vente.id.0);
                    }
                    page.rows.push((position, vente));
                }
                Err(row_bad) => bad.push(row_bad),
            }
        }
    }
    Ok((page, bad, healed))
}

/// Cursor rows as `dsms_cursor` holds them (`source`, `source_db`, `pos`, `id`, `epoch`).
pub(crate) fn cursor_rows(rows: Vec<(String, Uuid, i64, Uuid, Option<Uuid>)>) -> Vec<super::CursorRow> {
    rows.into_iter()
        .map(|(source, source_db, pos, id, epoch)| super::CursorRow {
            source: crate::domain::RegionName::new(&source),
            source_db,
            witness: super::Witness { cursor: FeedPosition { pos, id }, epoch },
        })
        .collect()
}
