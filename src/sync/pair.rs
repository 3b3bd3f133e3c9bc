//! A pair's (source → target) part in a round while it runs, and the round's log line. Owns: what
//! a pair counts and how it becomes a `PairOutcome`. Leaves: running pairs (engine.rs).

use super::report::{PairOutcome, RoundReport, RoundStatus};
use crate::store::Source;

/// Which end of a pair failed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Side {
    Source,
    Target,
}

/// A pair's result while the round runs.
pub(super) struct PairResult {
    pub source: crate::domain::RegionName,
    pub target: crate::domain::RegionName,
    pub rows_read: u64,
    pub rows_applied: u64,
    pub conflicts: u64,
    pub more: bool,
    pub error: Option<(Side, String)>,
}

impl PairResult {
    pub fn new(source: &Source, target: &Source) -> Self {
        Self {
            source: source.region.clone(),
            target: target.region.clone(),
            rows_read: 0,
            rows_applied: 0,
            conflicts: 0,
            more: false,
            error: None,
        }
    }

    /// Adds what the same pair did earlier in the round (a bulk load).
    pub fn absorb(&mut self, earlier: PairResult) {
        self.rows_read += earlier.rows_read;
        self.rows_applied += earlier.rows_applied;
        self.conflicts += earlier.conflicts;
        self.more |= earlier.more;
        if earlier.error.is_some() && self.error.is_none() {
            self.error = earlier.error;
        }
    }

    pub fn into_outcome(self) -> PairOutcome {
        PairOutcome {
            source: self.source,
            target: self.target,
            rows_read: self.rows_read,
            rows_applied: self.rows_applied,
            error: self.error.map(|(_, e)| e),
        }
    }
}

pub(super) fn log_round(report: &RoundReport) {
    let rows: Vec<String> = report.regions.iter().map(|r| format!("{}={}", r.region, r.rows_applied)).collect();
    let duration_ms = report.duration.as_millis();
    match report.status {
        RoundStatus::Success => {
            tracing::info!(status = "success", duration_ms, rows = %rows.join(" "), conflicts = report.conflicts, restores = report.restores.len(), "synchronisation terminée")
        }
        _ => tracing::warn!(
            status = ?report.status,
            duration_ms,
            rows = %rows.join(" "),
            conflicts = report.conflicts,
            restores = report.restores.len(),
            error = report.error_summary().unwrap_or_default(),
            "synchronisation terminée avec erreurs"
        ),
    }
}
