//! Self-monitoring: the guide's statistics through the API, persistence across restarts, region
//! health (hand-made rounds, the outage drill, a real PostgreSQL outage), analytics and its cache,
//! Prometheus metrics.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Days, Utc};
use dsms::app::App;
use dsms::domain::RegionName;
use dsms::sync::report::{PairOutcome, RegionOutcome, RoundReport, RoundStatus};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::helpers::{Backends, TestApp, config_for, spawn_app, spawn_app_in};

async fn sqlite_app() -> TestApp {
    spawn_app(Backends::Sqlite).await.unwrap()
}

/// Without rounds after writes: only the rounds a test records itself are counted.
async fn sqlite_app_without_rounds() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.sync_on_write = false;
    spawn_app_in(config, dir).await
}

async fn stats(app: &TestApp) -> Value {
    let response = app.get("/api/stats").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn region(app: &TestApp, name: &str) -> RegionName {
    app.ventes.regions().resolve(name).unwrap().clone()
}

/// A round as the engine would report it: `failed` regions unreachable with a cause.
fn round(app: &TestApp, status: RoundStatus, failed: &[&str], rows_applied: u64) -> RoundReport {
    let regions = app
        .ventes
        .regions()
        .iter()
        .map(|r| {
            let down = failed.iter().any(|f| app.ventes.regions().resolve(f) == Some(r));
            RegionOutcome {
                region: r.clone(),
                error: down.then(|| "connexion refusée".to_owned()),
                latency: (!down).then(|| Duration::from_millis(2)),
                rows_applied: if down { 0 } else { rows_applied },
                pending: 0,
                round_trips: if down { 0 } else { 3 },
            }
        })
        .collect();
    let pairs = vec![PairOutcome {
        source: region(app, "Dakar"),
        target: region(app, "Thies"),
        rows_read: rows_applied,
        rows_skipped: 0,
        rows_applied,
        error: None,
    }];
    RoundReport {
        started_at: Utc::now(),
        duration: Duration::from_micros(234_400),
        status,
        regions,
        pairs,
        conflicts: 1,
        restores: Vec::new(),
    }
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: &Value) -> reqwest::Response {
    app.http.request(method, app.url(path)).json(body).send().await.unwrap()
}

#[tokio::test]
async fn crud_counters_follow_the_api_exactly() {
    let app = sqlite_app().await;
    let a = app.create_vente("Dakar", "Mil", "1500").await;
    app.create_vente("Thies", "Riz", "2000.50").await;
    let id = uuid::Uuid::now_v7().to_string();
    let body = json!({"id": id, "produit": "Sucre", "montant": 900, "dateVente": "2026-01-10", "region": "Saint-Louis"});
    assert_eq!(app.post_json("/api/ventes", &body).await.status(), 201);
    assert_eq!(app.post_json("/api/ventes", &body).await.status(), 201, "an idempotent replay writes nothing");
    assert_eq!(app.post_json("/api/ventes", &json!({"produit": ""})).await.status(), 422);
    let a_id = a["id"].as_str().unwrap();
    let update = json!({"produit": "Mil rouge", "montant": "1600", "dateVente": "2026-01-15", "region": "Dakar"});
    assert_eq!(send(&app, reqwest::Method::PUT, &format!("/api/ventes/{a_id}"), &update).await.status(), 200);
    assert_eq!(app.http.delete(app.url(&format!("/api/ventes/{id}"))).send().await.unwrap().status(), 204);
    assert_eq!(app.http.delete(app.url(&format!("/api/ventes/{id}"))).send().await.unwrap().status(), 404);

    let s = stats(&app).await;
    assert_eq!((s["ventesCrees"].as_u64(), s["ventesModifiees"].as_u64(), s["ventesSupprimees"].as_u64()), (Some(3), Some(1), Some(1)));
    assert_eq!(s["totalVentes"], 2);
    app.create_vente("Dakar", "Mil", "1").await;
    assert_eq!(stats(&app).await["totalVentes"], 3, "totalVentes follows writes at once");
}

#[tokio::test]
async fn the_stats_json_has_the_guides_names_in_its_order() {
    let app = sqlite_app().await;
    app.monitor.record_round(&round(&app, RoundStatus::Partial, &["Thies"], 0));
    let text = app.get("/api/stats").await.text().await.unwrap();
    let guide = [
        "totalSyncs",
        "successfulSyncs",
        "failedSyncs",
        "successRate",
        "lastSyncTime",
        "lastSyncDuration",
        "totalVentes",
        "ventesCrees",
        "ventesModifiees",
        "ventesSupprimees",
        "regions",
        "syncHistory",
    ];
    let positions: Vec<usize> = guide.iter().map(|k| text.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k} missing"))).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "the guide's order: {text}");
    let s: Value = serde_json::from_str(&text).unwrap();
    for key in &guide[..10] {
        let value = &s[key];
        match *key {
            "successRate" => assert!(value.is_f64() || value.is_u64(), "{key}"),
            "lastSyncTime" => assert!(value.as_str().unwrap().ends_with('Z'), "ISO-8601 UTC: {value}"),
            _ => assert!(value.is_u64(), "{key}: {value}"),
        }
    }
    assert_eq!(s["successRate"], 0.0);
    assert_eq!(s["lastSyncDuration"], 234);
    let names = ["Dakar", "Thies", "Saint-Louis"];
    let at = |name: &str| text.find(&format!("\"{name}\":{{")).unwrap();
    assert!(at(names[0]) < at(names[1]) && at(names[1]) < at(names[2]), "configuration order");
    for name in names {
        let r = &s["regions"][name];
        for (key, kind) in [
            ("status", "string"),
            ("errors", "number"),
            ("lastAccess", "string"),
            ("lastError", "string|null"),
            ("statusReason", "string|null"),
            ("ventes", "number"),
            ("pending", "number|null"),
            ("latencyMs", "number|null"),
            ("clockOffsetMs", "number|null"),
            ("quarantined", "number|null"),
            ("drill", "boolean"),
            ("backend", "string"),
        ] {
            let found = match &r[key] {
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "boolean",
                Value::Null => "null",
                _ => "other",
            };
            assert!(kind.split('|').any(|k| k == found), "{name}.{key} is {found}: {r}");
        }
        assert_eq!(r.as_object().unwrap().len(), 12, "{r}");
    }
    assert_eq!(s["regions"]["Thies"]["status"], "OFFLINE");
    assert_eq!(s["regions"]["Dakar"]["status"], "ONLINE");
    let entry = &s["syncHistory"][0];
    let keys: HashSet<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, HashSet::from(["timestamp", "status", "duration", "error", "rowsApplied", "conflicts"]));
    assert_eq!((entry["status"].as_str(), entry["duration"].as_u64()), (Some("partial"), Some(234)));
    assert_eq!(entry["error"], "Thies : connexion refusée");
    assert_eq!(entry["rowsApplied"], json!({"Dakar": 0, "Thies": 0, "Saint-Louis": 0}));
}

#[tokio::test]
async fn a_partial_round_makes_its_region_offline_until_a_successful_one() {
    let app = sqlite_app().await;
    assert_eq!(stats(&app).await["regions"]["Thies"]["status"], "ONLINE", "probed at start-up");
    app.monitor.record_round(&round(&app, RoundStatus::Partial, &["Thies"], 0));
    let s = stats(&app).await;
    assert_eq!((s["totalSyncs"].as_u64(), s["successfulSyncs"].as_u64(), s["failedSyncs"].as_u64()), (Some(1), Some(0), Some(1)));
    let thies = &s["regions"]["Thies"];
    assert_eq!((thies["status"].as_str(), thies["errors"].as_u64()), (Some("OFFLINE"), Some(1)));
    assert_eq!(thies["lastError"], "connexion refusée");
    assert_eq!(s["syncHistory"][0]["error"], "Thies : connexion refusée");
    assert_eq!(s["regions"]["Dakar"]["status"], "ONLINE");

    app.monitor.record_round(&round(&app, RoundStatus::Success, &[], 4));
    let s = stats(&app).await;
    assert_eq!((s["totalSyncs"].as_u64(), s["successfulSyncs"].as_u64(), s["successRate"].as_f64()), (Some(2), Some(1), Some(50.0)));
    assert_eq!(s["regions"]["Thies"]["status"], "ONLINE");
    assert_eq!(s["regions"]["Thies"]["errors"], 1, "errors are a count, not a state");
    assert_eq!(s["syncHistory"][0]["status"], "success");
    assert_eq!(s["syncHistory"][0]["error"], Value::Null);
    assert_eq!(s["syncHistory"][0]["rowsApplied"]["Thies"], 4);
    assert_eq!(s["syncHistory"][1]["status"], "partial", "newest first");

    let mut lagging = round(&app, RoundStatus::Success, &[], 0);
    lagging.regions[2].pending = 50_000;
    app.monitor.record_round(&lagging);
    let s = stats(&app).await;
    assert_eq!(s["regions"]["Saint-Louis"]["status"], "WARNING");
    assert_eq!(s["regions"]["Saint-Louis"]["pending"], 50_000);
    assert!(s["regions"]["Saint-Louis"]["statusReason"].as_str().unwrap().contains("retard"));
}

#[tokio::test]
async fn the_history_keeps_the_newest_rounds_and_shows_ten() {
    let app = sqlite_app().await;
    for _ in 0..12 {
        app.monitor.record_round(&round(&app, RoundStatus::Success, &[], 0));
    }
    assert_eq!(stats(&app).await["syncHistory"].as_array().unwrap().len(), 10);
    let all: Vec<Value> = app.get("/api/stats/history?limit=1000").await.json().await.unwrap();
    assert_eq!(all.len(), 12);
    let two: Vec<Value> = app.get("/api/stats/history?limit=2").await.json().await.unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(app.get("/api/stats/history?limit=0").await.status(), 422);
    assert_eq!(app.get("/api/stats/history?limit=1001").await.status(), 422);
}

#[tokio::test]
async fn statistics_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.sync_on_write = false; // only the rounds this test records

    let app = spawn_app_in(config.clone(), dir).await;
    app.create_vente("Dakar", "Mil", "1500").await;
    let id = app.create_vente("Thies", "Riz", "10").await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.http.delete(app.url(&format!("/api/ventes/{id}"))).send().await.unwrap().status(), 204);
    app.monitor.record_round(&round(&app, RoundStatus::Partial, &["Saint-Louis"], 0));
    app.monitor.record_round(&round(&app, RoundStatus::Success, &[], 1));
    let before = stats(&app).await;
    let dir = app.stop().await;

    let app = spawn_app_in(config, dir).await;
    let after = stats(&app).await;
    for key in ["totalSyncs", "successfulSyncs", "failedSyncs", "successRate", "lastSyncTime", "lastSyncDuration"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    for key in ["totalVentes", "ventesCrees", "ventesModifiees", "ventesSupprimees", "syncHistory"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(after["ventesCrees"], 2);
    let (b, a) = (&before["regions"]["Saint-Louis"], &after["regions"]["Saint-Louis"]);
    assert_eq!((a["errors"].as_u64(), &a["lastError"]), (Some(1), &b["lastError"]));
    assert_eq!(after["syncHistory"].as_array().unwrap().len(), 2);

    // Counting goes on from the saved values.
    app.monitor.record_round(&round(&app, RoundStatus::Success, &[], 0));
    assert_eq!(stats(&app).await["totalSyncs"], 3);
}

#[tokio::test]
async fn a_drill_takes_a_region_down_and_back_with_fail_over() {
    let app = sqlite_app().await;
    let before = app.create_vente("Dakar", "Mil", "1500").await;
    // Its pushes leave after the answer: the other regions hold it once they are done.
    app.ventes.settled().await;
    let drill = |name: &str, body: Value| {
        let request = app.http.post(app.url(&format!("/api/regions/{name}/drill"))).json(&body);
        async move { request.send().await.unwrap() }
    };

    let response = drill("DAKAR", json!({"down": true})).await;
    assert_eq!(response.status(), 200);
    let r: Value = response.json().await.unwrap();
    assert_eq!((r["region"].as_str(), r["status"].as_str(), r["drill"].as_bool()), (Some("Dakar"), Some("OFFLINE"), Some(true)));
    assert!(r["statusReason"].as_str().unwrap().contains("panne simulée"), "{r}");

    // Writes addressed to Dakar fail over; the sale keeps its region. Reads go on.
    let during = app.create_vente("Dakar", "Riz", "2000").await;
    assert_eq!(during["region"], "Dakar");
    let id = during["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/ventes/{id}")).await.status(), 200);
    assert_eq!(app.get(&format!("/api/ventes/{}", before["id"].as_str().unwrap())).await.status(), 200);
    let page: Value = app.get("/api/ventes").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let s = stats(&app).await;
    let dakar = &s["regions"]["Dakar"];
    assert_eq!((dakar["status"].as_str(), dakar["drill"].as_bool()), (Some("OFFLINE"), Some(true)));
    assert!(dakar["errors"].as_u64().unwrap() >= 1);
    assert_eq!(s["regions"]["Thies"]["drill"], false);
    assert_eq!(s["totalVentes"], 2, "counted in the first reachable region");
    assert_eq!(app.get("/readyz").await.status(), 200);

    let r: Value = drill("dakar", json!({"down": false})).await.json().await.unwrap();
    assert_eq!((r["status"].as_str(), r["drill"].as_bool()), (Some("ONLINE"), Some(false)));
    assert_eq!(stats(&app).await["regions"]["Dakar"]["status"], "ONLINE");

    assert_eq!(drill("Ziguinchor", json!({"down": true})).await.status(), 404);
    assert_eq!(drill("Thies", json!({"down": "yes"})).await.status(), 422);
    assert_eq!(drill("Thies", json!({})).await.status(), 422);
    assert_eq!(drill("Thies", json!({"down": true, "extra": 1})).await.status(), 422);
    let text = app.http.post(app.url("/api/regions/Thies/drill")).body("down").send().await.unwrap();
    assert_eq!(text.status(), 415);
    assert_eq!(stats(&app).await["regions"]["Thies"]["drill"], false, "refused toggles change nothing");

    for name in ["Dakar", "Thies", "Saint-Louis"] {
        assert_eq!(drill(name, json!({"down": true})).await.status(), 200);
    }
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.get("/api/analytics").await.status(), 503);
    assert_eq!(stats(&app).await["totalVentes"], 2, "the last known count when no region answers");
}

#[tokio::test]
async fn a_stopped_postgresql_region_goes_offline_and_comes_back() {
    let Some(cluster) = crate::helpers::private_cluster().await else { return };
    let cluster = Arc::new(cluster);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.regions[0].url = dsms::config::DatabaseUrl::Postgres(cluster.create_database("dakar").unwrap());
    config.probe_interval = Some(Duration::from_millis(100));
    let app = spawn_app_in(config, dir).await;
    assert_eq!(stats(&app).await["regions"]["Dakar"]["backend"], "postgres");
    assert_eq!(wait_for_status(&app, "Dakar", "ONLINE").await["clockOffsetMs"].as_i64().map(|ms| ms.abs() < 1000), Some(true));

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop_immediate()).await.unwrap().unwrap();
    let dakar = wait_for_status(&app, "Dakar", "OFFLINE").await;
    assert!(dakar["lastError"].as_str().is_some_and(|e| e.contains("Dakar")), "{dakar}");
    let sale = app.create_vente("Dakar", "Mil", "1500").await;
    assert_eq!(sale["region"], "Dakar", "written elsewhere while Dakar is down");

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.restart()).await.unwrap().unwrap();
    wait_for_status(&app, "Dakar", "ONLINE").await;
}

/// Polls `/api/stats` until `region` has `status` (the probe loop runs every 100 ms); bounded.
async fn wait_for_status(app: &TestApp, region: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = stats(app).await;
        if s["regions"][region]["status"] == status {
            return s["regions"][region].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{region} never became {status}: {}", s["regions"][region]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_region_whose_clock_is_off_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(Backends::Sqlite, dir.path()).unwrap();
    // Our clock 5 s ahead: every region's database clock looks 5 s behind.
    let ahead: dsms::domain::version::WallClock = Arc::new(|| Utc::now() + chrono::TimeDelta::seconds(5));
    let app = App::build_with_clock(config, ahead).await.unwrap();
    let monitor = app.monitor();
    let stats = monitor.stats().await;
    for region in &stats.regions {
        assert_eq!(region.status, dsms::monitor::health::Status::Warning, "{region:?}");
        assert!(region.reason.as_deref().unwrap().starts_with("horloge décalée de -5,0 s"), "{region:?}");
        assert!(region.clock_offset.unwrap().num_milliseconds() < -4900);
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Figures {
    count: u64,
    total: Box<RawValue>,
    average: Box<RawValue>,
    today: Today,
    recent: Vec<Value>,
    per_day: Vec<Day>,
}

#[derive(Debug, Deserialize)]
struct Today {
    count: u64,
    total: Box<RawValue>,
}

#[derive(Debug, Deserialize)]
struct Day {
    date: String,
    count: u64,
    total: Box<RawValue>,
}

#[derive(Debug, Deserialize)]
struct AnalyticsBody {
    source: String,
    today: String,
    regions: HashMap<String, Figures>,
    all: Figures,
}

async fn analytics(app: &TestApp) -> (AnalyticsBody, String) {
    let response = app.get("/api/analytics").await;
    assert_eq!(response.status(), 200);
    let cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
    (response.json().await.unwrap(), cache)
}

#[tokio::test]
async fn analytics_are_exact_and_the_cache_empties_on_every_change() {
    // The rounds that empty the cache are the ones this test records: a round after a write that
    // applied a row (a push that lost a race for SQLite's lock) would empty it at any moment.
    let app = sqlite_app_without_rounds().await;
    let today = Utc::now().date_naive();
    let days_ago = |n: u64| today.checked_sub_days(Days::new(n)).unwrap().to_string();
    for (region, montant, date) in [
        ("Dakar", "750000.50", today.to_string()),
        ("Dakar", "1200", days_ago(2)),
        ("Dakar", "0.05", days_ago(40)),
        ("Thies", "10", days_ago(29)),
        ("Thies", "10", days_ago(30)),
        ("Thies", "10.01", today.to_string()),
    ] {
        let body = json!({"produit": "Mil", "montant": montant, "dateVente": date, "region": region});
        assert_eq!(app.post_json("/api/ventes", &body).await.status(), 201);
    }
    let (a, cache) = analytics(&app).await;
    assert_eq!(cache, "miss");
    assert_eq!((a.source.as_str(), a.today.clone()), ("Dakar", today.to_string()));
    let dakar = &a.regions["Dakar"];
    assert_eq!((dakar.count, dakar.total.get(), dakar.average.get()), (3, "751200.55", "250400.18"));
    assert_eq!((dakar.today.count, dakar.today.total.get()), (1, "750000.50"));
    assert_eq!(dakar.recent.len(), 3);
    assert_eq!(dakar.recent[0]["montant"].to_string(), "0.05", "newest write first");
    let thies = &a.regions["Thies"];
    assert_eq!((thies.count, thies.total.get(), thies.average.get()), (3, "30.01", "10.00"));
    assert_eq!(thies.per_day.len(), 30);
    assert_eq!((thies.per_day[0].date.clone(), thies.per_day[0].count, thies.per_day[0].total.get()), (days_ago(29), 1, "10.00"));
    assert_eq!(thies.per_day.iter().map(|d| d.count).sum::<u64>(), 2, "the 30-day window");
    let empty = &a.regions["Saint-Louis"];
    assert_eq!((empty.count, empty.total.get(), empty.average.get(), empty.per_day.len()), (0, "0.00", "0.00", 30));
    assert_eq!((a.all.count, a.all.total.get(), a.all.average.get()), (6, "751230.56", "125205.09"));
    assert_eq!((a.all.today.count, a.all.today.total.get()), (2, "750010.51"));
    assert_eq!(a.all.recent.len(), 6);
    assert_eq!(a.all.per_day.last().unwrap().total.get(), "750010.51");

    assert_eq!(analytics(&app).await.1, "hit");
    app.create_vente("Saint-Louis", "Riz", "99.99").await;
    let (a, cache) = analytics(&app).await;
    assert_eq!((cache.as_str(), a.regions["Saint-Louis"].count, a.regions["Saint-Louis"].total.get()), ("miss", 1, "99.99"));
    assert_eq!(analytics(&app).await.1, "hit");
    app.monitor.record_round(&round(&app, RoundStatus::Success, &[], 0));
    assert_eq!(analytics(&app).await.1, "hit", "a round that applied nothing changes nothing");
    app.monitor.record_round(&round(&app, RoundStatus::Success, &[], 3));
    assert_eq!(analytics(&app).await.1, "miss", "a round that applied rows empties the cache");
}

#[tokio::test]
async fn analytics_agree_on_postgresql() {
    let Some(app) = spawn_app(Backends::Postgres).await else { return };
    for (region, montant) in [("Dakar", "750000.50"), ("Dakar", "0.05"), ("Thies", "10.01")] {
        let body = json!({"produit": "Mil", "montant": montant, "dateVente": Utc::now().date_naive().to_string(), "region": region});
        assert_eq!(app.post_json("/api/ventes", &body).await.status(), 201);
    }
    let (a, _) = analytics(&app).await;
    let dakar = &a.regions["Dakar"];
    assert_eq!((dakar.count, dakar.total.get(), dakar.average.get()), (2, "750000.55", "375000.28"));
    assert_eq!((dakar.today.count, dakar.per_day.last().unwrap().total.get()), (2, "750000.55"));
    assert_eq!((a.all.count, a.all.total.get()), (3, "750010.56"));
}

#[tokio::test]
async fn metrics_follow_the_prometheus_text_format() {
    let app = sqlite_app_without_rounds().await;
    let sale = app.create_vente("Dakar", "Mil", "1500").await;
    let id = sale["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/ventes/{id}")).await.status(), 200);
    assert_eq!(app.get("/no/such/page").await.status(), 404);
    app.get("/api/analytics").await;
    app.get("/api/analytics").await;
    app.monitor.record_round(&round(&app, RoundStatus::Partial, &["Thies"], 2));

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    let samples = parse_exposition(&text);
    let value = |name: &str, labels: &str| samples.get(&(name.to_owned(), labels.to_owned())).copied();
    assert_eq!(value("dsms_sync_rounds_total", r#"status="partial""#), Some(1.0));
    assert_eq!(value("dsms_sync_rounds_total", r#"status="success""#), Some(0.0));
    assert_eq!(value("dsms_sync_round_duration_seconds_count", ""), Some(1.0));
    assert_eq!(value("dsms_sync_rows_applied_total", r#"source="Dakar",target="Thies""#), Some(2.0));
    assert_eq!(value("dsms_conflicts_total", ""), Some(1.0));
    assert_eq!(value("dsms_region_up", r#"region="Thies""#), Some(0.0));
    assert_eq!(value("dsms_region_up", r#"region="Dakar""#), Some(1.0));
    assert_eq!(value("dsms_region_lag_rows", r#"region="Dakar""#), Some(0.0));
    assert!(value("dsms_region_clock_offset_seconds", r#"region="Saint-Louis""#).is_some_and(|s| s.abs() < 1.0));
    assert_eq!(value("dsms_http_requests_total", r#"method="GET",route="/api/ventes/{id}",status="200""#), Some(1.0));
    assert_eq!(value("dsms_http_requests_total", r#"method="POST",route="/api/ventes",status="201""#), Some(1.0));
    assert_eq!(value("dsms_http_requests_total", r#"method="GET",route="unmatched",status="404""#), Some(1.0));
    assert_eq!(value("dsms_http_request_duration_seconds_count", r#"method="GET",route="/api/ventes/{id}""#), Some(1.0));
    assert_eq!(value("dsms_cache_misses_total", r#"cache="analytics""#), Some(1.0));
    assert_eq!(value("dsms_cache_hits_total", r#"cache="analytics""#), Some(1.0));
    assert!(!text.contains(id), "raw URLs never become labels");
    promtool_check(&text);
}

/// `promtool check metrics` (Debian package `prometheus`) when installed: the reference linter.
fn promtool_check(text: &str) {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: the exposition was checked by the test's own parser only");
        return;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool: {report}");
}

/// Parses the text exposition format strictly enough to catch mistakes: every sample belongs to a
/// family declared by `# TYPE` (histograms: `_bucket`, `_sum`, `_count`) with a `# HELP`, names and
/// labels are well formed, values parse. Returns `(name, labels) → value`.
fn parse_exposition(text: &str) -> HashMap<(String, String), f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps = HashSet::new();
    let mut samples = HashMap::new();
    let valid_name = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helps.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
            assert!(helps.contains(name), "HELP before TYPE: {line}");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "declared twice: {line}");
        } else {
            assert!(!line.starts_with('#'), "unknown comment: {line}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.strip_suffix('}').unwrap_or_else(|| panic!("{line}"))),
                None => (series, ""),
            };
            assert!(valid_name(name), "{line}");
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                assert!(valid_name(key) && quoted.starts_with('"'), "{line}");
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|k| k == "histogram")))
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample without # TYPE: {line}");
            if name.ends_with("_bucket") {
                assert!(labels.contains("le=\""), "{line}");
            }
            let labels = labels.split(',').filter(|l| !l.starts_with("le=")).collect::<Vec<_>>().join(",");
            if !name.ends_with("_bucket") {
                samples.insert((name.to_owned(), labels), value);
            }
        }
    }
    // 11 (rows read among them; rows skipped shows once a round skipped some), the quarantine and
    // clock-skew gauges, the restore counter and the round trips.
    assert_eq!(types.len(), 16, "{types:?}");
    samples
}

#[tokio::test]
async fn the_openapi_document_describes_the_monitoring_api() {
    let app = sqlite_app().await;
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    for path in ["/api/stats", "/api/stats/history", "/api/analytics", "/api/regions/{name}/drill", "/metrics", "/readyz"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    let stats = &doc["components"]["schemas"]["StatsJson"]["properties"];
    for key in
        ["totalSyncs", "successRate", "lastSyncTime", "lastSyncDuration", "totalVentes", "ventesSupprimees", "regions", "syncHistory"]
    {
        assert!(stats[key].is_object(), "{key}");
    }
    assert_eq!(stats["regions"]["additionalProperties"]["$ref"], "#/components/schemas/RegionJson");
    // Every member is always present (null when unknown): all are required.
    for schema in ["StatsJson", "RegionJson", "HistoryJson"] {
        let s = &doc["components"]["schemas"][schema];
        let required: HashSet<&str> = s["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let properties: HashSet<&str> = s["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(required, properties, "{schema}");
    }
    assert_eq!(doc["components"]["schemas"]["StatusJson"]["enum"], json!(["ONLINE", "WARNING", "OFFLINE"]));
}
