//! The PostgreSQL change feed: each row carries the id of the transaction that wrote it (`txid`),
//! read only below the oldest transaction still running, so a late commit is never skipped;
//! cursors, horizons and `LISTEN` wake-ups.

use sqlx::Row;

use super::COLUMNS;
use super::PgStore;
use crate::store::row::{cursor_rows, feed_page};
use crate::store::skip::{self, LOG_ROWS_PER_PAGE, Logged, Segment};
use crate::store::{Blocker, CursorRow, FeedHold, FeedPage, FeedPosition, Reader, Source, StoreError};

/// A `pg_stat_activity` row: pid, database, transaction age in seconds, state.
type BlockerRow = (i32, Option<String>, Option<f64>, Option<String>);

/// Rows waiting behind a held feed are counted up to this.
const PENDING_CAP: i64 = 100_000;

/// The change feed after a position (`$1` its transaction id as text, `$2` its id) and below
/// both the oldest transaction still running and a horizon (`$4`, as text): every transaction
/// with a smaller id has ended, and any later one gets a larger id, so nothing can appear behind.
const FEED_RANGE: &str = "(txid, id) > ($1::text::xid8, $2) \
     AND txid < (SELECT least(pg_snapshot_xmin(pg_current_snapshot()), $4::text::xid8))";

/// `COLUMNS` as NULLs of their types: the bound's and the log's rows of a feed page.
const NO_COLUMNS: &str = "NULL::uuid AS id, NULL::text AS produit, NULL::numeric AS montant, NULL::date AS date_vente, \
     NULL::text AS region, NULL::timestamptz AS updated_at, NULL::bool AS deleted, NULL::int8 AS hlc, NULL::text AS origin, \
     NULL::text AS seen";

impl PgStore {
    pub(super) async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError> {
        self.bounded(async {
            let row: Option<(i64, uuid::Uuid)> = sqlx::query_as("SELECT pos, id FROM dsms_cursor WHERE source = $1 AND source_db = $2")
                .bind(source.region.as_str())
                .bind(source.db_id)
                .fetch_optional(self.db())
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
                    .fetch_all(self.db())
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
            let Some(reader) = reader else {
                // Nothing to skip: one index range scan below the oldest running transaction.
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS}, txid::text::int8 AS pos, false AS known, \
                       EXISTS (SELECT 1 FROM dsms_quarantine q WHERE q.region = $5 AND q.vente_id = vente.id) AS quarantined \
                     FROM vente WHERE {FEED_RANGE} ORDER BY txid, id LIMIT (SELECT $3::int8)"
                ))
                .bind(after.pos.to_string())
                .bind(after.id)
                .bind(i64::from(limit))
                .bind(before.unwrap_or(i64::MAX).to_string())
                .bind(self.region.as_str())
                .fetch_all(self.db())
                .await
                .map_err(self.err())?;
                let mut page = self.decoded_page(&rows).await?;
                page.more = page.scanned >= limit as usize;
                return Ok(page);
            };
            // One statement reads the bound (taken once: every transaction below it has ended, so
            // what the page reads below it is final, whatever ends meanwhile), the apply log's
            // rows of the window, and the feed's rows up to the first logged range: a page with
            // nothing to skip, an idle one above all, costs one round trip.
            let rows = sqlx::query(&format!(
                "WITH b AS (SELECT least(pg_snapshot_xmin(pg_current_snapshot()), $3::text::xid8) AS bound), \
                 log AS (SELECT txid, source_db, end_pos, end_id, rows FROM dsms_applied \
                     WHERE txid >= $1::text::xid8 AND txid < (SELECT bound FROM b) \
                     AND here_db = (SELECT db_id FROM dsms_meta) ORDER BY txid LIMIT $4), \
                 upto AS (SELECT least((SELECT bound FROM b), coalesce((SELECT min(txid) FROM log), (SELECT bound FROM b))) AS upto) \
                 SELECT * FROM ( \
                 SELECT 0 AS kind, (SELECT bound FROM b)::text::int8 AS pos, (SELECT upto FROM upto)::text::int8 AS log_pos, \
                     NULL::uuid AS source_db, NULL::int8 AS end_pos, NULL::uuid AS end_id, NULL::int8 AS log_rows, {NO_COLUMNS}, \
                     false AS known, false AS quarantined \
                 UNION ALL SELECT 1, NULL, txid::text::int8, source_db, end_pos, end_id, rows, {NO_COLUMNS}, false, false FROM log \
                 UNION ALL (SELECT 2, txid::text::int8, NULL, NULL, NULL, NULL, NULL, {COLUMNS}, coalesce(via = $5, false), \
                     EXISTS (SELECT 1 FROM dsms_quarantine q WHERE q.region = $7 AND q.vente_id = vente.id) \
                     FROM vente WHERE (txid, id) > ($1::text::xid8, $2) AND txid < (SELECT upto FROM upto) \
                     ORDER BY txid, id LIMIT (SELECT $6::int8))) AS page \
                 ORDER BY kind, pos, log_pos, id"
            ))
            .bind(after.pos.to_string())
            .bind(after.id)
            .bind(before.unwrap_or(i64::MAX).to_string())
            .bind(i64::from(LOG_ROWS_PER_PAGE))
            .bind(reader.db_id)
            .bind(i64::from(limit))
            .bind(self.region.as_str())
            .fetch_all(self.db())
            .await
            .map_err(self.err())?;
            let (mut bound, mut upto) = (after.pos, after.pos);
            let mut logged = Vec::new();
            let mut feed = Vec::with_capacity(rows.len());
            for row in rows {
                let kind: i32 = row.try_get("kind").map_err(self.err())?;
                match kind {
                    0 => {
                        bound = row.try_get("pos").map_err(self.err())?;
                        upto = row.try_get("log_pos").map_err(self.err())?;
                    }
                    1 => {
                        let txid: i64 = row.try_get("log_pos").map_err(self.err())?;
                        logged.push(Logged {
                            lo: txid,
                            hi: txid,
                            source_db: row.try_get("source_db").map_err(self.err())?,
                            end: FeedPosition {
                                pos: row.try_get("end_pos").map_err(self.err())?,
                                id: row.try_get("end_id").map_err(self.err())?,
                            },
                            rows: row.try_get("log_rows").map_err(self.err())?,
                        });
                    }
                    _ => feed.push(row),
                }
            }
            let capped = logged.len() >= LOG_ROWS_PER_PAGE as usize;
            let plan = skip::plan(after, bound, logged, capped, Some(reader));
            // The rest of the plan (past a range it skips), when the page is not full yet.
            let left = (limit as usize).saturating_sub(feed.len());
            let rest = if left == 0 { Vec::new() } else { skip::unread(&plan, upto) };
            if !rest.is_empty() {
                feed.extend(self.read_segments(&rest, reader, u32::try_from(left).unwrap_or(limit)).await?);
            }
            let rows = feed;
            Ok(skip::finish(&plan, self.decoded_page(&rows).await?, limit))
        })
        .await
    }

    /// The rows of `segments` in order, at most `limit`: each an index range scan that stops after
    /// `limit` rows (an empty one costs one probe); the rows of a segment all precede the next's.
    /// The limit is hidden from the planner (`(SELECT $5)`): seeing LIMIT 5000 against a feed it
    /// wrongly believes short (no statistics yet after a bulk load), it would read every remaining
    /// row (bitmap scan) and sort them, instead of walking `vente_feed`.
    async fn read_segments(&self, segments: &[Segment], reader: &Reader, limit: u32) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        let single = format!(
            "SELECT {COLUMNS}, txid::text::int8 AS pos, coalesce(via = $4, false) AS known, \
                   EXISTS (SELECT 1 FROM dsms_quarantine q WHERE q.region = $6 AND q.vente_id = vente.id) AS quarantined \
                 FROM vente WHERE (txid, id) > ($1::text::xid8, $2) AND txid < $3::text::xid8 ORDER BY txid, id LIMIT (SELECT $5::int8)"
        );
        let several = format!(
            "SELECT f.* FROM unnest($1::int8[], $2::uuid[], $3::int8[]) WITH ORDINALITY AS s(after_pos, after_id, before_pos, n) \
                 CROSS JOIN LATERAL (SELECT {COLUMNS}, txid, txid::text::int8 AS pos, coalesce(via = $4, false) AS known, \
                     EXISTS (SELECT 1 FROM dsms_quarantine q WHERE q.region = $6 AND q.vente_id = vente.id) AS quarantined FROM vente \
                     WHERE (txid, id) > (s.after_pos::text::xid8, s.after_id) AND txid < s.before_pos::text::xid8 \
                     ORDER BY txid, id LIMIT (SELECT $5::int8)) AS f \
                 ORDER BY s.n, f.txid, f.id LIMIT (SELECT $5::int8)"
        );
        let query = if let [segment] = segments {
            // One segment: a plain index range scan.
            sqlx::query(&single).bind(segment.after.pos.to_string()).bind(segment.after.id).bind(segment.before.to_string())
        } else {
            sqlx::query(&several)
                .bind(segments.iter().map(|s| s.after.pos).collect::<Vec<_>>())
                .bind(segments.iter().map(|s| s.after.id).collect::<Vec<_>>())
                .bind(segments.iter().map(|s| s.before).collect::<Vec<_>>())
        };
        query.bind(reader.db_id).bind(i64::from(limit)).bind(self.region.as_str()).fetch_all(self.db()).await.map_err(self.err())
    }

    /// A feed page from its rows: a row that cannot be decoded is set aside and the feed moves
    /// past it; one that decodes again leaves quarantine.
    async fn decoded_page(&self, rows: &[sqlx::postgres::PgRow]) -> Result<FeedPage, StoreError> {
        let (page, bad, healed) = feed_page(rows, &self.region, |row| self.decode(row))?;
        self.quarantine_bad_now(&bad).await?;
        self.release_healed(&healed).await?;
        Ok(page)
    }

    pub(super) async fn feed_len(&self, after: FeedPosition, before: Option<i64>, cap: u32) -> Result<u64, StoreError> {
        self.bounded(async {
            let (n,): (i64,) =
                sqlx::query_as(&format!("SELECT count(*) FROM (SELECT 1 FROM vente WHERE {FEED_RANGE} LIMIT (SELECT $3::int8)) AS feed"))
                    .bind(after.pos.to_string())
                    .bind(after.id)
                    .bind(i64::from(cap))
                    .bind(before.unwrap_or(i64::MAX).to_string())
                    .fetch_one(self.db())
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
                .fetch_one(self.db())
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
                    .fetch_one(self.db())
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
            .fetch_one(self.db())
            .await
            .map_err(self.err())?;
            if horizon >= xmax {
                return Ok(None); // no transaction with an id is running
            }
            let blocker: Option<BlockerRow> = sqlx::query_as(
                "SELECT pid, datname, extract(epoch FROM clock_timestamp() - xact_start)::float8, state                  FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()                  ORDER BY age(backend_xid) DESC, pid LIMIT 1",
            )
            .fetch_optional(self.db())
            .await
            .map_err(self.err())?;
            let (pending,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM (SELECT 1 FROM vente WHERE txid >= $1::text::xid8 LIMIT $2) AS held",
            )
            .bind(horizon.to_string())
            .bind(PENDING_CAP)
            .fetch_one(self.db())
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
