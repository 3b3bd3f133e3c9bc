//! When rounds run: every `sync_interval`, right after local writes have been pushed (coalesced:
//! writes during a round make one more round, not one each), when another process writes into a PostgreSQL
//! region (LISTEN), and on demand. One round at a time per process. Owns: timing and who hears
//! about each round. Leaves: the round itself (engine.rs).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use super::engine::Engine;
use super::report::RoundReport;
use crate::ventes::WriteListener;

/// Told of every finished round (statistics, caches, metrics).
pub trait RoundListener: Send + Sync {
    fn round_done(&self, report: &RoundReport);
}

/// What came of a round asked for by a request (`Scheduler::request_round`).
#[derive(Debug)]
pub enum Requested {
    /// It ended within the wait: its report.
    Done(RoundReport),
    /// It runs on, in its own task, to completion: its report will be in the history among the
    /// rounds started at or after `since` (the oldest of them; one round runs at a time).
    Running { since: DateTime<Utc> },
    /// Its task ended without a report (a bug: a panic in the round); said in French.
    Lost(String),
}

pub struct Scheduler {
    engine: Engine,
    /// How long `request_round` waits before answering that the round runs on.
    request_wait: Duration,
    interval: Option<Duration>,
    sync_on_write: bool,
    wake: Notify,
    running: Mutex<()>,
    listeners: std::sync::RwLock<Vec<Arc<dyn RoundListener>>>,
}

impl Scheduler {
    pub fn new(engine: Engine, interval: Option<Duration>, sync_on_write: bool) -> Self {
        Self {
            engine,
            interval,
            sync_on_write,
            request_wait: Duration::from_secs(10),
            wake: Notify::new(),
            running: Mutex::new(()),
            listeners: std::sync::RwLock::default(),
        }
    }

    /// How long a requested round is waited for before the request is answered (config
    /// `sync_request_wait`); the round itself runs to completion whatever the wait.
    pub fn with_request_wait(self, request_wait: Duration) -> Self {
        Self { request_wait, ..self }
    }

    pub fn add_listener(&self, listener: Arc<dyn RoundListener>) {
        if let Ok(mut listeners) = self.listeners.write() {
            listeners.push(listener);
        }
    }

    /// Asks for a round soon; many asks before it starts make one round.
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Runs a round now (after the one in progress, if any) and returns its report.
    pub async fn run_now(&self) -> RoundReport {
        let _turn = self.running.lock().await;
        let report = self.engine.round().await;
        let listeners = self.listeners.read().map(|l| l.clone()).unwrap_or_default();
        for listener in listeners {
            listener.round_done(&report);
        }
        report
    }

    /// Starts a round for a request (`POST /api/sync`, the sync button) in a task of its own, so
    /// that it runs to completion even when the request is answered first or its client goes
    /// away (a request is cut at 30 s); waits for it at most `request_wait`.
    pub async fn request_round(self: &Arc<Self>) -> Requested {
        // The history keeps start times to the millisecond: the round starts at or after this.
        let now = self.engine.now();
        let since = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        let me = self.clone();
        let mut round = tokio::spawn(async move { me.run_now().await });
        match tokio::time::timeout(self.request_wait, &mut round).await {
            Ok(Ok(report)) => Requested::Done(report),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "la synchronisation demandée s'est arrêtée sans rapport");
                Requested::Lost(format!("la synchronisation s'est arrêtée sans rapport : {e}"))
            }
            Err(_) => Requested::Running { since },
        }
    }

    /// Runs rounds on the interval and on nudges until `stop` is cancelled; also listens for
    /// changes other processes commit into PostgreSQL regions.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        for store in self.engine.stores() {
            let (store, me, stop) = (store.clone(), self.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        result = store.listen_for_changes(&me.wake) => {
                            if let Err(e) = result {
                                tracing::debug!(region = %store.region(), error = %e, "écoute des changements interrompue");
                            }
                        }
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            });
        }
        loop {
            let tick = async {
                match self.interval {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tick => {}
                () = self.wake.notified() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = self.run_now() => {}
            }
        }
    }
}

/// With `sync_on_write`, a round once a client write's push has ended: started earlier, the
/// round would apply the same row in the same regions at the same moment, each waiting on the
/// other's locks.
impl WriteListener for Scheduler {
    fn pushed(&self) {
        if self.sync_on_write {
            self.nudge();
        }
    }
}
