//! One region's database behind one trait, with two real implementations: PostgreSQL and SQLite.
//! Owns: the storage interface, its query/page/cursor types and its errors. All SQL lives in
//! `postgres.rs` and `sqlite.rs`; rules (validation, LWW) live in `domain/` and `sync/`.

pub mod postgres;
mod row;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};

use crate::config::{DatabaseUrl, RegionConfig};
use crate::domain::{NewVente, RegionName, Vente, VenteId};

/// Which engine serves a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Timeouts every region call is bounded by.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
}

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

    /// Opaque to clients: base64url of `micros:uuid`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.updated_at.timestamp_micros(), self.id))
    }

    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (micros, id) = text.split_once(':')?;
        let updated_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        Some(Self { updated_at, id: id.parse().ok()? })
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub items: Vec<Vente>,
    /// Present when more rows may follow.
    pub next: Option<Cursor>,
}

/// What a conditional write expects to find (HTTP `If-Match`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Nothing,
    /// `If-Match: *` — any live version.
    AnyVersion,
    /// One of these version tags (`Version`'s `Display`).
    OneOf(Vec<String>),
}

impl Expect {
    pub fn accepts(&self, current: &Vente) -> bool {
        match self {
            Self::Nothing | Self::AnyVersion => true,
            Self::OneOf(tags) => {
                let tag = current.version.to_string();
                tags.contains(&tag)
            }
        }
    }
}

/// A write made by a client in this region; the store stamps the version in the same transaction.
#[derive(Clone, Debug)]
pub enum LocalWrite {
    /// Create a sale with this id; a replay with the same content returns the existing sale.
    Create { id: VenteId, vente: NewVente },
    /// Replace a live sale's content.
    Update { id: VenteId, vente: NewVente, expect: Expect },
    /// Soft-delete a live sale.
    Delete { id: VenteId, expect: Expect },
}

impl LocalWrite {
    pub fn id(&self) -> VenteId {
        match self {
            Self::Create { id, .. } | Self::Update { id, .. } | Self::Delete { id, .. } => *id,
        }
    }
}

/// What came of a local write.
#[derive(Clone, Debug)]
pub enum WriteOutcome {
    /// Written; the sale as now stored.
    Written(Vente),
    /// A create replayed with the same content: nothing written, the existing sale.
    Unchanged(Vente),
    /// A create whose id is taken by a different (or deleted) sale.
    IdTaken(Vente),
    /// Update or delete of a sale this region does not hold alive.
    NotFound,
    /// `If-Match` did not match; the current sale.
    PreconditionFailed(Vente),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Connection refused, timed out, lost: the engine marks the region OFFLINE and carries on.
    #[error("région {region} injoignable : {message}")]
    Unavailable { region: RegionName, message: String },
    /// Anything else the database reported: a bug or a damaged database, never the user's input.
    #[error("erreur de la base de la région {region} : {message}")]
    Database { region: RegionName, message: String },
    /// A stored row that breaks the domain's rules (written by hand, or a bug).
    #[error("ligne invalide dans la région {region} : {message}")]
    Corrupt { region: RegionName, message: String },
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// Classifies a driver error: transport failures and timeouts make a region unavailable.
    pub(crate) fn from_sqlx(region: &RegionName, error: sqlx::Error) -> Self {
        let region = region.clone();
        let message = error.to_string();
        let unavailable = match &error {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => {
                true
            }
            sqlx::Error::WorkerCrashed => true,
            // 57014 query_canceled (statement_timeout), 57P01-03 shutdown, 08xxx connection, 53xxx resources.
            sqlx::Error::Database(db) => {
                db.code().is_some_and(|c| c == "57014" || c.starts_with("57P") || c.starts_with("08") || c.starts_with("53"))
            }
            _ => false,
        };
        if unavailable { Self::Unavailable { region, message } } else { Self::Database { region, message } }
    }
}

/// One region's database. Regions mix PostgreSQL and SQLite, so callers hold `Arc<dyn Store>`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    fn region(&self) -> &RegionName;
    fn backend(&self) -> Backend;
    /// Runs pending migrations (idempotent).
    async fn migrate(&self) -> Result<(), StoreError>;
    /// A cheap round trip, bounded by the connect timeout.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Live sales, newest write first, after the cursor.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;
    /// A sale by id, tombstones included.
    async fn get(&self, id: VenteId) -> Result<Option<Vente>, StoreError>;
    /// Applies a client write, stamping a new version from this region's clock (same transaction).
    async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError>;
    /// Creates or overwrites many sales as local writes with fresh versions (import, seed).
    async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError>;
    /// Applies replicated rows: each replaces the stored row only if its version is greater (LWW);
    /// the clock moves past every version received. Idempotent and order-independent.
    async fn apply(&self, rows: &[Vente]) -> Result<u64, StoreError>;
    /// Every sale ordered by id, after `after`, at most `limit` (export, verify).
    async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError>;
    /// Refreshes planner statistics (after a bulk load, as `pg_restore` does).
    async fn analyze(&self) -> Result<(), StoreError>;
    /// Number of live sales.
    async fn count_live(&self) -> Result<u64, StoreError>;
    /// The database's own wall clock (PostgreSQL `clock_timestamp()`, not the transaction start),
    /// read in one round trip: the monitor compares it with ours to measure clock offset.
    async fn now(&self) -> Result<DateTime<Utc>, StoreError>;
    /// Live sales summed per `region` column: count and exact total; per day from `since` to `today`
    /// (days without sales omitted); the `recent` newest writes of each region.
    async fn analytics(&self, since: NaiveDate, today: NaiveDate, recent: u32) -> Result<Vec<RegionSales>, StoreError>;
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

/// Opens (and creates, for SQLite) a region's database. Connection is lazy: a region that is down
/// at start-up does not stop the others.
pub async fn open(region: &RegionConfig, limits: Limits) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &region.url {
        DatabaseUrl::Postgres(url) => Arc::new(postgres::PgStore::open(region.name.clone(), url, limits)?),
        DatabaseUrl::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(region.name.clone(), path, limits).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = Cursor { updated_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(), id: VenteId::generate() };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "abc", "%%%", &URL_SAFE_NO_PAD.encode("12:notauuid"), &URL_SAFE_NO_PAD.encode("x:y")] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
