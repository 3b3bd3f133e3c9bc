//! The sales service: where each read and write goes. Owns: routing a write to the sale's home
//! region (or, when it is down, to the first reachable region), read fail-over, and pushing each
//! write on to the other regions at once. Leaves: SQL (store/), validation (domain/), HTTP (web/).

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::domain::lww::Conflict;
use crate::domain::quarantine::Quarantined;
use crate::domain::version::WallClock;
use crate::domain::{Expect, ListQuery, LocalWrite, NewVente, Page, RegionName, Regions, Vente, VenteId, WriteOutcome};
use crate::store::guard::{Breaker, Guarded};
use crate::store::{Batch, Store, StoreError};

/// How long a write waits for its immediate push to the other regions; what misses it is
/// carried by the next sync round.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long client calls skip a region after finding it unreachable.
const BREAKER_PAUSE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum VenteError {
    #[error("vente introuvable")]
    NotFound,
    #[error("l'identifiant est déjà pris par une autre vente")]
    IdTaken(Box<Vente>),
    #[error("la vente a changé depuis sa lecture")]
    PreconditionFailed(Box<Vente>),
    #[error("aucune région n'est joignable")]
    NoRegionReachable(Vec<StoreError>),
    #[error(transparent)]
    Store(StoreError),
}

/// Which kind of client write happened (the guide's CRUD counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    Created,
    Updated,
    Deleted,
}

/// Told of every client write once it is committed (counters, cache, the sync scheduler).
pub trait WriteListener: Send + Sync {
    fn written(&self, kind: WriteKind, vente: &Vente);
}

/// A created sale, and whether this call wrote it or replayed an identical earlier create.
pub struct Created {
    pub vente: Vente,
    pub replayed: bool,
}

/// The sales of every region, read and written as one.
pub struct Ventes {
    regions: Regions,
    stores: Vec<Arc<dyn Store>>,
    clock: WallClock,
    listeners: Vec<Arc<dyn WriteListener>>,
}

impl Ventes {
    /// `stores` are in configuration order; the first reachable one serves lists. Each is put
    /// behind a breaker, so that while a region is down client calls fail over at once instead
    /// of each waiting out the connect timeout.
    pub fn new(stores: Vec<Arc<dyn Store>>, clock: WallClock) -> Self {
        let regions = Regions::new(stores.iter().map(|s| s.region().clone()).collect());
        let stores = stores.into_iter().map(|s| Arc::new(Guarded::new(s, Breaker::new(BREAKER_PAUSE))) as Arc<dyn Store>).collect();
        Self { regions, stores, clock, listeners: Vec::new() }
    }

    /// Adds a listener told of every committed client write.
    pub fn with_listener(mut self, listener: Arc<dyn WriteListener>) -> Self {
        self.listeners.push(listener);
        self
    }

    fn notify(&self, kind: WriteKind, vente: &Vente) {
        for listener in &self.listeners {
            listener.written(kind, vente);
        }
    }

    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    pub fn stores(&self) -> &[Arc<dyn Store>] {
        &self.stores
    }

    pub fn today(&self) -> chrono::NaiveDate {
        (self.clock)().date_naive()
    }

    /// Live sales from the first region that answers.
    /// The newest conflicts logged in any region, each once (every region that met it logged
    /// it), newest first, at most `limit`; `None` when no region answered.
    pub async fn conflicts(&self, limit: u32) -> Option<Vec<Conflict>> {
        let answers = join_all(self.stores.iter().map(|s| s.conflicts(limit))).await;
        if answers.iter().all(Result::is_err) {
            return None;
        }
        let mut all: Vec<Conflict> = answers.into_iter().filter_map(Result::ok).flatten().collect();
        all.sort_by_key(|c| std::cmp::Reverse(c.detected_at));
        let mut seen = std::collections::HashSet::new();
        all.retain(|c| seen.insert((c.loser.id, c.loser.version.clone())));
        all.truncate(limit as usize);
        Some(all)
    }

    /// The rows every reachable region has set aside (undecodable, or versions it refused),
    /// newest first, at most `limit`; `None` when no region answered.
    pub async fn quarantine(&self, limit: u32) -> Option<Vec<Quarantined>> {
        let answers = join_all(self.stores.iter().map(|s| s.quarantine(limit))).await;
        if answers.iter().all(Result::is_err) {
            return None;
        }
        let mut all: Vec<Quarantined> = answers.into_iter().filter_map(Result::ok).flatten().collect();
        all.sort_by(|a, b| b.detected_at.cmp(&a.detected_at).then_with(|| a.region.cmp(&b.region)).then_with(|| a.id.cmp(&b.id)));
        all.truncate(limit as usize);
        Some(all)
    }

    pub async fn list(&self, query: &ListQuery) -> Result<Page, VenteError> {
        let mut failures = Vec::new();
        for store in &self.stores {
            match store.list(query).await {
                Ok(page) => return Ok(page),
                Err(e) if e.is_unavailable() => failures.push(e),
                Err(e) => return Err(VenteError::Store(e)),
            }
        }
        Err(VenteError::NoRegionReachable(failures))
    }

    /// The newest version of a sale held by any reachable region (a write is readable at once,
    /// even before every region has it). Tombstones count: a deleted sale is `NotFound`.
    pub async fn get(&self, id: VenteId) -> Result<Vente, VenteError> {
        let answers = join_all(self.stores.iter().map(|s| s.get(id))).await;
        let mut failures = Vec::new();
        let mut newest: Option<Vente> = None;
        let mut reached = false;
        for answer in answers {
            match answer {
                Ok(found) => {
                    reached = true;
                    if let Some(v) = found.filter(|v| newest.as_ref().is_none_or(|n| v.version > n.version)) {
                        newest = Some(v);
                    }
                }
                Err(e) if e.is_unavailable() => failures.push(e),
                Err(e) => return Err(VenteError::Store(e)),
            }
        }
        if !reached {
            return Err(VenteError::NoRegionReachable(failures));
        }
        newest.filter(|v| !v.deleted).ok_or(VenteError::NotFound)
    }

    pub async fn create(&self, id: Option<VenteId>, vente: NewVente) -> Result<Created, VenteError> {
        let home = vente.region.clone();
        let write = LocalWrite::Create { id: id.unwrap_or_else(VenteId::generate), vente };
        match self.write(&home, &write).await? {
            WriteOutcome::Written(vente) => {
                self.notify(WriteKind::Created, &vente);
                Ok(Created { vente, replayed: false })
            }
            WriteOutcome::Unchanged(vente) => Ok(Created { vente, replayed: true }),
            WriteOutcome::IdTaken(vente) => Err(VenteError::IdTaken(Box::new(vente))),
            WriteOutcome::NotFound | WriteOutcome::PreconditionFailed(_) => Err(VenteError::NotFound),
        }
    }

    pub async fn update(&self, id: VenteId, vente: NewVente, expect: Expect) -> Result<Vente, VenteError> {
        let home = vente.region.clone();
        let vente = self.change(&home, &LocalWrite::Update { id, vente, expect }).await?;
        self.notify(WriteKind::Updated, &vente);
        Ok(vente)
    }

    pub async fn delete(&self, id: VenteId, expect: Expect) -> Result<Vente, VenteError> {
        let current = self.get(id).await?;
        let vente = self.change(&current.region, &LocalWrite::Delete { id, expect }).await?;
        self.notify(WriteKind::Deleted, &vente);
        Ok(vente)
    }

    /// An update or delete. If the home region does not hold the sale yet (it was written
    /// elsewhere while this region was down), the newest copy is brought there first.
    async fn change(&self, home: &RegionName, write: &LocalWrite) -> Result<Vente, VenteError> {
        let mut outcome = self.write(home, write).await?;
        if matches!(outcome, WriteOutcome::NotFound) {
            let newest = self.get(write.id()).await?;
            let batch = Batch::push(vec![newest]);
            join_all(self.stores.iter().map(|s| s.apply(&batch))).await;
            outcome = self.write(home, write).await?;
        }
        match outcome {
            WriteOutcome::Written(vente) => Ok(vente),
            WriteOutcome::PreconditionFailed(current) => Err(VenteError::PreconditionFailed(Box::new(current))),
            WriteOutcome::NotFound | WriteOutcome::Unchanged(_) | WriteOutcome::IdTaken(_) => Err(VenteError::NotFound),
        }
    }

    /// Writes into the home region, or the first reachable one when it is down; then pushes the
    /// written row to the other regions (idempotent LWW apply; a failure there is left to sync).
    async fn write(&self, home: &RegionName, write: &LocalWrite) -> Result<WriteOutcome, VenteError> {
        let home_first = self.stores.iter().filter(|s| s.region() == home).chain(self.stores.iter().filter(|s| s.region() != home));
        let mut failures = Vec::new();
        for store in home_first {
            match store.write(write, (self.clock)()).await {
                Ok(outcome) => {
                    if let WriteOutcome::Written(vente) = &outcome {
                        self.push(store.region(), vente).await;
                    }
                    return Ok(outcome);
                }
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(region = %store.region(), error = %e, "écriture reportée sur une autre région");
                    failures.push(e);
                }
                Err(e) => return Err(VenteError::Store(e)),
            }
        }
        Err(VenteError::NoRegionReachable(failures))
    }

    /// Records many sales at once (import, seed): grouped by home region, one transaction per
    /// group, with the same fail-over and push as single writes. Returns how many were written.
    pub async fn record_batch(&self, rows: Vec<(VenteId, NewVente)>) -> Result<usize, VenteError> {
        let mut groups: std::collections::BTreeMap<RegionName, Vec<(VenteId, NewVente)>> = std::collections::BTreeMap::new();
        for row in rows {
            groups.entry(row.1.region.clone()).or_default().push(row);
        }
        let mut written = 0;
        for (home, group) in groups {
            let home_first = self.stores.iter().filter(|s| *s.region() == home).chain(self.stores.iter().filter(|s| *s.region() != home));
            let mut failures = Vec::new();
            let mut done = None;
            for store in home_first {
                match store.write_many(&group, (self.clock)()).await {
                    Ok(ventes) => {
                        done = Some((store.region().clone(), ventes));
                        break;
                    }
                    Err(e) if e.is_unavailable() => failures.push(e),
                    Err(e) => return Err(VenteError::Store(e)),
                }
            }
            let Some((region, ventes)) = done else { return Err(VenteError::NoRegionReachable(failures)) };
            self.push_many(&region, &ventes).await;
            for vente in &ventes {
                self.notify(WriteKind::Created, vente);
            }
            written += ventes.len();
        }
        Ok(written)
    }

    async fn push(&self, written_in: &RegionName, vente: &Vente) {
        self.push_many(written_in, std::slice::from_ref(vente)).await;
    }

    async fn push_many(&self, written_in: &RegionName, ventes: &[Vente]) {
        let others = self.stores.iter().filter(|s| s.region() != written_in);
        let batch = Batch::push(ventes.to_vec());
        let batch = &batch;
        let pushes = others.map(|s| async move {
            match tokio::time::timeout(PUSH_TIMEOUT, s.apply(batch)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(region = %s.region(), error = %e, "propagation immédiate manquée"),
                Err(_) => tracing::debug!(region = %s.region(), "propagation immédiate trop lente"),
            }
        });
        join_all(pushes).await;
    }
}
