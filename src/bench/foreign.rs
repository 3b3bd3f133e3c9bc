//! `dsms bench foreign`: what the foreign-write triggers cost a plain SQL writer (issue 11). One
//! region per backend (a private PostgreSQL cluster, a temporary SQLite file) holds `rows` sales;
//! single-row `UPDATE vente SET montant = … WHERE id = …` statements are timed from a plain
//! connection (the trigger stamps each row) and from a session marked as dsms's (the trigger's
//! WHEN clause skips it: the cost without trigger work). Two figures each: per statement sent
//! from the client (autocommit, round trip included), and per row inside one server-side loop
//! (PostgreSQL; the trigger's own cost, without round trips). Owns: that scenario only.

use std::time::Instant;

use serde_json::json;

use crate::config::DatabaseUrl;
use crate::testkit::pg::PgCluster;

pub async fn run(rows: u64, updates: u32) -> anyhow::Result<()> {
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await??;
    let url = cluster.create_database("foreign")?;
    let store = super::open(&DatabaseUrl::Postgres(url.clone())).await?;
    super::fill(store.as_ref(), rows).await?;
    store.analyze().await?;
    let ids = sample_ids_pg(&url, updates).await?;
    let plain = sqlx::PgPool::connect(&url).await?;
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    let marked = sqlx::PgPool::connect_with(options.options([("dsms.writer", "bench")])).await?;
    for (label, pool) in [("with_trigger", &plain), ("without_trigger", &marked), ("with_trigger", &plain)] {
        let per_statement = time_statements_pg(pool, &ids).await?;
        let per_row = time_loop_pg(pool, &ids).await?;
        emit("postgres", label, rows, ids.len(), per_statement, Some(per_row));
    }

    let dir = super::tempdir()?;
    let path = dir.join("foreign.db");
    let store = super::open(&DatabaseUrl::Sqlite(path.clone())).await?;
    super::fill(store.as_ref(), rows).await?;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM vente ORDER BY random() LIMIT ?").bind(i64::from(updates)).fetch_all(&pool).await?;
    for label in ["with_trigger", "without_trigger", "with_trigger"] {
        // Without: the clock row's mark (what dsms's own transactions set) makes the triggers skip.
        sqlx::query("UPDATE dsms_clock SET dsms = ?").bind(i64::from(label == "without_trigger")).execute(&pool).await?;
        let started = Instant::now();
        for (i, id) in ids.iter().enumerate() {
            sqlx::query("UPDATE vente SET montant = ? WHERE id = ?").bind(100 + i64::try_from(i)?).bind(id).execute(&pool).await?;
        }
        let per_statement = started.elapsed().as_secs_f64() * 1e6 / ids.len().max(1) as f64;
        sqlx::query("UPDATE dsms_clock SET dsms = 0").execute(&pool).await?;
        emit("sqlite", label, rows, ids.len(), per_statement, None);
    }
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn sample_ids_pg(url: &str, n: u32) -> anyhow::Result<Vec<uuid::Uuid>> {
    let pool = sqlx::PgPool::connect(url).await?;
    let ids = sqlx::query_scalar("SELECT id FROM vente ORDER BY random() LIMIT $1").bind(i64::from(n)).fetch_all(&pool).await?;
    pool.close().await;
    Ok(ids)
}

/// Microseconds per autocommit single-row UPDATE sent from the client.
async fn time_statements_pg(pool: &sqlx::PgPool, ids: &[uuid::Uuid]) -> anyhow::Result<f64> {
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        sqlx::query("UPDATE vente SET montant = $1 WHERE id = $2").bind(100 + i64::try_from(i)?).bind(id).execute(&mut *conn).await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / ids.len().max(1) as f64)
}

/// Microseconds per single-row UPDATE run by the server in one loop (no round trip, one commit).
async fn time_loop_pg(pool: &sqlx::PgPool, ids: &[uuid::Uuid]) -> anyhow::Result<f64> {
    let mut conn = pool.acquire().await?;
    let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
    sqlx::query("SELECT set_config('dsms.bench_ids', $1, false)").bind(list.join(",")).execute(&mut *conn).await?;
    let started = Instant::now();
    sqlx::query(
        "DO $$ DECLARE i uuid; n int := 0; BEGIN \
           FOR i IN SELECT unnest(string_to_array(current_setting('dsms.bench_ids'), ','))::uuid LOOP \
             n := n + 1; UPDATE vente SET montant = 200 + n WHERE id = i; \
           END LOOP; END $$",
    )
    .execute(&mut *conn)
    .await?;
    Ok(started.elapsed().as_secs_f64() * 1e6 / ids.len().max(1) as f64)
}

fn emit(backend: &str, label: &str, rows: u64, updates: usize, per_statement_us: f64, per_row_us: Option<f64>) {
    let load = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());
    println!(
        "{}",
        json!({
            "bench": "foreign.update", "backend": backend, "case": label, "rows": rows, "updates": updates,
            "us_per_statement": per_statement_us, "us_per_row_server_loop": per_row_us, "load_1m": load,
            "note": "single-row UPDATE vente SET montant = … WHERE id = … from a plain connection (with_trigger) or a session marked as dsms's (without_trigger: the WHEN clause skips the trigger); per statement = autocommit from the client, round trip included; per row server loop = one DO block, one commit",
        })
    );
}
