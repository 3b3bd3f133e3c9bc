//! Restores and rewinds on PostgreSQL: the feed's epochs, what a reader remembers of a source,
//! and a new identity for a database that went back in time. The rule (when to call what) lives
//! in `sync/restore.rs`.

use chrono::{DateTime, Utc};

use super::PgStore;
use crate::store::{Epoch, FeedPosition, Source, StoreError, Witness};

/// `open_epoch` in one statement ($1 a fresh epoch, $2 the time before which epochs are forgotten).
/// Whether a change committed at or above the last epoch's `below` is read from the feed index's
/// last entry: asked as `EXISTS (… WHERE txid >= below)`, the planner, which cannot see `below`,
/// guesses that a third of the rows match and scans the table for the first one, and on an idle
/// region none does, so it read every row at every round (0.2 s per million rows).
const OPEN_EPOCH: &str = "WITH last AS (SELECT epoch, below FROM dsms_epoch ORDER BY n DESC LIMIT 1), \
     moved AS (SELECT NOT EXISTS (SELECT 1 FROM last) \
         OR coalesce((SELECT txid FROM vente ORDER BY txid DESC LIMIT 1) >= (SELECT below FROM last)::text::xid8, false) AS yes), \
     added AS (INSERT INTO dsms_epoch (epoch, below) \
         SELECT $1, pg_snapshot_xmin(pg_current_snapshot())::text::int8 FROM moved WHERE yes \
         RETURNING epoch, below), \
     forgotten AS (DELETE FROM dsms_epoch WHERE created_at < $2 AND n < (SELECT max(n) FROM dsms_epoch)) \
     SELECT epoch, below FROM added \
     UNION ALL SELECT epoch, below FROM last WHERE NOT (SELECT yes FROM moved)";

impl PgStore {
    pub(super) async fn open_epoch(&self, forget_before: DateTime<Utc>) -> Result<Epoch, StoreError> {
        // One statement: the latest epoch stays while no change has committed at or above its
        // `below`; else a new one is recorded, `below` being the oldest transaction still running
        // as this statement starts (every change below it has committed, so before the epoch).
        let fresh = uuid::Uuid::new_v4();
        self.bounded(async {
            let (id, below): (uuid::Uuid, i64) =
                sqlx::query_as(OPEN_EPOCH).bind(fresh).bind(forget_before).fetch_one(&self.pool).await.map_err(self.err())?;
            Ok(Epoch { id, below })
        })
        .await
    }

    pub(super) async fn held_epochs(&self, epochs: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError> {
        if epochs.is_empty() {
            return Ok(Vec::new());
        }
        self.bounded(async {
            let held: Vec<(uuid::Uuid,)> = sqlx::query_as("SELECT epoch FROM dsms_epoch WHERE epoch = ANY($1)")
                .bind(epochs)
                .fetch_all(&self.pool)
                .await
                .map_err(self.err())?;
            Ok(held.into_iter().map(|(e,)| e).collect())
        })
        .await
    }

    pub(super) async fn witness(&self, source: &Source) -> Result<Option<Witness>, StoreError> {
        self.bounded(async {
            let row: Option<(i64, uuid::Uuid, Option<uuid::Uuid>)> =
                sqlx::query_as("SELECT pos, id, epoch FROM dsms_cursor WHERE source = $1 AND source_db = $2")
                    .bind(source.region.as_str())
                    .bind(source.db_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(self.err())?;
            Ok(row.map(|(pos, id, epoch)| Witness { cursor: FeedPosition { pos, id }, epoch }))
        })
        .await
    }

    pub(super) async fn rotate_identity(&self, old: uuid::Uuid) -> Result<uuid::Uuid, StoreError> {
        let fresh = uuid::Uuid::new_v4();
        self.bounded(async {
            let mut tx = self.pool.begin().await.map_err(self.err())?;
            sqlx::query("UPDATE dsms_meta SET db_id = $1 WHERE db_id = $2")
                .bind(fresh)
                .bind(old)
                .execute(&mut *tx)
                .await
                .map_err(self.err())?;
            // A dump restored into a younger cluster keeps its rows' transaction ids, which this
            // server has not reached yet: the feed would not show them before it does. They move
            // to this transaction (they are the database's present state).
            sqlx::query("UPDATE vente SET txid = pg_current_xact_id() WHERE txid >= pg_snapshot_xmax(pg_current_snapshot())")
                .execute(&mut *tx)
                .await
                .map_err(self.err())?;
            let (now,): (uuid::Uuid,) = sqlx::query_as("SELECT db_id FROM dsms_meta").fetch_one(&mut *tx).await.map_err(self.err())?;
            tx.commit().await.map_err(self.err())?;
            Ok(now)
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::RegionName;
    use crate::store::{Limits, Store};
    use crate::testkit::pg::PgCluster;

    /// The check runs at every round: on a region whose last epoch is still current (nothing
    /// written since, the usual case), it must look at the end of the feed index, not read the
    /// table. Just after a bulk load the table has no statistics yet, which is when the planner
    /// guessed wrong (a sequential scan of every row, looking for one that does not exist).
    #[tokio::test(flavor = "multi_thread")]
    async fn an_idle_epoch_check_reads_the_feed_index_not_the_table() {
        if PgCluster::bin_dir().is_none() {
            assert!(std::env::var("DSMS_REQUIRE_PG").as_deref() != Ok("1"), "DSMS_REQUIRE_PG=1 but PostgreSQL is not installed");
            eprintln!("*** SKIP: PostgreSQL not installed ***");
            return;
        }
        let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap().unwrap();
        let url = tokio::task::block_in_place(|| cluster.create_database("epochs")).unwrap();
        let limits = Limits { connect_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(60) };
        let store = PgStore::open(RegionName::new("Dakar"), &url, limits).unwrap();
        store.migrate().await.unwrap();
        // Rows written in bulk, no ANALYZE since (autovacuum is off, so none comes meanwhile).
        sqlx::query("ALTER TABLE vente SET (autovacuum_enabled = off)").execute(&store.pool).await.unwrap();
        sqlx::query(
            "INSERT INTO vente (id, produit, produit_norm, montant, date_vente, region, updated_at, hlc, origin) \
             SELECT gen_random_uuid(), 'riz', 'riz', 1, current_date, 'Dakar', now(), n, 'Dakar' FROM generate_series(1, 20000) AS n",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let first = store.open_epoch(chrono::Utc::now()).await.unwrap();
        assert_eq!(store.open_epoch(chrono::Utc::now()).await.unwrap().id, first.id, "nothing written: the epoch stays");

        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {OPEN_EPOCH}"))
            .bind(uuid::Uuid::new_v4())
            .bind(chrono::Utc::now())
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan on vente"), "{plan}");
        assert!(plan.contains("vente_feed"), "{plan}");
    }
}
