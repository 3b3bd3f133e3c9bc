//! The SQLite change feed: a counter advanced under the write lock, gap-free in commit order;
//! cursors and horizons.

use super::COLUMNS;
use super::SqliteStore;
use crate::store::row::{cursor_rows, feed_page};
use crate::store::skip::{self, LOG_ROWS_PER_PAGE, Logged};
use crate::store::{CursorRow, FeedPage, FeedPosition, Reader, Source, StoreError};

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

    pub(super) async fn cursor_rows(&self) -> Result<Vec<CursorRow>, StoreError> {
        self.bounded(async {
            let rows: Vec<(String, uuid::Uuid, i64, uuid::Uuid, Option<uuid::Uuid>)> =
                sqlx::query_as("SELECT source, source_db, pos, id, epoch FROM dsms_cursor")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(self.err())?;
            Ok(cursor_rows(rows))
        })
        .await
    }

    pub(super) async fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
        before: Option<i64>,
        reader: Option<&Reader>,
    ) -> Result<FeedPage, StoreError> {
        self.bounded(async {
            let bound = before.unwrap_or(i64::MAX);
            // One connection for the log and every segment (positions below the bound are final:
            // the counter only grows, so no row can appear in a range once it is read).
            let mut conn = self.pool.acquire().await.map_err(self.err())?;
            let logged: Vec<Logged> = if reader.is_some() {
                let rows: Vec<(i64, i64, uuid::Uuid, i64, uuid::Uuid, i64)> = sqlx::query_as(
                    "SELECT lo, hi, source_db, end_pos, end_id, rows FROM dsms_applied \
                     WHERE hi > ? AND lo < ? AND here_db = (SELECT db_id FROM dsms_meta WHERE id = 1) ORDER BY hi LIMIT ?",
                )
                .bind(after.pos)
                .bind(bound)
                .bind(i64::from(LOG_ROWS_PER_PAGE))
                .fetch_all(&mut *conn)
                .await
                .map_err(self.err())?;
                rows.into_iter()
                    .map(|(lo, hi, source_db, end_pos, end_id, rows)| Logged {
                        lo,
                        hi,
                        source_db,
                        end: FeedPosition { pos: end_pos, id: end_id },
                        rows,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let capped = logged.len() >= LOG_ROWS_PER_PAGE as usize;
            let plan = skip::plan(after, bound, logged, capped, reader);
            // Segment by segment, each an index range scan, until the page is full. seq is
            // unique: the id part of a position is not needed here.
            let mut rows = Vec::new();
            for segment in plan.segments.iter().filter(|s| !s.is_empty()) {
                let left = (limit as usize).saturating_sub(rows.len());
                if left == 0 {
                    break;
                }
                rows.extend(
                    sqlx::query(&format!(
                        "SELECT {COLUMNS}, seq AS pos, coalesce(via = ?, 0) AS known, \
                           EXISTS (SELECT 1 FROM dsms_quarantine q WHERE q.region = ? AND q.vente_id = vente.id) AS quarantined \
                         FROM vente WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?"
                    ))
                    .bind(reader.map(|r| r.db_id))
                    .bind(self.region.as_str())
                    .bind(segment.after.pos)
                    .bind(segment.before)
                    .bind(i64::try_from(left).unwrap_or(i64::MAX))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(self.err())?,
                );
            }
            drop(conn);
            // A row that cannot be decoded is set aside and the feed moves past it; one that
            // decodes again leaves quarantine.
            let (page, bad, healed) = feed_page(&rows, &self.region, |row| self.decode(row))?;
            self.quarantine_bad_now(&bad).await?;
            self.release_healed(&healed).await?;
            Ok(skip::finish(&plan, page, limit))
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
