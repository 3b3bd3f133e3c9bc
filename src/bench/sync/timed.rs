//! A store that counts and times what a sync round asks of it (feed reads, applies), passing
//! every call through unchanged. Owns: those counters. Leaves: everything else to the store.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

use crate::domain::Backend;
use crate::domain::ListQuery;
use crate::domain::LocalWrite;
use crate::domain::Page;
use crate::domain::RegionSales;
use crate::domain::WriteOutcome;
use crate::domain::lww::Conflict;
use crate::domain::{NewVente, RegionName, Vente, VenteId};
use crate::store::{Applied, Batch, BulkLoad, Epoch, FeedPage, FeedPosition, Reader, Source, Store, StoreError};

/// What one store was asked during the timed part of a benchmark.
#[derive(Debug, Default)]
pub struct CallTimes {
    feed_calls: AtomicU64,
    feed_rows: AtomicU64,
    feed_ns: AtomicU64,
    apply_calls: AtomicU64,
    apply_rows: AtomicU64,
    written: AtomicU64,
    apply_ns: AtomicU64,
    other_calls: AtomicU64,
    other_ns: AtomicU64,
    last_write: Mutex<Option<Instant>>,
}

impl CallTimes {
    pub fn reset(&self) {
        for counter in [
            &self.feed_calls,
            &self.feed_rows,
            &self.feed_ns,
            &self.apply_calls,
            &self.apply_rows,
            &self.written,
            &self.apply_ns,
            &self.other_calls,
            &self.other_ns,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.last_write.lock() {
            *last = None;
        }
    }

    /// When the last apply that wrote at least one row ended.
    pub fn last_write(&self) -> Option<Instant> {
        self.last_write.lock().ok().and_then(|last| *last)
    }

    pub fn json(&self, since: Instant) -> serde_json::Value {
        let ms = |ns: &AtomicU64| ns.load(Ordering::Relaxed) as f64 / 1e6;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        json!({
            "feed_reads": get(&self.feed_calls),
            "feed_rows": get(&self.feed_rows),
            "feed_ms": ms(&self.feed_ns),
            "applies": get(&self.apply_calls),
            "apply_rows": get(&self.apply_rows),
            "written": get(&self.written),
            "apply_ms": ms(&self.apply_ns),
            "other_calls": get(&self.other_calls),
            "other_ms": ms(&self.other_ns),
            "last_write_s": self.last_write().map(|at| at.saturating_duration_since(since).as_secs_f64()),
        })
    }

    /// Counts an apply that started at `started` (a bulk load's too).
    fn applied(&self, batch: &Batch, applied: &Result<Applied, StoreError>, started: Instant) {
        CallTimes::add(&self.apply_calls, &self.apply_ns, started);
        self.apply_rows.fetch_add(batch.rows.len() as u64, Ordering::Relaxed);
        if let Ok(applied) = applied {
            self.written.fetch_add(applied.rows, Ordering::Relaxed);
            if applied.rows > 0 {
                self.wrote_now();
            }
        }
    }

    fn wrote_now(&self) {
        if let Ok(mut last) = self.last_write.lock() {
            *last = Some(Instant::now());
        }
    }

    fn add(calls: &AtomicU64, ns: &AtomicU64, started: Instant) {
        calls.fetch_add(1, Ordering::Relaxed);
        ns.fetch_add(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// A bulk load whose applies count as applies; its rows are written (visible) when it commits.
struct TimedLoad<'a> {
    inner: Box<dyn BulkLoad + 'a>,
    times: Arc<CallTimes>,
    written: bool,
}

#[async_trait::async_trait]
impl BulkLoad for TimedLoad<'_> {
    async fn apply(&mut self, batch: &Batch) -> Result<Applied, StoreError> {
        let started = Instant::now();
        let applied = self.inner.apply(batch).await;
        self.times.applied(batch, &applied, started);
        self.written |= applied.as_ref().is_ok_and(|a| a.rows > 0);
        applied
    }

    async fn finish(self: Box<Self>) -> Result<(), StoreError> {
        let Self { inner, times, written } = *self;
        let started = Instant::now();
        let finished = inner.finish().await;
        CallTimes::add(&times.other_calls, &times.other_ns, started);
        if finished.is_ok() && written {
            times.wrote_now();
        }
        finished
    }
}

pub struct Timed {
    inner: Arc<dyn Store>,
    times: Arc<CallTimes>,
}

impl Timed {
    pub fn new(inner: Arc<dyn Store>, times: Arc<CallTimes>) -> Self {
        Self { inner, times }
    }

    async fn other<T>(&self, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = work.await;
        CallTimes::add(&self.times.other_calls, &self.times.other_ns, started);
        out
    }
}

#[async_trait::async_trait]
impl Store for Timed {
    fn region(&self) -> &RegionName {
        self.inner.region()
    }

    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }

    async fn get(&self, id: VenteId) -> Result<Option<Vente>, StoreError> {
        self.inner.get(id).await
    }
    async fn get_batch(&self, ids: &[VenteId]) -> Result<std::collections::HashMap<VenteId, Vente>, StoreError> {
        self.inner.get_batch(ids).await
    }

    async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError> {
        self.inner.write(write, now).await
    }

    async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError> {
        self.inner.write_many(rows, now).await
    }

    async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        let started = Instant::now();
        let applied = self.inner.apply(batch).await;
        self.times.applied(batch, &applied, started);
        applied
    }

    async fn push(&self, rows: &[crate::domain::Vente]) -> Result<Applied, StoreError> {
        self.other(self.inner.push(rows)).await
    }

    async fn open_epoch(&self, forget_before: DateTime<Utc>) -> Result<Epoch, StoreError> {
        self.other(self.inner.open_epoch(forget_before)).await
    }

    async fn held_epochs(&self, epochs: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError> {
        self.other(self.inner.held_epochs(epochs)).await
    }

    async fn rotate_identity(&self, old: uuid::Uuid) -> Result<uuid::Uuid, StoreError> {
        self.other(self.inner.rotate_identity(old)).await
    }

    async fn feed_len(&self, after: FeedPosition, before: Option<i64>, cap: u32) -> Result<u64, StoreError> {
        self.other(self.inner.feed_len(after, before, cap)).await
    }

    async fn wants_bulk_load(&self) -> Result<bool, StoreError> {
        self.other(self.inner.wants_bulk_load()).await
    }

    async fn begin_bulk_load(&self) -> Result<Option<Box<dyn BulkLoad + '_>>, StoreError> {
        let load = self.other(self.inner.begin_bulk_load()).await?;
        Ok(load.map(|inner| Box::new(TimedLoad { inner, times: self.times.clone(), written: false }) as Box<dyn BulkLoad + '_>))
    }

    async fn db_id(&self) -> Result<uuid::Uuid, StoreError> {
        self.other(self.inner.db_id()).await
    }

    async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError> {
        self.other(self.inner.cursor(source)).await
    }

    async fn cursor_rows(&self) -> Result<Vec<crate::store::CursorRow>, StoreError> {
        self.other(self.inner.cursor_rows()).await
    }

    async fn contact(&self, epochs: &[uuid::Uuid], open: Option<DateTime<Utc>>) -> Result<crate::store::Contact, StoreError> {
        self.other(self.inner.contact(epochs, open)).await
    }

    async fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
        before: Option<i64>,
        reader: Option<&Reader>,
    ) -> Result<FeedPage, StoreError> {
        let started = Instant::now();
        let changes = self.inner.changes_since(after, limit, before, reader).await;
        CallTimes::add(&self.times.feed_calls, &self.times.feed_ns, started);
        if let Ok(page) = &changes {
            self.times.feed_rows.fetch_add(page.rows.len() as u64, Ordering::Relaxed);
        }
        changes
    }

    async fn listen_for_changes(&self, wake: &tokio::sync::Notify) -> Result<(), StoreError> {
        self.inner.listen_for_changes(wake).await
    }

    async fn wait_for_older_transactions(&self, horizon: i64) -> Result<(), StoreError> {
        self.other(self.inner.wait_for_older_transactions(horizon)).await
    }

    async fn feed_horizon(&self) -> Result<i64, StoreError> {
        self.other(self.inner.feed_horizon()).await
    }

    async fn conflicts(&self, limit: u32) -> Result<Vec<Conflict>, StoreError> {
        self.inner.conflicts(limit).await
    }

    async fn quarantine(&self, limit: u32) -> Result<Vec<crate::domain::quarantine::Quarantined>, StoreError> {
        self.inner.quarantine(limit).await
    }

    async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError> {
        self.inner.scan(after, limit, include_deleted).await
    }

    async fn analyze(&self) -> Result<(), StoreError> {
        self.inner.analyze().await
    }

    async fn count_live(&self) -> Result<u64, StoreError> {
        self.inner.count_live().await
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        self.inner.now().await
    }

    async fn analytics(&self, since: NaiveDate, today: NaiveDate, recent: u32) -> Result<Vec<RegionSales>, StoreError> {
        self.inner.analytics(since, today, recent).await
    }
}
