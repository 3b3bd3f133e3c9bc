//! What one sync round did, as the engine reports it to the monitor, the CLI and the API.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::RegionName;

/// A round's outcome: every region reached, some, or none that mattered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundStatus {
    /// Every region was reached and every pair synced.
    Success,
    /// Some regions failed; the others synced among themselves.
    Partial,
    /// Fewer than two regions could be reached: nothing could be synced.
    Failed,
}

/// One region's part in a round.
#[derive(Clone, Debug)]
pub struct RegionOutcome {
    pub region: RegionName,
    /// `None` when reached; the cause otherwise (French, for people).
    pub error: Option<String>,
    /// Round trip of the region's first call in this round.
    pub latency: Option<Duration>,
    /// Rows applied into this region during the round (from every source).
    pub rows_applied: u64,
    /// Changes this region holds that some reachable region has not received yet, after the round.
    pub pending: u64,
    /// Round trips the round made to this region's database: statements sent, each waiting for
    /// its answer (PostgreSQL; a local SQLite file takes none). With `home`, the pair that reads
    /// a remote region is the only one to reach it.
    pub round_trips: u64,
}

impl RegionOutcome {
    pub fn reached(&self) -> bool {
        self.error.is_none()
    }
}

/// Rows moved from one region to another in a round.
#[derive(Clone, Debug)]
pub struct PairOutcome {
    pub source: RegionName,
    pub target: RegionName,
    /// Rows read from the source's feed for the target (not those received from the target).
    pub rows_read: u64,
    /// Rows of the source's feed not read because the target already holds them: copies the
    /// source applied from a third region whose feed the target had read past them (the apply
    /// log's count when they were written).
    pub rows_skipped: u64,
    /// Rows that won and were written into the target.
    pub rows_applied: u64,
    pub error: Option<String>,
}

/// The whole round.
#[derive(Clone, Debug)]
pub struct RoundReport {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub status: RoundStatus,
    /// In configuration order.
    pub regions: Vec<RegionOutcome>,
    pub pairs: Vec<PairOutcome>,
    /// Conflicts newly logged during the round.
    pub conflicts: u64,
    /// Regions found to have gone back in time (restored from a backup) and healed.
    pub restores: Vec<RestoreDetected>,
}

impl RoundReport {
    /// Round trips the round made, every region together.
    pub fn round_trips(&self) -> u64 {
        self.regions.iter().map(|r| r.round_trips).sum()
    }
}

/// A region whose database went back in time, found at the start of a round (`sync::restore`):
/// it was given a new identity, so that it and its peers read each other again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreDetected {
    pub region: RegionName,
    /// What showed it (French, for people).
    pub evidence: String,
}

impl RoundReport {
    /// Total rows applied, all targets.
    pub fn rows_applied(&self) -> u64 {
        self.regions.iter().map(|r| r.rows_applied).sum()
    }

    /// The guide's one-line error for the history: which regions failed and why; `None` on success.
    pub fn error_summary(&self) -> Option<String> {
        let failed: Vec<String> = self.regions.iter().filter_map(|r| r.error.as_ref().map(|e| format!("{} : {e}", r.region))).collect();
        if failed.is_empty() { None } else { Some(failed.join(" ; ")) }
    }

    /// Exit code for `dsms sync`: 0 all reached, 2 partial, 1 failed.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            RoundStatus::Success => 0,
            RoundStatus::Partial => 2,
            RoundStatus::Failed => 1,
        }
    }
}
