//! Restores and rewinds on PostgreSQL: the feed's epochs, what a reader remembers of a source,
//! and a new identity for a database that went back in time. The rule (when to call what) lives
//! in `sync/restore.rs`.

use chrono::{DateTime, Utc};

use super::PgStore;
use crate::store::{Contact, Epoch, StoreError};

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
    /// `Store::contact` in one statement: identity, snapshot, epochs held and, when asked, the
    /// epoch opened as `open_epoch` does. Whether a change committed at or above the last epoch's
    /// `below` is read from the feed index's last entry: asked as `EXISTS (… WHERE txid >= below)`,
    /// the planner, which cannot see `below`, scans the table, every row of an idle region.
    pub(super) async fn contact(&self, epochs: &[uuid::Uuid], open: Option<DateTime<Utc>>) -> Result<Contact, StoreError> {
        let fresh = uuid::Uuid::new_v4();
        self.bounded(async {
            let (db_id, horizon, oldest, held, epoch, below): (uuid::Uuid, i64, i64, Vec<uuid::Uuid>, Option<uuid::Uuid>, Option<i64>) =
                sqlx::query_as(
                    "WITH snap AS (SELECT pg_current_snapshot() AS s), \
                     last AS (SELECT epoch, below FROM dsms_epoch ORDER BY n DESC LIMIT 1), \
                     moved AS (SELECT $3 AND (NOT EXISTS (SELECT 1 FROM last) \
                         OR coalesce((SELECT txid FROM vente ORDER BY txid DESC LIMIT 1) >= (SELECT below FROM last)::text::xid8, false)) AS yes), \
                     added AS (INSERT INTO dsms_epoch (epoch, below) \
                         SELECT $1, pg_snapshot_xmin(pg_current_snapshot())::text::int8 FROM moved WHERE yes \
                         RETURNING epoch, below), \
                     forgotten AS (DELETE FROM dsms_epoch WHERE $3 AND created_at < $2 AND n < (SELECT max(n) FROM dsms_epoch)), \
                     opened AS (SELECT epoch, below FROM added \
                         UNION ALL SELECT epoch, below FROM last WHERE $3 AND NOT (SELECT yes FROM moved)) \
                     SELECT m.db_id, pg_snapshot_xmax(snap.s)::text::int8, pg_snapshot_xmin(snap.s)::text::int8, \
                         ARRAY(SELECT e.epoch FROM dsms_epoch e WHERE e.epoch = ANY($4)), \
                         (SELECT epoch FROM opened LIMIT 1), (SELECT below FROM opened LIMIT 1) \
                     FROM dsms_meta m, snap",
                )
                .bind(fresh)
                .bind(open.unwrap_or_default())
                .bind(open.is_some())
                .bind(epochs)
                .fetch_one(self.db())
                .await
                .map_err(self.err())?;
            let epoch = match (open, epoch, below) {
                (None, _, _) => None,
                (Some(_), Some(id), Some(below)) => Some(Epoch { id, below }),
                (Some(_), _, _) => {
                    return Err(StoreError::Database { region: self.region.clone(), message: "aucune époque ouverte".into() });
                }
            };
            Ok(Contact { db_id, horizon, settled: oldest >= horizon, held, epoch })
        })
        .await
    }

    pub(super) async fn open_epoch(&self, forget_before: DateTime<Utc>) -> Result<Epoch, StoreError> {
        // One statement: the latest epoch stays while no change has committed at or above its
        // `below`; else a new one is recorded, `below` being the oldest transaction still running
        // as this statement starts (every change below it has committed, so before the epoch).
        let fresh = uuid::Uuid::new_v4();
        self.bounded(async {
            let (id, below): (uuid::Uuid, i64) =
                sqlx::query_as(OPEN_EPOCH).bind(fresh).bind(forget_before).fetch_one(self.db()).await.map_err(self.err())?;
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
                .fetch_all(self.db())
                .await
                .map_err(self.err())?;
            Ok(held.into_iter().map(|(e,)| e).collect())
        })
        .await
    }

    pub(super) async fn rotate_identity(&self, old: uuid::Uuid) -> Result<uuid::Uuid, StoreError> {
        let fresh = uuid::Uuid::new_v4();
        self.bounded(async {
            let mut tx = self.begin().await.map_err(self.err())?;
            sqlx::query("UPDATE dsms_meta SET db_id = $1 WHERE db_id = $2")
                .bind(fresh)
                .bind(old)
                .execute(self.on(&mut tx))
                .await
                .map_err(self.err())?;
            // A dump restored into a younger cluster keeps its rows' transaction ids, which this
            // server has not reached yet: the feed would not show them before it does. They move
            // to this transaction (they are the database's present state).
            sqlx::query("UPDATE vente SET txid = pg_current_xact_id() WHERE txid >= pg_snapshot_xmax(pg_current_snapshot())")
                .execute(self.on(&mut tx))
                .await
                .map_err(self.err())?;
            let (now,): (uuid::Uuid,) =
                sqlx::query_as("SELECT db_id FROM dsms_meta").fetch_one(self.on(&mut tx)).await.map_err(self.err())?;
            self.commit(tx).await.map_err(self.err())?;
            Ok(now)
        })
        .await
    }
}
