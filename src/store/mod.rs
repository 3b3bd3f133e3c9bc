//! One region's database behind one trait, with two real implementations: PostgreSQL and SQLite;
//! and this server's own state database (state.rs). Owns: the storage interface, its
//! feed and batch types, its errors and where a region's database is (url.rs). All SQL lives
//! here: `postgres/`, `sqlite/`, `apply.rs` (the apply plan) and `state.rs`; rules (validation,
//! LWW, local writes) live in `domain/`.

mod adopt;
mod apply;
mod foreign;
pub mod guard;
pub mod postgres;
pub mod quarantine;
mod row;
mod skip;
pub mod sqlite;
pub mod state;
pub mod url;
pub mod users;

pub use postgres::RoundTrips;
pub use url::{DatabaseUrl, RegionConfig};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::version::{WallClock, system_clock};
use crate::domain::{Backend, ListQuery, LocalWrite, NewVente, Page, RegionName, RegionSales, Vente, VenteId, WriteOutcome};

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
        // sslmode=require against a server without TLS, an unknown CA, a wrong host name…
        let message = match tls_cause(&error) {
            Some(cause) => format!("connexion TLS impossible : {cause}"),
            None => error.to_string(),
        };
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

/// Why a connection failed in its TLS handshake, if it did (sqlx reports some of them as I/O).
fn tls_cause(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Tls(cause) => Some(cause.to_string()),
        sqlx::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>()).map(ToString::to_string),
        _ => None,
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
    /// The sales held among `ids`, tombstones included, in one read (an import judges a batch of
    /// lines against them).
    async fn get_batch(&self, ids: &[VenteId]) -> Result<std::collections::HashMap<VenteId, Vente>, StoreError> {
        let mut found = std::collections::HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(vente) = self.get(*id).await? {
                found.insert(*id, vente);
            }
        }
        Ok(found)
    }
    /// Applies a client write, stamping a new version from this region's clock (same transaction).
    async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError>;
    /// Creates or overwrites many sales as local writes with fresh versions (import, seed).
    async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError>;
    /// Applies replicated rows in one transaction: each replaces the stored row only if its
    /// version is greater (`domain::lww::judge`), concurrent losers go to the conflict log, the
    /// clock moves past every version received, and the source's cursor moves to the batch's end.
    /// Idempotent and order-independent.
    async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError>;
    /// Applies versions pushed by the region they were written in, as `apply` does a
    /// `Batch::push`, in as few round trips as the engine allows (PostgreSQL: one message).
    async fn push(&self, rows: &[Vente]) -> Result<Applied, StoreError> {
        self.apply(&Batch::push(rows.to_vec())).await
    }
    /// This database's identity (see `Source`).
    async fn db_id(&self) -> Result<uuid::Uuid, StoreError>;
    /// How far this database has applied `source`'s feed.
    async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError>;
    /// Every cursor this database keeps on other feeds, in one query: how far it has applied each
    /// source database's feed (what it holds, as a reader: `Reader`), and the epoch it last read
    /// each under (what it remembers of them: `Witness`).
    async fn cursor_rows(&self) -> Result<Vec<CursorRow>, StoreError>;
    /// What a round asks of a region when it starts, in one round trip where the engine allows
    /// (PostgreSQL: one statement): its identity and feed horizon, whether a transaction below the
    /// horizon still runs, which of `epochs` it holds (`held_epochs`), and, with `open`, the epoch
    /// its readers record in this round (`open_epoch(open)`).
    async fn contact(&self, epochs: &[uuid::Uuid], open: Option<DateTime<Utc>>) -> Result<Contact, StoreError> {
        let db_id = self.db_id().await?;
        let horizon = self.feed_horizon().await?;
        let held = self.held_epochs(epochs).await?;
        let epoch = match open {
            Some(forget_before) => Some(self.open_epoch(forget_before).await?),
            None => None,
        };
        Ok(Contact { db_id, horizon, settled: false, held, epoch })
    }
    /// The next `limit` positions of this region's feed after `after`, in feed order; with
    /// `before` (a `feed_horizon`), only positions below it. With a `reader`, what it already
    /// holds is covered but not returned: versions received from it (row by row, `via`), and
    /// whole ranges of copies applied from a source whose feed it has read past the batch's end
    /// (the apply log, `skip.rs`), which are not even visited.
    async fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
        before: Option<i64>,
        reader: Option<&Reader>,
    ) -> Result<FeedPage, StoreError>;
    /// A bound above every change committed so far: a round reads feeds only below the horizons
    /// taken at its start, so rows that other pairs apply during the round (copies the targets
    /// already hold, or soon will) wait for the next round instead of being read back at once.
    async fn feed_horizon(&self) -> Result<i64, StoreError>;
    /// The epoch readers of this feed record with what they read now (see `Epoch`): the latest
    /// one if the feed has not moved since, else a new one. Epochs older than `forget_before`
    /// are forgotten, the latest excepted.
    async fn open_epoch(&self, forget_before: DateTime<Utc>) -> Result<Epoch, StoreError>;
    /// Those of `epochs` this database holds (a restore to an earlier point loses the later ones).
    async fn held_epochs(&self, epochs: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError>;
    /// Gives this database a new identity if it is still `old` (two servers detecting the same
    /// restore rotate it once) and returns the identity it has now. Its peers then read it from
    /// the start, and it reads them ignoring `via`. On PostgreSQL, rows whose feed position lies
    /// beyond the server's transaction counter (restored into a younger cluster) move to the present.
    async fn rotate_identity(&self, old: uuid::Uuid) -> Result<uuid::Uuid, StoreError>;
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
    /// What holds this region's feed back, if anything (PostgreSQL: the feed reads only below the
    /// oldest transaction still running anywhere in the cluster). `None`: nothing is held.
    async fn feed_hold(&self) -> Result<Option<FeedHold>, StoreError> {
        Ok(None)
    }
    /// The rows this database has set aside, newest first, at most `limit`: its own rows that
    /// cannot be decoded, and versions it refused (too far in the future). See `quarantine.rs`.
    async fn quarantine(&self, limit: u32) -> Result<Vec<crate::domain::quarantine::Quarantined>, StoreError>;
    /// The most recent conflicts this database logged, newest first.
    async fn conflicts(&self, limit: u32) -> Result<Vec<crate::domain::lww::Conflict>, StoreError>;
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

/// A position in a region's change feed: rows are read in `(pos, id)` order. On PostgreSQL `pos`
/// is the id of the transaction that wrote the row (read only below the oldest transaction still
/// running, so a late commit is never skipped); on SQLite a counter advanced under the write lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedPosition {
    pub pos: i64,
    pub id: uuid::Uuid,
}

/// A feed held back by a transaction still running (`Store::feed_hold`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedHold {
    /// The held horizon: the oldest transaction id still running; the feed reads only below it.
    pub horizon: i64,
    /// Committed rows at or above the horizon, waiting behind it (counted up to a cap).
    pub pending: u64,
    /// The backend holding it, when this role may see it (`pg_stat_activity`).
    pub blocker: Option<Blocker>,
}

/// The session whose transaction holds a feed back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    pub pid: i32,
    /// Its database (any of the cluster's), when known.
    pub database: Option<String>,
    /// How long its transaction has been open, by the server's clock; `None` when this role may
    /// not see it (`pg_monitor` or `pg_read_all_stats` shows it).
    pub age: Option<std::time::Duration>,
    /// `idle in transaction`, `active`…, when visible.
    pub state: Option<String>,
}

/// A page of a change feed (`Store::changes_since`).
#[derive(Clone, Debug, Default)]
pub struct FeedPage {
    /// The changes to deliver, in feed order.
    pub rows: Vec<(FeedPosition, Vente)>,
    /// Rows read, those left out for the reader (`via`) included.
    pub scanned: usize,
    /// Rows covered without being read: ranges of copies the reader holds (`Reader::holds`),
    /// counted as the apply log recorded them (rows overwritten since are counted too).
    pub skipped: u64,
    /// The last position covered (where the reader's cursor may move).
    pub end: Option<FeedPosition>,
    /// The page stopped before the end of the feed: ask again from `end`.
    pub more: bool,
}

/// A reader of a feed, and what it holds: its identity and its cursors on every source database.
#[derive(Clone, Debug, Default)]
pub struct Reader {
    pub db_id: uuid::Uuid,
    /// How far the reader has applied each source database's feed (`Store::cursors`).
    pub cursors: HashMap<uuid::Uuid, FeedPosition>,
}

impl Reader {
    /// Whether the reader holds every version that an apply of a batch from `source_db`, ending at
    /// `end` in that source's feed, wrote (or a newer one, or will read a newer one from that
    /// source): it is that source itself, or it has read the source's feed through `end`.
    pub fn holds(&self, source_db: uuid::Uuid, end: FeedPosition) -> bool {
        source_db == self.db_id || self.cursors.get(&source_db).is_some_and(|read| *read >= end)
    }
}

/// A source database: its region and its identity (a recreated database has a new one, so
/// cursors into its feed start over instead of skipping rows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub region: RegionName,
    pub db_id: uuid::Uuid,
}

/// Rows to apply, and where they came from: with a source and an end position, the target moves
/// its cursor for that source to `end` in the same transaction, and records `epoch` (the source's
/// epoch the rows were read under) with it.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub rows: Vec<Vente>,
    pub from: Option<(Source, FeedPosition)>,
    pub epoch: Option<uuid::Uuid>,
}

impl Batch {
    /// Rows pushed outside the feed (a write copied at once to the other regions). They move no
    /// cursor and need no epoch: the target's feed carries them on (not marked `via`), so a
    /// restored writer gets them back from there.
    pub fn push(rows: Vec<Vente>) -> Self {
        Self { rows, from: None, epoch: None }
    }
}

/// A mark in a database's history that a restore to an earlier point cannot keep. Every change
/// of the feed below `below` had committed before the epoch was recorded, so a database that still
/// holds the epoch still holds everything a reader read under it; a reader that finds its epoch
/// missing knows the database went back in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch {
    pub id: uuid::Uuid,
    /// A `feed_horizon` below which every change had committed before the epoch (SQLite: exact,
    /// the counter under the write lock; PostgreSQL: the oldest running transaction).
    pub below: i64,
}

/// A region at the start of a round (`Store::contact`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub db_id: uuid::Uuid,
    /// Its `feed_horizon`.
    pub horizon: i64,
    /// Every transaction below the horizon had ended (`false`: perhaps not, see
    /// `wait_for_older_transactions`).
    pub settled: bool,
    /// Those of the epochs asked about that it holds.
    pub held: Vec<uuid::Uuid>,
    /// The epoch opened, when asked.
    pub epoch: Option<Epoch>,
}

/// One cursor a database keeps on another's feed (`Store::cursor_rows`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorRow {
    pub source: RegionName,
    pub source_db: uuid::Uuid,
    pub witness: Witness,
}

/// How far a reader has applied each source database's feed, from its cursor rows: the furthest
/// where several name one database.
pub fn known_cursors(rows: &[CursorRow]) -> HashMap<uuid::Uuid, FeedPosition> {
    let mut known = HashMap::new();
    for row in rows {
        let position = row.witness.cursor;
        known.entry(row.source_db).and_modify(|p: &mut FeedPosition| *p = (*p).max(position)).or_insert(position);
    }
    known
}

/// What a reader remembers of a source: its cursor and the epoch it last read under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Witness {
    pub cursor: FeedPosition,
    pub epoch: Option<uuid::Uuid>,
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
    open_with_clock(region, limits, system_clock()).await
}

/// As `open`, reading wall time from `clock` (tests skew it).
pub async fn open_with_clock(region: &RegionConfig, limits: Limits, clock: WallClock) -> Result<Arc<dyn Store>, StoreError> {
    open_with_options(region, limits, clock, quarantine::DEFAULT_MAX_FUTURE).await
}

/// As `open_with_clock`, refusing replicated versions more than `max_future` ahead of the
/// region's clock (config `max_future`).
pub async fn open_with_options(
    region: &RegionConfig,
    limits: Limits,
    clock: WallClock,
    max_future: Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &region.url {
        DatabaseUrl::Postgres(url) => {
            Arc::new(postgres::PgStore::open(region.name.clone(), url, limits)?.with_clock(clock).with_max_future(max_future))
        }
        DatabaseUrl::Sqlite(path) => {
            Arc::new(sqlite::SqliteStore::open(region.name.clone(), path, limits).await?.with_clock(clock).with_max_future(max_future))
        }
    })
}
