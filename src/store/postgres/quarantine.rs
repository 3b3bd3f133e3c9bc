//! PostgreSQL quarantine: recording rows that cannot be decoded and versions refused, releasing
//! them, listing them (`dsms_quarantine`, migration 0006).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::PgStore;
use crate::domain::quarantine::Quarantined;
use crate::domain::{RegionName, VenteId};
use crate::store::StoreError;
use crate::store::quarantine::{Bad, Refused};
use crate::store::row::snapshot;

/// A quarantine item as read: region, id, reason, raw text, first and last seen.
type ItemRow = (String, uuid::Uuid, String, String, DateTime<Utc>, DateTime<Utc>);

impl PgStore {
    /// Records rows of this database that cannot be decoded (their text read by the database
    /// itself), and logs each once. The row is locked and checked again first: a reader that read
    /// the bad version just before an apply replaced it (and released it from quarantine) waits
    /// for that apply to commit, then finds a newer version and records nothing.
    pub(super) async fn quarantine_bad(&self, conn: &mut PgConnection, bad: &[Bad]) -> Result<(), StoreError> {
        let now = (self.clock)();
        for b in bad {
            let fresh: Option<(bool,)> = sqlx::query_as(
                "INSERT INTO dsms_quarantine (region, vente_id, field, raw, reason, first_seen, last_seen) \
                 SELECT $1, v.id, $3, row_to_json(v)::text, $4, $5, $5 FROM vente v WHERE v.id = $2 AND ($6::int8 IS NULL OR v.hlc = $6) \
                 FOR UPDATE OF v \
                 ON CONFLICT (region, vente_id) DO UPDATE SET field = EXCLUDED.field, raw = EXCLUDED.raw, \
                   reason = EXCLUDED.reason, last_seen = EXCLUDED.last_seen \
                 RETURNING (xmax = 0)",
            )
            .bind(self.region.as_str())
            .bind(b.id)
            .bind(b.field)
            .bind(&b.reason)
            .bind(now)
            .bind(b.hlc)
            .fetch_optional(self.on(&mut *conn))
            .await
            .map_err(self.err())?;
            if fresh.is_some_and(|(fresh,)| fresh) {
                tracing::warn!(region = %self.region, vente = %b.id, raison = %b.reason, "ligne illisible mise en quarantaine");
            }
        }
        Ok(())
    }

    /// As `quarantine_bad`, on a connection of its own.
    pub(super) async fn quarantine_bad_now(&self, bad: &[Bad]) -> Result<(), StoreError> {
        if bad.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await.map_err(self.err())?;
        self.quarantine_bad(&mut conn, bad).await
    }

    /// Rows of this database that decode again (fixed by some writer) leave quarantine.
    pub(super) async fn release_healed(&self, ids: &[uuid::Uuid]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await.map_err(self.err())?;
        self.release_healed_in(&mut conn, ids).await
    }

    /// As `release_healed`, on the caller's connection (inside an apply).
    pub(super) async fn release_healed_in(&self, conn: &mut PgConnection, ids: &[uuid::Uuid]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let done = sqlx::query("DELETE FROM dsms_quarantine WHERE region = $1 AND vente_id = ANY($2)")
            .bind(self.region.as_str())
            .bind(ids)
            .execute(self.on(&mut *conn))
            .await
            .map_err(self.err())?;
        if done.rows_affected() > 0 {
            tracing::info!(region = %self.region, lignes = done.rows_affected(), "lignes corrigées : sorties de quarantaine");
        }
        Ok(())
    }

    /// Records versions refused by this database (inside the apply's transaction).
    pub(super) async fn quarantine_refused(
        &self,
        conn: &mut PgConnection,
        refused: &[Refused],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for r in refused {
            let mut raw: serde_json::Value = serde_json::from_str(&snapshot(&r.vente)).unwrap_or_default();
            raw["id"] = serde_json::Value::String(r.vente.id.0.to_string());
            sqlx::query(
                "INSERT INTO dsms_quarantine (region, vente_id, field, raw, reason, first_seen, last_seen) \
                 VALUES ($1, $2, 'version', $3, $4, $5, $5) \
                 ON CONFLICT (region, vente_id) DO UPDATE SET field = EXCLUDED.field, raw = EXCLUDED.raw, \
                   reason = EXCLUDED.reason, last_seen = EXCLUDED.last_seen",
            )
            .bind(r.source.as_str())
            .bind(r.vente.id.0)
            .bind(raw.to_string())
            .bind(&r.reason)
            .bind(now)
            .execute(self.on(&mut *conn))
            .await
            .map_err(self.err())?;
        }
        Ok(())
    }

    /// Versions from `source` refused earlier leave quarantine once an acceptable one arrives.
    pub(super) async fn release_accepted(
        &self,
        conn: &mut PgConnection,
        source: &RegionName,
        ids: &[uuid::Uuid],
    ) -> Result<(), StoreError> {
        if ids.is_empty() || source == &self.region {
            return Ok(());
        }
        sqlx::query("DELETE FROM dsms_quarantine WHERE region = $1 AND vente_id = ANY($2) AND field = 'version'")
            .bind(source.as_str())
            .bind(ids)
            .execute(self.on(&mut *conn))
            .await
            .map(drop)
            .map_err(self.err())
    }

    /// Whether this database holds refused versions (so that applies look for ones to release).
    pub(super) async fn holds_refusals(&self, conn: &mut PgConnection) -> Result<bool, StoreError> {
        let (any,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM dsms_quarantine WHERE field = 'version')")
            .fetch_one(self.on(&mut *conn))
            .await
            .map_err(self.err())?;
        Ok(any)
    }

    pub(super) async fn quarantine(&self, limit: u32) -> Result<Vec<Quarantined>, StoreError> {
        self.bounded(async {
            let rows: Vec<ItemRow> = sqlx::query_as(
                "SELECT region, vente_id, reason, raw, first_seen, last_seen FROM dsms_quarantine \
                 ORDER BY first_seen DESC, vente_id LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(self.db())
            .await
            .map_err(self.err())?;
            Ok(rows
                .into_iter()
                .map(|(source, id, reason, raw, detected_at, last_seen)| Quarantined {
                    region: self.region.clone(),
                    source: RegionName::new(&source),
                    id: VenteId(id),
                    reason,
                    raw,
                    detected_at,
                    last_seen,
                })
                .collect())
        })
        .await
    }
}
