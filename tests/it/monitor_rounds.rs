//! Monitoring driven by real sync rounds over real stores: a region that is down makes a
//! partial round (counted as failed, as in the guide), turns OFFLINE and is named in the history;
//! it comes back ONLINE and catches up at the next round. Once with the outage drill on the
//! SQLite default, once with a real PostgreSQL server stopped.

use std::time::Duration;

use dsms::config::DatabaseUrl;
use dsms::domain::VenteId;
use dsms::testkit::pg::PgCluster;
use serde_json::{Value, json};

use crate::helpers::{Backends, TestApp, config_for, spawn_app_in};

async fn stats(app: &TestApp) -> Value {
    app.get("/api/stats").await.json().await.unwrap()
}

async fn sync(app: &TestApp) -> Value {
    let response = app.http.post(app.url("/api/sync")).header("content-type", "application/json").send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// An app whose rounds are only the ones the test asks for.
async fn app_over(urls: Option<Vec<DatabaseUrl>>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    if let Some(urls) = urls {
        for (region, url) in config.regions.iter_mut().zip(urls) {
            region.url = url;
        }
    }
    config.sync_on_write = false;
    config.connect_timeout = Duration::from_millis(500);
    spawn_app_in(config, dir).await
}

/// The outage seen through the statistics, then the return.
async fn outage_and_return(app: &TestApp, region: &str, down: impl AsyncFnOnce(), up: impl AsyncFnOnce()) {
    assert_eq!(sync(app).await["status"], "success");
    let before = stats(app).await;

    down().await;
    // A sale for the region that is down is accepted elsewhere and keeps its region.
    let during = app.create_vente(region, "Vendu pendant la panne", "2500").await;
    assert_eq!(during["region"], region);
    let report = sync(app).await;
    assert_eq!(report["status"], "partial", "{report}");
    let s = stats(app).await;
    // A partial round counts as failed. A PostgreSQL region's LISTEN (starting, or losing its
    // connection) may start rounds by itself: at least ours is counted, in both totals.
    let failed = s["failedSyncs"].as_u64().unwrap() - before["failedSyncs"].as_u64().unwrap();
    assert!(failed >= 1, "a partial round counts as failed");
    assert!(s["totalSyncs"].as_u64().unwrap() - before["totalSyncs"].as_u64().unwrap() >= failed);
    assert_eq!(s["regions"][region]["status"], "OFFLINE", "{}", s["regions"]);
    assert!(s["regions"][region]["errors"].as_u64().unwrap() > before["regions"][region]["errors"].as_u64().unwrap());
    let last = &s["syncHistory"][0];
    assert_eq!(last["status"], "partial");
    assert!(last["error"].as_str().unwrap().contains(region), "{last}");
    for other in ["Dakar", "Thies", "Saint-Louis"].into_iter().filter(|r| *r != region) {
        assert_eq!(s["regions"][other]["status"], "ONLINE", "{other}");
    }

    up().await;
    let mut report = sync(app).await;
    for _ in 0..40 {
        if report["status"] == "success" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        report = sync(app).await;
    }
    assert_eq!(report["status"], "success", "{report}");
    let s = stats(app).await;
    assert_eq!(s["regions"][region]["status"], "ONLINE", "{}", s["regions"]);
    assert_eq!(s["syncHistory"][0]["status"], "success");
    assert!(s["successfulSyncs"].as_u64().unwrap() > before["successfulSyncs"].as_u64().unwrap());
    // The region caught up with what was written while it was away.
    let id: VenteId = during["id"].as_str().unwrap().parse().unwrap();
    let stores = app.monitor.stores();
    let store = stores.iter().find(|s| s.region().as_str() == region).unwrap();
    assert!(store.get(id).await.unwrap().is_some(), "{region} caught up");
}

#[tokio::test]
async fn a_drilled_region_fails_a_real_round_and_returns_online_after_the_next() {
    let app = app_over(None).await;
    let drill = |down: bool| {
        let request = app.http.post(app.url("/api/regions/thies/drill")).json(&json!({ "down": down }));
        async move { assert_eq!(request.send().await.unwrap().status(), 200) }
    };
    outage_and_return(&app, "Thies", async || drill(true).await, async || drill(false).await).await;
}

#[tokio::test]
async fn a_stopped_postgresql_region_fails_a_real_round_and_returns_online_after_the_next() {
    if crate::helpers::pg().is_none() {
        return;
    }
    let cluster = PgCluster::start_durable().unwrap();
    let url = DatabaseUrl::Postgres(cluster.create_database("saint_louis").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let urls = vec![DatabaseUrl::Sqlite(dir.path().join("dakar.db")), DatabaseUrl::Sqlite(dir.path().join("thies.db")), url];
    let app = app_over(Some(urls)).await;
    outage_and_return(&app, "Saint-Louis", async || cluster.stop_immediate().unwrap(), async || cluster.restart().unwrap()).await;
}
