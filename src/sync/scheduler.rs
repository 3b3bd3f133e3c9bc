//! When rounds run: every `sync_interval` and on demand (reading every region); right after local
//! writes have been pushed, and when another process writes into a PostgreSQL region (LISTEN),
//! reading the regions written. Asks are coalesced: asks during a round make one more round, not
//! one each. One round at a time per process. Owns: timing, what each round reads, and who hears
//! about each round. Leaves: the round itself (engine.rs).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use super::engine::Engine;
use super::report::RoundReport;
use crate::domain::RegionName;
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
    /// What the rounds asked for since the last one started must read.
    asked: std::sync::Mutex<Asked>,
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
            asked: std::sync::Mutex::default(),
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
        self.ask(|asked| asked.all = true);
    }

    /// Asks for a round soon that reads at least `source` (a change committed there); many asks
    /// before it starts make one round, which reads what they all named.
    pub fn nudge_from(&self, source: &RegionName) {
        self.ask(|asked| {
            asked.from.insert(source.clone());
        });
    }

    fn ask(&self, what: impl FnOnce(&mut Asked)) {
        match self.asked.lock() {
            Ok(mut asked) => what(&mut asked),
            // Poisoned: a full round is always a right answer.
            Err(_) => tracing::error!("demandes de synchronisation illisibles : tour complet"),
        }
        self.wake.notify_one();
    }

    /// What was asked since the last round started, forgotten here (poisoned: everything).
    fn take_asked(&self) -> Asked {
        self.asked.lock().map(|mut asked| std::mem::take(&mut *asked)).unwrap_or_else(|_| Asked { all: true, ..Asked::default() })
    }

    /// Runs a round now (after the one in progress, if any) and returns its report.
    pub async fn run_now(&self) -> RoundReport {
        self.round_of(None).await
    }

    /// Runs a round reading `sources` only (every region when `None`) after the one in progress.
    /// What was asked for until it starts is then served: a full round serves every ask.
    async fn round_of(&self, sources: Option<Vec<RegionName>>) -> RoundReport {
        let _turn = self.running.lock().await;
        if sources.is_none() {
            self.take_asked();
        }
        let report = self.engine.round_from(sources.as_deref()).await;
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
                // A change heard in this region asks for a round that reads it.
                let heard = Notify::new();
                let ask = async {
                    loop {
                        heard.notified().await;
                        me.nudge_from(store.region());
                    }
                };
                let listen = async {
                    loop {
                        if let Err(e) = store.listen_for_changes(&heard).await {
                            tracing::debug!(region = %store.region(), error = %e, "écoute des changements interrompue");
                        }
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                };
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = ask => {}
                    () = listen => {}
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
            // A tick reads every region; a wake-up, what was asked (everything, unless only
            // some regions' changes were: then those regions).
            let sources = tokio::select! {
                () = stop.cancelled() => return,
                () = tick => None,
                () = self.wake.notified() => self.take_asked().sources(),
            };
            if sources.as_deref().is_some_and(|only| !self.engine.reads_any(only)) {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = self.round_of(sources) => {}
            }
        }
    }
}

/// What the rounds asked since the last one started must read.
#[derive(Debug, Default)]
struct Asked {
    /// Every region.
    all: bool,
    /// At least these regions (changes were committed there).
    from: BTreeSet<RegionName>,
}

impl Asked {
    /// The regions to read, `None` for all: all when so asked, or when nothing was (a wake-up
    /// whose ask a full round already served still makes a round, as it always did).
    fn sources(self) -> Option<Vec<RegionName>> {
        (!self.all && !self.from.is_empty()).then(|| self.from.into_iter().collect())
    }
}

/// With `sync_on_write`, a round once a client write's push has ended, reading the region written:
/// started earlier, the round would apply the same row in the same regions at the same moment,
/// each waiting on the other's locks.
impl WriteListener for Scheduler {
    fn pushed(&self, written_in: &RegionName) {
        if self.sync_on_write {
            self.nudge_from(written_in);
        }
    }
}
