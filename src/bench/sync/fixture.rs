//! Three PostgreSQL regions for the sync benchmarks, each on a private cluster of its own (as real
//! regions live on separate servers), and the tools the scenarios share: seeding through a
//! separate short-lived store, rounds until a condition holds, memory sampling, the COPY baseline.
//! Owns: the benchmark's databases and its untimed chores. Leaves: replication itself
//! (`sync::engine`), the scenarios (`sync.rs`, `latency.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use sqlx::Connection;

use super::cpu::CpuSnapshot;
use super::pgstats;
use super::timed::{CallTimes, Timed};
use crate::domain::{NewVente, RegionName, Vente, VenteId};
use crate::store::postgres::PgStore;
use crate::store::{self, Limits, Store};
use crate::sync::engine::{Engine, EngineOptions};
use crate::sync::report::RoundReport;
use crate::testkit::pg::PgCluster;

/// The regions, in configuration order: Dakar first.
pub const REGIONS: [&str; 3] = ["Dakar", "Thies", "Saint-Louis"];
/// Rows per `write_many` call when seeding.
const SEED_BATCH: usize = 10_000;

pub fn limits() -> Limits {
    Limits { connect_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(600) }
}

/// Opens and migrates a region through the library's own `store::open`.
pub async fn open_region(name: &str, url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let region = crate::config::RegionConfig { name: RegionName::new(name), url: crate::config::DatabaseUrl::Postgres(url.to_owned()) };
    let store = store::open(&region, limits()).await?;
    store.migrate().await?;
    Ok(store)
}

/// Three regions on three clusters; the stores count their feed reads and applies.
pub struct Fixture {
    /// Timed wrappers around `store::open`'s stores, in `REGIONS` order.
    pub stores: Vec<Arc<dyn Store>>,
    pub times: Vec<Arc<CallTimes>>,
    pub urls: Vec<String>,
    /// `pg_stat_statements` is loaded in every cluster (`--pg-stats`).
    pg_stats: bool,
    /// Declared last: the clusters stop after the pools above are dropped.
    clusters: Vec<PgCluster>,
}

impl Fixture {
    /// Starts the clusters, with `pg_stat_statements` loaded when `pg_stats`.
    pub async fn start(pg_stats: bool) -> anyhow::Result<Self> {
        Self::start_with(pg_stats, false).await
    }

    /// As `start`, and with each commit's time recorded when `commit_times` (`commit_time`).
    pub async fn start_with(pg_stats: bool, commit_times: bool) -> anyhow::Result<Self> {
        let started = join_all(REGIONS.iter().map(|_| tokio::task::spawn_blocking(PgCluster::start))).await;
        let mut clusters = Vec::with_capacity(REGIONS.len());
        for cluster in started {
            clusters.push(cluster??);
        }
        let (mut stores, mut times, mut urls) = (Vec::new(), Vec::new(), Vec::new());
        for (cluster, name) in clusters.iter().zip(REGIONS) {
            pgstats::preload(cluster, pg_stats, commit_times).await?;
            let url = tokio::task::block_in_place(|| cluster.create_database(&name.to_lowercase()))?;
            if pg_stats {
                pgstats::create(&url).await?;
            }
            let store = open_region(name, &url).await?;
            let counted = Arc::new(CallTimes::default());
            stores.push(Arc::new(Timed::new(store, counted.clone())) as Arc<dyn Store>);
            times.push(counted);
            urls.push(url);
        }
        Ok(Self { stores, times, urls, pg_stats, clusters })
    }

    /// The real engine over the three (timed) stores.
    pub fn engine(&self, batch_size: u32) -> Engine {
        Engine::new(self.stores.clone(), EngineOptions { batch_size, ..EngineOptions::default() })
    }

    /// Another database, migrated by dsms, on region `index`'s cluster.
    pub async fn extra_database(&self, index: usize, name: &str) -> anyhow::Result<String> {
        let cluster = self.clusters.get(index).ok_or_else(|| anyhow::anyhow!("no region {index}"))?;
        let url = tokio::task::block_in_place(|| cluster.create_database(name))?;
        open_region(REGIONS[index], &url).await?;
        Ok(url)
    }

    /// Flushes every cluster's dirty pages, so a timed part does not pay for an earlier one.
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        for url in &self.urls {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::query("CHECKPOINT").execute(&mut conn).await?;
            conn.close().await?;
        }
        Ok(())
    }

    fn ports(&self) -> Vec<u16> {
        self.clusters.iter().map(PgCluster::port).collect()
    }

    /// CPU time used so far by this process and each region's server.
    pub fn cpu(&self) -> CpuSnapshot {
        CpuSnapshot::take(&self.ports())
    }

    /// CPU seconds used since `before`, per process group (the checks between rounds included).
    pub fn cpu_since(&self, before: &CpuSnapshot) -> serde_json::Value {
        before.since(&self.ports(), &REGIONS)
    }

    /// Forgets what the timed stores (and `pg_stat_statements`) counted so far.
    pub async fn reset_times(&self) -> anyhow::Result<()> {
        for times in &self.times {
            times.reset();
        }
        if self.pg_stats {
            for url in &self.urls {
                pgstats::reset(url).await?;
            }
        }
        Ok(())
    }

    /// With `--pg-stats`: each region's costliest statements since the reset.
    pub async fn pg_stats(&self) -> anyhow::Result<Option<serde_json::Value>> {
        if !self.pg_stats {
            return Ok(None);
        }
        let mut regions = serde_json::Map::new();
        for (name, url) in REGIONS.iter().zip(&self.urls) {
            regions.insert((*name).to_owned(), pgstats::top(url).await?);
        }
        Ok(Some(serde_json::Value::Object(regions)))
    }

    /// With `--pg-stats`, one more line: each region's costliest statements since the reset.
    pub async fn emit_pg_stats(&self, bench: &str) -> anyhow::Result<()> {
        emit_statements(bench, self.pg_stats().await?);
        Ok(())
    }

    /// Per region: feed reads and applies counted since the last reset.
    pub fn phases(&self, since: Instant) -> serde_json::Value {
        let map = REGIONS.iter().zip(&self.times).map(|(name, t)| ((*name).to_owned(), t.json(since))).collect();
        serde_json::Value::Object(map)
    }

    /// Seconds from `since` until the last apply that wrote rows into any of `targets`.
    pub fn last_write_s(&self, targets: &[usize], since: Instant) -> Option<f64> {
        targets
            .iter()
            .filter_map(|&i| self.times.get(i).and_then(|t| t.last_write()))
            .max()
            .map(|at| at.saturating_duration_since(since).as_secs_f64())
    }

    /// True when every store in `targets` holds exactly `rows` live sales.
    pub async fn hold(&self, targets: &[usize], rows: u64) -> anyhow::Result<bool> {
        for &i in targets {
            if self.stores[i].count_live().await? != rows {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The line `Fixture::emit_pg_stats` prints, for statements read earlier.
pub fn emit_statements(bench: &str, statements: Option<serde_json::Value>) {
    if let Some(statements) = statements {
        super::emit(serde_json::json!({"bench": format!("{bench}.pg_stats"), "statements": statements}));
    }
}

/// Rounds run by `rounds_until`: their reports and the time spent inside them only.
pub struct Rounds {
    pub reports: Vec<RoundReport>,
    pub elapsed: Duration,
}

impl Rounds {
    pub fn seconds(&self) -> f64 {
        self.elapsed.as_secs_f64()
    }

    pub fn rows_read(&self) -> u64 {
        self.reports.iter().flat_map(|r| &r.pairs).map(|p| p.rows_read).sum()
    }

    pub fn rows_applied(&self) -> u64 {
        self.reports.iter().map(RoundReport::rows_applied).sum()
    }

    pub fn durations_ms(&self) -> Vec<f64> {
        self.reports.iter().map(|r| r.duration.as_secs_f64() * 1000.0).collect()
    }
}

/// Runs rounds until `done` says so after one (at most `max` rounds). Only the rounds are timed,
/// not the checks between them. Fails on a round that is not a success.
pub async fn rounds_until(
    engine: &Engine,
    max: usize,
    mut done: impl AsyncFnMut(&RoundReport) -> anyhow::Result<bool>,
) -> anyhow::Result<Rounds> {
    let mut rounds = Rounds { reports: Vec::new(), elapsed: Duration::ZERO };
    for _ in 0..max {
        let started = Instant::now();
        let report = engine.round().await;
        rounds.elapsed += started.elapsed();
        if let Some(error) = report.error_summary() {
            anyhow::bail!("round failed: {error}");
        }
        let finished = done(&report).await?;
        rounds.reports.push(report);
        if finished {
            return Ok(rounds);
        }
    }
    anyhow::bail!("not done after {max} rounds")
}

/// Rounds until one reads nothing (every cursor, echoes included, at the end of its feed).
pub async fn settle(engine: &Engine) -> anyhow::Result<Rounds> {
    rounds_until(engine, 20, async |report: &RoundReport| Ok(report.pairs.iter().all(|p| p.rows_read == 0))).await
}

/// Writes `rows` into the region at `url` with `write_many` in batches of 10,000, through a store
/// of its own that is closed afterwards (a separate, short-lived pool). `each` sees every batch
/// as written. Returns the seconds it took.
pub async fn write_rows(
    url: &str,
    region: &str,
    rows: impl Iterator<Item = (VenteId, NewVente)>,
    mut each: impl FnMut(&[Vente]),
) -> anyhow::Result<f64> {
    let store = PgStore::open(RegionName::new(region), url, limits())?;
    let started = Instant::now();
    let mut rows = rows.peekable();
    while rows.peek().is_some() {
        let batch: Vec<(VenteId, NewVente)> = rows.by_ref().take(SEED_BATCH).collect();
        each(&store.write_many(&batch, chrono::Utc::now()).await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    store.pool().close().await;
    Ok(seconds)
}

/// Writes `rows` into the region at `url` one transaction each, as sales arrive through the write
/// path (`Store::write`), `writers` at once, through a store of its own that is closed afterwards.
/// `each` sees every sale written. Returns the seconds it took.
pub async fn write_each(
    url: &str,
    region: &str,
    rows: impl Iterator<Item = (VenteId, NewVente)>,
    writers: usize,
    mut each: impl FnMut(Vente),
) -> anyhow::Result<f64> {
    use futures::StreamExt;
    let store = PgStore::open(RegionName::new(region), url, limits())?;
    let started = Instant::now();
    let store_ref = &store;
    let mut written =
        futures::stream::iter(rows)
            .map(|(id, vente)| async move {
                Store::write(store_ref, &crate::domain::LocalWrite::Create { id, vente }, chrono::Utc::now()).await
            })
            .buffer_unordered(writers);
    while let Some(outcome) = written.next().await {
        match outcome? {
            crate::domain::WriteOutcome::Written(v) => each(v),
            other => anyhow::bail!("write not done: {other:?}"),
        }
    }
    drop(written);
    let seconds = started.elapsed().as_secs_f64();
    store.pool().close().await;
    Ok(seconds)
}

/// `n` new random sales (fresh ids), generated lazily a batch at a time.
pub fn new_sales(n: u64) -> impl Iterator<Item = (VenteId, NewVente)> {
    let regions: Vec<RegionName> = REGIONS.iter().map(|r| RegionName::new(r)).collect();
    let today = chrono::Utc::now().date_naive();
    let mut rng = rand::rng();
    let mut left = n;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let take = left.min(SEED_BATCH as u64);
        left -= take;
        Some(crate::seed::generate(usize::try_from(take).unwrap_or(SEED_BATCH), &regions, today, &mut rng))
    })
    .flatten()
}

/// New random content for existing sales.
pub fn new_content(ids: &[VenteId]) -> impl Iterator<Item = (VenteId, NewVente)> + '_ {
    ids.iter().copied().zip(new_sales(ids.len() as u64).map(|(_, new)| new))
}

/// A `/proc/self/status` field in kB (`VmRSS`, `VmHWM`), of this process or of `pid`.
pub fn status_kb(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |pid| format!("/proc/{pid}/status"));
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

pub fn mb(kb: Option<u64>) -> Option<f64> {
    kb.map(|kb| kb as f64 / 1024.0)
}

/// Samples this process's VmRSS on a thread of its own (not delayed by a busy runtime).
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    max_kb: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(every: Duration) -> Self {
        let (stop, max_kb) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (stopping, max) = (stop.clone(), max_kb.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                if let Some(kb) = status_kb(None, "VmRSS") {
                    max.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(every);
            }
        });
        Self { stop, max_kb, thread: Some(thread) }
    }

    /// Stops sampling; the greatest VmRSS seen, in kB.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(kb) = status_kb(None, "VmRSS") {
            self.max_kb.fetch_max(kb, Ordering::Relaxed);
        }
        self.max_kb.load(Ordering::Relaxed)
    }
}

/// The rows as the CSV `COPY vente (…) FROM STDIN (FORMAT csv)` reads (every field quoted, so an
/// empty string stays a string).
pub fn csv_of(rows: &[Vente]) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::WriterBuilder::new().quote_style(csv::QuoteStyle::Always).from_writer(Vec::new());
    for v in rows {
        out.write_record([
            v.id.0.to_string(),
            v.produit.as_str().to_owned(),
            v.produit.search_key(),
            v.montant.to_decimal().to_string(),
            v.date_vente.get().to_string(),
            v.region.as_str().to_owned(),
            v.updated_at.to_rfc3339(),
            v.deleted.to_string(),
            v.version.hlc.0.to_string(),
            v.version.origin.as_str().to_owned(),
            v.seen.encode(),
        ])?;
    }
    Ok(out.into_inner()?)
}

/// The physical baseline: COPY of `csv` into each database of `urls` (empty `vente` tables with
/// dsms's indexes), one connection each, all at once. Connecting is not timed. The sessions name
/// themselves in `dsms.writer`, as dsms's do: the rows carry their versions, so the foreign-write
/// triggers skip them as they skip dsms's own COPY.
pub async fn copy_into(urls: &[String], csv: &[u8]) -> anyhow::Result<(Duration, u64)> {
    let mut conns = Vec::new();
    for url in urls {
        let options: sqlx::postgres::PgConnectOptions = url.parse()?;
        conns.push(sqlx::PgConnection::connect_with(&options.options([("dsms.writer", "bench-copy")])).await?);
    }
    let started = Instant::now();
    let copies = join_all(conns.iter_mut().map(|conn| async move {
        let mut copy = conn
            .copy_in_raw(
                "COPY vente (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seen) \
                 FROM STDIN (FORMAT csv)",
            )
            .await?;
        for chunk in csv.chunks(1 << 20) {
            copy.send(chunk).await?;
        }
        copy.finish().await
    }))
    .await;
    let elapsed = started.elapsed();
    let mut rows = 0;
    for copied in copies {
        rows += copied?;
    }
    for conn in conns {
        conn.close().await?;
    }
    Ok((elapsed, rows))
}

/// p-th percentile of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}
