//! A held-back feed is visible (issue 12): a session idle in a transaction with an id, in another
//! database of a region's PostgreSQL cluster, holds that region's feed back; past `max_feed_hold`
//! the region is WARNING with a reason naming the session's pid and database, `pending` counts the
//! rows waiting behind it, and the region is ONLINE again once the session ends.

use std::time::Duration;

use dsms::config::DatabaseUrl;
use serde_json::Value;
use sqlx::Connection as _;

use crate::helpers::{Backends, TestApp, config_for, private_cluster, spawn_app_in};

/// Probes until Dakar's card satisfies `done` (bounded), returns it.
async fn dakar_until(app: &TestApp, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        app.monitor.probe_all().await;
        let stats: Value = app.get("/api/stats").await.json().await.unwrap();
        let dakar = stats["regions"]["Dakar"].clone();
        if done(&dakar) {
            return dakar;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {dakar}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_idle_transaction_elsewhere_in_the_cluster_makes_the_region_warning_until_it_ends() {
    let Some(cluster) = private_cluster().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    let dakar_url = cluster.create_database("ventes_dakar").unwrap();
    config.regions[0].url = DatabaseUrl::Postgres(dakar_url.clone());
    config.max_feed_hold = Duration::from_secs(1);
    config.sync_on_write = false;
    let app = spawn_app_in(config, dir).await;
    dakar_until(&app, "ONLINE at first", |d| d["status"] == "ONLINE").await;

    // Another database of the same cluster: a session takes a transaction id and stays idle.
    let other = cluster.create_database("autre").unwrap();
    let mut idle = sqlx::PgConnection::connect(&other).await.unwrap();
    sqlx::query("BEGIN").execute(&mut idle).await.unwrap();
    let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()").fetch_one(&mut idle).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut idle).await.unwrap();
    // A sale written in Dakar after it: committed, but behind the held horizon.
    app.create_vente("Dakar", "Mil", "1000").await;

    let dakar = dakar_until(&app, "WARNING with the blocker named", |d| d["status"] == "WARNING").await;
    let reason = dakar["statusReason"].as_str().unwrap();
    assert!(reason.contains(&format!("processus {pid}")), "{reason}");
    assert!(reason.contains("« autre »"), "{reason}");
    assert!(reason.contains("ouverte depuis"), "the superuser sees the transaction's age: {reason}");
    assert!(dakar["pending"].as_u64().unwrap() >= 1, "the sale waits behind it: {dakar}");

    // A role without pg_monitor still sees which session it is, not how old its transaction is.
    let mut admin = sqlx::PgConnection::connect(&dakar_url).await.unwrap();
    sqlx::query("CREATE ROLE lecteur LOGIN").execute(&mut admin).await.unwrap();
    sqlx::query("GRANT SELECT ON vente TO lecteur").execute(&mut admin).await.unwrap();
    let limits = dsms::store::Limits { connect_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(5) };
    let url = dakar_url.replacen(&format!("://{}@", dsms_user(&dakar_url)), "://lecteur@", 1);
    let region = dsms::config::RegionConfig { name: app.config.regions[0].name.clone(), url: DatabaseUrl::Postgres(url) };
    let limited = dsms::store::open(&region, limits).await.unwrap();
    let hold = limited.feed_hold().await.unwrap().expect("held");
    let blocker = hold.blocker.expect("the blocking session is visible to any role");
    assert_eq!((blocker.pid, blocker.database.as_deref(), blocker.age), (pid, Some("autre"), None));
    assert!(hold.pending >= 1);

    // The session ends: the feed moves on, the region is ONLINE again.
    sqlx::query("COMMIT").execute(&mut idle).await.unwrap();
    idle.close().await.unwrap();
    let dakar = dakar_until(&app, "ONLINE once the session ended", |d| d["status"] == "ONLINE").await;
    assert!(dakar["statusReason"].is_null(), "{dakar}");
}

/// The user name in a `postgres://user@host…` URL.
fn dsms_user(url: &str) -> &str {
    url.trim_start_matches("postgres://").split('@').next().unwrap()
}
