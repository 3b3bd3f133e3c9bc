//! PostgreSQL reads: listing (keyset pages), one sale, many sales locked for a write, the export
//! scan and the conflict log.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::COLUMNS;
use super::PgStore;
use crate::domain::lww::Conflict;
use crate::domain::{ListQuery, Page, RegionName, Vente, VenteId};
use crate::store::StoreError;
use crate::store::row::{from_snapshot, like_pattern};

impl PgStore {
    /// The stored rows among `ids`, by id, locked until the transaction ends (in id order, so
    /// concurrent applies never deadlock).
    pub(super) async fn get_many(&self, conn: &mut PgConnection, ids: &[VenteId]) -> Result<HashMap<VenteId, Vente>, StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM vente WHERE id = ANY($1) ORDER BY id FOR UPDATE"))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.err())?;
        rows.iter().map(|r| self.vente(r).map(|v| (v.id, v))).collect()
    }

    /// The stored rows among `ids`, unlocked (an import's one read per batch).
    pub(super) async fn get_batch(&self, ids: &[VenteId]) -> Result<HashMap<VenteId, Vente>, StoreError> {
        self.bounded(async {
            let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
            let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM vente WHERE id = ANY($1)"))
                .bind(&ids)
                .fetch_all(&self.pool)
                .await
                .map_err(self.err())?;
            rows.iter().map(|r| self.vente(r).map(|v| (v.id, v))).collect()
        })
        .await
    }

    pub(super) async fn get_in(&self, conn: &mut PgConnection, id: VenteId) -> Result<Option<Vente>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM vente WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.err())?;
        row.map(|r| self.vente(&r)).transpose()
    }

    pub(super) async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
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

    pub(super) async fn get(&self, id: VenteId) -> Result<Option<Vente>, StoreError> {
        self.bounded(async {
            let mut conn = self.pool.acquire().await.map_err(self.err())?;
            self.get_in(&mut conn, id).await
        })
        .await
    }

    pub(super) async fn conflicts(&self, limit: u32) -> Result<Vec<Conflict>, StoreError> {
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

    pub(super) async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError> {
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
}
