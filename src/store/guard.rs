//! A store behind a guard: one seam through which a region can be made to fail like an
//! unreachable database without touching its data. The guard decides before each call and hears
//! how it went. Guards: `Breaker` (fail fast for a moment after a region was found unreachable),
//! the outage drill (`monitor::drill`), and the test kit's `Flaky` (outages and crashes on demand).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use super::{Applied, Batch, BulkLoad, Epoch, FeedPage, FeedPosition, Reader, Source, Store, StoreError};
use crate::domain::Backend;
use crate::domain::ListQuery;
use crate::domain::LocalWrite;
use crate::domain::Page;
use crate::domain::RegionSales;
use crate::domain::WriteOutcome;
use crate::domain::lww::Conflict;
use crate::domain::{NewVente, RegionName, Vente, VenteId};

/// Decides whether a call may reach the database.
pub trait Guard: Send + Sync + 'static {
    /// Before each call: an error fails the call without reaching the database.
    fn admit(&self, region: &RegionName) -> Result<(), StoreError>;
    /// After each admitted call: whether the database turned out to be unreachable.
    fn observe(&self, _unavailable: bool) {}
}

/// `inner`, every call admitted by `guard` first.
pub struct Guarded<G: Guard> {
    inner: Arc<dyn Store>,
    guard: G,
}

impl<G: Guard> Guarded<G> {
    pub fn new(inner: Arc<dyn Store>, guard: G) -> Self {
        Self { inner, guard }
    }

    pub fn guard(&self) -> &G {
        &self.guard
    }

    async fn call<T>(&self, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.guard.admit(self.inner.region())?;
        let result = work.await;
        self.guard.observe(result.as_ref().err().is_some_and(StoreError::is_unavailable));
        result
    }
}

#[async_trait::async_trait]
impl<G: Guard> Store for Guarded<G> {
    fn region(&self) -> &RegionName {
        self.inner.region()
    }
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        self.call(self.inner.migrate()).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.call(self.inner.ping()).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.call(self.inner.list(query)).await
    }
    async fn get(&self, id: VenteId) -> Result<Option<Vente>, StoreError> {
        self.call(self.inner.get(id)).await
    }
    async fn get_batch(&self, ids: &[VenteId]) -> Result<std::collections::HashMap<VenteId, Vente>, StoreError> {
        self.call(self.inner.get_batch(ids)).await
    }
    async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError> {
        self.call(self.inner.write(write, now)).await
    }
    async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError> {
        self.call(self.inner.write_many(rows, now)).await
    }
    async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        self.call(self.inner.apply(batch)).await
    }
    async fn push(&self, rows: &[Vente]) -> Result<Applied, StoreError> {
        self.call(self.inner.push(rows)).await
    }

    async fn db_id(&self) -> Result<uuid::Uuid, StoreError> {
        self.call(self.inner.db_id()).await
    }
    async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError> {
        self.call(self.inner.cursor(source)).await
    }
    async fn cursor_rows(&self) -> Result<Vec<crate::store::CursorRow>, StoreError> {
        self.call(self.inner.cursor_rows()).await
    }

    async fn contact(&self, epochs: &[uuid::Uuid], open: Option<DateTime<Utc>>) -> Result<crate::store::Contact, StoreError> {
        self.call(self.inner.contact(epochs, open)).await
    }
    async fn changes_since(
        &self,
        after: FeedPosition,
        limit: u32,
        before: Option<i64>,
        reader: Option<&Reader>,
    ) -> Result<FeedPage, StoreError> {
        self.call(self.inner.changes_since(after, limit, before, reader)).await
    }
    async fn feed_horizon(&self) -> Result<i64, StoreError> {
        self.call(self.inner.feed_horizon()).await
    }
    async fn open_epoch(&self, forget_before: DateTime<Utc>) -> Result<Epoch, StoreError> {
        self.call(self.inner.open_epoch(forget_before)).await
    }
    async fn held_epochs(&self, epochs: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError> {
        self.call(self.inner.held_epochs(epochs)).await
    }
    async fn rotate_identity(&self, old: uuid::Uuid) -> Result<uuid::Uuid, StoreError> {
        self.call(self.inner.rotate_identity(old)).await
    }
    async fn feed_len(&self, after: FeedPosition, before: Option<i64>, cap: u32) -> Result<u64, StoreError> {
        self.call(self.inner.feed_len(after, before, cap)).await
    }
    async fn wants_bulk_load(&self) -> Result<bool, StoreError> {
        self.call(self.inner.wants_bulk_load()).await
    }
    async fn begin_bulk_load(&self) -> Result<Option<Box<dyn BulkLoad + '_>>, StoreError> {
        let load = self.call(self.inner.begin_bulk_load()).await?;
        Ok(load.map(|inner| Box::new(GuardedLoad { inner, outer: self }) as Box<dyn BulkLoad + '_>))
    }
    async fn wait_for_older_transactions(&self, horizon: i64) -> Result<(), StoreError> {
        self.call(self.inner.wait_for_older_transactions(horizon)).await
    }
    async fn listen_for_changes(&self, wake: &tokio::sync::Notify) -> Result<(), StoreError> {
        self.call(self.inner.listen_for_changes(wake)).await
    }
    async fn feed_hold(&self) -> Result<Option<super::FeedHold>, StoreError> {
        self.call(self.inner.feed_hold()).await
    }
    async fn conflicts(&self, limit: u32) -> Result<Vec<Conflict>, StoreError> {
        self.call(self.inner.conflicts(limit)).await
    }
    async fn quarantine(&self, limit: u32) -> Result<Vec<crate::domain::quarantine::Quarantined>, StoreError> {
        self.call(self.inner.quarantine(limit)).await
    }
    async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError> {
        self.call(self.inner.scan(after, limit, include_deleted)).await
    }
    async fn analyze(&self) -> Result<(), StoreError> {
        self.call(self.inner.analyze()).await
    }
    async fn count_live(&self) -> Result<u64, StoreError> {
        self.call(self.inner.count_live()).await
    }
    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        self.call(self.inner.now()).await
    }
    async fn analytics(&self, since: NaiveDate, today: NaiveDate, recent: u32) -> Result<Vec<RegionSales>, StoreError> {
        self.call(self.inner.analytics(since, today, recent)).await
    }
}

/// After a region is found unreachable, client calls fail at once for `pause` instead of each
/// waiting out the connect timeout; then calls try the database again. Sync rounds and probes
/// do not go through it: they always try for real.
pub struct Breaker {
    pause: Duration,
    /// `monotonic_ms()` at the last failure; 0: none.
    tripped_at: AtomicI64,
}

/// Milliseconds on a monotonic clock (from the first call, plus one: never 0), so a pause is
/// measured by elapsed time whatever the wall clock does.
fn monotonic_ms() -> i64 {
    static START: std::sync::LazyLock<std::time::Instant> = std::sync::LazyLock::new(std::time::Instant::now);
    i64::try_from(START.elapsed().as_millis()).unwrap_or(i64::MAX - 1) + 1
}

impl Breaker {
    pub fn new(pause: Duration) -> Self {
        Self { pause, tripped_at: AtomicI64::new(0) }
    }
}

impl Guard for Breaker {
    fn admit(&self, region: &RegionName) -> Result<(), StoreError> {
        let tripped = self.tripped_at.load(Ordering::Relaxed);
        let pause = i64::try_from(self.pause.as_millis()).unwrap_or(i64::MAX);
        if tripped > 0 && monotonic_ms() - tripped < pause {
            return Err(StoreError::Unavailable {
                region: region.clone(),
                message: "injoignable à l'instant (nouvel essai sous peu)".into(),
            });
        }
        Ok(())
    }

    fn observe(&self, unavailable: bool) {
        self.tripped_at.store(if unavailable { monotonic_ms() } else { 0 }, Ordering::Relaxed);
    }
}

/// A bulk load whose every step is admitted by the store's guard.
struct GuardedLoad<'a, G: Guard> {
    inner: Box<dyn BulkLoad + 'a>,
    outer: &'a Guarded<G>,
}

#[async_trait::async_trait]
impl<G: Guard> BulkLoad for GuardedLoad<'_, G> {
    async fn apply(&mut self, batch: &Batch) -> Result<Applied, StoreError> {
        self.outer.call(self.inner.apply(batch)).await
    }
    async fn finish(self: Box<Self>) -> Result<(), StoreError> {
        let Self { inner, outer } = *self;
        outer.call(inner.finish()).await
    }
}
