//! Applying replicated rows on SQLite: the SQL of the shared apply plan (`store::apply`).

use chrono::Utc;

use super::SqliteStore;
use crate::domain::VenteId;
use crate::domain::lww::{dedupe_by_id, plan_apply};
use crate::domain::write::first_of;
use crate::store::row::snapshot;
use crate::store::{Applied, Batch, StoreError};

impl SqliteStore {
    pub(super) async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
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
}
