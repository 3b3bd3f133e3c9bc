//! The state database `{data_dir}/dsms-state.db`: this server's statistics, not a region's data.
//! Owns: its pool, migrations and SQL, and the plain records it loads and saves (`SavedState`,
//! `StateDelta`): counters are added to, so processes sharing the file add up; region rows are
//! merged (errors added, latest access and error kept); the history is trimmed to the newest rounds.
//! Leaves: what the records mean and when to save (monitor/persist.rs, monitor/mod.rs).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "dsms-state.db";

#[derive(Debug, thiserror::Error)]
#[error("base d'état {path} : {message}")]
pub struct StateError {
    pub path: PathBuf,
    pub message: String,
}

/// Everything saved, as stored: names as text, whoever reads them matches them to its regions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedState {
    /// Counter name and value (unknown names included: a newer version's).
    pub counters: Vec<(String, u64)>,
    /// The last round: when it started and how long it took.
    pub last_sync: Option<(DateTime<Utc>, Duration)>,
    /// One row per region name as written (a renamed region may have several).
    pub regions: Vec<SavedRegion>,
    /// Newest first, at most the bound given to `StateDb::open`.
    pub history: Vec<SavedRound>,
}

/// One region's row. In a `StateDelta`, `errors` is the amount to add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedRegion {
    pub region: String,
    pub errors: u64,
    /// Last successful contact.
    pub last_access: Option<DateTime<Utc>>,
    /// Last failure and its cause.
    pub last_error: Option<(DateTime<Utc>, String)>,
}

/// One round of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedRound {
    pub started_at: DateTime<Utc>,
    /// `success`, `partial` or `failed` (the table's `CHECK`).
    pub status: String,
    pub duration: Duration,
    pub error: Option<String>,
    /// Rows applied into each region, in configuration order.
    pub rows_applied: Vec<(String, u64)>,
    pub conflicts: u64,
}

/// What changed since the last save.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDelta {
    /// Amounts to add to the stored counters.
    pub counters: Vec<(String, u64)>,
    /// Replaces the stored one unless that one started later.
    pub last_sync: Option<(DateTime<Utc>, Duration)>,
    /// Errors to add; the later access and the later error are kept.
    pub regions: Vec<SavedRegion>,
    /// New rounds, oldest first.
    pub history: Vec<SavedRound>,
}

pub struct StateDb {
    pool: SqlitePool,
    path: PathBuf,
    /// Rounds kept in the history table.
    history_kept: i64,
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

fn duration(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

type HistoryRow = (i64, String, i64, Option<String>, String, i64);
/// region, errors, last_access, last_error, last_error_at
type RegionRow = (String, i64, Option<i64>, Option<String>, Option<i64>);

impl StateDb {
    /// Opens (creating the folder and file if needed) and migrates the state database, which keeps
    /// the newest `history_kept` rounds.
    pub async fn open(data_dir: &Path, history_kept: usize) -> Result<Self, StateError> {
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
        Ok(Self { pool, path, history_kept: i64::try_from(history_kept).unwrap_or(i64::MAX) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> StateError + '_ {
        |e| StateError { path: self.path.clone(), message: e.to_string() }
    }

    /// Everything saved, every region row included (rows with an unreadable time are left out).
    pub async fn load(&self) -> Result<SavedState, StateError> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT name, value FROM counter").fetch_all(&self.pool).await.map_err(self.err())?;
        let counters = rows.into_iter().map(|(name, value)| (name, count(value))).collect();
        let last: Option<(i64, i64)> = sqlx::query_as("SELECT started_at, duration_us FROM last_sync WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
        let last_sync = last.and_then(|(at, us)| Some((time(at)?, duration(us))));
        let rows: Vec<RegionRow> = sqlx::query_as("SELECT region, errors, last_access, last_error, last_error_at FROM region_stats")
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
        let regions = rows
            .into_iter()
            .map(|(region, errors, last_access, last_error, last_error_at)| SavedRegion {
                region,
                errors: count(errors),
                last_access: last_access.and_then(time),
                last_error: match (last_error_at.and_then(time), last_error) {
                    (Some(at), Some(text)) => Some((at, text)),
                    _ => None,
                },
            })
            .collect();
        let rows: Vec<HistoryRow> = sqlx::query_as(
            "SELECT started_at, status, duration_us, error, rows_applied, conflicts FROM sync_history ORDER BY id DESC LIMIT ?",
        )
        .bind(self.history_kept)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        let history = rows.into_iter().filter_map(saved_round).collect();
        Ok(SavedState { counters, last_sync, regions, history })
    }

    /// Saves what changed, in one transaction.
    pub async fn save(&self, delta: &StateDelta) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(self.err())?;
        for (name, delta) in delta.counters.iter().filter(|(_, d)| *d > 0) {
            sqlx::query(
                "INSERT INTO counter (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            )
            .bind(name.as_str())
            .bind(int(*delta))
            .execute(&mut *tx)
            .await
            .map_err(self.err())?;
        }
        if let Some((at, duration)) = delta.last_sync {
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
        for region in &delta.regions {
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
            .bind(region.region.as_str())
            .bind(int(region.errors))
            .bind(region.last_access.map(micros))
            .bind(error)
            .bind(error_at)
            .execute(&mut *tx)
            .await
            .map_err(self.err())?;
        }
        for round in &delta.history {
            let rows = serde_json::to_string(&round.rows_applied).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "INSERT INTO sync_history (started_at, status, duration_us, error, rows_applied, conflicts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(micros(round.started_at))
            .bind(round.status.as_str())
            .bind(duration_us(round.duration))
            .bind(round.error.as_deref())
            .bind(rows)
            .bind(int(round.conflicts))
            .execute(&mut *tx)
            .await
            .map_err(self.err())?;
        }
        if !delta.history.is_empty() {
            sqlx::query("DELETE FROM sync_history WHERE id <= (SELECT max(id) FROM sync_history) - ?1")
                .bind(self.history_kept)
                .execute(&mut *tx)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())
    }

    /// Rows in the history table (tests check the bound).
    pub async fn history_rows(&self) -> Result<u64, StateError> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM sync_history").fetch_one(&self.pool).await.map_err(self.err())?;
        Ok(count(n))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn saved_round((started_at, status, us, error, rows, conflicts): HistoryRow) -> Option<SavedRound> {
    Some(SavedRound {
        started_at: time(started_at)?,
        status,
        duration: duration(us),
        error,
        rows_applied: serde_json::from_str(&rows).unwrap_or_default(),
        conflicts: count(conflicts),
    })
}
