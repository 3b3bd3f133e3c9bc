//! Applying replicated rows on PostgreSQL: the SQL of the shared apply plan (`store::apply`), and
//! the binary `COPY` path for batches of rows the region does not hold yet.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres};

use super::PgStore;
use crate::domain::lww::{Conflict, dedupe_by_id};
use crate::domain::version::Hlc;
use crate::domain::{RegionName, Vente, VenteId, Version};
use crate::store::apply::{ApplySql, Held, apply_rows};
use crate::store::quarantine::{any_beyond, screen};
use crate::store::row::snapshot;
use crate::store::{Applied, Batch, FeedPosition, Source, StoreError};

/// Batches smaller than this are never applied by `COPY` (see `PgStore::apply_in`).
const COPY_MIN: usize = 64;

impl PgStore {
    /// Inserts rows with `COPY … (FORMAT binary)`: the fastest way in, for rows known to be new
    /// (a duplicate id fails the whole statement).
    pub(super) async fn copy_in(&self, conn: &mut PgConnection, rows: &[Vente], via: Option<uuid::Uuid>) -> Result<u64, sqlx::Error> {
        // Its start and its end each wait for the server; the data between them does not.
        self.trips.add(2);
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
    /// write pushed at once) take fewer round trips the usual way: the shared apply plan.
    pub(super) async fn apply_in(&self, conn: &mut PgConnection, batch: &Batch, copy_first: &AtomicBool) -> Result<Applied, StoreError> {
        let rows = dedupe_by_id(&batch.rows);
        let via = batch.from.as_ref().map(|(source, _)| source.db_id);
        let now = (self.clock)();
        let rows = self.screen_in(conn, batch, &rows, now).await?;
        let mut sql = PgApply { store: self, conn, via };
        let copyable = rows.len() >= COPY_MIN;
        if copyable && copy_first.load(Ordering::Relaxed) {
            if let Some(written) = sql.try_copy(&rows).await? {
                return sql.copied(batch, written, now).await;
            }
            copy_first.store(false, Ordering::Relaxed);
        }
        // While the last batches found every row stored (a stream of updates), the stored
        // versions are not looked at first: the locked read that judges them is enough.
        if copyable && self.all_present.load(Ordering::Relaxed) {
            let (applied, all_present) =
                apply_rows(&mut sql, &rows, Held::Unknown, batch.from.as_ref(), batch.epoch, &self.region, now).await?;
            self.all_present.store(all_present, Ordering::Relaxed);
            return Ok(applied);
        }
        let mut held = sql.held_versions(&rows).await?;
        if copyable && held.is_empty() {
            if let Some(written) = sql.try_copy(&rows).await? {
                copy_first.store(true, Ordering::Relaxed);
                return sql.copied(batch, written, now).await;
            }
            // A row arrived meanwhile (another syncer): look again.
            held = sql.held_versions(&rows).await?;
        }
        let (applied, all_present) =
            apply_rows(&mut sql, &rows, Held::Versions(&held), batch.from.as_ref(), batch.epoch, &self.region, now).await?;
        self.all_present.store(copyable && all_present, Ordering::Relaxed);
        Ok(applied)
    }

    /// Leaves out (and quarantines) the versions too far ahead of this region's clock, the later
    /// of this server's and the database's; releases versions refused earlier from the same
    /// source that are now replaced by acceptable ones.
    async fn screen_in<'r>(
        &self,
        conn: &mut PgConnection,
        batch: &Batch,
        rows: &'r [Vente],
        now: DateTime<Utc>,
    ) -> Result<Cow<'r, [Vente]>, StoreError> {
        let source = batch.from.as_ref().map(|(source, _)| &source.region);
        let mut clock = now;
        if any_beyond(rows, now, self.max_future) {
            let (db_now,): (DateTime<Utc>,) =
                sqlx::query_as("SELECT clock_timestamp()").fetch_one(self.on(&mut *conn)).await.map_err(self.err())?;
            clock = clock.max(db_now);
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

    pub(super) async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        self.bounded(async {
            let mut tx = self.begin().await.map_err(self.err())?;
            // Our own applies do not wake listeners: they would only start rounds for echoes.
            sqlx::query("SELECT set_config('dsms.applying', 'on', true)").execute(self.on(&mut tx)).await.map_err(self.err())?;
            let applied = self.apply_in(&mut tx, batch, &self.copy_first).await?;
            self.commit(tx).await.map_err(self.err())?;
            Ok(applied)
        })
        .await
    }
}

/// The apply plan's statements on PostgreSQL, inside the caller's transaction; `via` marks every
/// row written with the database it came from (see `Store::changes_since`).
struct PgApply<'c> {
    store: &'c PgStore,
    conn: &'c mut PgConnection,
    via: Option<uuid::Uuid>,
}

impl PgApply<'_> {
    /// Inserts `rows` by `COPY` in a savepoint; `None` (and nothing written) if any of them is
    /// already there. The clock moves first, as for every apply.
    async fn try_copy(&mut self, rows: &[Vente]) -> Result<Option<u64>, StoreError> {
        self.advance_clock(rows).await?;
        let err = self.store.err();
        sqlx::query("SAVEPOINT dsms_copy").execute(self.store.on(&mut *self.conn)).await.map_err(&err)?;
        match self.store.copy_in(self.conn, rows, self.via).await {
            Ok(written) => {
                sqlx::query("RELEASE SAVEPOINT dsms_copy").execute(self.store.on(&mut *self.conn)).await.map_err(&err)?;
                Ok(Some(written))
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                sqlx::query("ROLLBACK TO SAVEPOINT dsms_copy").execute(self.store.on(&mut *self.conn)).await.map_err(&err)?;
                Ok(None)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// The end of an apply whose rows were all copied in: no conflict is possible, the cursor moves.
    async fn copied(&mut self, batch: &Batch, written: u64, now: DateTime<Utc>) -> Result<Applied, StoreError> {
        if let Some((source, end)) = &batch.from {
            self.move_cursor(source, *end, batch.epoch, now).await?;
            if written > 0 {
                self.log_applied(source, *end, written).await?;
            }
        }
        Ok(Applied { rows: written, conflicts: 0 })
    }
}

#[async_trait::async_trait]
impl ApplySql for PgApply<'_> {
    async fn held_versions(&mut self, rows: &[Vente]) -> Result<HashMap<VenteId, Version>, StoreError> {
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<uuid::Uuid> = rows.iter().map(|v| v.id.0).collect();
        let held: Vec<(uuid::Uuid, i64, String)> = sqlx::query_as("SELECT id, hlc, origin FROM vente WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(self.store.on(&mut *self.conn))
            .await
            .map_err(self.store.err())?;
        Ok(held.into_iter().map(|(id, hlc, origin)| (VenteId(id), Version { hlc: Hlc(hlc), origin: RegionName::new(&origin) })).collect())
    }

    async fn advance_clock(&mut self, rows: &[Vente]) -> Result<(), StoreError> {
        let max_hlc = rows.iter().map(|v| v.version.hlc.0).max().unwrap_or(0);
        sqlx::query("UPDATE dsms_clock SET hlc = greatest(hlc, $1)")
            .bind(max_hlc)
            .execute(self.store.on(&mut *self.conn))
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
        self.store.upsert(self.conn, rows, true, self.via).await.map_err(self.store.err())
    }

    async fn log_conflicts(&mut self, conflicts: &[Conflict]) -> Result<u64, StoreError> {
        // One statement for the whole batch, however many conflicts it holds.
        let ids: Vec<uuid::Uuid> = conflicts.iter().map(|c| c.loser.id.0).collect();
        let loser_hlcs: Vec<i64> = conflicts.iter().map(|c| c.loser.version.hlc.0).collect();
        let loser_origins: Vec<&str> = conflicts.iter().map(|c| c.loser.version.origin.as_str()).collect();
        let winner_hlcs: Vec<i64> = conflicts.iter().map(|c| c.winner.version.hlc.0).collect();
        let winner_origins: Vec<&str> = conflicts.iter().map(|c| c.winner.version.origin.as_str()).collect();
        let losers: Vec<String> = conflicts.iter().map(|c| snapshot(&c.loser)).collect();
        let winners: Vec<String> = conflicts.iter().map(|c| snapshot(&c.winner)).collect();
        let detected_in: Vec<&str> = conflicts.iter().map(|c| c.detected_in.as_str()).collect();
        let detected_at: Vec<DateTime<Utc>> = conflicts.iter().map(|c| c.detected_at).collect();
        let logged = sqlx::query(
            "INSERT INTO dsms_conflict (vente_id, loser_hlc, loser_origin, winner_hlc, winner_origin, loser, winner, detected_in, detected_at) \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&loser_hlcs)
        .bind(&loser_origins)
        .bind(&winner_hlcs)
        .bind(&winner_origins)
        .bind(&losers)
        .bind(&winners)
        .bind(&detected_in)
        .bind(&detected_at)
        .execute(self.store.on(&mut *self.conn))
        .await
        .map_err(self.store.err())?
        .rows_affected();
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
            "INSERT INTO dsms_cursor (source, source_db, pos, id, updated_at, epoch) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (source, source_db) DO UPDATE SET pos = EXCLUDED.pos, id = EXCLUDED.id, updated_at = EXCLUDED.updated_at, \
             epoch = coalesce(EXCLUDED.epoch, dsms_cursor.epoch) \
             WHERE (dsms_cursor.pos, dsms_cursor.id) < (EXCLUDED.pos, EXCLUDED.id)",
        )
        .bind(source.region.as_str())
        .bind(source.db_id)
        .bind(end.pos)
        .bind(end.id)
        .bind(now)
        .bind(epoch)
        .execute(self.store.on(&mut *self.conn))
        .await
        .map(drop)
        .map_err(self.store.err())
    }

    async fn log_applied(&mut self, source: &Source, end: FeedPosition, written: u64) -> Result<(), StoreError> {
        // Every row this transaction wrote carries its id. A bulk load applies many batches in one
        // transaction: one log row per source, at the furthest end, counting every row.
        sqlx::query(
            "INSERT INTO dsms_applied (txid, source_db, end_pos, end_id, rows, here_db) \
             SELECT pg_current_xact_id(), $1, $2, $3, $4, db_id FROM dsms_meta \
             ON CONFLICT (txid, source_db) DO UPDATE SET rows = dsms_applied.rows + EXCLUDED.rows, \
                 end_pos = CASE WHEN (EXCLUDED.end_pos, EXCLUDED.end_id) > (dsms_applied.end_pos, dsms_applied.end_id) THEN EXCLUDED.end_pos ELSE dsms_applied.end_pos END, \
                 end_id = CASE WHEN (EXCLUDED.end_pos, EXCLUDED.end_id) > (dsms_applied.end_pos, dsms_applied.end_id) THEN EXCLUDED.end_id ELSE dsms_applied.end_id END",
        )
        .bind(source.db_id)
        .bind(end.pos)
        .bind(end.id)
        .bind(i64::try_from(written).unwrap_or(i64::MAX))
        .execute(self.store.on(&mut *self.conn))
        .await
        .map(drop)
        .map_err(self.store.err())
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
