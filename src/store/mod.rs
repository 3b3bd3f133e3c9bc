//! One region's database behind one trait, with two real implementations: PostgreSQL and SQLite.
//! Owns: the storage interface, its query/page/cursor types and its errors. All SQL lives in
//! `postgres.rs` and `sqlite.rs`; rules (validation, LWW) live in `domain/` and `sync/`.

pub mod guard;
pub mod postgres;
mod row;
pub mod sqlite;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

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

impl Limits {
    /// Bounds a call on our side too: a database that stops answering (not only a slow query)
    /// fails as unavailable instead of hanging the caller.
    pub(crate) async fn bound<T>(&self, region: &RegionName, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let limit = self.connect_timeout + self.statement_timeout + Duration::from_secs(1);
        tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable { region: region.clone(), message: format!("pas de réponse en {limit:?}") }))
    }
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
    /// Applies replicated rows in one transaction: each replaces the stored row only if its
    /// version is greater (`sync::merge::judge`), concurrent losers go to the conflict log, the
    /// clock moves past every version received, and the source's cursor moves to the batch's end.
    /// Idempotent and order-independent.
    async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError>;
    /// This database's identity (see `Source`).
    async fn db_id(&self) -> Result<uuid::Uuid, StoreError>;
    /// How far this database has applied `source`'s feed.
    async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError>;
    /// The next `limit` positions of this region's feed after `after`, in feed order; with
    /// `before` (a `feed_horizon`), only positions below it. Versions received from the database
    /// `reader` (its `db_id`) are covered but not returned: it holds them, or newer ones.
    async fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
        before: Option<i64>,
        reader: Option<uuid::Uuid>,
    ) -> Result<FeedPage, StoreError>;
    /// A bound above every change committed so far: a round reads feeds only below the horizons
    /// taken at its start, so rows that other pairs apply during the round (copies the targets
    /// already hold, or soon will) wait for the next round instead of being read back at once.
    async fn feed_horizon(&self) -> Result<i64, StoreError>;
    /// How many changes of this region's feed follow `after` below `before`, counted up to `cap`.
    async fn feed_len(&self, after: FeedPosition, before: Option<i64>, cap: u32) -> Result<u64, StoreError>;
    /// Whether this region could be filled by a bulk load (`begin_bulk_load`): its engine has one
    /// and it holds no row. Locks nothing.
    async fn wants_bulk_load(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// Starts filling this empty region in one transaction that holds its table alone (reads and
    /// writes wait until it ends), as `pg_restore` does: secondary indexes are dropped now and
    /// built again by `BulkLoad::finish`. `None` when that is not possible (a row arrived, the
    /// table is busy, the engine has no such path): the caller applies batches as usual.
    async fn begin_bulk_load(&self) -> Result<Option<Box<dyn BulkLoad + '_>>, StoreError> {
        Ok(None)
    }
    /// Wakes `wake` whenever another process commits a change to this region (PostgreSQL
    /// `LISTEN`); returns only on error. Stores without such a signal wait forever.
    async fn listen_for_changes(&self, wake: &tokio::sync::Notify) -> Result<(), StoreError> {
        let _ = wake;
        std::future::pending().await
    }
    /// Returns once every transaction below `horizon` (a `feed_horizon`) has ended (PostgreSQL:
    /// the feed reads only below the oldest running transaction). Immediate elsewhere.
    async fn wait_for_older_transactions(&self, horizon: i64) -> Result<(), StoreError> {
        let _ = horizon;
        Ok(())
    }
    /// The most recent conflicts this database logged, newest first.
    async fn conflicts(&self, limit: u32) -> Result<Vec<crate::sync::merge::Conflict>, StoreError>;
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

/// A bulk load under way (`Store::begin_bulk_load`). Dropped without `finish`, it is rolled back:
/// the region is left as it was, empty, with its indexes.
#[async_trait::async_trait]
pub trait BulkLoad: Send {
    /// As `Store::apply`, inside the load's transaction.
    async fn apply(&mut self, batch: &Batch) -> Result<Applied, StoreError>;
    /// Builds the indexes again and commits everything applied, cursors included.
    async fn finish(self: Box<Self>) -> Result<(), StoreError>;
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

/// A position in a region's change feed: rows are read in `(pos, id)` order. On PostgreSQL `pos`
/// is the id of the transaction that wrote the row (read only below the oldest transaction still
/// running, so a late commit is never skipped); on SQLite a counter advanced under the write lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedPosition {
    pub pos: i64,
    pub id: uuid::Uuid,
}

/// A page of a change feed (`Store::changes_since`).
#[derive(Clone, Debug, Default)]
pub struct FeedPage {
    /// The changes to deliver, in feed order.
    pub rows: Vec<(FeedPosition, Vente)>,
    /// Positions covered, those left out for the reader included: fewer than asked means the end.
    pub scanned: usize,
    /// The last position covered (where the reader's cursor may move).
    pub end: Option<FeedPosition>,
}

/// A source database: its region and its identity (a recreated database has a new one, so
/// cursors into its feed start over instead of skipping rows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub region: RegionName,
    pub db_id: uuid::Uuid,
}

/// Rows to apply, and where they came from: with a source and an end position, the target moves
/// its cursor for that source to `end` in the same transaction.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub rows: Vec<Vente>,
    pub from: Option<(Source, FeedPosition)>,
}

impl Batch {
    /// Rows pushed outside the feed (a write copied at once to the other regions).
    pub fn push(rows: Vec<Vente>) -> Self {
        Self { rows, from: None }
    }
}

/// What an apply did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Rows written (inserted or replaced).
    pub rows: u64,
    /// Conflicts newly logged.
    pub conflicts: u64,
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
