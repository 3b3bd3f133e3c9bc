//! Benchmarks on real databases private to this process; each result is one JSON line on stdout.

pub mod api;
mod foreign;
mod sync;
mod write;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use crate::config::DatabaseUrl;
use crate::domain::ListQuery;
use crate::domain::RegionName;
use crate::store::{self, Limits, Store};
use crate::testkit::pg::PgCluster;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Listing speed on one region holding `rows` sales: first page, a deep keyset page, filters.
    List {
        /// Sales in the region.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Which store to measure.
        #[arg(long, value_enum, default_value_t = BenchBackend::Both)]
        backend: BenchBackend,
        /// Timed repetitions of each query.
        #[arg(long, default_value_t = 200)]
        repeat: u32,
    },
    /// HTTP throughput of the real server over loopback: concurrent keep-alive clients GET one
    /// address (default `/api/stats`) for a bounded time; the first region holds `rows` sales.
    Api {
        /// Sales in the first region.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Measured time (after the warm-up), e.g. "10s".
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Unmeasured load before the measured time.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// The address to GET.
        #[arg(long, default_value = "/api/stats")]
        path: String,
        /// Where the first region lives (sqlite or postgres).
        #[arg(long, value_enum, default_value_t = BenchBackend::Sqlite)]
        backend: BenchBackend,
    },
    /// What the foreign-write triggers cost: single-row plain SQL UPDATEs with the trigger
    /// stamping them, and from a session marked as dsms's (trigger skipped), on both backends.
    Foreign {
        /// Sales in the region.
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        /// Timed single-row UPDATEs per case.
        #[arg(long, default_value_t = 5_000)]
        updates: u32,
    },
    /// What durability costs a SQLite region: single writes (one commit each) and a batch of
    /// 5,000, with `synchronous=FULL` (what regions run) and `NORMAL`, alternately.
    Write {
        /// Sales in the region before the timed writes.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// Timed single writes per case.
        #[arg(long, default_value_t = 500)]
        writes: u32,
    },
    /// Replication between three PostgreSQL regions, each on its own private cluster.
    #[command(subcommand)]
    Sync(sync::SyncScenario),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
    Both,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::List { rows, backend, repeat } => {
            if matches!(backend, BenchBackend::Sqlite | BenchBackend::Both) {
                let dir = tempdir()?;
                let url = DatabaseUrl::Sqlite(dir.join("bench.db"));
                bench_list("sqlite", &url, rows, repeat).await?;
                let _ = std::fs::remove_dir_all(&dir);
            }
            if matches!(backend, BenchBackend::Postgres | BenchBackend::Both) {
                let cluster = tokio::task::spawn_blocking(PgCluster::start).await??;
                let url = DatabaseUrl::Postgres(cluster.create_database("bench")?);
                bench_list("postgres", &url, rows, repeat).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Api { rows, clients, duration, warmup, path, backend } => {
            api::run(api::ApiBench { rows, clients, warmup, duration, path, backend }).await?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Foreign { rows, updates } => {
            foreign::run(rows, updates).await?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Write { rows, writes } => {
            write::run(rows, writes).await?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Sync(scenario) => {
            sync::run(scenario).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("dsms-bench-{}-{}", std::process::id(), chrono::Utc::now().timestamp_micros()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn open(url: &DatabaseUrl) -> anyhow::Result<Arc<dyn Store>> {
    let limits = Limits { connect_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(600) };
    let region = crate::config::RegionConfig { name: RegionName::new("Dakar"), url: url.clone() };
    let store = store::open(&region, limits).await?;
    store.migrate().await?;
    Ok(store)
}

/// Fills the store with `rows` seed sales in batches of 10,000; returns the seconds it took.
async fn fill(store: &dyn Store, rows: u64) -> anyhow::Result<f64> {
    let regions: Vec<RegionName> = crate::config::DEFAULT_REGIONS.iter().map(|n| RegionName::new(n)).collect();
    let today = chrono::Utc::now().date_naive();
    let mut rng = rand::rng();
    let started = Instant::now();
    let mut left = rows;
    while left > 0 {
        let n = left.min(10_000);
        let batch = crate::seed::generate(usize::try_from(n)?, &regions, today, &mut rng);
        store.write_many(&batch, chrono::Utc::now()).await?;
        left -= n;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

async fn time_query(store: &dyn Store, query: &ListQuery, repeat: u32) -> anyhow::Result<(f64, f64, usize)> {
    let mut samples = Vec::with_capacity(repeat as usize);
    let mut returned = 0;
    for _ in 0..repeat {
        let started = Instant::now();
        returned = store.list(query).await?.items.len();
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    Ok((percentile(&samples, 0.5), percentile(&samples, 0.95), returned))
}

async fn bench_list(backend: &str, url: &DatabaseUrl, rows: u64, repeat: u32) -> anyhow::Result<()> {
    let store = open(url).await?;
    let fill_s = fill(store.as_ref(), rows).await?;
    println!("{}", json!({"bench": "list.fill", "backend": backend, "rows": rows, "seconds": fill_s, "rows_per_s": rows as f64 / fill_s}));
    store.analyze().await?;
    // Walk to a deep position with keyset pages of 500 (never OFFSET), 90 % into the table.
    let deep_target = rows * 9 / 10;
    let mut query = ListQuery { limit: 500, ..ListQuery::default() };
    let mut walked = 0;
    let walk_started = Instant::now();
    while walked < deep_target {
        let page = store.list(&query).await?;
        walked += page.items.len() as u64;
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let walk_s = walk_started.elapsed().as_secs_f64();
    println!("{}", json!({"bench": "list.walk", "backend": backend, "rows": walked, "pages": walked.div_ceil(500), "seconds": walk_s}));
    let deep = query.after;
    let cases = [
        ("first_page", ListQuery { limit: 50, ..ListQuery::default() }),
        ("deep_page", ListQuery { limit: 50, after: deep, ..ListQuery::default() }),
        ("region_first_page", ListQuery { limit: 50, region: Some(RegionName::new("Thies")), ..ListQuery::default() }),
        ("region_deep_page", ListQuery { limit: 50, region: Some(RegionName::new("Thies")), after: deep, ..ListQuery::default() }),
        ("search_first_page", ListQuery { limit: 50, q: Some("riz".into()), ..ListQuery::default() }),
    ];
    for (case, query) in cases {
        let (p50, p95, returned) = time_query(store.as_ref(), &query, repeat).await?;
        println!(
            "{}",
            json!({"bench": format!("list.{case}"), "backend": backend, "rows": rows, "limit": query.limit, "returned": returned, "p50_ms": p50, "p95_ms": p95, "repeat": repeat})
        );
    }
    Ok(())
}
