//! The statistics as the state database stores them. Owns: turning `Stats` and `Unsaved` into the
//! store's plain records and back (counter and status names, region names matched loosely to the
//! configured regions, so a case change keeps the counts). Leaves: the SQL and its merge rules
//! (store/state.rs), when to save (mod.rs).

use super::stats::{Counters, HistoryEntry, RegionStats, Stats, Unsaved, status_name, status_named};
use crate::domain::{RegionName, Regions};
use crate::store::state::{SavedRegion, SavedRound, SavedState, StateDb, StateDelta, StateError};
use crate::sync::report::RoundStatus;

/// Everything saved, for these regions (rows of regions no longer configured are kept on disk
/// but not shown; several rows naming one region add up).
pub async fn load(db: &StateDb, regions: &Regions) -> Result<Stats, StateError> {
    Ok(stats_of(db.load().await?, regions))
}

/// Saves what changed, in one transaction (nothing to save: no transaction).
pub async fn save(db: &StateDb, unsaved: &Unsaved) -> Result<(), StateError> {
    if unsaved.is_empty() {
        return Ok(());
    }
    db.save(&delta_of(unsaved)).await
}

fn stats_of(saved: SavedState, regions: &Regions) -> Stats {
    let mut counters = Counters::default();
    for (name, value) in &saved.counters {
        counters.set(name, *value);
    }
    let mut per_region: Vec<(RegionName, RegionStats)> = regions.iter().map(|r| (r.clone(), RegionStats::default())).collect();
    for row in saved.regions {
        let Some(known) = regions.resolve(&row.region) else { continue };
        let Some((_, stats)) = per_region.iter_mut().find(|(r, _)| r == known) else { continue };
        stats.errors += row.errors;
        stats.last_access = stats.last_access.max(row.last_access);
        if let Some((at, text)) = row.last_error {
            if stats.last_error.as_ref().is_none_or(|(t, _)| *t < at) {
                stats.last_error = Some((at, text));
            }
        }
    }
    let history = saved.history.into_iter().map(|round| history_entry(round, regions)).collect();
    Stats::loaded(counters, saved.last_sync, per_region, history)
}

fn history_entry(round: SavedRound, regions: &Regions) -> HistoryEntry {
    let rows_applied = round
        .rows_applied
        .into_iter()
        .map(|(name, n)| (regions.resolve(&name).cloned().unwrap_or_else(|| RegionName::new(&name)), n))
        .collect();
    HistoryEntry {
        started_at: round.started_at,
        status: status_named(&round.status).unwrap_or(RoundStatus::Failed),
        duration: round.duration,
        error: round.error,
        rows_applied,
        conflicts: round.conflicts,
    }
}

fn delta_of(unsaved: &Unsaved) -> StateDelta {
    StateDelta {
        counters: unsaved.counters.named().into_iter().map(|(name, n)| (name.to_owned(), n)).collect(),
        last_sync: unsaved.last_sync,
        regions: unsaved
            .regions
            .iter()
            .map(|(name, region)| SavedRegion {
                region: name.as_str().to_owned(),
                errors: region.errors,
                last_access: region.last_access,
                last_error: region.last_error.clone(),
            })
            .collect(),
        history: unsaved.history.iter().map(saved_round).collect(),
    }
}

fn saved_round(entry: &HistoryEntry) -> SavedRound {
    SavedRound {
        started_at: entry.started_at,
        status: status_name(entry.status).to_owned(),
        duration: entry.duration,
        error: entry.error.clone(),
        rows_applied: entry.rows_applied.iter().map(|(r, n)| (r.as_str().to_owned(), *n)).collect(),
        conflicts: entry.conflicts,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::monitor::stats::HISTORY_KEPT;
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
        let db = StateDb::open(dir.path(), HISTORY_KEPT).await.unwrap();
        let mut stats = load(&db, &regions()).await.unwrap();
        stats.record_write(WriteKind::Created);
        stats.region_failed(1, Utc::now(), "connexion refusée");
        stats.region_reached(0, Utc::now());
        let mut unsaved = stats.take_unsaved();
        unsaved.history = (0..HISTORY_KEPT as u64 + 5).map(entry).collect();
        unsaved.counters.total_syncs = HISTORY_KEPT as u64 + 5;
        save(&db, &unsaved).await.unwrap();
        assert_eq!(db.history_rows().await.unwrap(), HISTORY_KEPT as u64);

        // A second process on the same file adds to the counters instead of overwriting them.
        let other = StateDb::open(dir.path(), HISTORY_KEPT).await.unwrap();
        let mut theirs = load(&other, &regions()).await.unwrap();
        theirs.record_write(WriteKind::Created);
        theirs.region_failed(1, Utc::now(), "délai dépassé");
        save(&other, &theirs.take_unsaved()).await.unwrap();

        let loaded = load(&db, &regions()).await.unwrap();
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
