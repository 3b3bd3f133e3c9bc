//! SQLite quarantine: recording rows that cannot be decoded and versions refused, releasing
//! them, listing them (`dsms_quarantine`, migration 0093).

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{ROWS_PER_STATEMENT, SqliteStore};
use crate::domain::quarantine::Quarantined;
use crate::domain::{RegionName, VenteId};
use crate::store::StoreError;
use crate::store::quarantine::{Bad, Refused};
use crate::store::row::snapshot;

/// The stored row as JSON, every value as its SQL literal (`quote`): whatever its type, it shows.
const RAW: &str = "json_object('id', lower(hex(v.id)), 'produit', quote(v.produit), 'montant', quote(v.montant), \
     'date_vente', quote(v.date_vente), 'region', quote(v.region), 'updated_at', quote(v.updated_at), \
     'deleted', quote(v.deleted), 'hlc', quote(v.hlc), 'origin', quote(v.origin), 'seen', quote(v.seen))";

impl SqliteStore {
    /// Records rows of this database that cannot be decoded (their text read by the database
    /// itself), and logs each once.
    pub(super) async fn quarantine_bad(&self, conn: &mut SqliteConnection, bad: &[Bad]) -> Result<(), StoreError> {
        let now = (self.clock)().timestamp_micros();
        for b in bad {
            let fresh: Option<(bool,)> = sqlx::query_as(&format!(
                "INSERT INTO dsms_quarantine (region, vente_id, field, raw, reason, first_seen, last_seen) \
                 SELECT ?1, v.id, ?3, {RAW}, ?4, ?5, ?5 FROM vente v WHERE v.id = ?2 AND (?6 IS NULL OR v.hlc = ?6) \
                 ON CONFLICT (region, vente_id) DO UPDATE SET field = excluded.field, raw = excluded.raw, \
                   reason = excluded.reason, last_seen = excluded.last_seen \
                 RETURNING first_seen = last_seen"
            ))
            .bind(self.region.as_str())
            .bind(b.id)
            .bind(b.field)
            .bind(&b.reason)
            .bind(now)
            .bind(b.hlc)
            .fetch_optional(&mut *conn)
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

    /// Deletes the quarantine items of `region` among `ids` (of `field` when given); returns how many.
    async fn release(
        &self,
        conn: &mut SqliteConnection,
        region: &RegionName,
        ids: &[uuid::Uuid],
        field: Option<&str>,
    ) -> Result<u64, StoreError> {
        let mut released = 0;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new("DELETE FROM dsms_quarantine WHERE region = ");
            query.push_bind(region.as_str());
            if let Some(field) = field {
                query.push(" AND field = ").push_bind(field);
            }
            query.push(" AND vente_id IN (");
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            query.push(")");
            released += query.build().execute(&mut *conn).await.map_err(self.err())?.rows_affected();
        }
        Ok(released)
    }

    /// Rows of this database that decode again (fixed by some writer) leave quarantine.
    pub(super) async fn release_healed(&self, ids: &[uuid::Uuid]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await.map_err(self.err())?;
        self.release_healed_in(&mut conn, ids).await
    }

    /// As `release_healed`, on the caller's connection (inside an apply: SQLite has one writer).
    pub(super) async fn release_healed_in(&self, conn: &mut SqliteConnection, ids: &[uuid::Uuid]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let released = self.release(conn, &self.region, ids, None).await?;
        if released > 0 {
            tracing::info!(region = %self.region, lignes = released, "lignes corrigées : sorties de quarantaine");
        }
        Ok(())
    }

    /// Records versions refused by this database (inside the apply's transaction).
    pub(super) async fn quarantine_refused(
        &self,
        conn: &mut SqliteConnection,
        refused: &[Refused],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for r in refused {
            let mut raw: serde_json::Value = serde_json::from_str(&snapshot(&r.vente)).unwrap_or_default();
            raw["id"] = serde_json::Value::String(r.vente.id.0.to_string());
            sqlx::query(
                "INSERT INTO dsms_quarantine (region, vente_id, field, raw, reason, first_seen, last_seen) \
                 VALUES (?1, ?2, 'version', ?3, ?4, ?5, ?5) \
                 ON CONFLICT (region, vente_id) DO UPDATE SET field = excluded.field, raw = excluded.raw, \
                   reason = excluded.reason, last_seen = excluded.last_seen",
            )
            .bind(r.source.as_str())
            .bind(r.vente.id.0)
            .bind(raw.to_string())
            .bind(&r.reason)
            .bind(now.timestamp_micros())
            .execute(&mut *conn)
            .await
            .map_err(self.err())?;
        }
        Ok(())
    }

    /// Versions from `source` refused earlier leave quarantine once an acceptable one arrives.
    pub(super) async fn release_accepted(
        &self,
        conn: &mut SqliteConnection,
        source: &RegionName,
        ids: &[uuid::Uuid],
    ) -> Result<(), StoreError> {
        if ids.is_empty() || source == &self.region {
            return Ok(());
        }
        self.release(conn, source, ids, Some("version")).await.map(drop)
    }

    /// Whether this database holds refused versions (so that applies look for ones to release).
    pub(super) async fn holds_refusals(&self, conn: &mut SqliteConnection) -> Result<bool, StoreError> {
        let (any,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM dsms_quarantine WHERE field = 'version')")
            .fetch_one(&mut *conn)
            .await
            .map_err(self.err())?;
        Ok(any)
    }

    pub(super) async fn quarantine(&self, limit: u32) -> Result<Vec<Quarantined>, StoreError> {
        self.bounded(async {
            let rows: Vec<(String, uuid::Uuid, String, String, i64, i64)> = sqlx::query_as(
                "SELECT region, vente_id, reason, raw, first_seen, last_seen FROM dsms_quarantine \
                 ORDER BY first_seen DESC, vente_id LIMIT ?",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
            Ok(rows
                .into_iter()
                .map(|(source, id, reason, raw, first, last)| Quarantined {
                    region: self.region.clone(),
                    source: RegionName::new(&source),
                    id: VenteId(id),
                    reason,
                    raw,
                    detected_at: DateTime::from_timestamp_micros(first).unwrap_or_default(),
                    last_seen: DateTime::from_timestamp_micros(last).unwrap_or_default(),
                })
                .collect())
        })
        .await
    }
}
