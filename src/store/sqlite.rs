//! SQLite regions (the embedded default). Owns all SQLite SQL. One writer at a time: every write
//! transaction starts with `BEGIN IMMEDIATE`, so the clock and the feed counter advance gap-free
//! in commit order.

use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite};

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
use crate::domain::{NewVente, RegionName, Vente, VenteId};

const COLUMNS: &str = "id, produit, montant, date_vente, region, updated_at, deleted, hlc, origin, seen";
/// SQLite allows 32766 bound values per statement; 12 per row.
const ROWS_PER_STATEMENT: usize = 2000;

pub struct SqliteStore {
    region: RegionName,
    pool: SqlitePool,
    limits: Limits,
}

impl SqliteStore {
    /// Opens the file, creating it and its folder if missing (WAL mode, busy timeout).
    pub async fn open(region: RegionName, path: &Path, limits: Limits) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable { region: region.clone(), message: format!("{}: {e}", dir.display()) })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| StoreError::from_sqlx(&region, e))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(limits.statement_timeout)
            .pragma("cache_size", "-32768");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(limits.connect_timeout + limits.statement_timeout)
            .connect_lazy_with(options);
        Ok(Self { region, pool, limits })
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |e| StoreError::from_sqlx(&self.region, e)
    }

    /// Bounds a call: a locked or stalled database fails as unavailable instead of hanging.
    async fn bounded<T>(&self, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.limits.bound(&self.region, work).await
    }

    fn vente(&self, row: &SqliteRow) -> Result<Vente, StoreError> {
        let err = self.err();
        let micros: i64 = row.try_get("updated_at").map_err(&err)?;
        VenteRow {
            id: row.try_get("id").map_err(&err)?,
            produit: row.try_get("produit").map_err(&err)?,
            montant_cents: row.try_get("montant").map_err(&err)?,
            date_vente: row.try_get("date_vente").map_err(&err)?,
            region: row.try_get("region").map_err(&err)?,
            updated_at: DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| StoreError::Corrupt { region: self.region.clone(), message: format!("updated_at {micros}") })?,
            deleted: row.try_get("deleted").map_err(&err)?,
            hlc: row.try_get("hlc").map_err(&err)?,
            origin: row.try_get("origin").map_err(&err)?,
            seen: row.try_get("seen").map_err(&err)?,
        }
        .into_vente(&self.region)
    }

    /// Inserts or replaces rows; with `only_if_newer`, a stored row is replaced only by a greater
    /// version (the LWW rule, which must agree with `Version`'s `Ord`). Feed positions run from `first_seq`.
    async fn upsert(
        tx: &mut sqlx::SqliteConnection,
        rows: &[Vente],
        first_seq: i64,
        only_if_newer: bool,
        via: Option<uuid::Uuid>,
    ) -> Result<u64, sqlx::Error> {
        let mut affected = 0;
        let mut seq = first_seq;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new(format!("INSERT INTO vente ({COLUMNS}, produit_norm, seq, via) "));
            query.push_values(chunk, |mut b, v| {
                b.push_bind(v.id.0)
                    .push_bind(v.produit.as_str())
                    .push_bind(v.montant.cents())
                    .push_bind(v.date_vente.get())
                    .push_bind(v.region.as_str())
                    .push_bind(v.updated_at.timestamp_micros())
                    .push_bind(v.deleted)
                    .push_bind(v.version.hlc.0)
                    .push_bind(v.version.origin.as_str())
                    .push_bind(v.seen.encode())
                    .push_bind(v.produit.search_key())
                    .push_bind(seq)
                    .push_bind(via);
                seq += 1;
            });
            query.push(
                " ON CONFLICT (id) DO UPDATE SET produit = excluded.produit, produit_norm = excluded.produit_norm, \
                 montant = excluded.montant, date_vente = excluded.date_vente, region = excluded.region, \
                 updated_at = excluded.updated_at, deleted = excluded.deleted, hlc = excluded.hlc, \
                 origin = excluded.origin, seen = excluded.seen, seq = excluded.seq, via = excluded.via",
            );
            if only_if_newer {
                query.push(" WHERE (excluded.hlc, excluded.origin) > (vente.hlc, vente.origin)");
            }
            affected += query.build().execute(&mut *tx).await?.rows_affected();
        }
        Ok(affected)
    }

    /// Advances the clock to stamp `n` local writes at `now`; returns the last value and feed position.
    async fn stamp(tx: &mut sqlx::SqliteConnection, now: DateTime<Utc>, n: usize) -> Result<(i64, i64), sqlx::Error> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let wall = Hlc::from_wall_ms(now.timestamp_millis()).0;
        sqlx::query_as("UPDATE dsms_clock SET hlc = max(hlc + ?1, ?2 + ?1 - 1), seq = seq + ?1 WHERE id = 1 RETURNING hlc, seq")
            .bind(n)
            .bind(wall)
            .fetch_one(&mut *tx)
            .await
    }

    /// The stored rows among `ids`, by id.
    async fn get_many(&self, conn: &mut sqlx::SqliteConnection, ids: &[VenteId]) -> Result<HashMap<VenteId, Vente>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM vente WHERE id IN ("));
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(id.0);
            }
            query.push(")");
            for row in query.build().fetch_all(&mut *conn).await.map_err(self.err())? {
                let vente = self.vente(&row)?;
                found.insert(vente.id, vente);
            }
        }
        Ok(found)
    }

    async fn get_in(&self, conn: &mut sqlx::SqliteConnection, id: VenteId) -> Result<Option<Vente>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM vente WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.err())?;
        row.map(|r| self.vente(&r)).transpose()
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
                .map_err(|e| StoreError::Database { region: self.region.clone(), message: e.to_string() })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async { sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(self.err()) }).await
    }

    async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        self.bounded(async {
            let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM vente WHERE deleted = 0"));
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
                query
                    .push(" AND (updated_at, id) < (")
                    .push_bind(after.updated_at.timestamp_micros())
                    .push(", ")
                    .push_bind(after.id.0)
                    .push(")");
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
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
            let current = self.get_in(&mut tx, write.id()).await?;
            let base = current.as_ref().map(|c| c.seen.clone());
            let outcome = decide(write, current);
            let WriteOutcome::Written(planned) = outcome else { return Ok(outcome) };
            let (hlc, seq) = Self::stamp(&mut tx, now, 1).await.map_err(self.err())?;
            let vente = stamp(planned, &self.region, now, hlc, base.as_ref());
            Self::upsert(&mut tx, std::slice::from_ref(&vente), seq, false, None).await.map_err(self.err())?;
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
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
            let ids: Vec<VenteId> = rows.iter().map(|(id, _)| *id).collect();
            let stored = self.get_many(&mut tx, &ids).await?;
            let (last_hlc, last_seq) = Self::stamp(&mut tx, now, rows.len()).await.map_err(self.err())?;
            let ventes: Vec<Vente> = rows
                .iter()
                .zip(first_of(last_hlc, rows.len())..)
                .map(|((id, new), hlc)| local_vente(&self.region, *id, new, now, hlc, stored.get(id).map(|v| &v.seen)))
                .collect();
            Self::upsert(&mut tx, &dedupe_by_id(&ventes), first_of(last_seq, rows.len()), false, None).await.map_err(self.err())?;
            tx.commit().await.map_err(self.err())?;
            Ok(ventes)
        })
        .await
    }

    async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        self.bounded(async {
            let rows = dedupe_by_id(&batch.rows);
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
            let max_hlc = rows.iter().map(|v| v.version.hlc.0).max().unwrap_or(0);
            let ids: Vec<VenteId> = rows.iter().map(|v| v.id).collect();
            let stored = self.get_many(&mut tx, &ids).await?;
            let (writes, conflicts) = plan_apply(&rows, &stored, &self.region, Utc::now());
            let n = i64::try_from(writes.len()).unwrap_or(i64::MAX);
            let (last_seq,): (i64,) = sqlx::query_as("UPDATE dsms_clock SET hlc = max(hlc, ?1), seq = seq + ?2 WHERE id = 1 RETURNING seq")
                .bind(max_hlc)
                .bind(n)
                .fetch_one(&mut *tx)
                .await
                .map_err(self.err())?;
            let written = Self::upsert(&mut tx, &writes, first_of(last_seq, writes.len()), true, batch.from.as_ref().map(|(source, _)| source.db_id)).await.map_err(self.err())?;
            let mut logged = 0;
            for c in &conflicts {
                logged += sqlx::query(
                    "INSERT INTO dsms_conflict (vente_id, loser_hlc, loser_origin, winner_hlc, winner_origin, loser, winner, detected_in, detected_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(c.loser.id.0)
                .bind(c.loser.version.hlc.0)
                .bind(c.loser.version.origin.as_str())
                .bind(c.winner.version.hlc.0)
                .bind(c.winner.version.origin.as_str())
                .bind(snapshot(&c.loser))
                .bind(snapshot(&c.winner))
                .bind(c.detected_in.as_str())
                .bind(c.detected_at.timestamp_micros())
                .execute(&mut *tx)
                .await
                .map_err(self.err())?
                .rows_affected();
            }
            if let Some((source, end)) = &batch.from {
                sqlx::query(
                    "INSERT INTO dsms_cursor (source, source_db, pos, id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (source, source_db) DO UPDATE SET pos = excluded.pos, id = excluded.id, updated_at = excluded.updated_at \
                     WHERE (dsms_cursor.pos, dsms_cursor.id) < (excluded.pos, excluded.id)",
                )
                .bind(source.region.as_str())
                .bind(source.db_id)
                .bind(end.pos)
                .bind(end.id)
                .bind(Utc::now().timestamp_micros())
                .execute(&mut *tx)
                .await
                .map_err(self.err())?;
            }
            tx.commit().await.map_err(self.err())?;
            Ok(Applied { rows: written, conflicts: logged })
        })
        .await
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
        self.bounded(async {
            let row: Option<(i64, uuid::Uuid)> = sqlx::query_as("SELECT pos, id FROM dsms_cursor WHERE source = ? AND source_db = ?")
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
            // seq is unique: the id part of the position is not needed here.
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS}, seq AS pos, coalesce(via = ?, 0) AS known FROM vente WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?"
            ))
            .bind(reader)
            .bind(after.pos)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
            feed_page(&rows, &self.region, |row| self.vente(row))
        })
        .await
    }

    async fn feed_len(&self, after: FeedPosition, before: Option<i64>, cap: u32) -> Result<u64, StoreError> {
        self.bounded(async {
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM (SELECT 1 FROM vente WHERE seq > ? AND seq < ? LIMIT ?)")
                .bind(after.pos)
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(cap))
                .fetch_one(&self.pool)
                .await
                .map_err(self.err())?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn feed_horizon(&self) -> Result<i64, StoreError> {
        // Positions are handed out under the write lock, so every committed change is at or below
        // the counter.
        self.bounded(async {
            let (seq,): (i64,) =
                sqlx::query_as("SELECT seq + 1 FROM dsms_clock WHERE id = 1").fetch_one(&self.pool).await.map_err(self.err())?;
            Ok(seq)
        })
        .await
    }

    async fn conflicts(&self, limit: u32) -> Result<Vec<Conflict>, StoreError> {
        self.bounded(async {
            let rows: Vec<(uuid::Uuid, String, String, String, i64)> = sqlx::query_as(
                "SELECT vente_id, loser, winner, detected_in, detected_at FROM dsms_conflict ORDER BY detected_at DESC LIMIT ?",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
            rows.into_iter()
                .map(|(id, loser, winner, detected_in, at)| {
                    Ok(Conflict {
                        loser: from_snapshot(id, &loser, &self.region)?,
                        winner: from_snapshot(id, &winner, &self.region)?,
                        detected_in: RegionName::new(&detected_in),
                        detected_at: DateTime::from_timestamp_micros(at).unwrap_or_default(),
                    })
                })
                .collect()
        })
        .await
    }

    async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError> {
        self.bounded(async {
            let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM vente WHERE true"));
            if !include_deleted {
                query.push(" AND deleted = 0");
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
        sqlx::query("ANALYZE").execute(&self.pool).await.map(drop).map_err(self.err())
    }

    async fn count_live(&self) -> Result<u64, StoreError> {
        self.bounded(async {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM vente WHERE deleted = 0").fetch_one(&self.pool).await.map_err(self.err())?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
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
        self.bounded(async {
            // One read transaction: every figure comes from the same snapshot.
            let mut tx = self.pool.begin().await.map_err(self.err())?;
            let totals: Vec<(String, i64, i64)> =
                sqlx::query_as("SELECT region, count(*), sum(montant) FROM vente WHERE deleted = 0 GROUP BY region ORDER BY region")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(self.err())?;
            let days: Vec<(String, NaiveDate, i64, i64)> = sqlx::query_as(
                "SELECT region, date_vente, count(*), sum(montant) FROM vente \
                 WHERE deleted = 0 AND date_vente >= ?1 AND date_vente <= ?2 GROUP BY region, date_vente ORDER BY region, date_vente",
            )
            .bind(since)
            .bind(today)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err())?;
            let days: Vec<_> = days.into_iter().map(|(region, date, count, cents)| (region, date, count, Decimal::new(cents, 2))).collect();
            let mut out = Vec::with_capacity(totals.len());
            for (region, count, cents) in totals {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM vente WHERE deleted = 0 AND region = ? ORDER BY updated_at DESC, id DESC LIMIT ?"
                ))
                .bind(&region)
                .bind(i64::from(recent))
                .fetch_all(&mut *tx)
                .await
                .map_err(self.err())?;
                let recent = rows.iter().map(|r| self.vente(r)).collect::<Result<_, _>>()?;
                out.push(region_sales(&region, count, Decimal::new(cents, 2), &days, recent));
            }
            tx.commit().await.map_err(self.err())?;
            Ok(out)
        })
        .await
    }
}
