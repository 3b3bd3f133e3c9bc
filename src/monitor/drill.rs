//! The outage drill: the guide's "stop a database" demo on any install. Owns: one seam, a `Store`
//! decorator that, while down, fails every call with `StoreError::Unavailable` exactly as a dead
//! database would, touching no data. `App::build` wraps every region's store in it, so probes,
//! reads, writes (fail-over) and sync rounds all see the outage with no `if drill` anywhere else.
//! Leaves: the HTTP toggle (web/monitor_api.rs), what an outage means to each caller.
//!
//! A drill lives in memory: a restart lifts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::{NewVente, RegionName, Vente, VenteId};
use crate::store::{Backend, ListQuery, LocalWrite, Page, RegionSales, Store, StoreError, WriteOutcome};

/// A region's store that can be switched off.
pub struct GatedStore {
    inner: Arc<dyn Store>,
    down: AtomicBool,
}

impl GatedStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self { inner, down: AtomicBool::new(false) })
    }

    /// Starts (`true`) or lifts (`false`) the drill; returns the previous state.
    pub fn set_down(&self, down: bool) -> bool {
        self.down.swap(down, Ordering::SeqCst)
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// The store itself, bypassing the gate (tests, diagnostics).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn open(&self) -> Result<&dyn Store, StoreError> {
        if self.is_down() {
            Err(StoreError::Unavailable {
                region: self.inner.region().clone(),
                message: "panne simulée (exercice de panne en cours)".into(),
            })
        } else {
            Ok(self.inner.as_ref())
        }
    }
}

/// Wraps every store in a gate, keeping the order.
pub fn gate_all(stores: Vec<Arc<dyn Store>>) -> Vec<Arc<GatedStore>> {
    stores.into_iter().map(GatedStore::new).collect()
}

/// The gated stores as plain stores, for `Ventes` and the sync engine.
pub fn as_stores(gates: &[Arc<GatedStore>]) -> Vec<Arc<dyn Store>> {
    gates.iter().map(|g| Arc::clone(g) as Arc<dyn Store>).collect()
}

#[async_trait::async_trait]
impl Store for GatedStore {
    fn region(&self) -> &RegionName {
        self.inner.region()
    }

    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.open()?.migrate().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.open()?.ping().await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.open()?.list(query).await
    }

    async fn get(&self, id: VenteId) -> Result<Option<Vente>, StoreError> {
        self.open()?.get(id).await
    }

    async fn write(&self, write: &LocalWrite, now: DateTime<Utc>) -> Result<WriteOutcome, StoreError> {
        self.open()?.write(write, now).await
    }

    async fn write_many(&self, rows: &[(VenteId, NewVente)], now: DateTime<Utc>) -> Result<Vec<Vente>, StoreError> {
        self.open()?.write_many(rows, now).await
    }

    async fn apply(&self, rows: &[Vente]) -> Result<u64, StoreError> {
        self.open()?.apply(rows).await
    }

    async fn scan(&self, after: Option<VenteId>, limit: u32, include_deleted: bool) -> Result<Vec<Vente>, StoreError> {
        self.open()?.scan(after, limit, include_deleted).await
    }

    async fn analyze(&self) -> Result<(), StoreError> {
        self.open()?.analyze().await
    }

    async fn count_live(&self) -> Result<u64, StoreError> {
        self.open()?.count_live().await
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        self.open()?.now().await
    }

    async fn analytics(&self, since: NaiveDate, today: NaiveDate, recent: u32) -> Result<Vec<RegionSales>, StoreError> {
        self.open()?.analytics(since, today, recent).await
    }
}
