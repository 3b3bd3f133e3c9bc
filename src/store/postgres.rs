//! PostgreSQL regions. Owns all PostgreSQL SQL. Every write transaction first advances the
//! region's clock row, whose lock orders the region's writers, so versions are unique; each row
//! carries the id of the transaction that wrote it (`txid`), the change feed's position.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use std::borrow::Cow;
use std::collections::HashMap;

use super::row::{VenteRow, feed_page, from_snapshot, like_pattern, region_sales, snapshot};
use super::{Applied, Batch, FeedPage, FeedPosition, Limits, Source, Store, StoreError};
use crate::domain::Backend;
use crate::domain::ListQuery;
use crate::domain::LocalWrite;
use crate::domain::Page;
use crate::domain::RegionSales;
use crate::domain::WriteOutcome;
use crate::domain::lww::Conflict;
use crate::domain::lww::dedupe_by_id;
use crate::domain::lww::plan_apply;
use crate::domain::version::Hlc;
use crate::domain::write::decide;
use crate::domain::write::first_of;
use crate::domain::write::local_vente;
use crate::domain::write::stamp;
use crate::domain::{Montant, NewVente, RegionName, Vente, VenteId, Version};

/// Batches smaller than this are never applied by `COPY` (see `PgStore::apply_in`).
const COPY_MIN: usize = 64;

/// The change feed after a position (`$1` its transaction id as text, `$2` its id) and below
/// both the oldest transaction still running and a horizon (`$4`, as text): every transaction
/// with a smaller id has ended, and any later one gets a larger id, so nothing can appear behind.
const FEED_RANGE: &str = "(txid, id) > ($1::text::xid8, $2) \
     AND txid < (SELECT least(pg_snapshot_xmin(pg_current_snapshot()), $4::text::xid8))";

const COLUMNS: &str = "id, produit, montant, date_vente, region, updated_at, deleted, hlc, origin, seen";

pub struct PgStore {
    region: RegionName,
    pool: PgPool,
    limits: Limits,
    /// Names this pool's writes in the change wake-up, so that it can ignore its own.
    writer: String,
    /// Whether the next apply tries `COPY` first (see `apply_in`).
    copy_first: AtomicBool,
}

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
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(0)
            .acquire_timeout(limits.connect_timeout)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options);
        Ok(Self { region, pool, limits, writer, copy_first: AtomicBool::new(false) })
    }

    /// The pool, for tests and benchmarks that inspect the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |e| StoreError::from_sqlx(&self.region, e)
    }

    /// Bounds a call on our side too: a server that stops answering (not only a slow query)
    /// fails as unavailable instead of hanging the caller.
    async fn bounded<T>(&self, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.limits.bound(&self.region, work).await
    }

    fn vente(&self, row: &PgRow) -> Result<Vente, StoreError> {
        let err = self.err();
        let montant: Decimal = row.try_get("montant").map_err(&err)?;
        let montant =
            Montant::from_decimal(montant).map_err(|e| StoreError::Corrupt { region: self.region.clone(), message: e.to_string() })?;
        VenteRow {
            id: row.try_get("id").map_err(&err)?,
            produit: row.try_get("produit").map_err(&err)?,
            montant_cents: montant.cents(),
            date_vente: row.try_get("date_vente").map_err(&err)?,
            region: row.try_get("region").map_err(&err)?,
            updated_at: row.try_get("updated_at").map_err(&err)?,
            deleted: row.try_get("deleted").map_err(&err)?,
            hlc: row.try_get("hlc").map_err(&err)?,
            origin: row.try_get("origin").map_err(&err)?,
            seen: row.try_get("seen").map_err(&err)?,
        }
        .into_vente(&self.region)
    }

    /// Inserts or replaces rows in one statement (arrays unnested server-side). With
    /// `only_if_newer`, a stored row is replaced only by a greater version: the LWW rule, which
    /// must agree with `Version`'s `Ord` (origin is `COLLATE "C"`, compared bytewise as in Rust).
    async fn upsert(conn: &mut PgConnection, rows: &[Vente], only_if_newer: bool, via: Option<uuid::Uuid>) -> Result<u64, sqlx::Error> {
        let n = rows.len();
        let (mut ids, mut produits, mut norms, mut montants) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut dates, mut regions, mut times, mut deleted) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut hlcs, mut origins, mut seens) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for v in rows {
            ids.push(v.id.0);
            produits.push(v.produit.as_str());
            norms.push(v.produit.search_key());
            montants.push(v.montant.to_decimal());
            dates.push(v.date_vente.get());
            regions.push(v.region.as_str());
            times.push(v.updated_at);
            deleted.push(v.deleted);
            hlcs.push(v.version.hlc.0);
            origins.push(v.version.origin.as_str());
            seens.push(v.seen.encode());
        }
        let condition = if only_if_newer { "WHERE (EXCLUDED.hlc, EXCLUDED.origin) > (vente.hlc, vente.origin)" } else { "" };
        let sql = format!(
            "INSERT INTO vente (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seen, via) \
             SELECT *, $12::uuid FROM unnest($1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::date[], $6::text[], \
                                  $7::timestamptz[], $8::bool[], $9::int8[], $10::text[], $11::text[]) \
             ON CONFLICT (id) DO UPDATE SET produit = EXCLUDED.produit, produit_norm = EXCLUDED.produit_norm, \
               montant = EXCLUDED.montant, date_vente = EXCLUDED.date_vente, region = EXCLUDED.region, \
               updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted, hlc = EXCLUDED.hlc, \
               origin = EXCLUDED.origin, seen = EXCLUDED.seen, via = EXCLUDED.via, txid = pg_current_xact_id() {condition}"
        );
        let done = sqlx::query(&sql)
            .bind(&ids)
            .bind(&produits)
            .bind(&norms)
            .bind(&montants)
            .bind(&dates)
            .bind(&regions)
            .bind(&times)
            .bind(&deleted)
            .bind(&hlcs)
            .bind(&origins)
            .bind(&seens)
            .bind(via)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected())
    }

    /// Advances the clock to stamp `n` local writes at `now`, locking the clock row until commit;
    /// returns the last value stamped.
    async fn stamp(conn: &mut PgConnection, now: DateTime<Utc>, n: usize) -> Result<i64, sqlx::Error> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let wall = Hlc::from_wall_ms(now.timestamp_millis()).0;
        let (hlc,): (i64,) = sqlx::query_as("UPDATE dsms_clock SET hlc = greatest(hlc + $1, $2 + $1 - 1) RETURNING hlc")
            .bind(n)
            .bind(wall)
            .fetch_one(&mut *conn)
            .await?;
        Ok(hlc)
    }

    /// The stored rows among `ids`, by id, locked until the transaction ends (in id order, so
    /// concurrent applies never deadlock).
    async fn get_many(&self, conn: &mut PgConnection, ids: &[VenteId]) -> Result<HashMap<VenteId, Vente>, StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM vente WHERE id = ANY($1) ORDER BY id FOR UPDATE"))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.err())?;
        rows.iter().map(|r| self.vente(r).map(|v| (v.id, v))).collect()
    }

    /// The versions stored for those of `rows` that exist, unlocked.
    async fn held_versions(&self, conn: &mut PgConnection, rows: &[Vente]) -> Result<HashMap<VenteId, Version>, StoreError> {
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<uuid::Uuid> = rows.iter().map(|v| v.id.0).collect();
        let held: Vec<(uuid::Uuid, i64, String)> = sqlx::query_as("SELECT id, hlc, origin FROM vente WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.err())?;
        Ok(held.into_iter().map(|(id, hlc, origin)| (VenteId(id), Version { hlc: Hlc(hlc), origin: RegionName::new(&origin) })).collect())
    }

    /// Moves the clock past every version in `rows` (received versions), locking it until commit.
    async fn advance_clock(conn: &mut PgConnection, rows: &[Vente]) -> Result<(), sqlx::Error> {
        let max_hlc = rows.iter().map(|v| v.version.hlc.0).max().unwrap_or(0);
        sqlx::query("UPDATE dsms_clock SET hlc = greatest(hlc, $1)").bind(max_hlc).execute(&mut *conn).await.map(drop)
    }

    /// Inserts `rows` by `COPY` in a savepoint; `None` (and nothing written) if any of them is
    /// already there. The clock moves first, as for every apply (clock, then rows: the order
    /// local writes lock in too).
    async fn try_copy(&self, conn: &mut PgConnection, rows: &[Vente], via: Option<uuid::Uuid>) -> Result<Option<u64>, StoreError> {
        let err = self.err();
        Self::advance_clock(conn, rows).await.map_err(&err)?;
        sqlx::query("SAVEPOINT dsms_copy").execute(&mut *conn).await.map_err(&err)?;
        match Self::copy_in(conn, rows, via).await {
            Ok(written) => {
                sqlx::query("RELEASE SAVEPOINT dsms_copy").execute(&mut *conn).await.map_err(&err)?;
                Ok(Some(written))
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                sqlx::query("ROLLBACK TO SAVEPOINT dsms_copy").execute(&mut *conn).await.map_err(&err)?;
                Ok(None)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// The end of an apply whose rows were all copied in: no conflict is possible, the cursor moves.
    async fn copied(&self, conn: &mut PgConnection, batch: &Batch, written: u64) -> Result<Applied, StoreError> {
        if let Some((source, end)) = &batch.from {
            Self::move_cursor(conn, source, *end).await.map_err(self.err())?;
        }
        Ok(Applied { rows: written, conflicts: 0 })
    }

    /// Moves this database's cursor on `source`'s feed forward to `end` (never back).
    async fn move_cursor(conn: &mut PgConnection, source: &Source, end: FeedPosition) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO dsms_cursor (source, source_db, pos, id, updated_at) VALUES ($1, $2, $3, $4, now()) \
             ON CONFLICT (source, source_db) DO UPDATE SET pos = EXCLUDED.pos, id = EXCLUDED.id, updated_at = now() \
             WHERE (dsms_cursor.pos, dsms_cursor.id) < (EXCLUDED.pos, EXCLUDED.id)",
        )
        .bind(source.region.as_str())
        .bind(source.db_id)
        .bind(end.pos)
        .bind(end.id)
        .execute(&mut *conn)
        .await
        .map(drop)
    }

    /// Inserts rows with `COPY … (FORMAT binary)`: the fastest way in, for rows known to be new
    /// (a duplicate id fails the whole statement).
    async fn copy_in(conn: &mut PgConnection, rows: &[Vente], via: Option<uuid::Uuid>) -> Result<u64, sqlx::Error> {
        let mut data = sqlx::postgres::PgArgumentBuffer::default();
        data.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        data.extend_from_slice(&[0; 8]); // no flags, no header extension
        for v in rows {
            data.extend_from_slice(&12_i16.to_be_bytes());
            copy_field(&mut data, &v.id.0)?;
            copy_field(&mut data, &v.produit.as_str())?;
            copy_field(&mut data, &v.produit.search_key())?;
            copy_field(&mut data, &v.montant.to_decimal())?;
            copy_field(&mut data, &v.date_vente.get())?;
            copy_field(&mut data, &v.region.as_str())?;
            copy_field(&mut data, &v.updated_at)?;
            copy_field(&mut data, &v.deleted)?;
            copy_field(&mut data, &v.version.hlc.0)?;
            copy_field(&mut data, &v.version.origin.as_str())?;
            copy_field(&mut data, &v.seen.encode())?;
            copy_field(&mut data, &via)?;
        }
        data.extend_from_slice(&(-1_i16).to_be_bytes());
        let mut copy = conn
            .copy_in_raw(
                "COPY vente (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seen, via) \
                 FROM STDIN (FORMAT binary)",
            )
            .await?;
        copy.send(data.as_slice()).await?;
        copy.finish().await
    }

    /// `Store::apply` inside the caller's transaction. New rows go in by `COPY`, which is faster
    /// than a conditional upsert but fails on any id already there, so it is tried in a
    /// savepoint: first, without looking, while the last batches were all new (`copy_first`),
    /// else once the stored versions show that none of the batch's rows is there. A few rows (a
    /// write pushed at once) take fewer round trips the usual way.
    async fn apply_in(&self, conn: &mut PgConnection, batch: &Batch, copy_first: &AtomicBool) -> Result<Applied, StoreError> {
        let rows = dedupe_by_id(&batch.rows);
        let via = batch.from.as_ref().map(|(source, _)| source.db_id);
        let copyable = rows.len() >= COPY_MIN;
        if copyable && copy_first.load(Ordering::Relaxed) {
            if let Some(written) = self.try_copy(conn, &rows, via).await? {
                return self.copied(conn, batch, written).await;
            }
            copy_first.store(false, Ordering::Relaxed);
        }
        // Rows held at exactly their version (a change coming back through another region's
        // feed, a replay) change nothing: leave them out before locking anything. Every stored
        // version is already below the clock, so the clock moves only for what is left.
        let mut held = self.held_versions(conn, &rows).await?;
        if copyable && held.is_empty() {
            if let Some(written) = self.try_copy(conn, &rows, via).await? {
                copy_first.store(true, Ordering::Relaxed);
                return self.copied(conn, batch, written).await;
            }
            // A row arrived meanwhile (another syncer): look again.
            held = self.held_versions(conn, &rows).await?;
        }
        let is_held = |v: &Vente| held.get(&v.id) == Some(&v.version);
        let rows: Cow<'_, [Vente]> =
            if rows.iter().any(is_held) { Cow::Owned(rows.iter().filter(|v| !is_held(v)).cloned().collect()) } else { rows };
        let mut stored = HashMap::new();
        if !rows.is_empty() {
            Self::advance_clock(conn, &rows).await.map_err(self.err())?;
            // Only rows stored at another version need reading, locked for the judgement.
            let ids: Vec<VenteId> = rows.iter().map(|v| v.id).filter(|id| held.contains_key(id)).collect();
            if !ids.is_empty() {
                stored = self.get_many(conn, &ids).await?;
            }
        }
        let (writes, conflicts) = plan_apply(&rows, &stored, &self.region, Utc::now());
        let written = if writes.is_empty() { 0 } else { Self::upsert(conn, &writes, true, via).await.map_err(self.err())? };
        let mut logged = 0;
        for c in &conflicts {
            logged += sqlx::query(
                "INSERT INTO dsms_conflict (vente_id, loser_hlc, loser_origin, winner_hlc, winner_origin, loser, winner, detected_in, detected_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(c.loser.id.0)
            .bind(c.loser.version.hlc.0)
            .bind(c.loser.version.origin.as_str())
            .bind(c.winner.version.hlc.0)
            .bind(c.winner.version.origin.as_str())
            .bind(snapshot(&c.loser))
            .bind(snapshot(&c.winner))
            .bind(c.detected_in.as_str())
            .bind(c.detected_at)
            .execute(&mut *conn)
            .await
            .map_err(self.err())?
            .rows_affected();
        }
        if let Some((source, end)) = &batch.from {
            Self::move_cursor(conn, source, *end).await.map_err(self.err())?;
        }
        Ok(Applied { rows: written, conflicts: logged })
    }

    async fn get_in(&self, conn: &mut PgConnection, id: VenteId) -> Result<Option<Vente>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM vente WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.err())?;
        row.map(|r| self.vente(&r)).transpose()
    }
}

/// One field of a binary `COPY` row: its length, then the value as PostgreSQL's binary format has
/// it (sqlx's own encoders write exactly that).
fn copy_field<'q, T: sqlx::Encode<'q, Postgres>>(out: &mut sqlx::postgres::PgArgumentBuffer, value: &T) -> Result<(), sqlx::Error> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let len = match value.encode_by_ref(out).map_err(sqlx::Error::Encode)? {
        sqlx::encode::IsNull::Yes => -1,
        sqlx::encode::IsNull::No => i32::try_from(out.len() - at - 4).map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
    };
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A bulk load into an empty PostgreSQL region (`Store::begin_bulk_load`): one transaction, the
/// table locked, its secondary indexes dropped until `finish` builds them again from `indexes`.
struct PgBulkLoad<'a> {
    store: &'a PgStore,
    tx: sqlx::Transaction<'static, Postgres>,
    indexes: Vec<String>,
    /// `apply_in`'s choice for this load: the table starts empty, so `COPY` first.
    copying: AtomicBool,
}

/// How long building the indexes again may take: sorting is far faster than maintaining them
/// row by row, but it runs as one statement per index, whatever the statement timeout.
const INDEX_BUILD_LIMIT: Duration = Duration::from_secs(600);

#[async_trait::async_trait]
impl super::BulkLoad for PgBulkLoad<'_> {
    async fn apply(&mut self, batch: &Batch) -> Result<Applied, StoreError> {
        let Self { store, tx, copying, .. } = self;
        store.bounded(store.apply_in(tx, batch, copying)).await
    }

    async fn finish(self: Box<Self>) -> Result<(), StoreError> {
        let Self { store, mut tx, indexes, .. } = *self;
        let err = store.err();
        let build = async {
            let limit = format!("{}s", INDEX_BUILD_LIMIT.as_secs());
            sqlx::query("SELECT set_config('statement_timeout', $1, true), set_config('maintenance_work_mem', '256MB', true)")
                .bind(&limit)
                .execute(&mut *tx)
                .await
                .map_err(&err)?;
            for definition in &indexes {
                sqlx::query(definition).execute(&mut *tx).await.map_err(&err)?;
            }
            tx.commit().await.map_err(&err)
        };
        tokio::time::timeout(INDEX_BUILD_LIMIT + store.limits.connect_timeout, build).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable {
                region: store.region.clone(),
                message: format!("index non reconstruits en {INDEX_BUILD_LIMIT:?}"),
            })
        })
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
            sqlx::migrate!("./migrations/postgres").run(&self.pool).await.map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => StoreError::from_sqlx(&self.region, e),
                e => StoreError::Database { region: self.region.clone(), message: e.to_string() },
            })?;
            // A crash of a server that acknowledges commits before they are durable loses them,
            // and may hand out their transaction ids again, which the change feed relies on.
            let (fsync, commit): (String, String) =
                sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
                    .fetch_one(&self.pool)
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
        self.bounded(async { sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(self.err()) }).await
    }

    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        self.bounded(async {
            let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM vente WHERE deleted = false"));
            if let Some(region) = &q.region {
                query.push(" AND region = ").push_bind(region.as_str());
            }
            if let Some(text) = q.q.as_deref().filter(|t| !t.is_empty()) {
                query.push(" AND produit_norm LIKE ").push_bind(like_pattern(text)).push(" ESCAPE '\\'");
            }
            if let Some(from) = q.from {
                query.push(" AND date_vente >= ").push_bind(from);
            }
            if let Some(to) = q.to {
                query.push(" AND date_vente <= ").push_bind(to);
            }
            if let Some(after) = &q.after {
                query.push(" AND (updated_at, id) < (").push_bind(after.updated_at).push(", ").push_bind(after.id.0).push(")");
            }
            query.push(" ORDER BY updated_at DESC, id DESC LIMIT ").push_bind(i64::from(q.limit) + 1);
            let rows = query.build().fetch_all(&self.pool).await.map_err(self.err())?;
            let mut items = rows.iter().map(|r| self.vente(r)).collect::<Result<Vec<_>, _>>()?;
            let more = items.len() > q.limit as usize;
            items.truncate(q.limit as usize);
            let next = if more { items.last().map(crate::domain::Cursor::of) } else { None };
            Ok(Page { items, next })
        })
        .await
    }

    async fn get(&self, id: VenteId) -> Result<Option<Vente>, StoreError> {
        self.bounded(async {
            let mut conn = self.pool.acquire().await.map_err(self.err())?;
            self.get_in(&mut conn, id).await
        })
        .await
    }

    async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError> {
        self.bounded(async {
            let mut tx = self.pool.begin().await.map_err(self.err())?;
            let hlc = Self::stamp(&mut tx, now, 1).await.map_err(self.err())?;
            let current = self.get_in(&mut tx, write.id()).await?;
            let base = current.as_ref().map(|c| c.seen.clone());
            let outcome = decide(write, current);
            let WriteOutcome::Written(planned) = outcome else { return Ok(outcome) };
            let vente = stamp(planned, &self.region, now, hlc, base.as_ref());
            Self::upsert(&mut tx, std::slice::from_ref(&vente), false, None).await.map_err(self.err())?;
            tx.commit().await.map_err(self.err())?;
            Ok(WriteOutcome::Written(vente))
        })
        .await
    }

    async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.bounded(async {
            let mut tx = self.pool.begin().await.map_err(self.err())?;
            let last = Self::stamp(&mut tx, now, rows.len()).await.map_err(self.err())?;
            let ids: Vec<VenteId> = rows.iter().map(|(id, _)| *id).collect();
            let stored = self.get_many(&mut tx, &ids).await?;
            let ventes: Vec<Vente> = rows
                .iter()
                .zip(first_of(last, rows.len())..)
                .map(|((id, new), hlc)| local_vente(&self.region, *id, new, now, hlc, stored.get(id).map(|v| &v.seen)))
                .collect();
            Self::upsert(&mut tx, &dedupe_by_id(&ventes), false, None).await.map_err(self.err())?;
            tx.commit().await.map_err(self.err())?;
            Ok(ventes)
        })
        .await
    }

    async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        self.bounded(async {
            let mut tx = self.pool.begin().await.map_err(self.err())?;
            // Our own applies do not wake listeners: they would only start rounds for echoes.
            sqlx::query("SELECT set_config('dsms.applying', 'on', true)").execute(&mut *tx).await.map_err(self.err())?;
            let applied = self.apply_in(&mut tx, batch, &self.copy_first).await?;
            tx.commit().await.map_err(self.err())?;
            Ok(applied)
        })
        .await
    }

    async fn db_id(&self) -> Result<uuid::Uuid, StoreError> {
        self.bounded(async {
            let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT db_id FROM dsms_meta").fetch_one(&self.pool).await.map_err(self.err())?;
            Ok(id)
        })
        .await
    }

    async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError> {
        self.bounded(async {
            let row: Option<(i64, uuid::Uuid)> = sqlx::query_as("SELECT pos, id FROM dsms_cursor WHERE source = $1 AND source_db = $2")
                .bind(source.region.as_str())
                .bind(source.db_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?;
            Ok(row.map(|(pos, id)| FeedPosition { pos, id }).unwrap_or_default())
        })
        .await
    }

    async fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
        before: Option<i64>,
        reader: Option<uuid::Uuid>,
    ) -> Result<FeedPage, StoreError> {
        self.bounded(async {
            // The limit is hidden from the planner (`(SELECT $3)`): seeing LIMIT 5000 against a
            // feed it wrongly believes short (no statistics yet after a bulk load), it would read
            // every remaining row (bitmap scan) and sort them for each page, instead of walking
            // `vente_feed` in order and stopping after `limit` rows.
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS}, txid::text::int8 AS pos, coalesce(via = $5, false) AS known FROM vente \
                 WHERE {FEED_RANGE} ORDER BY txid, id LIMIT (SELECT $3::int8)"
            ))
            .bind(after.pos.to_string())
            .bind(after.id)
            .bind(i64::from(limit))
            .bind(before.unwrap_or(i64::MAX).to_string())
            .bind(reader)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
            feed_page(&rows, &self.region, |row| self.vente(row))
        })
        .await
    }

    async fn feed_len(&self, after: FeedPosition, before: Option<i64>, cap: u32) -> Result<u64, StoreError> {
        self.bounded(async {
            let (n,): (i64,) =
                sqlx::query_as(&format!("SELECT count(*) FROM (SELECT 1 FROM vente WHERE {FEED_RANGE} LIMIT (SELECT $3::int8)) AS feed"))
                    .bind(after.pos.to_string())
                    .bind(after.id)
                    .bind(i64::from(cap))
                    .bind(before.unwrap_or(i64::MAX).to_string())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(self.err())?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn wants_bulk_load(&self) -> Result<bool, StoreError> {
        self.bounded(async {
            let (empty,): (bool,) =
                sqlx::query_as("SELECT NOT EXISTS (SELECT 1 FROM vente)").fetch_one(&self.pool).await.map_err(self.err())?;
            Ok(empty)
        })
        .await
    }

    async fn begin_bulk_load(&self) -> Result<Option<Box<dyn super::BulkLoad + '_>>, StoreError> {
        self.bounded(async {
            let mut tx = self.pool.begin().await.map_err(self.err())?;
            sqlx::query("SELECT set_config('dsms.applying', 'on', true), set_config('lock_timeout', '1s', true)")
                .execute(&mut *tx)
                .await
                .map_err(self.err())?;
            // Readers of the table come and go quickly; one that holds it longer lets the round
            // apply batches as usual instead.
            match sqlx::query("LOCK TABLE vente IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await {
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => return Ok(None),
                other => other.map_err(self.err())?,
            };
            let (empty,): (bool,) =
                sqlx::query_as("SELECT NOT EXISTS (SELECT 1 FROM vente)").fetch_one(&mut *tx).await.map_err(self.err())?;
            if !empty {
                return Ok(None);
            }
            // Every index but the primary key, in creation order (the planner breaks cost ties
            // by it), to be built again as they were.
            let indexes: Vec<(String, String)> = sqlx::query_as(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
                 WHERE i.indrelid = 'vente'::regclass AND NOT i.indisprimary ORDER BY i.indexrelid",
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err())?;
            for (name, _) in &indexes {
                sqlx::query(&format!("DROP INDEX {name}")).execute(&mut *tx).await.map_err(self.err())?;
            }
            let load: Box<dyn super::BulkLoad + '_> = Box::new(PgBulkLoad {
                store: self,
                tx,
                indexes: indexes.into_iter().map(|(_, definition)| definition).collect(),
                copying: AtomicBool::new(true),
            });
            Ok(Some(load))
        })
        .await
    }

    async fn feed_horizon(&self) -> Result<i64, StoreError> {
        // Every transaction that has committed has an id below the current snapshot's xmax.
        self.bounded(async {
            let (horizon,): (i64,) = sqlx::query_as("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8")
                .fetch_one(&self.pool)
                .await
                .map_err(self.err())?;
            Ok(horizon)
        })
        .await
    }

    async fn wait_for_older_transactions(&self, horizon: i64) -> Result<(), StoreError> {
        self.bounded(async {
            loop {
                let (passed,): (bool,) = sqlx::query_as("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8")
                    .bind(horizon.to_string())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(self.err())?;
                if passed {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
    }

    async fn listen_for_changes(&self, wake: &tokio::sync::Notify) -> Result<(), StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await.map_err(self.err())?;
        listener.listen("dsms_vente").await.map_err(self.err())?;
        // Changes committed while nobody was listening (start-up, a lost connection) get a round too.
        wake.notify_one();
        loop {
            // `None`: the connection was lost (it reconnects on the next call) and notifications
            // may have been missed meanwhile; a round catches up either way. Our own writes need
            // no wake-up: the write path has already asked for a round.
            match listener.try_recv().await.map_err(self.err())? {
                Some(notification) if notification.payload() == self.writer => {}
                _ => wake.notify_one(),
            }
        }
    }

    async fn conflicts(&self, limit: u32) -> Result<Vec<Conflict>, StoreError> {
        self.bounded(async {
            let rows: Vec<(uuid::Uuid, String, String, String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT vente_id, loser, winner, detected_in, detected_at FROM dsms_conflict ORDER BY detected_at DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
            rows.into_iter()
                .map(|(id, loser, winner, detected_in, detected_at)| {
                    Ok(Conflict {
                        loser: from_snapshot(id, &loser, &self.region)?,
                        winner: from_snapshot(id, &winner, &self.region)?,
                        detected_in: RegionName::new(&detected_in),
                        detected_at,
                    })
                })
                .collect()
        })
        .await
    }

    async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError> {
        self.bounded(async {
            let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM vente WHERE true"));
            if !include_deleted {
                query.push(" AND deleted = false");
            }
            if let Some(after) = after {
                query.push(" AND id > ").push_bind(after.0);
            }
            query.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
            let rows = query.build().fetch_all(&self.pool).await.map_err(self.err())?;
            rows.iter().map(|r| self.vente(r)).collect()
        })
        .await
    }

    async fn analyze(&self) -> Result<(), StoreError> {
        sqlx::query("VACUUM ANALYZE vente").execute(&self.pool).await.map(drop).map_err(self.err())
    }

    async fn count_live(&self) -> Result<u64, StoreError> {
        self.bounded(async {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM vente WHERE deleted = false").fetch_one(&self.pool).await.map_err(self.err())?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        // `now()` is the transaction's start; `clock_timestamp()` is the clock at this very moment.
        self.bounded(async {
            let (now,): (DateTime<Utc>,) = sqlx::query_as("SELECT clock_timestamp()").fetch_one(&self.pool).await.map_err(self.err())?;
            Ok(now)
        })
        .await
    }

    async fn analytics(&self, since: NaiveDate, today: NaiveDate, recent: u32) -> Result<Vec<RegionSales>, StoreError> {
        self.bounded(async {
            // One snapshot for every figure.
            let mut tx = self.pool.begin().await.map_err(self.err())?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await.map_err(self.err())?;
            let totals: Vec<(String, i64, Decimal)> = sqlx::query_as(
                "SELECT region, count(*), sum(montant) FROM vente WHERE deleted = false GROUP BY region ORDER BY region COLLATE \"C\"",
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err())?;
            let days: Vec<(String, NaiveDate, i64, Decimal)> = sqlx::query_as(
                "SELECT region, date_vente, count(*), sum(montant) FROM vente \
                 WHERE deleted = false AND date_vente BETWEEN $1 AND $2 GROUP BY region, date_vente ORDER BY region, date_vente",
            )
            .bind(since)
            .bind(today)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err())?;
            let mut out = Vec::with_capacity(totals.len());
            for (region, count, total) in totals {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM vente WHERE deleted = false AND region = $1 ORDER BY updated_at DESC, id DESC LIMIT $2"
                ))
                .bind(&region)
                .bind(i64::from(recent))
                .fetch_all(&mut *tx)
                .await
                .map_err(self.err())?;
                let recent = rows.iter().map(|r| self.vente(r)).collect::<Result<_, _>>()?;
                out.push(region_sales(&region, count, total, &days, recent));
            }
            tx.commit().await.map_err(self.err())?;
            Ok(out)
        })
        .await
    }
}
