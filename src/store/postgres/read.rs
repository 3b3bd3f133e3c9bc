//! PostgreSQL reads: listing (keyset pages), one sale, many sales locked for a write, the export
//! scan and the conflict log.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use super::COLUMNS;
use super::PgStore;
use crate::domain::lww::Conflict;
use crate::domain::{Cursor, ListQuery, Page, RegionName, Vente, VenteId};
use crate::store::StoreError;
use crate::store::row::{from_snapshot, like_pattern};

impl PgStore {
    /// The stored rows among `ids`, by id, locked until the transaction ends (in id order, so
    /// concurrent applies never deadlock). Rows that cannot be decoded are quarantined (in the
    /// caller's transaction) and left out, their ids returned apart: an apply judges them by their
    /// version alone (the upsert's guard), a local write replaces them.
    pub(super) async fn get_many_readable(
        &self,
        conn: &mut PgConnection,
        ids: &[VenteId],
    ) -> Result<(HashMap<VenteId, Vente>, Vec<VenteId>), StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM vente WHERE id = ANY($1) ORDER BY id FOR UPDATE"))
            .bind(&ids)
            .fetch_all(self.on(&mut *conn))
            .await
            .map_err(self.err())?;
        let (mut found, mut bad) = (HashMap::with_capacity(rows.len()), Vec::new());
        for row in &rows {
            match self.decode(row)? {
                Ok(v) => {
                    found.insert(v.id, v);
                }
                Err(b) => bad.push(b),
            }
        }
        self.quarantine_bad(conn, &bad).await?;
        Ok((found, bad.into_iter().map(|b| VenteId(b.id)).collect()))
    }

    /// The stored rows among `ids`, unlocked (an import's one read per batch); rows that cannot be
    /// decoded are left out (the apply that follows judges them by their version alone).
    pub(super) async fn get_batch(&self, ids: &[VenteId]) -> Result<HashMap<VenteId, Vente>, StoreError> {
        self.bounded(async {
            let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
            let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM vente WHERE id = ANY($1)"))
                .bind(&ids)
                .fetch_all(self.db())
                .await
                .map_err(self.err())?;
            let mut found = HashMap::with_capacity(rows.len());
            for row in &rows {
                if let Ok(vente) = self.decode(row)? {
                    found.insert(vente.id, vente);
                }
            }
            Ok(found)
        })
        .await
    }

    pub(super) async fn get_in(&self, conn: &mut PgConnection, id: VenteId) -> Result<Option<Vente>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM vente WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(self.on(&mut *conn))
            .await
            .map_err(self.err())?;
        match row.map(|r| self.decode(&r)).transpose()? {
            Some(Err(bad)) => {
                self.quarantine_bad(conn, std::slice::from_ref(&bad)).await?;
                Ok(None)
            }
            Some(Ok(vente)) => Ok(Some(vente)),
            None => Ok(None),
        }
    }

    /// Rows a listing reads after `after`, at most `n`.
    async fn list_rows(&self, q: &ListQuery, after: Option<Cursor>, n: i64) -> Result<Vec<PgRow>, StoreError> {
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
        if let Some(after) = &after {
            query.push(" AND (updated_at, id) < (").push_bind(after.updated_at).push(", ").push_bind(after.id.0).push(")");
        }
        query.push(" ORDER BY updated_at DESC, id DESC LIMIT ").push_bind(n);
        query.build().fetch_all(self.db()).await.map_err(self.err())
    }

    pub(super) async fn list(&self, q: &ListQuery) -> Result<Page, StoreError> {
        self.bounded(async {
            // Rows that cannot be decoded are left out (and quarantined): read on until the page
            // is full or the table ends, so that they never shorten a page or end the listing.
            let wanted = q.limit as usize + 1;
            let mut items = Vec::with_capacity(wanted);
            let mut after = q.after;
            loop {
                let n = wanted - items.len();
                let rows = self.list_rows(q, after, i64::try_from(n).unwrap_or(i64::MAX)).await?;
                // Where the next read starts; a row whose key cannot be read ends the listing.
                let last = rows
                    .last()
                    .and_then(|row| Some(Cursor { updated_at: row.try_get("updated_at").ok()?, id: VenteId(row.try_get("id").ok()?) }));
                let exhausted = rows.len() < n;
                items.extend(self.decode_all(&rows).await?);
                match last {
                    Some(last) if !exhausted && items.len() < wanted => after = Some(last),
                    _ => break,
                }
            }
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
            .fetch_all(self.db())
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
            // Rows that cannot be decoded are left out (and quarantined); reading goes on past
            // them, so that a page is short only at the end of the table.
            let mut ventes = Vec::with_capacity(limit as usize);
            let mut after = after;
            loop {
                let n = limit as usize - ventes.len();
                let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM vente WHERE true"));
                if !include_deleted {
                    query.push(" AND deleted = false");
                }
                if let Some(after) = after {
                    query.push(" AND id > ").push_bind(after.0);
                }
                query.push(" ORDER BY id LIMIT ").push_bind(i64::try_from(n).unwrap_or(i64::MAX));
                let rows = query.build().fetch_all(self.db()).await.map_err(self.err())?;
                let last = rows.last().and_then(|row| row.try_get("id").ok().map(VenteId));
                let exhausted = rows.len() < n;
                ventes.extend(self.decode_all(&rows).await?);
                match last {
                    Some(last) if !exhausted && ventes.len() < limit as usize => after = Some(last),
                    _ => return Ok(ventes),
                }
            }
        })
        .await
    }
}
