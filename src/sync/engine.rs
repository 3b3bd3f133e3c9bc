//! One sync round: every reachable region pulls, from every other reachable region, the changes
//! its cursor has not reached yet, batch by batch. Owns: the round's shape (who syncs with whom,
//! timeouts, the deadline, partial rounds) and its report. Leaves: the LWW rule (merge.rs), SQL
//! and cursors (store/), scheduling (scheduler.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::{StreamExt, stream};
use tokio::sync::mpsc;

use super::pair::{PairResult, Side, log_round};
use super::report::{RegionOutcome, RoundReport, RoundStatus};
use crate::domain::version::{WallClock, system_clock};
use crate::store::{Batch, BulkLoad, FeedPage, FeedPosition, Source, Store, StoreError};

/// How long a round waits, at most, for transactions already running to end before reading feeds.
const SETTLE: Duration = Duration::from_millis(200);

/// How many sources one target pulls from at once.
const SOURCES_AT_ONCE: usize = 4;

/// Rows per batch read from a feed and applied in one transaction.
pub const DEFAULT_BATCH: u32 = 5_000;

/// Changes waiting for an empty region from which a round fills it by a bulk load
/// (`Store::begin_bulk_load`) rather than batch by batch into its indexes.
pub const BULK_MIN: u32 = 50_000;

#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    pub batch_size: u32,
    /// A round stops starting new batches after this; what is left waits for the next round.
    pub round_deadline: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { batch_size: DEFAULT_BATCH, round_deadline: Duration::from_secs(50) }
    }
}

/// The replicator over a fixed set of regions.
pub struct Engine {
    stores: Vec<Arc<dyn Store>>,
    options: EngineOptions,
    /// An instance that lives in one region pulls into it only (the other regions' instances
    /// pull into theirs); `None`: every region pulls from every other.
    home: Option<crate::domain::RegionName>,
    /// Wall time: when a round started (durations use the monotonic clock).
    clock: WallClock,
}

/// A region reached at the start of a round.
pub(super) struct Reached {
    pub store: Arc<dyn Store>,
    pub source: Source,
    /// Its feed is read only below this position during the round (`Store::feed_horizon`).
    pub horizon: i64,
    /// The epoch of its feed that reads record during this round (`sync::restore`).
    pub epoch: Option<uuid::Uuid>,
}

impl Engine {
    pub fn new(stores: Vec<Arc<dyn Store>>, options: EngineOptions) -> Self {
        Self { stores, options, home: None, clock: system_clock() }
    }

    /// Reads wall time from `clock` instead of the system clock.
    pub fn with_clock(self, clock: WallClock) -> Self {
        Self { clock, ..self }
    }

    /// Wall time as this engine reads it (rounds are dated by it).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.clock)()
    }

    /// Pulls into `home` only.
    pub fn with_home(self, home: Option<crate::domain::RegionName>) -> Self {
        Self { home, ..self }
    }

    /// Whether this round fills `target` (with a home, only home is filled).
    fn pulls_into(&self, target: &crate::domain::RegionName) -> bool {
        self.home.as_ref().is_none_or(|home| home == target)
    }

    pub fn stores(&self) -> &[Arc<dyn Store>] {
        &self.stores
    }

    /// Runs one round. Never fails as a whole: unreachable regions are reported and skipped, and
    /// the others sync among themselves.
    pub async fn round(&self) -> RoundReport {
        let started_at = (self.clock)();
        let clock = Instant::now();
        let deadline = clock + self.options.round_deadline;

        // Who answers? (Each store call is bounded by its connect and statement timeouts.)
        let probes = join_all(self.stores.iter().map(|store| async move {
            let began = Instant::now();
            let answer = store.db_id().await;
            let latency = began.elapsed();
            let answer = match answer {
                Ok(db_id) => store.feed_horizon().await.map(|horizon| (db_id, horizon)),
                Err(e) => Err(e),
            };
            (answer, latency)
        }))
        .await;
        let mut regions: Vec<RegionOutcome> = Vec::with_capacity(self.stores.len());
        let mut reached = Vec::new();
        for (store, (answer, latency)) in self.stores.iter().zip(probes) {
            let region = store.region().clone();
            match answer {
                Ok((db_id, horizon)) => {
                    reached.push(Reached { store: store.clone(), source: Source { region: region.clone(), db_id }, horizon, epoch: None });
                    regions.push(RegionOutcome { region, error: None, latency: Some(latency), rows_applied: 0, pending: 0 });
                }
                Err(e) => {
                    tracing::warn!(region = %region, error = %e, "région injoignable pour la synchronisation");
                    regions.push(RegionOutcome { region, error: Some(e.to_string()), latency: None, rows_applied: 0, pending: 0 });
                }
            }
        }

        // A PostgreSQL feed reads only below the oldest transaction still running on its server:
        // give transactions already under way (a write that just committed elsewhere, a neighbour
        // database's) a moment to end, so the round carries what was committed before it began.
        join_all(reached.iter().map(|r| tokio::time::timeout(SETTLE, r.store.wait_for_older_transactions(r.horizon)))).await;

        // A region restored from a backup is found and given a new identity before anything is
        // read; every source opens the epoch its readers record (see restore.rs).
        let targets: Vec<bool> = reached.iter().map(|r| self.pulls_into(&r.source.region)).collect();
        let checked = super::restore::check_and_open_epochs(&mut reached, &targets, started_at).await;
        for (region, error) in checked.failed {
            tracing::warn!(region = %region, %error, "région écartée de ce tour : contrôle de restauration impossible");
            reached.retain(|r| r.source.region != region);
            if let Some(outcome) = regions.iter_mut().find(|r| r.region == region) {
                outcome.error.get_or_insert(error);
            }
        }

        // Empty regions with a large backlog are filled first, in bulk.
        let reached = &reached;
        let loaded = self.bulk_loads(reached, deadline).await;

        // Every reachable target pulls from every other reachable source, all at once (bounded),
        // so a slow region delays only its own pairs. Applies into one target take turns in its
        // database (its clock row, or SQLite's write lock).
        let mut per_target = Vec::with_capacity(reached.len());
        for target in reached.iter().filter(|t| self.pulls_into(&t.source.region)) {
            let mut pulls = Vec::with_capacity(reached.len());
            for source in reached {
                if source.source.region != target.source.region {
                    pulls.push(self.sync_pair(source, target, deadline));
                }
            }
            per_target.push(stream::iter(pulls).buffer_unordered(SOURCES_AT_ONCE).collect::<Vec<_>>());
        }
        let per_target = join_all(per_target).await;
        let mut pairs: Vec<PairResult> = per_target.into_iter().flatten().collect();
        for bulk in loaded {
            match pairs.iter_mut().find(|p| p.source == bulk.source && p.target == bulk.target) {
                Some(pair) => pair.absorb(bulk),
                None => pairs.push(bulk),
            }
        }

        let mut conflicts = 0;
        for pair in &pairs {
            conflicts += pair.conflicts;
            if let Some(target) = regions.iter_mut().find(|r| r.region == pair.target) {
                target.rows_applied += pair.rows_applied;
            }
            // A region that failed in the middle of the round counts as failed.
            if let Some((side, error)) = &pair.error {
                let culprit = match side {
                    Side::Source => &pair.source,
                    Side::Target => &pair.target,
                };
                if let Some(region) = regions.iter_mut().find(|r| r.region == *culprit) {
                    region.error.get_or_insert_with(|| error.clone());
                }
            }
            // Stopped by the deadline: at least one more batch waits in the source's feed.
            if pair.more {
                if let Some(source) = regions.iter_mut().find(|r| r.region == pair.source) {
                    source.pending += u64::from(self.options.batch_size);
                }
            }
        }
        let failed = regions.iter().filter(|r| !r.reached()).count();
        let status = match (failed, regions.len() - failed) {
            (0, _) => RoundStatus::Success,
            (_, up) if up >= 2 => RoundStatus::Partial,
            _ => RoundStatus::Failed,
        };
        let report = RoundReport {
            started_at,
            duration: clock.elapsed(),
            status,
            regions,
            pairs: pairs.into_iter().map(PairResult::into_outcome).collect(),
            conflicts,
            restores: checked.restored,
        };
        log_round(&report);
        report
    }

    /// Fills, each in one bulk load, the reachable regions that are empty while at least
    /// `BULK_MIN` changes wait for them in the others' feeds. A source's feed is read once for all
    /// the regions loading it from the same position. Returns what each (source, target) pair got.
    async fn bulk_loads(&self, reached: &[Reached], deadline: Instant) -> Vec<PairResult> {
        // Which regions are empty? (Nothing is locked yet: they are looked at, and counted as
        // sources, before any load begins.)
        // Asked of every region at once: this runs at every round. Errors are left to the usual
        // pairs, which report them.
        let wanted = join_all(reached.iter().map(|target| target.store.wants_bulk_load())).await;
        let empty: Vec<crate::domain::RegionName> = reached
            .iter()
            .zip(wanted)
            .filter(|(target, wants)| matches!(wants, Ok(true)) && self.pulls_into(&target.source.region))
            .map(|(target, _)| target.source.region.clone())
            .collect();
        if empty.is_empty() {
            return Vec::new();
        }
        let mut candidates = Vec::new();
        for target in reached.iter().filter(|t| empty.contains(&t.source.region)) {
            let mut waiting = 0;
            let mut starts = Vec::with_capacity(reached.len());
            for source in reached.iter().filter(|s| s.source.region != target.source.region) {
                let Ok(start) = target.store.cursor(&source.source).await else { break };
                if !empty.contains(&source.source.region) {
                    let cap = BULK_MIN.saturating_sub(u32::try_from(waiting).unwrap_or(u32::MAX));
                    waiting += source.store.feed_len(start, Some(source.horizon), cap).await.unwrap_or(0);
                }
                starts.push((source.source.region.clone(), start));
            }
            if waiting >= u64::from(BULK_MIN) && starts.len() + 1 == reached.len() {
                candidates.push((target, starts, waiting));
            }
        }
        let mut loads: Vec<Load<'_>> = Vec::new();
        for (target, starts, waiting) in candidates {
            match target.store.begin_bulk_load().await {
                Ok(Some(session)) => {
                    tracing::info!(region = %target.source.region, waiting, "chargement en bloc d'une région vide");
                    loads.push(Load { target, session, starts, results: Vec::new(), failed: None });
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(region = %target.source.region, error = %e, "chargement en bloc impossible"),
            }
        }
        if loads.is_empty() {
            return Vec::new();
        }
        // Regions being loaded are empty (and locked): they are sources of nothing.
        let loading: Vec<crate::domain::RegionName> = loads.iter().map(|l| l.target.source.region.clone()).collect();
        for source in reached.iter().filter(|s| !loading.contains(&s.source.region)) {
            let mut starts: Vec<FeedPosition> = loads.iter().filter_map(|l| l.start(&source.source)).collect();
            starts.sort();
            starts.dedup();
            for start in starts {
                let mut group: Vec<&mut Load<'_>> =
                    loads.iter_mut().filter(|l| l.failed.is_none() && l.start(&source.source) == Some(start)).collect();
                self.bulk_from(source, start, &mut group, deadline).await;
            }
        }
        let finished = join_all(loads.into_iter().map(|load| async move {
            let Load { target, session, mut results, failed, .. } = load;
            let failed = match failed {
                Some(e) => Some(e), // dropped: rolled back
                None => session.finish().await.err().map(|e| e.to_string()),
            };
            if let Some(e) = failed {
                tracing::warn!(region = %target.source.region, error = %e, "chargement en bloc annulé");
                for result in &mut results {
                    result.rows_applied = 0;
                    result.conflicts = 0;
                    result.more = false;
                    result.error.get_or_insert((Side::Target, e.clone()));
                }
            }
            results
        }))
        .await;
        finished.into_iter().flatten().collect()
    }

    /// Streams `source`'s feed from `start` into every load of `group` (the next batch is read
    /// while the last one is applied everywhere).
    async fn bulk_from(&self, source: &Reached, start: FeedPosition, group: &mut [&mut Load<'_>], deadline: Instant) {
        let batch_size = self.options.batch_size;
        let results: Vec<usize> = group
            .iter_mut()
            .map(|load| {
                load.results.push(PairResult::new(&source.source, &load.target.source));
                load.results.len() - 1
            })
            .collect();
        // The loads' regions are empty: they hold nothing, whatever came from them before.
        let mut read = source.store.changes_since(start, batch_size, Some(source.horizon), None).await;
        loop {
            let page = match read {
                Ok(page) => page,
                Err(e) => {
                    for (load, &i) in group.iter_mut().zip(&results) {
                        load.results[i].error = Some((Side::Source, e.to_string()));
                    }
                    return;
                }
            };
            let Some(end) = page.end else { return };
            let full = page.scanned == batch_size as usize;
            let more = full && Instant::now() < deadline;
            let batch = Batch {
                rows: page.rows.into_iter().map(|(_, v)| v).collect(),
                from: Some((source.source.clone(), end)),
                epoch: source.epoch,
            };
            let next =
                async { if more { Some(source.store.changes_since(end, batch_size, Some(source.horizon), None).await) } else { None } };
            let batch = &batch;
            let applies = join_all(group.iter_mut().zip(&results).filter(|(load, _)| load.failed.is_none()).map(|(load, &i)| async move {
                let applied = load.session.apply(batch).await;
                let result = &mut load.results[i];
                result.rows_read += batch.rows.len() as u64;
                match applied {
                    Ok(applied) => {
                        result.rows_applied += applied.rows;
                        result.conflicts += applied.conflicts;
                    }
                    Err(e) => load.failed = Some(e.to_string()),
                }
            }));
            let (next, _) = tokio::join!(next, applies);
            match next {
                Some(next) if group.iter().any(|l| l.failed.is_none()) => read = next,
                _ => {
                    if full && !more {
                        for (load, &i) in group.iter_mut().zip(&results) {
                            load.results[i].more = true;
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Moves `source`'s new changes into `target`, streaming: the next batch is read while the
    /// previous one is applied (a channel of one batch bounds memory).
    async fn sync_pair(&self, source: &Reached, target: &Reached, deadline: Instant) -> PairResult {
        let mut result = PairResult::new(&source.source, &target.source);
        let start = match target.store.cursor(&source.source).await {
            Ok(position) => position,
            Err(e) => {
                result.error = Some((Side::Target, e.to_string()));
                return result;
            }
        };
        let (sender, mut receiver) = mpsc::channel::<Result<FeedPage, StoreError>>(1);
        let batch_size = self.options.batch_size;
        let reader_store = source.store.clone();
        let horizon = source.horizon;
        let reader_db = target.source.db_id;
        let reader = async move {
            let mut after = start;
            loop {
                if Instant::now() >= deadline {
                    return true; // more may remain
                }
                let changes = reader_store.changes_since(after, batch_size, Some(horizon), Some(reader_db)).await;
                let (done, last) = match &changes {
                    Ok(page) => (page.scanned < batch_size as usize, page.end),
                    Err(_) => (true, None),
                };
                let empty = last.is_none();
                if (!empty || changes.is_err()) && sender.send(changes).await.is_err() {
                    return false;
                }
                match last {
                    Some(position) if !done => after = position,
                    _ => return false,
                }
            }
        };
        let writer = async {
            while let Some(changes) = receiver.recv().await {
                let page = match changes {
                    Ok(page) => page,
                    Err(e) => {
                        result.error = Some((Side::Source, e.to_string()));
                        break;
                    }
                };
                // A page whose rows were all left out still moves the cursor past them.
                let Some(end) = page.end else { continue };
                result.rows_read += page.rows.len() as u64;
                // Every row goes to the target, even one it stamped itself: its database may have
                // been recreated since. What it already holds is left out cheaply by `apply`.
                let rows = page.rows.into_iter().map(|(_, v)| v).collect();
                match target.store.apply(&Batch { rows, from: Some((source.source.clone(), end)), epoch: source.epoch }).await {
                    Ok(applied) => {
                        result.rows_applied += applied.rows;
                        result.conflicts += applied.conflicts;
                    }
                    Err(e) => {
                        result.error = Some((Side::Target, e.to_string()));
                        break;
                    }
                }
            }
            drop(receiver);
        };
        let (more, ()) = tokio::join!(reader, writer);
        result.more = more && result.error.is_none();
        result
    }
}

/// A bulk load under way into one region during a round.
struct Load<'a> {
    target: &'a Reached,
    session: Box<dyn BulkLoad + 'a>,
    /// Where the target's cursor on each source stood.
    starts: Vec<(crate::domain::RegionName, FeedPosition)>,
    results: Vec<PairResult>,
    /// Why the load was abandoned (its transaction is rolled back).
    failed: Option<String>,
}

impl Load<'_> {
    fn start(&self, source: &Source) -> Option<FeedPosition> {
        self.starts.iter().find(|(region, _)| *region == source.region).map(|(_, start)| *start)
    }
}
