//! The state database `{data_dir}/dsms-state.db`: this server's statistics, not a region's data.
//! Owns: its SQL, loading at start, saving what changed (counters are added to, so processes
//! sharing the file add up), trimming the history to the newest 1,000. Leaves: when to save (mod.rs).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::stats::{Counters, HISTORY_KEPT, HistoryEntry, RegionStats, Stats, Unsaved, status_name, status_named};
use crate::domain::{RegionName, Regions};
use crate::sync::report::RoundStatus;

/// The file name inside the data directory.
pub const FILE_NAME: &str = "dsms-state.db";

#[derive(Debug, thiserror::Error)]
#[error("base d'état {path} : {message}")]
pub struct StateError {
    pub path: PathBuf,
    pub message: String,
}

pub struct StateDb {
    pool: SqlitePool,
    path: PathBuf,
}

fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

fn time(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

fn duration_us(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

type HistoryRow = (i64, String, i64, Option<String>, String, i64);
/// region, errors, last_access, last_error, last_error_at
type RegionRow = (String, i64, Option<i64>, Option<String>, Option<i64>);

impl StateDb {
    /// Opens (creating the folder and file if needed) and migrates the state database.
    pub async fn open(data_dir: &Path) -> Result<Self, StateError> {
        let path = data_dir.join(FILE_NAME);
        let fail = |message: String| StateError { path: path.clone(), message };
        std::fs::create_dir_all(data_dir).map_err(|e| fail(format!("{} : {e}", data_dir.display())))?;
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| fail(e.to_string()))?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| fail(e.to_string()))?;
        sqlx::migrate!("./migrations/state").run(&pool).await.map_err(|e| fail(e.to_string()))?;
        Ok(Self { pool, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> StateError + '_ {
        |e| StateError { path: self.path.clone(), message: e.to_string() }
    }

    /// Everything saved, for these regions (rows of regions no longer configured are kept on disk
    /// but not shown; names are matched loosely, so a case change keeps the counts).
    pub async fn load(&self, regions: &Regions) -> Result<Stats, StateError> {
        let mut counters = Counters::default();
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT name, value FROM counter").fetch_all(&self.pool).await.map_err(self.err())?;
        for (name, value) in rows {
            counters.set(&name, u64::try_from(value).unwrap_or(0));
        }
        let last: Option<(i64, i64)> = sqlx::query_as("SELECT started_at, duration_us FROM last_sync WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
        let last_sync = last.and_then(|(at, us)| Some((time(at)?, Duration::from_micros(u64::try_from(us).unwrap_or(0)))));
        let mut per_region: Vec<(RegionName, RegionStats)> = regions.iter().map(|r| (r.clone(), RegionStats::default())).collect();
        let rows: Vec<RegionRow> = sqlx::query_as("SELECT region, errors, last_access, last_error, last_error_at FROM region_stats")
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
        for (name, errors, last_access, last_error, last_error_at) in rows {
            let Some(known) = regions.resolve(&name) else { continue };
            let Some((_, stats)) = per_region.iter_mut().find(|(r, _)| r == known) else { continue };
            stats.errors += u64::try_from(errors).unwrap_or(0);
            stats.last_access = stats.last_access.max(last_access.and_then(time));
            if let (Some(text), Some(at)) = (last_error, last_error_at.and_then(time)) {
                if stats.last_error.as_ref().is_none_or(|(t, _)| *t < at) {
                    stats.last_error = Some((at, text));
                }
            }
        }
        let limit = i64::try_from(HISTORY_KEPT).unwrap_or(1000);
        let rows: Vec<HistoryRow> = sqlx::query_as(
            "SELECT started_at, status, duration_us, error, rows_applied, conflicts FROM sync_history ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        let history = rows.into_iter().filter_map(|row| history_entry(row, regions)).collect();
        Ok(Stats::loaded(counters, last_sync, per_region, history))
    }

    /// Saves what changed, in one transaction.
    pub async fn save(&self, unsaved: &Unsaved) -> Result<(), StateError> {
        if unsaved.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(self.err())?;
        for (name, delta) in unsaved.counters.named().into_iter().filter(|(_, d)| *d > 0) {
            sqlx::query(
                "INSERT INTO counter (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            )
            .bind(name)
            .bind(i64::try_from(delta).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(self.err())?;
        }
        if let Some((at, duration)) = unsaved.last_sync {
            sqlx::query(
                "INSERT INTO last_sync (id, started_at, duration_us) VALUES (1, ?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, duration_us = excluded.duration_us \
                 WHERE excluded.started_at >= last_sync.started_at",
            )
            .bind(micros(at))
            .bind(duration_us(duration))
            .execute(&mut *tx)
            .await
            .map_err(self.err())?;
        }
        for (name, region) in &unsaved.regions {
            let (error_at, error) = match &region.last_error {
                Some((at, text)) => (Some(micros(*at)), Some(text.as_str())),
                None => (None, None),
            };
            sqlx::query(
                "INSERT INTO region_stats (region, errors, last_access, last_error, last_error_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (region) DO UPDATE SET errors = errors + excluded.errors, \
                   last_access = max(coalesce(last_access, excluded.last_access), coalesce(excluded.last_access, last_access)), \
                   last_error = CASE WHEN excluded.last_error_at > coalesce(last_error_at, -1) THEN excluded.last_error ELSE last_error END, \
                   last_error_at = max(coalesce(last_error_at, excluded.last_error_at), coalesce(excluded.last_error_at, last_error_at))",
            )
            .bind(name.as_str())
            .bind(i64::try_from(region.errors).unwrap_or(i64::MAX))
            .bind(region.last_access.map(micros))
            .bind(error)
            .bind(error_at)
            .execute(&mut *tx)
            .await
            .map_err(self.err())?;
        }
        for entry in &unsaved.history {
            let rows: Vec<(&str, u64)> = entry.rows_applied.iter().map(|(r, n)| (r.as_str(), *n)).collect();
            let rows = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "INSERT INTO sync_history (started_at, status, duration_us, error, rows_applied, conflicts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(micros(entry.started_at))
            .bind(status_name(entry.status))
            .bind(duration_us(entry.duration))
            .bind(entry.error.as_deref())
            .bind(rows)
            .bind(i64::try_from(entry.conflicts).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(self.err())?;
        }
        if !unsaved.history.is_empty() {
            sqlx::query("DELETE FROM sync_history WHERE id <= (SELECT max(id) FROM sync_history) - ?1")
                .bind(i64::try_from(HISTORY_KEPT).unwrap_or(1000))
                .execute(&mut *tx)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())
    }

    /// Rows in the history table (tests check the bound).
    pub async fn history_rows(&self) -> Result<u64, StateError> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM sync_history").fetch_one(&self.pool).await.map_err(self.err())?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn history_entry((started_at, status, us, error, rows, conflicts): HistoryRow, regions: &Regions) -> Option<HistoryEntry> {
    let rows: Vec<(String, u64)> = serde_json::from_str(&rows).unwrap_or_default();
    let rows_applied =
        rows.into_iter().map(|(name, n)| (regions.resolve(&name).cloned().unwrap_or_else(|| RegionName::new(&name)), n)).collect();
    Some(HistoryEntry {
        started_at: time(started_at)?,
        status: status_named(&status).unwrap_or(RoundStatus::Failed),
        duration: Duration::from_micros(u64::try_from(us).unwrap_or(0)),
        error,
        rows_applied,
        conflicts: u64::try_from(conflicts).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ventes::WriteKind;

    fn regions() -> Regions {
        Regions::new(vec![RegionName::new("Dakar"), RegionName::new("Saint-Louis")])
    }

    fn entry(n: u64) -> HistoryEntry {
        HistoryEntry {
            started_at: DateTime::from_timestamp_micros(1_764_000_000_000_000 + i64::try_from(n).unwrap() * 1000).unwrap(),
            status: if n % 2 == 0 { RoundStatus::Success } else { RoundStatus::Partial },
            duration: Duration::from_micros(1234 + n),
            error: (n % 2 == 1).then(|| format!("Dakar : panne {n}")),
            rows_applied: vec![(RegionName::new("Dakar"), n), (RegionName::new("Saint-Louis"), 0)],
            conflicts: n % 3,
        }
    }

    #[tokio::test]
    async fn statistics_reload_exactly_and_the_history_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).await.unwrap();
        let mut stats = db.load(&regions()).await.unwrap();
        stats.record_write(WriteKind::Created);
        stats.region_failed(1, Utc::now(), "connexion refusée");
        stats.region_reached(0, Utc::now());
        let mut unsaved = stats.take_unsaved();
        unsaved.history = (0..HISTORY_KEPT as u64 + 5).map(entry).collect();
        unsaved.counters.total_syncs = HISTORY_KEPT as u64 + 5;
        db.save(&unsaved).await.unwrap();
        assert_eq!(db.history_rows().await.unwrap(), HISTORY_KEPT as u64);

        // A second process on the same file adds to the counters instead of overwriting them.
        let other = StateDb::open(dir.path()).await.unwrap();
        let mut theirs = other.load(&regions()).await.unwrap();
        theirs.record_write(WriteKind::Created);
        theirs.region_failed(1, Utc::now(), "délai dépassé");
        other.save(&theirs.take_unsaved()).await.unwrap();

        let loaded = db.load(&regions()).await.unwrap();
        assert_eq!((loaded.counters.ventes_crees, loaded.counters.total_syncs), (2, HISTORY_KEPT as u64 + 5));
        assert_eq!(loaded.regions[1].1.errors, 2);
        assert_eq!(loaded.regions[1].1.last_error.as_ref().unwrap().1, "délai dépassé");
        assert!(loaded.regions[0].1.last_access.is_some() && loaded.regions[0].1.last_error.is_none());
        let history = loaded.history(usize::MAX);
        assert_eq!(history.len(), HISTORY_KEPT);
        assert_eq!(history[0], entry(HISTORY_KEPT as u64 + 4), "newest first, every field as saved");
        assert_eq!(history[HISTORY_KEPT - 1], entry(5));
    }
}
