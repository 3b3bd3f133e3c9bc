//! The guide's statistics, in memory. Owns: sync counters (a `Partial` round counts as failed, as in
//! the guide), success rate, last round, CRUD counters, per-region error counts and last access,
//! the sync history (the 1,000 newest), and what has changed since the last save. Leaves: the
//! state database (persist.rs, store/state.rs), region status (health.rs), JSON (web/monitor_api.rs).

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use crate::domain::RegionName;
use crate::sync::report::{RoundReport, RoundStatus};
use crate::ventes::WriteKind;

/// Rounds kept in the history (for charts); older ones are dropped, in memory and on disk.
pub const HISTORY_KEPT: usize = 1000;
/// Rounds shown by `/api/stats` (the guide's "10 dernières synchronisations").
pub const HISTORY_SHOWN: usize = 10;

/// A round status as the API, the metrics and the state database name it.
pub fn status_name(status: RoundStatus) -> &'static str {
    match status {
        RoundStatus::Success => "success",
        RoundStatus::Partial => "partial",
        RoundStatus::Failed => "failed",
    }
}

/// The status named `name` (`status_name`'s inverse).
pub fn status_named(name: &str) -> Option<RoundStatus> {
    [RoundStatus::Success, RoundStatus::Partial, RoundStatus::Failed].into_iter().find(|s| status_name(*s) == name)
}

/// Times are kept to the millisecond, as shown and as saved.
fn ms(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(3)
}

/// One round in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub started_at: DateTime<Utc>,
    pub status: RoundStatus,
    pub duration: Duration,
    /// The guide's one-line error: which regions failed and why; `None` on success.
    pub error: Option<String>,
    /// Rows applied into each region during the round, in configuration order.
    pub rows_applied: Vec<(RegionName, u64)>,
    pub conflicts: u64,
}

impl HistoryEntry {
    pub fn of(report: &RoundReport) -> Self {
        Self {
            started_at: ms(report.started_at),
            status: report.status,
            duration: report.duration,
            error: report.error_summary(),
            rows_applied: report.regions.iter().map(|r| (r.region.clone(), r.rows_applied)).collect(),
            conflicts: report.conflicts,
        }
    }
}

/// Every count the guide shows, all since the first start (they survive restarts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub total_syncs: u64,
    pub successful_syncs: u64,
    /// `Partial` and `Failed` rounds.
    pub failed_syncs: u64,
    pub ventes_crees: u64,
    pub ventes_modifiees: u64,
    pub ventes_supprimees: u64,
}

impl Counters {
    /// The names used in the state database, with their values.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("total_syncs", self.total_syncs),
            ("successful_syncs", self.successful_syncs),
            ("failed_syncs", self.failed_syncs),
            ("ventes_crees", self.ventes_crees),
            ("ventes_modifiees", self.ventes_modifiees),
            ("ventes_supprimees", self.ventes_supprimees),
        ]
    }

    /// Sets a counter by its state-database name; unknown names are ignored (a newer version's).
    pub fn set(&mut self, name: &str, value: u64) {
        match name {
            "total_syncs" => self.total_syncs = value,
            "successful_syncs" => self.successful_syncs = value,
            "failed_syncs" => self.failed_syncs = value,
            "ventes_crees" => self.ventes_crees = value,
            "ventes_modifiees" => self.ventes_modifiees = value,
            "ventes_supprimees" => self.ventes_supprimees = value,
            _ => {}
        }
    }

    fn minus(&self, other: &Self) -> Self {
        Self {
            total_syncs: self.total_syncs.saturating_sub(other.total_syncs),
            successful_syncs: self.successful_syncs.saturating_sub(other.successful_syncs),
            failed_syncs: self.failed_syncs.saturating_sub(other.failed_syncs),
            ventes_crees: self.ventes_crees.saturating_sub(other.ventes_crees),
            ventes_modifiees: self.ventes_modifiees.saturating_sub(other.ventes_modifiees),
            ventes_supprimees: self.ventes_supprimees.saturating_sub(other.ventes_supprimees),
        }
    }

    /// The guide's success rate: percent of rounds that reached every region, rounded half up to
    /// one decimal (43 of 45 → 95.6). With no round yet it is 0, not 100: nothing has succeeded.
    pub fn success_rate(&self) -> f64 {
        if self.total_syncs == 0 {
            return 0.0;
        }
        let (ok, total) = (u128::from(self.successful_syncs), u128::from(self.total_syncs));
        let tenths = (ok * 1000 + total / 2) / total;
        // At most 1000: exact in an f64.
        tenths as f64 / 10.0
    }
}

/// Per region: the counts that survive restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionStats {
    /// Failed contacts (sync rounds and probes) since the first start.
    pub errors: u64,
    /// Last successful contact.
    pub last_access: Option<DateTime<Utc>>,
    /// Last failure and its cause (French).
    pub last_error: Option<(DateTime<Utc>, String)>,
}

/// What changed since the last save, taken by `Stats::take_unsaved`.
#[derive(Clone, Debug, Default)]
pub struct Unsaved {
    /// Amounts to add to the stored counters.
    pub counters: Counters,
    pub last_sync: Option<(DateTime<Utc>, Duration)>,
    /// Per region (configuration order): errors to add, last access, last error.
    pub regions: Vec<(RegionName, RegionStats)>,
    /// New rounds, oldest first.
    pub history: Vec<HistoryEntry>,
}

impl Unsaved {
    pub fn is_empty(&self) -> bool {
        self.counters == Counters::default()
            && self.last_sync.is_none()
            && self.history.is_empty()
            && self.regions.iter().all(|(_, r)| r.errors == 0 && r.last_access.is_none() && r.last_error.is_none())
    }
}

/// The statistics of this server.
#[derive(Clone, Debug)]
pub struct Stats {
    pub counters: Counters,
    pub last_sync: Option<(DateTime<Utc>, Duration)>,
    /// In configuration order.
    pub regions: Vec<(RegionName, RegionStats)>,
    /// Newest first, at most `HISTORY_KEPT`.
    history: VecDeque<HistoryEntry>,
    saved_counters: Counters,
    saved_errors: Vec<u64>,
    /// Regions whose last access or last error changed since the last save.
    dirty_regions: Vec<bool>,
    last_sync_dirty: bool,
    /// How many of the newest history entries are not saved yet.
    unsaved_history: usize,
}

impl Stats {
    /// Statistics as loaded (everything already saved).
    pub fn loaded(
        counters: Counters,
        last_sync: Option<(DateTime<Utc>, Duration)>,
        regions: Vec<(RegionName, RegionStats)>,
        mut history: Vec<HistoryEntry>,
    ) -> Self {
        history.truncate(HISTORY_KEPT);
        let saved_errors = regions.iter().map(|(_, r)| r.errors).collect();
        let dirty_regions = vec![false; regions.len()];
        Self {
            counters,
            last_sync,
            regions,
            history: history.into(),
            saved_counters: counters,
            saved_errors,
            dirty_regions,
            last_sync_dirty: false,
            unsaved_history: 0,
        }
    }

    /// Empty statistics for these regions.
    pub fn new(regions: impl IntoIterator<Item = RegionName>) -> Self {
        Self::loaded(Counters::default(), None, regions.into_iter().map(|r| (r, RegionStats::default())).collect(), Vec::new())
    }

    /// Counts a round and puts it at the head of the history. Region contacts are counted by the
    /// caller through `region_reached` / `region_failed` (probes count the same way).
    pub fn record_round(&mut self, report: &RoundReport) {
        self.counters.total_syncs += 1;
        match report.status {
            RoundStatus::Success => self.counters.successful_syncs += 1,
            RoundStatus::Partial | RoundStatus::Failed => self.counters.failed_syncs += 1,
        }
        self.last_sync = Some((ms(report.started_at), report.duration));
        self.last_sync_dirty = true;
        self.history.push_front(HistoryEntry::of(report));
        self.history.truncate(HISTORY_KEPT);
        self.unsaved_history = (self.unsaved_history + 1).min(HISTORY_KEPT);
    }

    pub fn record_write(&mut self, kind: WriteKind) {
        match kind {
            WriteKind::Created => self.counters.ventes_crees += 1,
            WriteKind::Updated => self.counters.ventes_modifiees += 1,
            WriteKind::Deleted => self.counters.ventes_supprimees += 1,
        }
    }

    pub fn region_reached(&mut self, index: usize, at: DateTime<Utc>) {
        if let Some((_, region)) = self.regions.get_mut(index) {
            region.last_access = region.last_access.max(Some(ms(at)));
            self.dirty_regions[index] = true;
        }
    }

    pub fn region_failed(&mut self, index: usize, at: DateTime<Utc>, cause: &str) {
        if let Some((_, region)) = self.regions.get_mut(index) {
            region.errors += 1;
            region.last_error = Some((ms(at), cause.to_owned()));
            self.dirty_regions[index] = true;
        }
    }

    /// The newest rounds, newest first.
    pub fn history(&self, limit: usize) -> Vec<HistoryEntry> {
        self.history.iter().take(limit).cloned().collect()
    }

    /// Takes what changed since the last save and counts it as saved; give it back with
    /// `save_failed` if the save does not go through.
    pub fn take_unsaved(&mut self) -> Unsaved {
        let counters = self.counters.minus(&self.saved_counters);
        self.saved_counters = self.counters;
        let mut regions = Vec::new();
        for (i, (name, region)) in self.regions.iter().enumerate() {
            let errors = region.errors.saturating_sub(self.saved_errors[i]);
            if errors == 0 && !self.dirty_regions[i] {
                continue;
            }
            self.saved_errors[i] = region.errors;
            self.dirty_regions[i] = false;
            regions.push((name.clone(), RegionStats { errors, ..region.clone() }));
        }
        let last_sync = if std::mem::take(&mut self.last_sync_dirty) { self.last_sync } else { None };
        let history = self.history.iter().take(std::mem::take(&mut self.unsaved_history)).rev().cloned().collect();
        Unsaved { counters, last_sync, regions, history }
    }

    /// Gives back what a failed save took, to be saved next time.
    pub fn save_failed(&mut self, unsaved: Unsaved) {
        self.saved_counters = self.saved_counters.minus(&unsaved.counters);
        for (name, region) in &unsaved.regions {
            if let Some(i) = self.regions.iter().position(|(n, _)| n == name) {
                self.saved_errors[i] = self.saved_errors[i].saturating_sub(region.errors);
                self.dirty_regions[i] = true;
            }
        }
        self.last_sync_dirty |= unsaved.last_sync.is_some();
        self.unsaved_history = (self.unsaved_history + unsaved.history.len()).min(self.history.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::report::RegionOutcome;

    fn round(status: RoundStatus, error: Option<&str>) -> RoundReport {
        let region = RegionName::new("Thies");
        RoundReport {
            started_at: Utc::now(),
            duration: Duration::from_millis(234),
            status,
            regions: vec![RegionOutcome {
                region,
                error: error.map(str::to_owned),
                latency: None,
                rows_applied: 2,
                pending: 0,
                round_trips: 0,
            }],
            pairs: Vec::new(),
            conflicts: 0,
            restores: Vec::new(),
        }
    }

    #[test]
    fn success_rate_is_a_percentage_with_one_decimal_and_zero_without_rounds() {
        let mut counters = Counters::default();
        assert_eq!(counters.success_rate(), 0.0);
        counters.total_syncs = 45;
        counters.successful_syncs = 43;
        assert_eq!(counters.success_rate(), 95.6);
        counters.successful_syncs = 45;
        assert_eq!(counters.success_rate(), 100.0);
        counters.total_syncs = 3;
        counters.successful_syncs = 2;
        assert_eq!(counters.success_rate(), 66.7);
    }

    #[test]
    fn partial_rounds_count_as_failed_and_history_is_bounded_newest_first() {
        let mut stats = Stats::new([RegionName::new("Thies")]);
        stats.record_round(&round(RoundStatus::Partial, Some("connexion refusée")));
        for _ in 0..HISTORY_KEPT + 5 {
            stats.record_round(&round(RoundStatus::Success, None));
        }
        assert_eq!(stats.counters.failed_syncs, 1);
        assert_eq!(stats.counters.successful_syncs, HISTORY_KEPT as u64 + 5);
        assert_eq!(stats.history(usize::MAX).len(), HISTORY_KEPT);
        assert_eq!(stats.history(1)[0].status, RoundStatus::Success);
    }

    #[test]
    fn unsaved_changes_are_taken_once_and_given_back_on_failure() {
        let mut stats = Stats::new([RegionName::new("Thies")]);
        stats.record_write(WriteKind::Created);
        stats.record_round(&round(RoundStatus::Partial, Some("panne")));
        stats.region_failed(0, Utc::now(), "panne");
        let unsaved = stats.take_unsaved();
        assert_eq!(unsaved.counters.ventes_crees, 1);
        assert_eq!(unsaved.counters.failed_syncs, 1);
        assert_eq!(unsaved.history.len(), 1);
        assert_eq!(unsaved.regions[0].1.errors, 1);
        assert!(stats.take_unsaved().is_empty());
        stats.save_failed(unsaved);
        stats.record_write(WriteKind::Deleted);
        let again = stats.take_unsaved();
        assert_eq!((again.counters.ventes_crees, again.counters.ventes_supprimees), (1, 1));
        assert_eq!((again.history.len(), again.regions[0].1.errors), (1, 1));
    }
}
