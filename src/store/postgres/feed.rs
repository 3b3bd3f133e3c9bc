//! The PostgreSQL change feed: each row carries the id of the transaction that wrote it (`txid`),
//! read only below the oldest transaction still running, so a late commit is never skipped;
//! cursors, horizons and `LISTEN` wake-ups.

use super::COLUMNS;
use super::PgStore;
use crate::store::row::feed_page;
use crate::store::{Blocker, FeedHold, FeedPage, FeedPosition, Source, StoreError};

/// A `pg_stat_activity` row: pid, database, transaction age in seconds, state.
type BlockerRow = (i32, Option<String>, Option<f64>, Option<String>);

/// Rows waiting behind a held feed are counted up to this.
const PENDING_CAP: i64 = 100_000;

/// The change feed after a position (`$1` its transaction id as text, `$2` its id) and below
/// both the oldest transaction still running and a horizon (`$4`, as text): every transaction
/// with a smaller id has ended, and any later one gets a larger id, so nothing can appear behind.
const FEED_RANGE: &str = "(txid, id) > ($1::text::xid8, $2) \
     AND txid < (SELECT least(pg_snapshot_xmin(pg_current_snapshot()), $4::text::xid8))";

impl PgStore {
    pub(super) async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError> {
        self.bounded(async {
            let row: Option<(i64, uuid::Uuid)> = sqlx::query_as("SELECT pos, id FROM dsms_cursor WHERE source = $1 AND source_db = $2")
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
            // The limit is hidden from the planner (`(SELECT $3)`): seeing LIMIT 5000 against a
            // feed it wrongly believes short (no statistics yet after a bulk load), it would read
            // every remaining row (bitmap scan) and sort them for each page, instead of walking
            // `vente_feed` in order and stopping after `limit` rows.
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS}, txid::text::int8 AS pos, coalesce(via = $5, false) AS known, \
                   EXISTS (SELECT 1 FROM dsms_quarantine q WHERE q.region = $6 AND q.vente_id = vente.id) AS quarantined \
                 FROM vente WHERE {FEED_RANGE} ORDER BY txid, id LIMIT (SELECT $3::int8)"
            ))
            .bind(after.pos.to_string())
            .bind(after.id)
            .bind(i64::from(limit))
            .bind(before.unwrap_or(i64::MAX).to_string())
            .bind(reader)
            .bind(self.region.as_str())
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
            let (n,): (i64,) =
                sqlx::query_as(&format!("SELECT count(*) FROM (SELECT 1 FROM vente WHERE {FEED_RANGE} LIMIT (SELECT $3::int8)) AS feed"))
                    .bind(after.pos.to_string())
                    .bind(after.id)
                    .bind(i64::from(cap))
                    .bind(before.unwrap_or(i64::MAX).to_string())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(self.err())?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    pub(super) async fn feed_horizon(&self) -> Result<i64, StoreError> {
        // Every transaction that has committed has an id below the current snapshot's xmax.
        self.bounded(async {
            let (horizon,): (i64,) = sqlx::query_as("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8")
                .fetch_one(&self.pool)
                .await
                .map_err(self.err())?;
            Ok(horizon)
        })
        .await
    }

    pub(super) async fn wait_for_older_transactions(&self, horizon: i64) -> Result<(), StoreError> {
        self.bounded(async {
            loop {
                let (passed,): (bool,) = sqlx::query_as("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8")
                    .bind(horizon.to_string())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(self.err())?;
                if passed {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// What holds the feed back: the oldest transaction still running in the cluster (the feed
    /// reads below it), the rows committed at or above it, and the session that runs it. Any role
    /// sees every session's `pid`, database and `backend_xid` in `pg_stat_activity`; the start of
    /// another role's transaction only with `pg_read_all_stats` (in `pg_monitor`), else its age
    /// is unknown here. A prepared transaction holds the feed without any session.
    pub(super) async fn feed_hold(&self) -> Result<Option<FeedHold>, StoreError> {
        self.bounded(async {
            let (horizon, xmax): (i64, i64) = sqlx::query_as(
                "SELECT pg_snapshot_xmin(s)::text::int8, pg_snapshot_xmax(s)::text::int8 FROM pg_current_snapshot() AS s",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(self.err())?;
            if horizon >= xmax {
                return Ok(None); // no transaction with an id is running
            }
            let blocker: Option<BlockerRow> = sqlx::query_as(
                "SELECT pid, datname, extract(epoch FROM clock_timestamp() - xact_start)::float8, state                  FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()                  ORDER BY age(backend_xid) DESC, pid LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
            let (pending,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM (SELECT 1 FROM vente WHERE txid >= $1::text::xid8 LIMIT $2) AS held",
            )
            .bind(horizon.to_string())
            .bind(PENDING_CAP)
            .fetch_one(&self.pool)
            .await
            .map_err(self.err())?;
            let blocker = blocker.map(|(pid, database, age, state)| Blocker {
                pid,
                database,
                age: age.filter(|a| a.is_finite() && *a >= 0.0).map(std::time::Duration::from_secs_f64),
                state,
            });
            Ok(Some(FeedHold { horizon, pending: u64::try_from(pending).unwrap_or(0), blocker }))
        })
        .await
    }

    pub(super) async fn listen_for_changes(&self, wake: &tokio::sync::Notify) -> Result<(), StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await.map_err(self.err())?;
        listener.listen("dsms_vente").await.map_err(self.err())?;
        // Changes committed while nobody was listening (start-up, a lost connection) get a round too.
        wake.notify_one();
        loop {
            // `None`: the connection was lost (it reconnects on the next call) and notifications
            // may have been missed meanwhile; a round catches up either way. Our own writes need
            // no wake-up: the write path has already asked for a round.
            match listener.try_recv().await.map_err(self.err())? {
                Some(notification) if notification.payload() == self.writer => {}
                _ => wake.notify_one(),
            }
        }
    }
}
