//! One sync round: every reachable region pulls, from every other reachable region (or from the
//! regions the round was asked to read), the changes its cursor has not reached yet, batch by
//! batch. Owns: the round's shape (who syncs with whom, timeouts, the deadline, partial rounds)
//! and its report. Leaves: the LWW rule (merge.rs), SQL
//! and cursors (store/), scheduling (scheduler.rs).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::{StreamExt, stream};
use tokio::sync::mpsc;

use super::report::{PairOutcome, RegionOutcome, RoundReport, RoundStatus};
use crate::domain::version::{WallClock, system_clock};
use crate::store::{Batch, CursorRow, FeedPage, Reader, RoundTrips, Source, Store, StoreError, known_cursors};

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
    pub(super) options: EngineOptions,
    /// An instance that lives in one region pulls into it only (the other regions' instances
    /// pull into theirs); `None`: every region pulls from every other.
    home: Option<crate::domain::RegionName>,
    /// Wall time: when a round started (durations use the monotonic clock).
    clock: WallClock,
}

/// A region reached at the start of a round.
pub(super) struct Reached {
    pub(super) store: Arc<dyn Store>,
    pub(super) source: Source,
    /// Its feed is read only below this position during the round (`Store::feed_horizon`).
    pub(super) horizon: i64,
    /// Every transaction below `horizon` had ended at the contact (else the round waits a moment).
    settled: bool,
    /// Those of the epochs its readers remember that it holds (`Store::contact`).
    pub(super) held: Vec<uuid::Uuid>,
    /// What it holds as a reader, from its cursors at the start of the round (they only move
    /// forward, so it holds at least that); `None` if they could not be read (nothing skipped).
    reader: Option<Reader>,
    /// Its cursor rows at the start of the round, where its pairs start reading (`None`: not a
    /// target of this round, not read, or moved since by a bulk load: ask again).
    pub(super) cursor_rows: Option<Vec<CursorRow>>,
    /// The epoch of its feed that reads record during this round (`sync::restore`).
    pub(super) epoch: Option<uuid::Uuid>,
}

impl Reached {
    /// What this region, as a reader, remembers of `source` (its cursor row at the start of the
    /// round); `None` when it has none, or its cursor rows were not read.
    pub(super) fn witness_of(&self, source: &Source) -> Option<&crate::store::Witness> {
        let rows = self.cursor_rows.as_ref()?;
        rows.iter().find(|row| row.source == source.region && row.source_db == source.db_id).map(|row| &row.witness)
    }
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
    pub(super) fn pulls_into(&self, target: &crate::domain::RegionName) -> bool {
        self.home.as_ref().is_none_or(|home| home == target)
    }

    /// Whether a round reading only `sources` has a pair to sync: a source and another region
    /// this round fills (at home, a write committed in home leaves nothing for its rounds).
    pub fn reads_any(&self, sources: &[crate::domain::RegionName]) -> bool {
        sources.iter().any(|source| self.stores.iter().any(|t| t.region() != source && self.pulls_into(t.region())))
    }

    pub fn stores(&self) -> &[Arc<dyn Store>] {
        &self.stores
    }

    /// Runs one round. Never fails as a whole: unreachable regions are reported and skipped, and
    /// the others sync among themselves.
    pub async fn round(&self) -> RoundReport {
        self.round_from(None).await
    }

    /// Runs one round that reads only `sources` (every region when `None`): what a wake-up from
    /// those regions needs (a write committed there), in a third of the pairs of three regions.
    pub async fn round_from(&self, sources: Option<&[crate::domain::RegionName]>) -> RoundReport {
        // Every call the round makes runs in this task (joined, never spawned): the round trips
        // they make to each region are counted for it alone, not with requests served meanwhile.
        let trips = RoundTrips::default();
        let mut report = trips.scope(self.round_uncounted(sources)).await;
        for region in &mut report.regions {
            region.round_trips = trips.of(&region.region);
        }
        log_round(&report);
        report
    }

    async fn round_uncounted(&self, sources: Option<&[crate::domain::RegionName]>) -> RoundReport {
        let started_at = (self.clock)();
        let clock = Instant::now();
        let deadline = clock + self.options.round_deadline;

        // What each region this round fills remembers of its sources: its cursor rows (how far it
        // read each, under which epoch), in one read each; at home, that read is local.
        let rows = join_all(
            self.stores
                .iter()
                .map(|store| async move { if self.pulls_into(store.region()) { store.cursor_rows().await.ok() } else { None } }),
        )
        .await;
        // Then every region at once, one round trip each (each call is bounded by its connect and
        // statement timeouts): who answers, its identity and feed horizon, which epochs its
        // readers remember it still holds, and the epoch they record this round if it is read.
        let forget_before = super::restore::forget_before(started_at);
        let contacts = join_all(self.stores.iter().map(|store| {
            let epochs: Vec<uuid::Uuid> =
                rows.iter().flatten().flatten().filter(|row| row.source == *store.region()).filter_map(|row| row.witness.epoch).collect();
            let read = self.stores.iter().any(|target| target.region() != store.region() && self.pulls_into(target.region()));
            async move {
                let began = Instant::now();
                let contact = store.contact(&epochs, read.then_some(forget_before)).await;
                (contact, began.elapsed())
            }
        }))
        .await;
        let mut regions: Vec<RegionOutcome> = Vec::with_capacity(self.stores.len());
        let mut reached = Vec::new();
        for ((store, (contact, latency)), cursor_rows) in self.stores.iter().zip(contacts).zip(rows) {
            let region = store.region().clone();
            match contact {
                Ok(contact) => {
                    // Its cursors say what it holds: pages it reads skip ranges of copies it holds.
                    let reader = cursor_rows.as_ref().map(|rows| Reader { db_id: contact.db_id, cursors: known_cursors(rows) });
                    reached.push(Reached {
                        store: store.clone(),
                        source: Source { region: region.clone(), db_id: contact.db_id },
                        horizon: contact.horizon,
                        settled: contact.settled,
                        held: contact.held,
                        reader,
                        cursor_rows,
                        // Only its id: see `Epoch::below` for the rare case this leaves open.
                        epoch: contact.epoch.map(|epoch| epoch.id),
                    });
                    regions.push(RegionOutcome {
                        region,
                        error: None,
                        latency: Some(latency),
                        rows_applied: 0,
                        pending: 0,
                        round_trips: 0,
                    });
                }
                Err(e) => {
                    tracing::warn!(region = %region, error = %e, "région injoignable pour la synchronisation");
                    regions.push(RegionOutcome {
                        region,
                        error: Some(e.to_string()),
                        latency: None,
                        rows_applied: 0,
                        pending: 0,
                        round_trips: 0,
                    });
                }
            }
        }

        // A region restored from a backup is found and given a new identity before anything is
        // read (see restore.rs).
        let checked = super::restore::check(&mut reached, started_at).await;
        for (region, error) in checked.failed {
            tracing::warn!(region = %region, %error, "région écartée de ce tour : restauration détectée mais non réparée");
            reached.retain(|r| r.source.region != region);
            if let Some(outcome) = regions.iter_mut().find(|r| r.region == region) {
                outcome.error.get_or_insert(error);
            }
        }
        // A reader given a new identity is no longer the database its peers' `via` marks and apply
        // logs name: they send it everything again.
        for region in &mut reached {
            let db_id = region.source.db_id;
            if let Some(reader) = &mut region.reader {
                reader.db_id = db_id;
            }
        }

        // A PostgreSQL feed reads only below the oldest transaction still running on its server:
        // where one was running at the contact, give it a moment to end, so the round carries
        // what was committed before it began.
        join_all(
            reached.iter().filter(|r| !r.settled).map(|r| tokio::time::timeout(SETTLE, r.store.wait_for_older_transactions(r.horizon))),
        )
        .await;

        // Empty regions with a large backlog are filled first, in bulk; their cursors moved.
        let loaded = self.bulk_loads(&reached, deadline).await;
        for target in &mut reached {
            if loaded.iter().any(|pair| pair.target == target.source.region) {
                target.cursor_rows = None;
            }
        }
        let reached = &reached;

        // Every reachable target pulls from every other reachable source, all at once (bounded),
        // so a slow region delays only its own pairs. Applies into one target take turns in its
        // database (its clock row, or SQLite's write lock).
        let mut per_target = Vec::with_capacity(reached.len());
        for target in reached.iter().filter(|t| self.pulls_into(&t.source.region)) {
            let mut pulls = Vec::with_capacity(reached.len());
            let read = |source: &Reached| sources.is_none_or(|only| only.contains(&source.source.region));
            for source in reached.iter().filter(|source| read(source)) {
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
        RoundReport {
            started_at,
            duration: clock.elapsed(),
            status,
            regions,
            pairs: pairs.into_iter().map(PairResult::into_outcome).collect(),
            conflicts,
            restores: checked.restored,
        }
    }

    /// Moves `source`'s new changes into `target`, streaming: the next batch is read while the
    /// previous one is applied (a channel of one batch bounds memory).
    async fn sync_pair(&self, source: &Reached, target: &Reached, deadline: Instant) -> PairResult {
        let mut result = PairResult::new(&source.source, &target.source);
        let known = target.cursor_rows.as_ref().map(|_| target.witness_of(&source.source).map(|w| w.cursor).unwrap_or_default());
        let start = match known {
            Some(position) => Ok(position),
            None => target.store.cursor(&source.source).await,
        };
        let start = match start {
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
        // The target as reader: ranges of copies it holds (the apply log) and versions it sent
        // (`via`) are covered without being sent; without its cursors, only the latter.
        let reader_state = target.reader.clone().unwrap_or_else(|| Reader { db_id: target.source.db_id, cursors: HashMap::new() });
        let reader = async move {
            let mut after = start;
            loop {
                if Instant::now() >= deadline {
                    return true; // more may remain
                }
                let changes = reader_store.changes_since(after, batch_size, Some(horizon), Some(&reader_state)).await;
                let (done, last) = match &changes {
                    Ok(page) => (!page.more, page.end),
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
                result.rows_skipped += page.skipped;
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

/// Which end of a pair failed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Side {
    Source,
    Target,
}

/// A pair's result while the round runs.
pub(super) struct PairResult {
    pub(super) source: crate::domain::RegionName,
    pub(super) target: crate::domain::RegionName,
    pub(super) rows_read: u64,
    pub(super) rows_skipped: u64,
    pub(super) rows_applied: u64,
    pub(super) conflicts: u64,
    pub(super) more: bool,
    pub(super) error: Option<(Side, String)>,
}

impl PairResult {
    pub(super) fn new(source: &Source, target: &Source) -> Self {
        Self {
            source: source.region.clone(),
            target: target.region.clone(),
            rows_read: 0,
            rows_skipped: 0,
            rows_applied: 0,
            conflicts: 0,
            more: false,
            error: None,
        }
    }

    /// Adds what the same pair did earlier in the round (a bulk load).
    fn absorb(&mut self, earlier: PairResult) {
        self.rows_read += earlier.rows_read;
        self.rows_skipped += earlier.rows_skipped;
        self.rows_applied += earlier.rows_applied;
        self.conflicts += earlier.conflicts;
        self.more |= earlier.more;
        if earlier.error.is_some() && self.error.is_none() {
            self.error = earlier.error;
        }
    }

    fn into_outcome(self) -> PairOutcome {
        PairOutcome {
            source: self.source,
            target: self.target,
            rows_read: self.rows_read,
            rows_skipped: self.rows_skipped,
            rows_applied: self.rows_applied,
            error: self.error.map(|(_, e)| e),
        }
    }
}

fn log_round(report: &RoundReport) {
    let rows: Vec<String> = report.regions.iter().map(|r| format!("{}={}", r.region, r.rows_applied)).collect();
    let duration_ms = report.duration.as_millis();
    match report.status {
        RoundStatus::Success => {
            tracing::info!(status = "success", duration_ms, rows = %rows.join(" "), conflicts = report.conflicts, "synchronisation terminée")
        }
        _ => tracing::warn!(
            status = ?report.status,
            duration_ms,
            rows = %rows.join(" "),
            conflicts = report.conflicts,
            error = report.error_summary().unwrap_or_default(),
            "synchronisation terminée avec erreurs"
        ),
    }
}
