//! The sales service: where each read and write goes. Owns: serving reads and committing writes
//! in one region — this instance's `home`, else the first configured region — or, when it is
//! down, in the next reachable one (so a client always reads its own writes, and never waits for
//! a remote region); and pushing each write on to the other regions off the request path.
//! Leaves: SQL (store/), validation (domain/), HTTP (web/).

mod import;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::domain::lww::Conflict;
use crate::domain::quarantine::Quarantined;
use crate::domain::version::WallClock;
use crate::domain::{Expect, ListQuery, LocalWrite, NewVente, Page, RegionName, Regions, Vente, VenteId, WriteOutcome};
use crate::store::guard::{Breaker, Guarded};
use crate::store::{Store, StoreError};

pub use import::{ImportLine, ImportMode};

/// How long an immediate push to another region may take; what misses it is carried by the next
/// sync round. Nobody waits for it: the client has its answer once the local commit is done.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Pushes under way at once, at most: past that (a region slower than the writes), a write is
/// left to the rounds rather than queued without bound.
const PUSHES_IN_FLIGHT: usize = 256;
/// How long a push may run before listeners are told it ended anyway: a region that neither
/// answers nor refuses does not hold back the round after a write for the whole `PUSH_TIMEOUT`.
const PUSH_NUDGE: Duration = Duration::from_secs(1);
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

/// Told of every client write once it is committed (counters, cache), and once its immediate
/// push to the other regions has ended (the sync scheduler: a round started then finds the write
/// delivered instead of racing its push for the same rows).
pub trait WriteListener: Send + Sync {
    fn written(&self, _kind: WriteKind, _vente: &Vente) {}

    /// The push of a sale written in `written_in` ended (delivered, failed, or still under way
    /// after `PUSH_NUDGE`), or none was started (every push slot taken).
    fn pushed(&self, _written_in: &RegionName) {}
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
    /// The region this instance lives in: client writes commit there, reads are served from it.
    home: Option<RegionName>,
    clock: WallClock,
    listeners: Vec<Arc<dyn WriteListener>>,
    /// The pushes still under way (`settled` waits for them).
    pushes: tokio_util::task::TaskTracker,
    push_slots: Arc<tokio::sync::Semaphore>,
}

impl Ventes {
    /// `stores` are in configuration order; the first reachable one serves lists. Each is put
    /// behind a breaker, so that while a region is down client calls fail over at once instead
    /// of each waiting out the connect timeout.
    pub fn new(stores: Vec<Arc<dyn Store>>, clock: WallClock) -> Self {
        let regions = Regions::new(stores.iter().map(|s| s.region().clone()).collect());
        let stores = stores.into_iter().map(|s| Arc::new(Guarded::new(s, Breaker::new(BREAKER_PAUSE))) as Arc<dyn Store>).collect();
        Self {
            regions,
            stores,
            home: None,
            clock,
            listeners: Vec::new(),
            pushes: tokio_util::task::TaskTracker::new(),
            push_slots: Arc::new(tokio::sync::Semaphore::new(PUSHES_IN_FLIGHT)),
        }
    }

    /// Lives in `home`: writes commit there (whatever the sale's `region` field says) and reads
    /// are served from there; the other regions are tried, in order, only when it is down.
    pub fn with_home(mut self, home: Option<RegionName>) -> Self {
        if let Some(home) = &home {
            // Home first: every "first reachable region" below is then home when it answers.
            self.stores.sort_by_key(|s| s.region() != home);
        }
        self.home = home;
        self
    }

    /// Pushes still under way.
    pub fn pushes_in_flight(&self) -> usize {
        self.pushes.len()
    }

    /// Returns once every push started so far has ended (delivered, failed or timed out).
    pub async fn settled(&self) {
        self.pushes.close();
        self.pushes.wait().await;
        self.pushes.reopen();
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

    fn notify_pushed(listeners: &[Arc<dyn WriteListener>], written_in: &RegionName) {
        for listener in listeners {
            listener.pushed(written_in);
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
        // An instance with a home reads there; the others are asked only when home does not hold
        // the sale (written elsewhere, not yet here) or is down.
        if let Some(home) = self.home_store() {
            match home.get(id).await {
                Ok(Some(vente)) => return if vente.deleted { Err(VenteError::NotFound) } else { Ok(vente) },
                Ok(None) => {}
                Err(e) if e.is_unavailable() => {}
                Err(e) => return Err(VenteError::Store(e)),
            }
        }
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

    fn home_store(&self) -> Option<&Arc<dyn Store>> {
        let home = self.home.as_ref()?;
        self.stores.iter().find(|s| s.region() == home)
    }

    pub async fn create(&self, id: Option<VenteId>, vente: NewVente) -> Result<Created, VenteError> {
        let write = LocalWrite::Create { id: id.unwrap_or_else(VenteId::generate), vente };
        match self.write(&write).await? {
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
        let vente = self.change(&LocalWrite::Update { id, vente, expect }).await?;
        self.notify(WriteKind::Updated, &vente);
        Ok(vente)
    }

    pub async fn delete(&self, id: VenteId, expect: Expect) -> Result<Vente, VenteError> {
        let vente = self.change(&LocalWrite::Delete { id, expect }).await?;
        self.notify(WriteKind::Deleted, &vente);
        Ok(vente)
    }

    /// An update or delete. If the region written to does not hold the sale yet (it was written
    /// elsewhere while this region was down), the newest copy is brought there first.
    async fn change(&self, write: &LocalWrite) -> Result<Vente, VenteError> {
        let mut outcome = self.write(write).await?;
        if matches!(outcome, WriteOutcome::NotFound) {
            let newest = self.get(write.id()).await?;
            for store in &self.stores {
                match store.push(std::slice::from_ref(&newest)).await {
                    Ok(_) => break,
                    Err(e) if e.is_unavailable() => continue,
                    Err(e) => return Err(VenteError::Store(e)),
                }
            }
            outcome = self.write(write).await?;
        }
        match outcome {
            WriteOutcome::Written(vente) => Ok(vente),
            WriteOutcome::PreconditionFailed(current) => Err(VenteError::PreconditionFailed(Box::new(current))),
            WriteOutcome::NotFound | WriteOutcome::Unchanged(_) | WriteOutcome::IdTaken(_) => Err(VenteError::NotFound),
        }
    }

    /// Writes into home (or the first configured region), or the next reachable one when it is
    /// down; then starts pushing the written row to the other regions without waiting
    /// (idempotent LWW apply; what a push misses is left to the rounds).
    async fn write(&self, write: &LocalWrite) -> Result<WriteOutcome, VenteError> {
        let mut failures = Vec::new();
        for store in &self.stores {
            match store.write(write, (self.clock)()).await {
                Ok(outcome) => {
                    if let WriteOutcome::Written(vente) = &outcome {
                        self.push(store.region(), vente);
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
            // Imports and seeds wait for their pushes: the command ends with every region served.
            push_to(self.others(&region), ventes.clone()).await;
            for vente in &ventes {
                self.notify(WriteKind::Created, vente);
            }
            Self::notify_pushed(&self.listeners, &region);
            written += ventes.len();
        }
        Ok(written)
    }

    fn others(&self, written_in: &RegionName) -> Vec<Arc<dyn Store>> {
        self.stores.iter().filter(|s| s.region() != written_in).cloned().collect()
    }

    /// Starts pushing `vente` to every region but the one it was written in, in the background:
    /// the client's answer never waits for a remote region.
    fn push(&self, written_in: &RegionName, vente: &Vente) {
        let Ok(slot) = self.push_slots.clone().try_acquire_owned() else {
            tracing::debug!(region = %written_in, "trop de propagations en cours : la prochaine synchronisation s'en charge");
            Self::notify_pushed(&self.listeners, written_in);
            return;
        };
        let others = self.others(written_in);
        let ventes = vec![vente.clone()];
        let listeners = self.listeners.clone();
        let written_in = written_in.clone();
        self.pushes.spawn(async move {
            let push = push_to(others, ventes);
            tokio::pin!(push);
            let ended = tokio::time::timeout(PUSH_NUDGE, &mut push).await.is_ok();
            Self::notify_pushed(&listeners, &written_in);
            if !ended {
                push.await;
            }
            drop(slot);
        });
    }
}

/// Applies `ventes` to each of `stores` at once, each bounded by `PUSH_TIMEOUT`.
async fn push_to(stores: Vec<Arc<dyn Store>>, ventes: Vec<Vente>) {
    let ventes = &ventes;
    let pushes = stores.iter().map(|s| async move {
        match tokio::time::timeout(PUSH_TIMEOUT, s.push(ventes)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(region = %s.region(), error = %e, "propagation immédiate manquée"),
            Err(_) => tracing::debug!(region = %s.region(), "propagation immédiate trop lente"),
        }
    });
    join_all(pushes).await;
}
