//! Self-monitoring: what the guide's `MonitoringService` does, and more. Owns: the `Monitor`, which
//! the sync engine tells of every round (`record_round`), `Ventes` of every client write (as a
//! `WriteListener`), and which probes every region, keeps the statistics (persisted), serves the
//! cached reads (`totalVentes`, analytics), the outage drill and the Prometheus metrics.
//! Leaves: HTTP (web/monitor_api.rs), all SQL, the regions' and the state database's (store/),
//! running rounds (sync/).
//!
//! Parts: stats.rs (counters, history), persist.rs (statistics ↔ state database records), health.rs (status rules,
//! probes, what a round says of each region), feed_hold.rs (feeds held back by open transactions), drill.rs (the outage seam), analytics.rs (figures,
//! caches and the cached reads), metrics.rs (Prometheus).

pub mod analytics;
pub mod drill;
pub mod feed_hold;
pub mod health;
pub mod metrics;
pub mod persist;
pub mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::Backend;
use crate::domain::version::WallClock;
use crate::domain::{RegionName, Regions, Vente};
use crate::store::state::{StateDb, StateError};
use crate::store::{Store, StoreError};
use crate::sync::report::RoundReport;
use crate::ventes::{WriteKind, WriteListener};
use analytics::Caches;
use drill::GatedStore;
use health::{Contact, RegionHealth, Status, Thresholds};
use metrics::Metrics;
use stats::{Counters, HISTORY_KEPT, HISTORY_SHOWN, HistoryEntry, Stats};

/// Quarantine items a probe counts, at most.
const QUARANTINE_COUNTED: u32 = 10_000;

/// CRUD counters are saved at most this long after a write (rounds are saved at once).
const COALESCE: Duration = Duration::from_secs(1);

/// What the monitor needs from the configuration.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    pub data_dir: PathBuf,
    /// `None`: no periodic probes (one still runs at start-up and after each drill toggle).
    pub probe_interval: Option<Duration>,
    pub thresholds: Thresholds,
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("métriques : {0}")]
    Metrics(String),
    #[error("région inconnue « {given} » ; régions possibles : {known}")]
    UnknownRegion { given: String, known: String },
    #[error("aucune région n'est joignable")]
    NoRegionReachable,
    #[error(transparent)]
    Store(StoreError),
    #[error("{0}")]
    Internal(String),
}

/// Why `/readyz` says no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    NoRegionReachable,
    MigrationsPending,
}

/// `/api/stats`, before JSON.
#[derive(Clone, Debug)]
pub struct StatsSnapshot {
    pub counters: Counters,
    pub success_rate: f64,
    pub last_sync: Option<(DateTime<Utc>, Duration)>,
    pub total_ventes: u64,
    pub regions: Vec<RegionSnapshot>,
    /// The `HISTORY_SHOWN` newest rounds, newest first.
    pub history: Vec<HistoryEntry>,
}

/// One region in `/api/stats`.
#[derive(Clone, Debug)]
pub struct RegionSnapshot {
    pub region: RegionName,
    pub backend: Backend,
    pub status: Status,
    /// Why it is WARNING or OFFLINE (French).
    pub reason: Option<String>,
    pub errors: u64,
    pub last_access: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub ventes: Option<u64>,
    pub pending: Option<u64>,
    pub latency: Option<Duration>,
    pub clock_offset: Option<TimeDelta>,
    /// Rows in its quarantine at the last probe.
    pub quarantined: Option<u64>,
    pub drill: bool,
}

struct State {
    stats: Stats,
    health: Vec<RegionHealth>,
}

/// The monitor of one server. Cheap to share (`Arc`); every method takes `&self`.
pub struct Monitor {
    regions: Regions,
    gates: Vec<Arc<GatedStore>>,
    clock: WallClock,
    thresholds: Thresholds,
    probe_interval: Option<Duration>,
    state: Mutex<State>,
    db: StateDb,
    saving: tokio::sync::Mutex<()>,
    dirty: Notify,
    urgent: Notify,
    generation: AtomicU64,
    caches: Caches,
    last_total: AtomicU64,
    metrics: Metrics,
    migrated: Vec<AtomicBool>,
}

impl Monitor {
    /// Opens the state database and reloads the statistics. `gates` are the regions' stores in
    /// configuration order, each behind its drill gate (`drill::gate_all`).
    pub async fn open(config: MonitorConfig, gates: Vec<Arc<GatedStore>>, clock: WallClock) -> Result<Arc<Self>, MonitorError> {
        let regions = Regions::new(gates.iter().map(|g| g.region().clone()).collect());
        let db = StateDb::open(&config.data_dir, HISTORY_KEPT).await?;
        let stats = persist::load(&db, &regions).await?;
        let metrics = Metrics::new(&regions).map_err(|e| MonitorError::Metrics(e.to_string()))?;
        let health = vec![RegionHealth::default(); gates.len()];
        let migrated = gates.iter().map(|_| AtomicBool::new(false)).collect();
        Ok(Arc::new(Self {
            regions,
            gates,
            clock,
            thresholds: config.thresholds,
            probe_interval: config.probe_interval,
            state: Mutex::new(State { stats, health }),
            db,
            saving: tokio::sync::Mutex::new(()),
            dirty: Notify::new(),
            urgent: Notify::new(),
            generation: AtomicU64::new(0),
            caches: Caches::default(),
            last_total: AtomicU64::new(0),
            metrics,
            migrated,
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    /// The regions' stores behind their drill gates, for `Ventes` and the sync engine.
    pub fn stores(&self) -> Vec<Arc<dyn Store>> {
        drill::as_stores(&self.gates)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The engine calls this after every round, whatever its outcome.
    pub fn record_round(&self, report: &RoundReport) {
        self.metrics.record_round(report);
        // A round contacts every region as it starts; later news (a probe) may already be in.
        let at = report.started_at;
        {
            let mut state = self.state();
            state.stats.record_round(report);
            for (region, contact) in health::round_contacts(report) {
                if let Some(i) = self.index(&region) {
                    self.observe(&mut state, i, &contact, at, false);
                }
            }
        }
        if report.rows_applied() > 0 {
            self.data_changed();
        }
        self.urgent.notify_one();
        self.dirty.notify_one();
    }

    fn index(&self, region: &RegionName) -> Option<usize> {
        self.gates.iter().position(|g| g.region() == region)
    }

    /// Counts a contact in the statistics and the health, logging errors and status changes.
    fn observe(&self, state: &mut State, i: usize, contact: &Contact, at: DateTime<Utc>, probe: bool) {
        let region = self.gates[i].region().clone();
        let health = &mut state.health[i];
        let (was_skewed, previous_cause) = (health.skewed(&self.thresholds), health.last_cause.clone());
        let change = health.observe(contact, at, &self.thresholds);
        let is_skewed = health.skewed(&self.thresholds);
        let offset = health.clock_offset;
        match contact {
            Contact::Failed { cause } => {
                state.stats.region_failed(i, at, cause);
                if !probe || change.is_some() || previous_cause.as_deref() != Some(cause) {
                    let source = if probe { "sonde" } else { "synchronisation" };
                    tracing::warn!(region = %region, cause = %cause, source, "erreur de la région");
                } else {
                    tracing::debug!(region = %region, cause = %cause, "région toujours injoignable");
                }
            }
            Contact::Reached { .. } => state.stats.region_reached(i, at),
        }
        if let (true, Some(offset)) = (was_skewed != is_skewed, offset) {
            let offset = health::seconds_fr(health::offset_seconds(offset));
            let bound = health::seconds_fr(self.thresholds.max_clock_skew.as_secs_f64());
            if is_skewed {
                tracing::warn!(region = %region, decalage = %offset, limite = %bound,
                    "horloge de ce serveur et de la base de la région décalées au-delà de la limite ; les versions y sont datées par la plus tardive des deux");
            } else {
                tracing::info!(region = %region, decalage = %offset, limite = %bound, "horloge de la région revenue dans la limite");
            }
        }
        if let Some(change) = change {
            let reason = change.reason.unwrap_or_default();
            if change.first && reason.is_empty() {
                tracing::info!(region = %region, etat = change.to.as_str(), "état initial de la région");
            } else if change.first {
                tracing::warn!(region = %region, etat = change.to.as_str(), raison = %reason, "état initial de la région");
            } else if change.to == Status::Online {
                tracing::info!(region = %region, avant = change.from.as_str(), apres = change.to.as_str(), "région de nouveau en ligne");
            } else {
                tracing::warn!(region = %region, avant = change.from.as_str(), apres = change.to.as_str(), raison = %reason, "changement d'état de la région");
            }
        }
        self.metrics.region_up(region.as_str(), matches!(contact, Contact::Reached { .. }));
        if let Some(offset) = offset {
            self.metrics.clock_offset(region.as_str(), health::offset_seconds(offset));
            self.metrics.clock_skewed(region.as_str(), is_skewed);
        }
        if let Some(n) = state.health[i].quarantined {
            self.metrics.quarantined(region.as_str(), n);
        }
    }

    /// A local write or an applied round changed the data: cached reads start over.
    fn data_changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.caches.invalidate();
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Probes every region now, at once.
    pub async fn probe_all(&self) {
        join_all((0..self.gates.len()).map(|i| self.probe_region(i))).await;
    }

    async fn probe_region(&self, i: usize) {
        let gate = &self.gates[i];
        let contact = health::probe(gate.as_ref(), &self.clock).await;
        // A feed held back by an open transaction (PostgreSQL); unknown counts as not held.
        let hold = match contact {
            Contact::Reached { .. } => gate.feed_hold().await.unwrap_or_else(|e| {
                tracing::debug!(region = %gate.region(), error = %e, "lecture de la retenue du flux impossible");
                None
            }),
            Contact::Failed { .. } => None,
        };
        let mut counted = None;
        let generation = self.generation();
        let stale = self.state().health[i].counted_generation != Some(generation);
        let reached = matches!(contact, Contact::Reached { .. });
        if stale && reached {
            counted = gate.count_live().await.ok();
        }
        let quarantined = if reached { gate.quarantine(QUARANTINE_COUNTED).await.ok().map(|items| items.len() as u64) } else { None };
        let at = (self.clock)();
        let mut state = self.state();
        if let Some(n) = counted {
            state.health[i].ventes = Some(n);
            state.health[i].counted_generation = Some(generation);
        }
        state.health[i].feed_hold.observe(hold, at);
        if let Some(n) = quarantined {
            match (state.health[i].quarantined.unwrap_or(0), n) {
                (before, now) if before == now => {}
                (_, 0) => tracing::info!(region = %gate.region(), "quarantaine de la région vide"),
                _ => tracing::warn!(region = %gate.region(), lignes = n, "lignes en quarantaine dans la région"),
            }
            state.health[i].quarantined = Some(n);
        }
        self.observe(&mut state, i, &contact, at, true);
    }

    /// Everything `/api/stats` shows.
    pub async fn stats(&self) -> StatsSnapshot {
        let total_ventes = self.total_ventes().await;
        let state = self.state();
        StatsSnapshot {
            counters: state.stats.counters,
            success_rate: state.stats.counters.success_rate(),
            last_sync: state.stats.last_sync,
            total_ventes,
            regions: (0..self.gates.len()).map(|i| self.region_snapshot(&state, i)).collect(),
            history: state.stats.history(HISTORY_SHOWN),
        }
    }

    fn region_snapshot(&self, state: &State, i: usize) -> RegionSnapshot {
        let (health, (region, stats)) = (&state.health[i], &state.stats.regions[i]);
        RegionSnapshot {
            region: region.clone(),
            backend: self.gates[i].backend(),
            status: health.status,
            reason: health.reason.clone(),
            errors: stats.errors,
            last_access: stats.last_access,
            last_error: stats.last_error.as_ref().map(|(_, e)| e.clone()),
            ventes: health.ventes,
            pending: health.pending.max(health.feed_hold.pending()),
            latency: health.latency,
            clock_offset: health.clock_offset,
            quarantined: health.quarantined,
            drill: self.gates[i].is_down(),
        }
    }

    /// The newest rounds, newest first (at most 1,000 are kept).
    pub fn history(&self, limit: usize) -> Vec<HistoryEntry> {
        self.state().stats.history(limit)
    }

    /// Starts (`down`) or lifts an outage drill on a region named loosely (`saint louis`), probes
    /// it at once and returns its state.
    pub async fn set_drill(&self, region: &str, down: bool) -> Result<RegionSnapshot, MonitorError> {
        let unknown = || MonitorError::UnknownRegion { given: region.to_owned(), known: self.regions.describe() };
        let name = self.regions.resolve(region).ok_or_else(unknown)?;
        let i = self.index(name).ok_or_else(unknown)?;
        let was = self.gates[i].set_down(down);
        match (was, down) {
            (false, true) => tracing::warn!(region = %name, "exercice de panne : région coupée"),
            (true, false) => tracing::info!(region = %name, "exercice de panne terminé : région rétablie"),
            _ => tracing::info!(region = %name, down, "exercice de panne : état inchangé"),
        }
        self.probe_region(i).await;
        Ok(self.region_snapshot(&self.state(), i))
    }

    /// Records that a region's migrations have run (at start-up or when it came back).
    pub fn mark_migrated(&self, region: &RegionName) {
        if let Some(i) = self.index(region) {
            self.migrated[i].store(true, Ordering::SeqCst);
        }
    }

    /// Ready when at least one region is migrated and answers.
    pub async fn ready(&self) -> Result<(), NotReady> {
        let pings = join_all(self.gates.iter().map(|g| g.ping())).await;
        let answering: Vec<usize> = pings.iter().enumerate().filter(|(_, p)| p.is_ok()).map(|(i, _)| i).collect();
        if answering.iter().any(|i| self.migrated[*i].load(Ordering::SeqCst)) {
            Ok(())
        } else if answering.is_empty() {
            Err(NotReady::NoRegionReachable)
        } else {
            Err(NotReady::MigrationsPending)
        }
    }

    /// The Prometheus text exposition.
    pub fn render_metrics(&self) -> Result<String, MonitorError> {
        self.metrics.render().map_err(|e| MonitorError::Metrics(e.to_string()))
    }

    /// Saves what changed since the last save (a failed save is retried by the next one).
    pub async fn flush(&self) {
        let _one_at_a_time = self.saving.lock().await;
        let unsaved = self.state().stats.take_unsaved();
        if unsaved.is_empty() {
            return;
        }
        if let Err(e) = persist::save(&self.db, &unsaved).await {
            tracing::error!(error = %e, "statistiques non enregistrées ; nouvel essai à la prochaine sauvegarde");
            self.state().stats.save_failed(unsaved);
        }
    }

    /// Probes every region every `probe_interval` and saves the statistics as they change, until
    /// `shutdown`; then saves one last time.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let probes = async {
            let Some(interval) = self.probe_interval else { return std::future::pending().await };
            loop {
                tokio::time::sleep(interval).await;
                self.probe_all().await;
            }
        };
        let saves = async {
            loop {
                self.dirty.notified().await;
                // A write: wait a little so a burst is saved once. A round: save now.
                tokio::select! {
                    () = tokio::time::sleep(COALESCE) => {}
                    () = self.urgent.notified() => {}
                }
                // In its own task: a shutdown never drops a save half-way (the last flush below
                // waits for it, then saves whatever came after).
                let monitor = Arc::clone(&self);
                let _ = tokio::spawn(async move { monitor.flush().await }).await;
            }
        };
        tokio::select! {
            () = probes => {}
            () = saves => {}
            () = shutdown.cancelled() => {}
        }
        self.flush().await;
    }

    /// The state database's path (logs, tests).
    pub fn state_path(&self) -> &std::path::Path {
        self.db.path()
    }
}

impl WriteListener for Monitor {
    fn written(&self, kind: WriteKind, _vente: &Vente) {
        self.state().stats.record_write(kind);
        self.data_changed();
        self.dirty.notify_one();
    }
}

impl crate::sync::scheduler::RoundListener for Monitor {
    fn round_done(&self, report: &crate::sync::report::RoundReport) {
        self.record_round(report);
    }
}
