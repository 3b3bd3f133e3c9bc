//! Server-side accounting for `--pg-stats`: `pg_stat_statements` in each region's cluster, reset
//! before a timed part and read after it, so a benchmark can say which statements took the time.
//! Owns: turning the extension on (a cluster restart) and its report. Leaves: the clusters.

use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::testkit::pg::PgCluster;

/// Statements listed per region, by total execution time.
const TOP: i64 = 10;

/// Settings that need a cluster restart: `pg_stat_statements` preloaded (`statements`), commit
/// times recorded (`commit_times`: `track_commit_timestamp`, which `pg_xact_commit_timestamp` reads).
/// Restarts the cluster when either is asked for; the extension is then created in each
/// database by `create`.
pub async fn preload(cluster: &PgCluster, statements: bool, commit_times: bool) -> anyhow::Result<()> {
    if !statements && !commit_times {
        return Ok(());
    }
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port());
    let mut conn = PgConnection::connect(&url).await?;
    if statements {
        sqlx::query("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'").execute(&mut conn).await?;
    }
    if commit_times {
        sqlx::query("ALTER SYSTEM SET track_commit_timestamp = on").execute(&mut conn).await?;
    }
    conn.close().await?;
    tokio::task::block_in_place(|| {
        cluster.stop_immediate()?;
        cluster.restart()
    })?;
    if !statements {
        return Ok(());
    }
    // The extension's own settings exist only once it is loaded.
    let mut conn = PgConnection::connect(&url).await?;
    for setting in [
        "ALTER SYSTEM SET pg_stat_statements.track_planning = on",
        "ALTER SYSTEM SET pg_stat_statements.track = 'all'",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::query(setting).execute(&mut conn).await?;
    }
    conn.close().await?;
    Ok(())
}

pub async fn create(url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

pub async fn reset(url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("SELECT pg_stat_statements_reset()").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// The statements that took the most time since the last reset, in this database.
pub async fn top(url: &str) -> anyhow::Result<serde_json::Value> {
    let mut conn = PgConnection::connect(url).await?;
    let rows: Vec<(String, i64, i64, f64, f64, i64, i64)> = sqlx::query_as(
        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 160), calls, rows, total_exec_time, total_plan_time, \
                shared_blks_hit, shared_blks_read + shared_blks_dirtied \
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND query NOT LIKE '%pg_stat_statements%' \
         ORDER BY total_exec_time + total_plan_time DESC LIMIT $1",
    )
    .bind(TOP)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    Ok(rows
        .into_iter()
        .map(|(query, calls, rows, exec, plan, hit, read_dirtied)| {
            json!({"query": query, "calls": calls, "rows": rows, "exec_ms": exec, "plan_ms": plan,
                   "mean_ms": (exec + plan) / calls.max(1) as f64, "blks_hit": hit, "blks_read_or_dirtied": read_dirtied})
        })
        .collect())
}
