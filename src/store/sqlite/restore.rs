//! Restores and rewinds on SQLite: the feed's epochs, what a reader remembers of a source, and a
//! new identity for a database that went back in time. The rule (when to call what) lives in
//! `sync/restore.rs`.

use chrono::{DateTime, Utc};

use sqlx::{QueryBuilder, Sqlite};

use super::{ROWS_PER_STATEMENT, SqliteStore};
use crate::store::{Epoch, StoreError};

impl SqliteStore {
    pub(super) async fn open_epoch(&self, forget_before: DateTime<Utc>) -> Result<Epoch, StoreError> {
        self.bounded(async {
            // Read first, without the write lock: an idle feed keeps its latest epoch.
            let last: Option<(uuid::Uuid, i64, i64)> = sqlx::query_as(
                "SELECT e.epoch, e.below, c.seq + 1 FROM dsms_epoch e, dsms_clock c WHERE c.id = 1 ORDER BY e.n DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
            if let Some((id, below, horizon)) = last {
                if below == horizon {
                    return Ok(Epoch { id, below });
                }
            }
            // Under the write lock the counter is exact: every position below it has committed.
            let fresh = uuid::Uuid::new_v4();
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
            let (below,): (i64,) = sqlx::query_as(
                "INSERT INTO dsms_epoch (epoch, below, created_at) SELECT ?1, seq + 1, ?2 FROM dsms_clock WHERE id = 1 RETURNING below",
            )
            .bind(fresh)
            .bind((self.clock)().timestamp_micros())
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err())?;
            sqlx::query("DELETE FROM dsms_epoch WHERE created_at < ?1 AND n < (SELECT max(n) FROM dsms_epoch)")
                .bind(forget_before.timestamp_micros())
                .execute(&mut *tx)
                .await
                .map_err(self.err())?;
            tx.commit().await.map_err(self.err())?;
            Ok(Epoch { id: fresh, below })
        })
        .await
    }

    pub(super) async fn held_epochs(&self, epochs: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError> {
        self.bounded(async {
            let mut held = Vec::with_capacity(epochs.len());
            for chunk in epochs.chunks(ROWS_PER_STATEMENT) {
                let mut query = QueryBuilder::<Sqlite>::new("SELECT epoch FROM dsms_epoch WHERE epoch IN (");
                let mut list = query.separated(", ");
                for epoch in chunk {
                    list.push_bind(*epoch);
                }
                query.push(")");
                let found: Vec<(uuid::Uuid,)> = query.build_query_as().fetch_all(&self.pool).await.map_err(self.err())?;
                held.extend(found.into_iter().map(|(e,)| e));
            }
            Ok(held)
        })
        .await
    }

    pub(super) async fn rotate_identity(&self, old: uuid::Uuid) -> Result<uuid::Uuid, StoreError> {
        let fresh = uuid::Uuid::new_v4();
        self.bounded(async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(self.err())?;
            sqlx::query("UPDATE dsms_meta SET db_id = ? WHERE id = 1 AND db_id = ?")
                .bind(fresh)
                .bind(old)
                .execute(&mut *tx)
                .await
                .map_err(self.err())?;
            let (now,): (uuid::Uuid,) =
                sqlx::query_as("SELECT db_id FROM dsms_meta WHERE id = 1").fetch_one(&mut *tx).await.map_err(self.err())?;
            tx.commit().await.map_err(self.err())?;
            Ok(now)
        })
        .await
    }
}
