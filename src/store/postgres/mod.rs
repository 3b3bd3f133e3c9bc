//! PostgreSQL regions. Owns all PostgreSQL SQL, split by concern: read.rs, write.rs, feed.rs,
//! apply.rs, bulk.rs, analytics.rs; here the pool, row decoding and the `Store` impl that
//! delegates to them. Every write transaction first advances the
//! region's clock row, whose lock orders the region's writers, so versions are unique; each row
//! carries the id of the transaction that wrote it (`txid`), the change feed's position.

mod analytics;
mod apply;
mod bulk;
mod feed;
mod lanes;
mod push;
mod trips;

pub use trips::RoundTrips;
mod quarantine;
mod read;
mod restore;
mod write;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::quarantine::{Bad, DEFAULT_MAX_FUTURE};
use super::row::VenteRow;
use super::{Applied, Batch, BulkLoad, Epoch, FeedPage, FeedPosition, Limits, Reader, Source, Store, StoreError};
use crate::domain::lww::Conflict;
use crate::domain::quarantine::Quarantined;
use crate::domain::version::{WallClock, system_clock};
use crate::domain::{Backend, ListQuery, LocalWrite, Montant, NewVente, Page, RegionName, RegionSales, Vente, VenteId, WriteOutcome};

/// Connections a region's pool opens at most.
pub const POOL_CONNECTIONS: u32 = 16;

pub(super) const COLUMNS: &str = "id, produit, montant, date_vente, region, updated_at, deleted, hlc, origin, seen";

pub struct PgStore {
    region: RegionName,
    pool: PgPool,
    limits: Limits,
    /// Names this pool's writes in the change wake-up, so that it can ignore its own.
    writer: String,
    /// Whether the next apply tries `COPY` first (see `apply_in`).
    copy_first: AtomicBool,
    /// Whether the last batch applied found every row stored: the next skips the unlocked look
    /// at stored versions (see `apply_in`).
    all_present: AtomicBool,
    /// Wall time, for what an apply records (conflicts found, cursors moved).
    clock: WallClock,
    /// Replicated versions further ahead of this region's clock are refused (config `max_future`).
    max_future: Duration,
    /// Whether the quarantine may hold refused versions, which applies then release when an
    /// acceptable version arrives (checked once, set again by every refusal and every listing).
    refusals: AtomicBool,
    /// Connections of their own, out of the pool (`lanes.rs`): for pushes, for a round's
    /// one-message applies, for client creates.
    lanes: [tokio::sync::Mutex<Option<lanes::Kept>>; lanes::LANES],
    /// Round trips made to the database (`trips.rs`).
    trips: trips::Trips,
    /// A connection broke lately: pooled ones are checked before use.
    suspect: Suspect,
}

/// Until when pooled connections are checked before use, after one broke.
#[derive(Clone, Debug, Default)]
struct Suspect(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl Suspect {
    /// How long connections stay suspect after one broke.
    const FOR: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

    fn now(&self) -> bool {
        Utc::now().timestamp_millis() < self.0.load(Ordering::Relaxed)
    }

    /// Notes `error`: a broken connection makes every pooled one suspect for a while.
    fn note(&self, error: &sqlx::Error) {
        if matches!(error, sqlx::Error::Io(_) | sqlx::Error::Protocol(_)) {
            self.0.store((Utc::now() + Self::FOR).timestamp_millis(), Ordering::Relaxed);
        }
    }
}

/// Batches of fewer rows are applied in one message (`push.rs`); larger ones by `COPY` or the
/// apply plan, in a transaction.
const ONE_MESSAGE_MAX: usize = 64;

/// A pooled connection idle for longer is checked before use.
pub(super) const CHECK_IF_IDLE_FOR: Duration = Duration::from_secs(30);

impl PgStore {
    /// Prepares a lazy pool: nothing connects until the first call, so a region that is down at
    /// start-up is reported by the first round instead of stopping the server.
    pub fn open(region: RegionName, url: &str, limits: Limits) -> Result<Self, StoreError> {
        let statement_ms = limits.statement_timeout.as_millis().to_string();
        let writer = uuid::Uuid::new_v4().simple().to_string();
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database { region: region.clone(), message: e.to_string() })?
            .application_name("dsms")
            .options([
                ("statement_timeout", statement_ms.as_str()),
                ("idle_in_transaction_session_timeout", "60000"),
                ("dsms.writer", writer.as_str()),
                // Our statements are short, index-driven ones, but some look long to the planner
                // (a feed page's limit is hidden from it, see `changes_since`): past 1M rows their
                // estimated cost crossed `jit_above_cost`, and compiling them took ~40 ms for
                // 0.1 ms of execution, at every page of every round.
                ("jit", "off"),
            ]);
        let suspect = Suspect::default();
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(limits.connect_timeout)
            .idle_timeout(Duration::from_secs(300))
            // A ping before every statement would double its round trips over a wide-area link:
            // only a connection idle for a while (a NAT may have dropped it) is checked first, and
            // every one for a while after a connection broke (the server restarted: the others
            // died with it).
            .test_before_acquire(false)
            .before_acquire({
                let suspect = suspect.clone();
                move |conn, meta| {
                    let suspect = suspect.clone();
                    Box::pin(async move {
                        if meta.idle_for < CHECK_IF_IDLE_FOR && !suspect.now() {
                            return Ok(true);
                        }
                        Ok(sqlx::Connection::ping(conn).await.is_ok())
                    })
                }
            })
            .connect_lazy_with(options);
        let trips = trips::Trips::new(region.clone());
        Ok(Self {
            region,
            pool,
            limits,
            writer,
            copy_first: AtomicBool::new(false),
            all_present: AtomicBool::new(false),
            clock: system_clock(),
            max_future: DEFAULT_MAX_FUTURE,
            refusals: AtomicBool::new(true),
            lanes: std::array::from_fn(|_| tokio::sync::Mutex::new(None)),
            trips,
            suspect,
        })
    }

    /// Reads wall time from `clock` instead of the system clock.
    pub fn with_clock(self, clock: WallClock) -> Self {
        Self { clock, ..self }
    }

    /// Refuses replicated versions more than `max_future` ahead of this region's clock.
    pub fn with_max_future(self, max_future: Duration) -> Self {
        Self { max_future, ..self }
    }

    /// The pool, for tests and benchmarks that inspect the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, each statement counted as a round trip.
    fn db(&self) -> trips::Counted<'_, &PgPool> {
        trips::Counted { inner: &self.pool, trips: &self.trips }
    }

    /// `conn`, each statement counted as a round trip.
    fn on<'c>(&'c self, conn: &'c mut sqlx::PgConnection) -> trips::Counted<'c, &'c mut sqlx::PgConnection> {
        trips::Counted { inner: conn, trips: &self.trips }
    }

    /// Begins a transaction (one round trip).
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.trips.add(1);
        self.pool.begin().await
    }

    /// Commits `tx` (one round trip).
    async fn commit(&self, tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Result<(), sqlx::Error> {
        self.trips.add(1);
        tx.commit().await
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |e| {
            self.suspect.note(&e);
            StoreError::from_sqlx(&self.region, e)
        }
    }

    /// Bounds a call on our side too: a server that stops answering (not only a slow query)
    /// fails as unavailable instead of hanging the caller.
    async fn bounded<T>(&self, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.limits.bound(&self.region, work).await
    }

    /// A row as a sale; a row that cannot be one is `Err(Bad)` inside (it goes to quarantine),
    /// an unreadable id or a driver failure the outer error.
    fn decode(&self, row: &PgRow) -> Result<Result<Vente, Bad>, StoreError> {
        let id: uuid::Uuid = row.try_get("id").map_err(self.err())?;
        let hlc: Option<i64> = row.try_get("hlc").ok();
        let decoded = (|| {
            let get = |field: &'static str| move |e: sqlx::Error| Bad::unreadable(id, field, &e);
            let montant: Decimal = row.try_get("montant").map_err(get("montant"))?;
            let montant = Montant::from_decimal(montant).map_err(|e| Bad {
                id,
                field: "montant",
                reason: format!("montant hors limites : {e}"),
                hlc: None,
            })?;
            VenteRow {
                id,
                produit: row.try_get("produit").map_err(get("produit"))?,
                montant_cents: montant.cents(),
                date_vente: row.try_get("date_vente").map_err(get("date_vente"))?,
                region: row.try_get("region").map_err(get("region"))?,
                updated_at: row.try_get("updated_at").map_err(get("updated_at"))?,
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
    fn vente(&self, row: &PgRow) -> Result<Vente, StoreError> {
        self.decode(row)?.map_err(|bad| bad.corrupt(&self.region))
    }

    /// Decodes rows, leaving out (and quarantining) those that cannot be sales.
    async fn decode_all(&self, rows: &[PgRow]) -> Result<Vec<Vente>, StoreError> {
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
impl Store for PgStore {
    fn region(&self) -> &RegionName {
        &self.region
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.bounded(async {
            // A database from the guide's steps 1–9 is adopted first (see `adopt.rs`).
            super::adopt::adopt_guide_table(&self.pool, &self.region).await?;
            sqlx::migrate!("./migrations/postgres").run(&self.pool).await.map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => StoreError::from_sqlx(&self.region, e),
                e => StoreError::Database { region: self.region.clone(), message: e.to_string() },
            })?;
            super::foreign::record_region_pg(&self.pool, &self.region).await?;
            // A crash of a server that acknowledges commits before they are durable loses them,
            // and may hand out their transaction ids again, which the change feed relies on.
            let (fsync, commit): (String, String) =
                sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
                    .fetch_one(self.db())
                    .await
                    .map_err(self.err())?;
            if fsync != "on" || commit == "off" {
                tracing::warn!(region = %self.region, %fsync, synchronous_commit = %commit,
                    "PostgreSQL non durable : un crash de ce serveur peut perdre des écritures acquittées");
            }
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async { sqlx::query("SELECT 1").execute(self.db()).await.map(drop).map_err(self.err()) }).await
    }

    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        PgStore::list(self, q).await
    }

    async fn get(&self, id: VenteId) -> Result<Option<Vente>, StoreError> {
        PgStore::get(self, id).await
    }

    async fn feed_hold(&self) -> Result<Option<crate::store::FeedHold>, StoreError> {
        PgStore::feed_hold(self).await
    }

    async fn get_batch(&self, ids: &[VenteId]) -> Result<std::collections::HashMap<VenteId, Vente>, StoreError> {
        PgStore::get_batch(self, ids).await
    }

    async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError> {
        PgStore::write(self, write, now).await
    }

    async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError> {
        PgStore::write_many(self, rows, now).await
    }

    async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        // A few rows (the steady trickle of a round) in one message; more by COPY or the plan.
        if batch.rows.len() < ONE_MESSAGE_MAX {
            let rows = crate::domain::lww::dedupe_by_id(&batch.rows).into_owned();
            return PgStore::apply_in_one(self, &Batch { rows, from: batch.from.clone(), epoch: batch.epoch }, lanes::Lane::Round).await;
        }
        PgStore::apply(self, batch).await
    }

    async fn push(&self, rows: &[Vente]) -> Result<Applied, StoreError> {
        PgStore::push(self, rows).await
    }

    async fn db_id(&self) -> Result<uuid::Uuid, StoreError> {
        self.bounded(async {
            let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT db_id FROM dsms_meta").fetch_one(self.db()).await.map_err(self.err())?;
            Ok(id)
        })
        .await
    }

    async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError> {
        PgStore::cursor(self, source).await
    }

    async fn contact(&self, epochs: &[uuid::Uuid], open: Option<DateTime<Utc>>) -> Result<crate::store::Contact, StoreError> {
        PgStore::contact(self, epochs, open).await
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
        PgStore::changes_since(self, after, limit, before, reader).await
    }

    async fn open_epoch(&self, forget_before: DateTime<Utc>) -> Result<Epoch, StoreError> {
        PgStore::open_epoch(self, forget_before).await
    }

    async fn held_epochs(&self, epochs: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError> {
        PgStore::held_epochs(self, epochs).await
    }

    async fn rotate_identity(&self, old: uuid::Uuid) -> Result<uuid::Uuid, StoreError> {
        PgStore::rotate_identity(self, old).await
    }

    async fn feed_len(&self, after: FeedPosition, before: Option<i64>, cap: u32) -> Result<u64, StoreError> {
        PgStore::feed_len(self, after, before, cap).await
    }

    async fn wants_bulk_load(&self) -> Result<bool, StoreError> {
        PgStore::wants_bulk_load(self).await
    }

    async fn begin_bulk_load(&self) -> Result<Option<Box<dyn super::BulkLoad + '_>>, StoreError> {
        PgStore::begin_bulk_load(self).await
    }

    async fn feed_horizon(&self) -> Result<i64, StoreError> {
        PgStore::feed_horizon(self).await
    }

    async fn wait_for_older_transactions(&self, horizon: i64) -> Result<(), StoreError> {
        PgStore::wait_for_older_transactions(self, horizon).await
    }

    async fn listen_for_changes(&self, wake: &tokio::sync::Notify) -> Result<(), StoreError> {
        PgStore::listen_for_changes(self, wake).await
    }

    async fn conflicts(&self, limit: u32) -> Result<Vec<Conflict>, StoreError> {
        PgStore::conflicts(self, limit).await
    }

    async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError> {
        PgStore::scan(self, after, limit, include_deleted).await
    }

    async fn quarantine(&self, limit: u32) -> Result<Vec<Quarantined>, StoreError> {
        let items = PgStore::quarantine(self, limit).await?;
        if items.iter().any(|q| q.source != self.region) {
            self.refusals.store(true, Ordering::Relaxed);
        }
        Ok(items)
    }

    async fn analyze(&self) -> Result<(), StoreError> {
        sqlx::query("VACUUM ANALYZE vente").execute(self.db()).await.map(drop).map_err(self.err())
    }

    async fn count_live(&self) -> Result<u64, StoreError> {
        PgStore::count_live(self).await
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        // `now()` is the transaction's start; `clock_timestamp()` is the clock at this very moment.
        self.bounded(async {
            let (now,): (DateTime<Utc>,) = sqlx::query_as("SELECT clock_timestamp()").fetch_one(self.db()).await.map_err(self.err())?;
            Ok(now)
        })
        .await
    }

    async fn analytics(&self, since: NaiveDate, today: NaiveDate, recent: u32) -> Result<Vec<RegionSales>, StoreError> {
        PgStore::analytics(self, since, today, recent).await
    }
}
