//! The SQLite change feed: a counter advanced under the write lock, gap-free in commit order;
//! cursors and horizons.

use super::COLUMNS;
use super::SqliteStore;
use crate::store::row::feed_page;
use crate::store::{FeedPage, FeedPosition, Source, StoreError};

impl SqliteStore {
    pub(super) async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError> {
        self.bounded(async {
            let row: Option<(i64, uuid::Uuid)> = sqlx::query_as("SELECT pos, id FROM dsms_cursor WHERE source = ? AND source_db = ?")
                .bind(source.region.as_str())
                .bind(source.db_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?;
            Ok(row.map(|(pos, id)| FeedPosition { pos, id }).unwrap_or_default())
        })
        .await
    }

    pub(super) async fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
        before: Option<i64>,
        reader: Option<uuid::Uuid>,
    ) -> Result<FeedPage, StoreError> {
        self.bounded(async {
            // seq is unique: the id part of the position is not needed here.
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS}, seq AS pos, coalesce(via = ?, 0) AS known, \
                   EXISTS (SELECT 1 FROM dsms_quarantine q WHERE q.region = ? AND q.vente_id = vente.id) AS quarantined \
                 FROM vente WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?"
            ))
            .bind(reader)
            .bind(self.region.as_str())
            .bind(after.pos)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
            // A row that cannot be decoded is set aside and the feed moves past it; one that
            // decodes again leaves quarantine.
            let (page, bad, healed) = feed_page(&rows, &self.region, |row| self.decode(row))?;
            self.quarantine_bad_now(&bad).await?;
            self.release_healed(&healed).await?;
            Ok(page)
        })
        .await
    }

    pub(super) async fn feed_len(&self, after: FeedPosition, before: Option<i64>, cap: u32) -> Result<u64, StoreError> {
        self.bounded(async {
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM (SELECT 1 FROM vente WHERE seq > ? AND seq < ? LIMIT ?)")
                .bind(after.pos)
                .bind(before.unwrap_or(i64::MAX))
                .bind(i64::from(cap))
                .fetch_one(&self.pool)
                .await
                .map_err(self.err())?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    pub(super) async fn feed_horizon(&self) -> Result<i64, StoreError> {
        // Positions are handed out under the write lock, so every committed change is at or below
        // the counter.
        self.bounded(async {
            let (seq,): (i64,) =
                sqlx::query_as("SELECT seq + 1 FROM dsms_clock WHERE id = 1").fetch_one(&self.pool).await.map_err(self.err())?;
            Ok(seq)
        })
        .await
    }
}
