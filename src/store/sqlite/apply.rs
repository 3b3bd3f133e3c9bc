//! Applying replicated rows on SQLite: the statements of the shared apply plan (`store::apply`).
//! The write lock (`BEGIN IMMEDIATE`) is taken first, so reads and writes see one state.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{ROWS_PER_STATEMENT, SqliteStore};
use crate::domain::lww::{Conflict, dedupe_by_id};
use crate::domain::version::Hlc;
use crate::domain::write::first_of;
use crate::domain::{RegionName, Vente, VenteId, Version};
use crate::store::apply::{ApplySql, Held, apply_rows};
use crate::store::quarantine::{any_beyond, screen};
use crate::store::row::snapshot;
use crate::store::{Applied, Batch, FeedPosition, Source, StoreError};

impl SqliteStore {
    pub(super) async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        self.bounded(async {
            let rows = dedupe_by_id(&batch.rows);
            let now = (self.clock)();
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
            let rows = self.screen_in(&mut tx, batch, &rows, now).await?;
            let mut sql =
                SqliteApply { store: self, conn: &mut tx, via: batch.from.as_ref().map(|(source, _)| source.db_id), positions: None };
            let held = sql.held_versions(&rows).await?;
            let (applied, _) =
                apply_rows(&mut sql, &rows, Held::Versions(&held), batch.from.as_ref(), batch.epoch, &self.region, now).await?;
            // The upsert ran marked as dsms's own (see `end_stamping`); the mark ends with it.
            Self::end_stamping(&mut tx).await.map_err(self.err())?;
            tx.commit().await.map_err(self.err())?;
            Ok(applied)
        })
        .await
    }
}

impl SqliteStore {
    /// Leaves out (and quarantines) the versions too far ahead of this region's clock, the later
    /// of this server's and this host's as SQLite reads it; releases versions refused earlier from
    /// the same source that are now replaced by acceptable ones.
    async fn screen_in<'r>(
        &self,
        conn: &mut SqliteConnection,
        batch: &Batch,
        rows: &'r [Vente],
        now: DateTime<Utc>,
    ) -> Result<Cow<'r, [Vente]>, StoreError> {
        let source = batch.from.as_ref().map(|(source, _)| &source.region);
        let mut clock = now;
        if any_beyond(rows, now, self.max_future) {
            let (micros,): (i64,) = sqlx::query_as("SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)")
                .fetch_one(&mut *conn)
                .await
                .map_err(self.err())?;
            clock = clock.max(DateTime::from_timestamp_micros(micros).unwrap_or(now));
        }
        let (accepted, refused) = screen(rows, source, clock, self.max_future);
        if !refused.is_empty() {
            self.quarantine_refused(conn, &refused, now).await?;
            self.refusals.store(true, Ordering::Relaxed);
        }
        if let (Some(source), true) = (source, self.refusals.load(Ordering::Relaxed) && !accepted.is_empty()) {
            if self.holds_refusals(conn).await? {
                let ids: Vec<uuid::Uuid> = accepted.iter().map(|v| v.id.0).collect();
                self.release_accepted(conn, source, &ids).await?;
            } else {
                self.refusals.store(false, Ordering::Relaxed);
            }
        }
        Ok(accepted)
    }
}

/// The apply plan's statements on SQLite, inside the caller's write transaction; `via` marks every
/// row written with the database it came from (see `Store::changes_since`).
struct SqliteApply<'c> {
    store: &'c SqliteStore,
    conn: &'c mut SqliteConnection,
    via: Option<uuid::Uuid>,
    /// The feed positions the upsert took (`first..=last`), for the apply log.
    positions: Option<(i64, i64)>,
}

#[async_trait::async_trait]
impl ApplySql for SqliteApply<'_> {
    async fn held_versions(&mut self, rows: &[Vente]) -> Result<HashMap<VenteId, Version>, StoreError> {
        let mut held = HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new("SELECT id, hlc, origin FROM vente WHERE id IN (");
            let mut list = query.separated(", ");
            for v in chunk {
                list.push_bind(v.id.0);
            }
            query.push(")");
            let found: Vec<(uuid::Uuid, i64, String)> =
                query.build_query_as().fetch_all(&mut *self.conn).await.map_err(self.store.err())?;
            held.extend(
                found.into_iter().map(|(id, hlc, origin)| (VenteId(id), Version { hlc: Hlc(hlc), origin: RegionName::new(&origin) })),
            );
        }
        Ok(held)
    }

    async fn advance_clock(&mut self, rows: &[Vente]) -> Result<(), StoreError> {
        let max_hlc = rows.iter().map(|v| v.version.hlc.0).max().unwrap_or(0);
        sqlx::query("UPDATE dsms_clock SET hlc = max(hlc, ?1) WHERE id = 1")
            .bind(max_hlc)
            .execute(&mut *self.conn)
            .await
            .map(drop)
            .map_err(self.store.err())
    }

    async fn stored(&mut self, ids: &[VenteId]) -> Result<(HashMap<VenteId, Vente>, Vec<VenteId>), StoreError> {
        self.store.get_many_readable(self.conn, ids).await
    }

    async fn release_readable(&mut self, ids: &[VenteId]) -> Result<(), StoreError> {
        let (readable, _) = self.store.get_many_readable(self.conn, ids).await?;
        let ids: Vec<uuid::Uuid> = readable.keys().map(|id| id.0).collect();
        self.store.release_healed_in(self.conn, &ids).await
    }

    async fn upsert_newer(&mut self, rows: &[Vente]) -> Result<u64, StoreError> {
        // Feed positions for the rows written, gap-free under the write lock.
        let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let (last_seq,): (i64,) = sqlx::query_as("UPDATE dsms_clock SET seq = seq + ?1, dsms = 1 WHERE id = 1 RETURNING seq")
            .bind(n)
            .fetch_one(&mut *self.conn)
            .await
            .map_err(self.store.err())?;
        let first = first_of(last_seq, rows.len());
        self.positions = Some((first, last_seq));
        SqliteStore::upsert(self.conn, rows, first, true, self.via).await.map_err(self.store.err())
    }

    async fn log_conflicts(&mut self, conflicts: &[Conflict]) -> Result<u64, StoreError> {
        let mut logged = 0;
        for c in conflicts {
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
            .execute(&mut *self.conn)
            .await
            .map_err(self.store.err())?
            .rows_affected();
        }
        Ok(logged)
    }

    async fn move_cursor(
        &mut self,
        source: &Source,
        end: FeedPosition,
        epoch: Option<uuid::Uuid>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO dsms_cursor (source, source_db, pos, id, updated_at, epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (source, source_db) DO UPDATE SET pos = excluded.pos, id = excluded.id, updated_at = excluded.updated_at, \
             epoch = coalesce(excluded.epoch, dsms_cursor.epoch) \
             WHERE (dsms_cursor.pos, dsms_cursor.id) < (excluded.pos, excluded.id)",
        )
        .bind(source.region.as_str())
        .bind(source.db_id)
        .bind(end.pos)
        .bind(end.id)
        .bind(now.timestamp_micros())
        .bind(epoch)
        .execute(&mut *self.conn)
        .await
        .map(drop)
        .map_err(self.store.err())
    }

    async fn log_applied(&mut self, source: &Source, end: FeedPosition, written: u64) -> Result<(), StoreError> {
        // The positions were handed out under the write lock this transaction holds: no other
        // row can take one of them.
        let Some((lo, hi)) = self.positions else { return Ok(()) };
        sqlx::query(
            "INSERT OR REPLACE INTO dsms_applied (hi, lo, source_db, end_pos, end_id, rows, here_db) \
             SELECT ?, ?, ?, ?, ?, ?, db_id FROM dsms_meta WHERE id = 1",
        )
        .bind(hi)
        .bind(lo)
        .bind(source.db_id)
        .bind(end.pos)
        .bind(end.id)
        .bind(i64::try_from(written).unwrap_or(i64::MAX))
        .execute(&mut *self.conn)
        .await
        .map(drop)
        .map_err(self.store.err())
    }
}
