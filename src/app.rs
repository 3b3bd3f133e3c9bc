//! Wiring: regions, services and the HTTP server from a `Config`. Owns start-up order and
//! graceful shutdown. Leaves: what each part does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, AuthError};
use crate::config::{Config, EdgeConfig};
use crate::domain::version::{WallClock, system_clock};
use crate::monitor::health::Thresholds;
use crate::monitor::{Monitor, MonitorConfig, MonitorError, drill};
use crate::store::{self, Limits, Store, StoreError};
use crate::sync::engine::{Engine, EngineOptions};
use crate::sync::scheduler::Scheduler;
use crate::ventes::Ventes;
use crate::web::{self, AppState};

/// How often a region whose migrations could not run (it was down) is tried again.
const MIGRATE_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("impossible d'écouter sur {addr} : {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("serveur HTTP : {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Tls(#[from] web::tls::TlsError),
    #[error(
        "listen = {0} n'est pas une adresse locale et aucun utilisateur n'existe : créez-en un (dsms user add NOM --role admin) \
         ou autorisez l'accès anonyme (allow_anonymous = true)"
    )]
    Unprotected(SocketAddr),
}

/// A built application: regions open and migrated (or retrying), listener bound.
pub struct App {
    listener: TcpListener,
    /// HTTPS: the handshake's configuration (`tls_cert`, `tls_key`).
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: AppState,
    edge: EdgeConfig,
    pending_migrations: Vec<Arc<dyn Store>>,
}

/// What the monitor needs of the configuration.
pub fn monitor_config(config: &Config) -> MonitorConfig {
    MonitorConfig {
        data_dir: config.data_dir.clone(),
        probe_interval: config.probe_interval,
        thresholds: Thresholds { max_clock_skew: config.max_clock_skew, max_feed_hold: config.max_feed_hold, ..Thresholds::default() },
    }
}

/// Opens every region; SQLite files are created on the way.
pub async fn open_stores(config: &Config) -> Result<Vec<Arc<dyn Store>>, StoreError> {
    open_stores_with_clock(config, system_clock()).await
}

/// As `open_stores`, the stores reading wall time from `clock`.
pub async fn open_stores_with_clock(config: &Config, clock: WallClock) -> Result<Vec<Arc<dyn Store>>, StoreError> {
    let limits = Limits { connect_timeout: config.connect_timeout, statement_timeout: config.statement_timeout };
    let mut stores = Vec::with_capacity(config.regions.len());
    for region in &config.regions {
        stores.push(store::open_with_options(region, limits, clock.clone(), config.max_future).await?);
    }
    Ok(stores)
}

/// Runs migrations everywhere at once. A region that is down is returned for a later retry; any
/// other failure (a damaged database, a refused migration) stops start-up.
pub async fn migrate_all(stores: &[Arc<dyn Store>]) -> Result<Vec<Arc<dyn Store>>, StoreError> {
    let results = join_all(stores.iter().map(|s| s.migrate())).await;
    let mut pending = Vec::new();
    for (store, result) in stores.iter().zip(results) {
        match result {
            Ok(()) => {}
            Err(e) if e.is_unavailable() => {
                tracing::warn!(region = %store.region(), error = %e, "région injoignable au démarrage ; migrations reportées");
                pending.push(store.clone());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(pending)
}

impl App {
    pub async fn build(config: Config) -> Result<Self, AppError> {
        Self::build_with_clock(config, system_clock()).await
    }

    /// As `build`, with an injected wall clock (tests skew it).
    pub async fn build_with_clock(config: Config, clock: WallClock) -> Result<Self, AppError> {
        // Protected mode: with no user, only this machine may connect unless anonymity is chosen.
        let anonymous_without_users = config.listen.ip().is_loopback() || config.allow_anonymous;
        let auth_config = crate::auth::AuthConfig { anonymous_without_users, ..config.auth };
        // Certificate problems are reported before anything else starts.
        let tls = config.edge.tls.as_ref().map(web::tls::acceptor).transpose()?;
        let auth = Arc::new(Auth::open(&config.data_dir, auth_config).await?);
        if !anonymous_without_users && !auth.any_user().await? {
            return Err(AppError::Unprotected(config.listen));
        }
        // Every region behind its drill gate: whoever uses a store sees a drilled region as down.
        let gates = drill::gate_all(open_stores_with_clock(&config, clock.clone()).await?);
        let stores = drill::as_stores(&gates);
        let pending_migrations = migrate_all(&stores).await?;
        let monitor = Monitor::open(monitor_config(&config), gates, clock.clone()).await?;
        for store in stores.iter().filter(|s| !pending_migrations.iter().any(|p| p.region() == s.region())) {
            monitor.mark_migrated(store.region());
        }
        monitor.probe_all().await;
        // Rounds go through the same drill gates as everything else.
        let engine = Engine::new(stores.clone(), EngineOptions::default()).with_clock(clock.clone()).with_home(config.home.clone());
        let scheduler =
            Arc::new(Scheduler::new(engine, config.sync_interval, config.sync_on_write).with_request_wait(config.sync_request_wait));
        scheduler.add_listener(monitor.clone());
        let ventes = Arc::new(
            Ventes::new(stores, clock).with_home(config.home.clone()).with_listener(monitor.clone()).with_listener(scheduler.clone()),
        );
        let listener = TcpListener::bind(config.listen).await.map_err(|source| AppError::Bind { addr: config.listen, source })?;
        let certified = config.edge.tls.as_ref().map(web::tls::certificate_names).unwrap_or_default();
        let hosts = Arc::new(web::server::AllowedHosts::new(config.edge.allowed_hosts.as_deref(), config.listen, &certified));
        let state = AppState { ventes, monitor, scheduler, auth, hosts };
        Ok(Self { listener, tls, state, edge: config.edge, pending_migrations })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn ventes(&self) -> Arc<Ventes> {
        self.state.ventes.clone()
    }

    pub fn scheduler(&self) -> Arc<Scheduler> {
        self.state.scheduler.clone()
    }

    pub fn monitor(&self) -> Arc<Monitor> {
        self.state.monitor.clone()
    }

    pub fn auth(&self) -> Arc<Auth> {
        self.state.auth.clone()
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    /// Background work (sync rounds, migration retries) stops with the server; a round in
    /// progress is abandoned between batches, each of which is its own transaction.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), AppError> {
        let stop = CancellationToken::new();
        let monitor = self.state.monitor.clone();
        let retry = tokio::spawn(retry_migrations(self.pending_migrations, monitor.clone()));
        let rounds = tokio::spawn(self.state.scheduler.clone().run(stop.clone()));
        let stop_monitor = CancellationToken::new();
        let monitoring = tokio::spawn(monitor.run(stop_monitor.clone()));
        let router = web::router(self.state);
        let stopping = stop.clone();
        let signal = tokio::spawn(async move {
            shutdown.await;
            stopping.cancel();
        });
        let served = web::server::serve(self.listener, router, &self.edge, self.tls, stop.clone()).await.map_err(AppError::Serve);
        signal.abort();
        stop.cancel();
        retry.abort();
        let _ = rounds.await;
        // The monitor saves its statistics one last time before it ends.
        stop_monitor.cancel();
        let _ = monitoring.await;
        served
    }
}

async fn retry_migrations(mut pending: Vec<Arc<dyn Store>>, monitor: Arc<Monitor>) {
    while !pending.is_empty() {
        tokio::time::sleep(MIGRATE_RETRY).await;
        let mut still = Vec::new();
        for store in pending {
            match store.migrate().await {
                Ok(()) => {
                    monitor.mark_migrated(store.region());
                    tracing::info!(region = %store.region(), "région de retour : migrations faites");
                }
                Err(e) => {
                    if !e.is_unavailable() {
                        tracing::error!(region = %store.region(), error = %e, "migrations refusées");
                    }
                    still.push(store);
                }
            }
        }
        pending = still;
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("arrêt demandé");
}
