//! Filling empty regions in bulk during a round: each empty region with a large backlog is
//! loaded in one transaction (`Store::begin_bulk_load`), a source's feed read once for all the
//! regions loading it from the same position. Owns: which regions are loaded, and from where.
//! Leaves: the round around it (engine.rs), SQL (store/).

use std::time::Instant;

use futures::future::join_all;

use super::engine::{BULK_MIN, Engine, PairResult, Reached, Side};
use crate::store::{Batch, BulkLoad, FeedPosition, Source};

/// A bulk load reads and applies this many batches' worth of rows at a time (20,000 by default).
/// Its applies all belong to one transaction, and each costs the same round trips whatever its
/// size (clock, savepoint, cursor, apply log): 1M rows into two regions took 200 of them in each,
/// now 50. Memory grows with it (peak RSS 27 → 67 MB in `bench sync bulk --rows 1000000`).
const BULK_BATCHES: u32 = 4;

impl Engine {
    /// Fills, each in one bulk load, the reachable regions that are empty while at least
    /// `BULK_MIN` changes wait for them in the others' feeds. A source's feed is read once for all
    /// the regions loading it from the same position. Returns what each (source, target) pair got.
    pub(super) async fn bulk_loads(&self, reached: &[Reached], deadline: Instant) -> Vec<PairResult> {
        // Which regions are empty? (Nothing is locked yet: they are looked at, and counted as
        // sources, before any load begins.)
        // Asked of every region at once: this runs at every round. Errors are left to the usual
        // pairs, which report them.
        let wanted = join_all(reached.iter().map(|target| async move {
            if self.pulls_into(&target.source.region) { target.store.wants_bulk_load().await } else { Ok(false) }
        }))
        .await;
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
        let batch_size = self.options.batch_size.saturating_mul(BULK_BATCHES);
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
            let full = page.more;
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
