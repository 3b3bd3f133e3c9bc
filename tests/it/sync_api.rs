//! Replication as a user drives it: `POST /api/sync`, `GET /api/conflicts`, rounds after writes,
//! wake-ups from other processes, `dsms sync` and `dsms verify`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use dsms::domain::LocalWrite;
use dsms::domain::VenteId;
use dsms::sync::report::RoundReport;
use dsms::sync::scheduler::RoundListener;
use serde_json::{Value, json};

use crate::helpers::{Backends, config_for, spawn_app, spawn_app_in};
use crate::sync::new_vente;

#[tokio::test]
async fn post_sync_runs_a_round_and_reports_every_region() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    app.create_vente("Thies", "Mil", "1000").await;
    let response = app.http.post(app.url("/api/sync")).header("content-type", "application/json").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["status"], "success");
    let regions: Vec<&str> = report["regions"].as_array().unwrap().iter().map(|r| r["region"].as_str().unwrap()).collect();
    assert_eq!(regions, ["Dakar", "Thies", "Saint-Louis"]);
    assert!(report["regions"].as_array().unwrap().iter().all(|r| r["ok"] == true && r["error"].is_null()));
    assert_eq!(report["pairs"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn concurrent_writes_to_one_sale_show_one_conflict_with_both_versions() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let stores = app.ventes.stores();
    let id = VenteId::generate();
    // Two regions write the same sale without seeing each other (straight into their databases).
    for (i, produit) in [(0, "Version de Dakar"), (1, "Version de Thies")] {
        let write = LocalWrite::Create { id, vente: new_vente(stores, i, produit, "10") };
        stores[i].write(&write, Utc::now()).await.unwrap();
    }
    app.http.post(app.url("/api/sync")).header("content-type", "application/json").send().await.unwrap();
    app.http.post(app.url("/api/sync")).header("content-type", "application/json").send().await.unwrap();
    let conflicts: Value = app.get("/api/conflicts").await.json().await.unwrap();
    let conflicts = conflicts.as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let c = &conflicts[0];
    assert_eq!(c["id"], id.to_string());
    let produits = [c["winner"]["produit"].as_str().unwrap(), c["loser"]["produit"].as_str().unwrap()];
    assert!(produits.contains(&"Version de Dakar") && produits.contains(&"Version de Thies"), "{c}");
    // The winner is what every region now holds.
    let current: Value = app.get(&format!("/api/ventes/{id}")).await.json().await.unwrap();
    assert_eq!(current["produit"], c["winner"]["produit"]);
    assert_eq!(app.get("/api/conflicts?limit=0").await.status(), 422);
}

struct CountRounds(AtomicUsize);

impl RoundListener for CountRounds {
    fn round_done(&self, _: &RoundReport) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn writes_arriving_together_are_synced_by_fewer_rounds_than_writes() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let rounds = Arc::new(CountRounds(AtomicUsize::new(0)));
    app.scheduler.add_listener(rounds.clone());
    let posts = (0..40).map(|i| {
        let region = ["Dakar", "Thies", "Saint-Louis"][i % 3];
        let body = json!({"produit": format!("Article {i}"), "montant": 100 + i, "dateVente": "2026-01-15", "region": region});
        let (http, url) = (app.http.clone(), app.url("/api/ventes"));
        async move { http.post(url).json(&body).send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 201));
    // Rounds follow the writes by themselves (no interval, no POST /api/sync).
    let mut waited = 0;
    while rounds.0.load(Ordering::SeqCst) == 0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = rounds.0.load(Ordering::SeqCst);
    assert!((1..40).contains(&count), "{count} rounds for 40 writes");
}

/// Every round report, in order.
#[derive(Default)]
struct Reports(std::sync::Mutex<Vec<RoundReport>>);

impl RoundListener for Reports {
    fn round_done(&self, report: &RoundReport) {
        self.0.lock().unwrap().push(report.clone());
    }
}

impl Reports {
    async fn first(&self) -> RoundReport {
        for _ in 0..200 {
            if let Some(report) = self.0.lock().unwrap().first() {
                return report.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no round");
    }
}

#[tokio::test]
async fn the_round_after_a_write_reads_the_region_written_and_a_requested_round_reads_them_all() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let reports = Arc::new(Reports::default());
    app.scheduler.add_listener(reports.clone());
    // Committed in the first region (Dakar), whatever the sale's `region` says; pushed from there.
    let vente = app.create_vente("Thies", "Mil", "1000").await;
    let round = reports.first().await;
    let pairs: Vec<(&str, &str)> = round.pairs.iter().map(|p| (p.source.as_str(), p.target.as_str())).collect();
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    assert!(pairs.iter().all(|(source, _)| *source == "Dakar"), "{pairs:?}");
    for store in app.ventes.stores() {
        let id = VenteId::parse_hyphenated(vente["id"].as_str().unwrap()).unwrap();
        assert!(store.get(id).await.unwrap().is_some(), "{} lacks the sale", store.region());
    }
    let requested = app.scheduler.run_now().await;
    assert_eq!(requested.pairs.len(), 6);
}

#[tokio::test]
async fn at_home_a_write_committed_in_home_leaves_its_rounds_nothing_to_read() {
    use dsms::sync::engine::{Engine, EngineOptions};
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let stores = app.ventes.stores().to_vec();
    let names: Vec<_> = stores.iter().map(|s| s.region().clone()).collect();
    let central = Engine::new(stores.clone(), EngineOptions::default());
    let home = Engine::new(stores, EngineOptions::default()).with_home(Some(names[0].clone()));
    assert!(central.reads_any(&names[..1]));
    assert!(!home.reads_any(&names[..1]), "home pulls only into itself");
    assert!(home.reads_any(&names[1..2]));
}

#[tokio::test]
async fn a_write_made_by_another_process_in_postgresql_wakes_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let Some(config) = config_for(Backends::Postgres, dir.path()) else { return };
    let app = spawn_app_in(config.clone(), dir).await;
    // Another process: its own connection to Dakar's database, no server involved.
    let limits = dsms::store::Limits { connect_timeout: Duration::from_secs(2), statement_timeout: Duration::from_secs(10) };
    let other = dsms::store::open(&config.regions[0], limits).await.unwrap();
    let id = VenteId::generate();
    let write = LocalWrite::Create { id, vente: new_vente(app.ventes.stores(), 0, "Écrit par psql", "42") };
    other.write(&write, Utc::now()).await.unwrap();
    let thies = &app.ventes.stores()[1];
    let mut found = false;
    for _ in 0..200 {
        if thies.get(id).await.unwrap().is_some() {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(found, "the server's LISTEN picked up the other process's write and ran a round");
}

fn dsms_command(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dsms"));
    command.current_dir(dir).env_remove("DSMS_CONFIG").env("RUST_LOG", "error");
    command
}

#[tokio::test]
async fn dsms_sync_exits_2_when_a_region_is_down_and_dsms_verify_lists_divergent_ids() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = dsms_command(dir.path()).args(["seed", "--count", "20"]).output().unwrap();
    assert!(seeded.status.success(), "{seeded:?}");
    let synced = dsms_command(dir.path()).arg("sync").output().unwrap();
    assert_eq!(synced.status.code(), Some(0), "{synced:?}");
    assert_eq!(dsms_command(dir.path()).arg("verify").output().unwrap().status.code(), Some(0));

    // Damage one region behind dsms's back: verify names the row.
    let thies = dir.path().join("dsms-data/thies.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", thies.display())).await.unwrap();
    let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM vente LIMIT 1").fetch_one(&pool).await.unwrap();
    sqlx::query("UPDATE vente SET montant = montant + 1 WHERE id = ?").bind(id).execute(&pool).await.unwrap();
    pool.close().await;
    let verified = dsms_command(dir.path()).arg("verify").output().unwrap();
    assert_eq!(verified.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), id.to_string());

    // A configuration whose third region cannot be reached: the round is partial.
    std::fs::write(
        dir.path().join("dsms.toml"),
        format!(
            "connect_timeout = \"500ms\"\n[[regions]]\nname = \"Dakar\"\nurl = \"sqlite://{0}/dsms-data/dakar.db\"\n\
             [[regions]]\nname = \"Thies\"\nurl = \"sqlite://{0}/dsms-data/thies.db\"\n\
             [[regions]]\nname = \"Saint-Louis\"\nurl = \"postgres://nobody@127.0.0.1:1/nothing\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let partial = dsms_command(dir.path()).arg("sync").output().unwrap();
    assert_eq!(partial.status.code(), Some(2), "{partial:?}");
    let report = String::from_utf8_lossy(&partial.stdout);
    assert!(report.contains("Saint-Louis") && report.contains("ÉCHEC"), "{report}");
}

#[tokio::test]
async fn a_server_is_not_woken_by_its_own_postgresql_writes_but_is_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut config) = config_for(Backends::Postgres, dir.path()) else { return };
    config.sync_on_write = false;
    let app = spawn_app_in(config.clone(), dir).await;
    let rounds = Arc::new(CountRounds(AtomicUsize::new(0)));
    app.scheduler.add_listener(rounds.clone());
    tokio::time::sleep(Duration::from_millis(700)).await; // the rounds LISTEN starts with
    let settled = rounds.0.load(Ordering::SeqCst);

    app.create_vente("Dakar", "Écrit par le serveur", "10").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rounds.0.load(Ordering::SeqCst), settled, "its own write (already pushed) wakes no round");

    let limits = dsms::store::Limits { connect_timeout: Duration::from_secs(2), statement_timeout: Duration::from_secs(10) };
    let other = dsms::store::open(&config.regions[0], limits).await.unwrap();
    let write = LocalWrite::Create { id: VenteId::generate(), vente: new_vente(app.ventes.stores(), 0, "Écrit ailleurs", "42") };
    other.write(&write, Utc::now()).await.unwrap();
    let mut waited = 0;
    while rounds.0.load(Ordering::SeqCst) == settled && waited < 200 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        waited += 1;
    }
    assert!(rounds.0.load(Ordering::SeqCst) > settled, "another process's write wakes a round");
}
