//! SQLite reads: listing (keyset pages), one sale, many sales, the export scan and the conflict log.

use std::collections::HashMap;

use chrono::DateTime;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteStore;
use super::{COLUMNS, ROWS_PER_STATEMENT};
use crate::domain::lww::Conflict;
use crate::domain::{Cursor, ListQuery, Page, RegionName, Vente, VenteId};
use crate::store::StoreError;
use crate::store::row::{from_snapshot, like_pattern};

impl SqliteStore {
    /// The stored rows among `ids`, by id. Rows that cannot be decoded are quarantined (in the
    /// caller's transaction) and left out, their ids returned apart: an apply judges them by their
    /// version alone (the upsert's guard), a local write replaces them.
    pub(super) async fn get_many_readable(
        &self,
        conn: &mut sqlx::SqliteConnection,
        ids: &[VenteId],
    ) -> Result<(HashMap<VenteId, Vente>, Vec<VenteId>), StoreError> {
        let (mut found, mut bad) = (HashMap::with_capacity(ids.len()), Vec::new());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM vente WHERE id IN ("));
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(id.0);
            }
            query.push(")");
            for row in query.build().fetch_all(&mut *conn).await.map_err(self.err())? {
                match self.decode(&row)? {
                    Ok(v) => {
                        found.insert(v.id, v);
                    }
                    Err(b) => bad.push(b),
                }
            }
        }
        self.quarantine_bad(conn, &bad).await?;
        Ok((found, bad.into_iter().map(|b| VenteId(b.id)).collect()))
    }

    pub(super) async fn get_in(&self, conn: &mut sqlx::SqliteConnection, id: VenteId) -> Result<Option<Vente>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM vente WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&mut *conn)
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
    async fn list_rows(&self, q: &ListQuery, after: Option<Cursor>, n: i64) -> Result<Vec<SqliteRow>, StoreError> {
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
        if let Some(after) = &after {
            query
                .push(" AND (updated_at, id) < (")
                .push_bind(after.updated_at.timestamp_micros())
                .push(", ")
                .push_bind(after.id.0)
                .push(")");
        }
        query.push(" ORDER BY updated_at DESC, id DESC LIMIT ").push_bind(n);
        query.build().fetch_all(&self.pool).await.map_err(self.err())
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
                let last = rows.last().and_then(|row| {
                    let micros: i64 = row.try_get("updated_at").ok()?;
                    Some(Cursor { updated_at: DateTime::from_timestamp_micros(micros)?, id: VenteId(row.try_get("id").ok()?) })
                });
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

    pub(super) async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError> {
        self.bounded(async {
            // Rows that cannot be decoded are left out (and quarantined); reading goes on past
            // them, so that a page is short only at the end of the table.
            let mut ventes = Vec::with_capacity(limit as usize);
            let mut after = after;
            loop {
                let n = limit as usize - ventes.len();
                let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM vente WHERE true"));
                if !include_deleted {
                    query.push(" AND deleted = 0");
                }
                if let Some(after) = after {
                    query.push(" AND id > ").push_bind(after.0);
                }
                query.push(" ORDER BY id LIMIT ").push_bind(i64::try_from(n).unwrap_or(i64::MAX));
                let rows = query.build().fetch_all(&self.pool).await.map_err(self.err())?;
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
