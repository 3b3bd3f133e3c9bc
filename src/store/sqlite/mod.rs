//! SQLite regions (the embedded default). Owns all SQLite SQL, split by concern
//! (read.rs, write.rs, feed.rs, apply.rs, analytics.rs); here the pool, row decoding and the
//! `Store` impl that delegates to them. One writer at a time: every write
//! transaction starts with `BEGIN IMMEDIATE`, so the clock and the feed counter advance gap-free
//! in commit order.

mod analytics;
mod apply;
mod feed;
mod quarantine;
mod read;
mod restore;
mod write;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};

use super::quarantine::{Bad, DEFAULT_MAX_FUTURE};
use super::row::VenteRow;
use super::{Applied, Batch, Epoch, FeedPage, FeedPosition, Limits, Reader, Source, Store, StoreError};
use crate::domain::lww::Conflict;
use crate::domain::quarantine::Quarantined;
use crate::domain::version::{WallClock, system_clock};
use crate::domain::{Backend, ListQuery, LocalWrite, NewVente, Page, RegionName, RegionSales, Vente, VenteId, WriteOutcome};

pub(super) const COLUMNS: &str = "id, produit, montant, date_vente, region, updated_at, deleted, hlc, origin, seen";
/// SQLite allows 32766 bound values per statement; 12 per row.
pub(super) const ROWS_PER_STATEMENT: usize = 2000;

pub struct SqliteStore {
    region: RegionName,
    pool: SqlitePool,
    limits: Limits,
    /// Wall time, for what an apply records (conflicts found, cursors moved).
    clock: WallClock,
    /// Replicated versions further ahead of this region's clock are refused (config `max_future`).
    max_future: Duration,
    /// Whether the quarantine may hold refused versions, which applies then release when an
    /// acceptable version arrives (checked once, set again by every refusal and every listing).
    refusals: AtomicBool,
}

/// How long a commit waits for the disk. Regions always run `Full`: in WAL mode with
/// `synchronous=NORMAL` a power cut can lose the last acknowledged commits, and a lost commit
/// would let feed positions be handed out again. `Normal` exists only to measure what `Full`
/// costs (`dsms bench write`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: the WAL is synced at every commit.
    Full,
    /// `synchronous=NORMAL`: synced at checkpoints only.
    Normal,
}

impl SqliteStore {
    /// Opens the file, creating it and its folder if missing (WAL mode, `synchronous=FULL`, busy
    /// timeout).
    pub async fn open(region: RegionName, path: &Path, limits: Limits) -> Result<Self, StoreError> {
        Self::open_with(region, path, limits, Durability::Full).await
    }

    /// As `open`, with the given durability (benchmarks).
    pub async fn open_with(region: RegionName, path: &Path, limits: Limits, durability: Durability) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable { region: region.clone(), message: format!("{}: {e}", dir.display()) })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| StoreError::from_sqlx(&region, e))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(limits.statement_timeout)
            .pragma("cache_size", "-32768");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(limits.connect_timeout + limits.statement_timeout)
            .connect_lazy_with(options);
        Ok(Self { region, pool, limits, clock: system_clock(), max_future: DEFAULT_MAX_FUTURE, refusals: AtomicBool::new(true) })
    }

    /// Reads wall time from `clock` instead of the system clock.
    pub fn with_clock(self, clock: WallClock) -> Self {
        Self { clock, ..self }
    }

    /// The pool, for tests that inspect the database directly or close it (to put a backup back).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Refuses replicated versions more than `max_future` ahead of this region's clock.
    pub fn with_max_future(self, max_future: Duration) -> Self {
        Self { max_future, ..self }
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |e| StoreError::from_sqlx(&self.region, e)
    }

    /// Bounds a call: a locked or stalled database fails as unavailable instead of hanging.
    async fn bounded<T>(&self, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.limits.bound(&self.region, work).await
    }

    /// A row as a sale; a row that cannot be one (SQLite keeps any value in any column) is
    /// `Err(Bad)` inside (it goes to quarantine), an unreadable id or a driver failure the outer error.
    fn decode(&self, row: &SqliteRow) -> Result<Result<Vente, Bad>, StoreError> {
        let id: uuid::Uuid = row.try_get("id").map_err(self.err())?;
        let hlc: Option<i64> = row.try_get("hlc").ok();
        let decoded = (|| {
            let get = |field: &'static str| move |e: sqlx::Error| Bad::unreadable(id, field, &e);
            let micros: i64 = row.try_get("updated_at").map_err(get("updated_at"))?;
            VenteRow {
                id,
                produit: row.try_get("produit").map_err(get("produit"))?,
                montant_cents: row.try_get("montant").map_err(get("montant"))?,
                date_vente: row.try_get("date_vente").map_err(get("date_vente"))?,
                region: row.try_get("region").map_err(get("region"))?,
                updated_at: DateTime::from_timestamp_micros(micros).ok_or_else(|| Bad {
                    id,
                    field: "updated_at",
                    reason: format!("updated_at hors limites : {micros}"),
                    hlc: None,
                })?,
                deleted: row.try_get("deleted").map_err(get("deleted"))?,
                hlc: row.try_get("hlc").map_err(get("hlc"))?,
                origin: row.try_get("origin").map_err(get("origin"))?,
                seen: row.try_get("seen").map_err(get("seen"))?,
            }
            .decode()
        })();
        Ok(decoded.map_err(|bad| bad.at(hlc)))
    }

    /// A row as a sale, for readers that must see it as it is (a write replacing it).
    fn vente(&self, row: &SqliteRow) -> Result<Vente, StoreError> {
        self.decode(row)?.map_err(|bad| bad.corrupt(&self.region))
    }

    /// Decodes rows, leaving out (and quarantining) those that cannot be sales.
    async fn decode_all(&self, rows: &[SqliteRow]) -> Result<Vec<Vente>, StoreError> {
        let mut ventes = Vec::with_capacity(rows.len());
        let mut bad = Vec::new();
        for row in rows {
            match self.decode(row)? {
                Ok(v) => ventes.push(v),
                Err(b) => bad.push(b),
            }
        }
        self.quarantine_bad_now(&bad).await?;
        Ok(ventes)
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn region(&self) -> &RegionName {
        &self.region
    }

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.bounded(async {
            sqlx::migrate!("./migrations/sqlite")
                .run(&self.pool)
                .await
                .map_err(|e| StoreError::Database { region: self.region.clone(), message: e.to_string() })?;
            super::foreign::record_region_sqlite(&self.pool, &self.region).await
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async { sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(self.err()) }).await
    }

    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        SqliteStore::list(self, q).await
    }

    async fn get(&self, id: VenteId) -> Result<Option<Vente>, StoreError> {
        SqliteStore::get(self, id).await
    }

    async fn get_batch(&self, ids: &[VenteId]) -> Result<std::collections::HashMap<VenteId, Vente>, StoreError> {
        self.bounded(async {
            let mut conn = self.pool.acquire().await.map_err(self.err())?;
            // Rows that cannot be decoded are left out: the apply that follows judges them by
            // their version alone.
            Ok(self.get_many_readable(&mut conn, ids).await?.0)
        })
        .await
    }

    async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError> {
        SqliteStore::write(self, write, now).await
    }

    async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError> {
        SqliteStore::write_many(self, rows, now).await
    }

    async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        SqliteStore::apply(self, batch).await
    }

    async fn db_id(&self) -> Result<uuid::Uuid, StoreError> {
        self.bounded(async {
            let (id,): (uuid::Uuid,) =
                sqlx::query_as("SELECT db_id FROM dsms_meta WHERE id = 1").fetch_one(&self.pool).await.map_err(self.err())?;
            Ok(id)
        })
        .await
    }

    async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError> {
        SqliteStore::cursor(self, source).await
    }

    async fn cursor_rows(&self) -> Result<Vec<crate::store::CursorRow>, StoreError> {
        Self::cursor_rows(self).await
    }

    async fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
        before: Option<i64>,
        reader: Option<&Reader>,
    ) -> Result<FeedPage, StoreError> {
        SqliteStore::changes_since(self, after, limit, before, reader).await
    }

    async fn open_epoch(&self, forget_before: DateTime<Utc>) -> Result<Epoch, StoreError> {
        SqliteStore::open_epoch(self, forget_before).await
    }

    async fn held_epochs(&self, epochs: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError> {
        SqliteStore::held_epochs(self, epochs).await
    }

    async fn rotate_identity(&self, old: uuid::Uuid) -> Result<uuid::Uuid, StoreError> {
        SqliteStore::rotate_identity(self, old).await
    }

    async fn feed_len(&self, after: FeedPosition, before: Option<i64>, cap: u32) -> Result<u64, StoreError> {
        SqliteStore::feed_len(self, after, before, cap).await
    }

    async fn feed_horizon(&self) -> Result<i64, StoreError> {
        SqliteStore::feed_horizon(self).await
    }

    async fn conflicts(&self, limit: u32) -> Result<Vec<Conflict>, StoreError> {
        SqliteStore::conflicts(self, limit).await
    }

    async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError> {
        SqliteStore::scan(self, after, limit, include_deleted).await
    }

    async fn quarantine(&self, limit: u32) -> Result<Vec<Quarantined>, StoreError> {
        let items = SqliteStore::quarantine(self, limit).await?;
        if items.iter().any(|q| q.source != self.region) {
            self.refusals.store(true, Ordering::Relaxed);
        }
        Ok(items)
    }

    async fn analyze(&self) -> Result<(), StoreError> {
        sqlx::query("ANALYZE").execute(&self.pool).await.map(drop).map_err(self.err())
    }

    async fn count_live(&self) -> Result<u64, StoreError> {
        SqliteStore::count_live(self).await
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        self.bounded(async {
            // SQLite has no server: its `now` is this host's clock, read through the same round trip.
            let (text,): (String,) =
                sqlx::query_as("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')").fetch_one(&self.pool).await.map_err(self.err())?;
            chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
                .map(|t| t.and_utc())
                .map_err(|e| StoreError::Corrupt { region: self.region.clone(), message: format!("horloge « {text} » : {e}") })
        })
        .await
    }

    async fn analytics(&self, since: NaiveDate, today: NaiveDate, recent: u32) -> Result<Vec<RegionSales>, StoreError> {
        SqliteStore::analytics(self, since, today, recent).await
    }
}
