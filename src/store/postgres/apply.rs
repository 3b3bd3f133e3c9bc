//! Applying replicated rows on PostgreSQL: the SQL of the shared apply plan (`store::apply`), and
//! the binary `COPY` path for batches of rows the region does not hold yet.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use sqlx::{PgConnection, Postgres};

use super::PgStore;
use crate::domain::lww::{dedupe_by_id, plan_apply};
use crate::domain::version::Hlc;
use crate::domain::{RegionName, Vente, VenteId, Version};
use crate::store::row::snapshot;
use crate::store::{Applied, Batch, FeedPosition, Source, StoreError};

/// Batches smaller than this are never applied by `COPY` (see `PgStore::apply_in`).
const COPY_MIN: usize = 64;

impl PgStore {
    /// The versions stored for those of `rows` that exist, unlocked.
    pub(super) async fn held_versions(&self, conn: &mut PgConnection, rows: &[Vente]) -> Result<HashMap<VenteId, Version>, StoreError> {
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
    pub(super) async fn advance_clock(conn: &mut PgConnection, rows: &[Vente]) -> Result<(), sqlx::Error> {
        let max_hlc = rows.iter().map(|v| v.version.hlc.0).max().unwrap_or(0);
        sqlx::query("UPDATE dsms_clock SET hlc = greatest(hlc, $1)").bind(max_hlc).execute(&mut *conn).await.map(drop)
    }

    /// Inserts `rows` by `COPY` in a savepoint; `None` (and nothing written) if any of them is
    /// already there. The clock moves first, as for every apply (clock, then rows: the order
    /// local writes lock in too).
    pub(super) async fn try_copy(
        &self,
        conn: &mut PgConnection,
        rows: &[Vente],
        via: Option<uuid::Uuid>,
    ) -> Result<Option<u64>, StoreError> {
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
    pub(super) async fn copied(&self, conn: &mut PgConnection, batch: &Batch, written: u64) -> Result<Applied, StoreError> {
        if let Some((source, end)) = &batch.from {
            Self::move_cursor(conn, source, *end).await.map_err(self.err())?;
        }
        Ok(Applied { rows: written, conflicts: 0 })
    }

    /// Moves this database's cursor on `source`'s feed forward to `end` (never back).
    pub(super) async fn move_cursor(conn: &mut PgConnection, source: &Source, end: FeedPosition) -> Result<(), sqlx::Error> {
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
    pub(super) async fn copy_in(conn: &mut PgConnection, rows: &[Vente], via: Option<uuid::Uuid>) -> Result<u64, sqlx::Error> {
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
    pub(super) async fn apply_in(&self, conn: &mut PgConnection, batch: &Batch, copy_first: &AtomicBool) -> Result<Applied, StoreError> {
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

    pub(super) async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
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
