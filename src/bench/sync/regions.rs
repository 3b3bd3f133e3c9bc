//! `dsms bench sync regions`: how a round's work grows with the number of regions (issue 13).
//! For each count: N regions in service, `--rows` new sales written into Dakar while no round
//! runs, then the catch-up round(s), the round after it, and an idle round, each with the rows it
//! read, skipped (held already, apply log) and applied, its time, and its time per change applied
//! (`ms_per_change`: flat as regions are added, issue 13). Owns: that scenario.
//! Leaves: replication (`sync::engine`), databases (`testkit::pg`, `store::open`).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sqlx::Connection;

use super::fixture::{limits, new_sales, open_region, rounds_until, settle};
use crate::domain::RegionName;
use crate::store::postgres::POOL_CONNECTIONS;
use crate::store::{self, Store};
use crate::sync::engine::{Engine, EngineOptions};
use crate::sync::report::RoundReport;
use crate::testkit::pg::PgCluster;

/// Senegal's 14 regions, Dakar first, then two cities: up to 16 regions, as many as a
/// configuration may name.
const NAMES: [&str; 16] = [
    "Dakar",
    "Thies",
    "Saint-Louis",
    "Ziguinchor",
    "Kaolack",
    "Tambacounda",
    "Kolda",
    "Matam",
    "Louga",
    "Fatick",
    "Kaffrine",
    "Kedougou",
    "Sedhiou",
    "Diourbel",
    "Mbour",
    "Rufisque",
];

/// Sales every region holds before the new ones are written.
const IN_SERVICE: u64 = 1_000;

/// Runs the scenario for each count in `counts`, on PostgreSQL (one private cluster, a database
/// per region) or SQLite (a file per region).
pub async fn run(counts: &[usize], rows: u64, batch_size: u32, postgres: bool) -> anyhow::Result<()> {
    for &n in counts {
        anyhow::ensure!((2..=NAMES.len()).contains(&n), "--regions : entre 2 et {} régions", NAMES.len());
        let dir = crate::bench::tempdir()?;
        let cluster = if postgres { Some(cluster_for(n).await?) } else { None };
        let mut stores: Vec<Arc<dyn Store>> = Vec::with_capacity(n);
        for name in &NAMES[..n] {
            stores.push(match &cluster {
                Some(cluster) => {
                    let url = tokio::task::block_in_place(|| cluster.create_database(&name.to_lowercase().replace('-', "_")))?;
                    open_region(name, &url).await?
                }
                None => {
                    let region = crate::config::RegionConfig {
                        name: RegionName::new(name),
                        url: crate::config::DatabaseUrl::Sqlite(dir.join(format!("{name}.db"))),
                    };
                    let store = store::open(&region, limits()).await?;
                    store.migrate().await?;
                    store
                }
            });
        }
        let engine = Engine::new(stores.clone(), EngineOptions { batch_size, ..EngineOptions::default() });
        write(&stores[0], IN_SERVICE).await?;
        rounds_until(&engine, 20, async |_| holds(&stores, IN_SERVICE).await).await?;
        settle(&engine).await?;

        let seed = Instant::now();
        write(&stores[0], rows).await?;
        let seed_s = seed.elapsed().as_secs_f64();
        let catch_up = rounds_until(&engine, 20, async |_| holds(&stores, IN_SERVICE + rows).await).await?;
        let next = engine.round().await;
        let idle = engine.round().await;
        let needed = (n as u64 - 1) * rows;
        let read = catch_up.rows_read();
        let catch_up_rounds: Vec<serde_json::Value> = catch_up.reports.iter().map(line).collect();
        super::emit(json!({
            "bench": "sync.regions", "backend": if postgres { "postgres" } else { "sqlite" }, "regions": n, "rows": rows,
            "batch_size": batch_size,
            "catch_up": {"seconds": catch_up.seconds(), "rounds": catch_up.reports.len(), "rows_read": read,
                "rows_skipped": catch_up.reports.iter().map(skipped).sum::<u64>(), "rows_applied": catch_up.rows_applied(),
                "rows_needed": needed, "read_per_needed": read as f64 / needed as f64,
                "ms_per_change": per_change(catch_up.seconds() * 1000.0, catch_up.rows_applied()),
                "per_round": catch_up_rounds},
            "next_round": line(&next), "idle_round": line(&idle),
            "target": "round one ≤ 1.1 × rows needed, the rounds after ≤ 1 % of that",
            "target_met": read * 10 <= needed * 11 && (next.pairs.iter().map(|p| p.rows_read).sum::<u64>() + idle.pairs.iter().map(|p| p.rows_read).sum::<u64>()) * 100 <= needed,
            "untimed": format!("{IN_SERVICE} sales written into Dakar and replicated first, settling rounds, seeding Dakar with write_many in batches of 10,000 ({seed_s:.1} s) while no round runs, row counts between rounds"),
            "setup": if postgres { "one private PostgreSQL cluster, one database per region (regions share its 2 cores and its transaction ids)" } else { "one SQLite file per region" },
        }));
        drop(engine);
        drop(stores);
        drop(cluster);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// A cluster that can hold every region's pool at once: here the regions share one server,
/// where each would have its own (16 pools of 16 connections exceed the default 200).
async fn cluster_for(regions: usize) -> anyhow::Result<PgCluster> {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await??;
    let needed = regions * POOL_CONNECTIONS as usize + 20;
    if needed > 200 {
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port());
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::query(&format!("ALTER SYSTEM SET max_connections = {needed}")).execute(&mut conn).await?;
        conn.close().await?;
        tokio::task::block_in_place(|| {
            cluster.stop_immediate()?;
            cluster.restart()
        })?;
    }
    Ok(cluster)
}

fn skipped(report: &RoundReport) -> u64 {
    report.pairs.iter().map(|p| p.rows_skipped).sum()
}

/// Milliseconds per change applied (`None` when none was).
fn per_change(ms: f64, applied: u64) -> Option<f64> {
    (applied > 0).then(|| ms / applied as f64)
}

fn line(report: &RoundReport) -> serde_json::Value {
    let ms = report.duration.as_secs_f64() * 1000.0;
    json!({
        "ms": ms,
        "ms_per_change": per_change(ms, report.rows_applied()),
        "rows_read": report.pairs.iter().map(|p| p.rows_read).sum::<u64>(),
        "rows_skipped": skipped(report),
        "rows_applied": report.rows_applied(),
        "status": report.status,
    })
}

async fn write(store: &Arc<dyn Store>, rows: u64) -> anyhow::Result<()> {
    let mut sales = new_sales(rows).peekable();
    while sales.peek().is_some() {
        let batch: Vec<_> = sales.by_ref().take(10_000).collect();
        store.write_many(&batch, chrono::Utc::now()).await?;
    }
    Ok(())
}

async fn holds(stores: &[Arc<dyn Store>], rows: u64) -> anyhow::Result<bool> {
    for store in stores {
        if store.count_live().await? != rows {
            return Ok(false);
        }
    }
    Ok(true)
}
