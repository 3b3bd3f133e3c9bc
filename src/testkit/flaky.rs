//! A store that fails on demand, for tests of outages and crashes: `down` makes every call fail as
//! an unreachable database would; `fail_after(n)` lets `n` more calls through, then fails every
//! call (a syncer dying between any two steps). Data is never touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, Utc};

use crate::domain::{NewVente, RegionName, Vente, VenteId};
use crate::store::{Applied, Backend, Batch, FeedPosition, ListQuery, LocalWrite, Page, Source, Store, StoreError, WriteOutcome};
use crate::sync::merge::Conflict;

pub struct FlakyStore {
    inner: Arc<dyn Store>,
    down: AtomicBool,
    /// Calls still allowed; negative: unlimited.
    budget: AtomicI64,
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self { inner, down: AtomicBool::new(false), budget: AtomicI64::new(-1) })
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Lets `calls` more calls through, then fails all until `heal`.
    pub fn fail_after(&self, calls: i64) {
        self.budget.store(calls, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.budget.store(-1, Ordering::SeqCst);
        self.set_down(false);
    }

    fn gate(&self) -> Result<(), StoreError> {
        let allowed = !self.down.load(Ordering::SeqCst)
            && self
                .budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| if b > 0 { Some(b - 1) } else { None })
                .map_or_else(|b| b < 0, |_| true);
        if allowed {
            Ok(())
        } else {
            Err(StoreError::Unavailable { region: self.inner.region().clone(), message: "panne simulée".into() })
        }
    }
}

#[async_trait::async_trait]
impl Store for FlakyStore {
    fn region(&self) -> &RegionName {
        self.inner.region()
    }
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.migrate().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.ping().await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.gate()?;
        self.inner.list(query).await
    }
    async fn get(&self, id: VenteId) -> Result<Option<Vente>, StoreError> {
        self.gate()?;
        self.inner.get(id).await
    }
    async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError> {
        self.gate()?;
        self.inner.write(write, now).await
    }
    async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError> {
        self.gate()?;
        self.inner.write_many(rows, now).await
    }
    async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        self.gate()?;
        self.inner.apply(batch).await
    }
    async fn db_id(&self) -> Result<uuid::Uuid, StoreError> {
        self.gate()?;
        self.inner.db_id().await
    }
    async fn cursor(&self, source: &Source) -> Result<FeedPosition, StoreError> {
        self.gate()?;
        self.inner.cursor(source).await
    }
    async fn changes_since(&self, after: FeedPosition, limit: u32) -> Result<Vec<(FeedPosition, Vente)>, StoreError> {
        self.gate()?;
        self.inner.changes_since(after, limit).await
    }
    async fn conflicts(&self, limit: u32) -> Result<Vec<Conflict>, StoreError> {
        self.gate()?;
        self.inner.conflicts(limit).await
    }
    async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError> {
        self.gate()?;
        self.inner.scan(after, limit, include_deleted).await
    }
    async fn analyze(&self) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.analyze().await
    }
    async fn count_live(&self) -> Result<u64, StoreError> {
        self.gate()?;
        self.inner.count_live().await
    }
}
