//! One dsms per region (`home`): writes commit at home and are answered before any remote region
//! is reached; pushes follow off the request path; each instance's rounds pull into its home only;
//! instances writing the same sale at once converge by LWW with one conflict. Real PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use dsms::config::{Config, DatabaseUrl};
use dsms::store::{self, Limits, Store};
use dsms::testkit::proxy::DelayProxy;
use serde_json::{Value, json};

use crate::helpers::{TestApp, pg_database, spawn_app_in};

const NAMES: [&str; 3] = ["Dakar", "Thies", "Saint-Louis"];

fn limits() -> Limits {
    Limits { connect_timeout: Duration::from_secs(10), statement_timeout: Duration::from_secs(30) }
}

/// Three fresh databases on the shared test cluster.
fn three_databases() -> Option<Vec<String>> {
    Some(vec![pg_database()?, pg_database()?, pg_database()?])
}

/// The same regions seen from an instance living in `home`; `urls` as that instance reaches them.
fn instance_config(urls: &[String], home: &str, dir: &std::path::Path) -> Config {
    let mut config = Config::with_regions(NAMES.iter().zip(urls).map(|(n, u)| (*n, DatabaseUrl::Postgres(u.clone()))).collect());
    config.listen = ([127, 0, 0, 1], 0).into();
    config.sync_interval = None;
    config.sync_on_write = false;
    config.probe_interval = None;
    config.data_dir = dir.to_owned();
    config.home = config.region_names().resolve(home).cloned();
    config
}

async fn instance(urls: &[String], home: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_app_in(instance_config(urls, home, dir.path()), dir).await
}

/// Each region's database, reached directly (not through any instance).
async fn direct(urls: &[String]) -> Vec<Arc<dyn Store>> {
    let config = Config::with_regions(NAMES.iter().zip(urls).map(|(n, u)| (*n, DatabaseUrl::Postgres(u.clone()))).collect());
    let mut stores = Vec::new();
    for region in &config.regions {
        stores.push(store::open(region, limits()).await.unwrap());
    }
    stores
}

fn sale(produit: &str, montant: u32, region: &str) -> Value {
    json!({"produit": produit, "montant": montant, "dateVente": "2026-11-20", "region": region})
}

async fn create(app: &TestApp, body: &Value) -> Value {
    let response = app.post_json("/api/ventes", body).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

fn id_of(vente: &Value) -> dsms::domain::VenteId {
    vente["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_home_instance_answers_once_home_has_committed_and_pushes_afterwards() {
    let Some(urls) = three_databases() else { return };
    // Thies and Saint-Louis are far: 100 ms each way; a push takes several round trips.
    let far = Duration::from_millis(100);
    let (_thies, thies_url) = DelayProxy::in_front_of(&urls[1], far).await.unwrap();
    let (_saint_louis, saint_louis_url) = DelayProxy::in_front_of(&urls[2], far).await.unwrap();
    let stores = direct(&urls).await;
    for store in &stores {
        store.migrate().await.unwrap();
    }
    let seen_from_dakar = vec![urls[0].clone(), thies_url, saint_louis_url];
    let dakar = instance(&seen_from_dakar, "Dakar").await;

    // A sale of Thies, recorded by the instance in Dakar: it commits in Dakar.
    let created = create(&dakar, &sale("Mil", 1500, "Thies")).await;
    let id = id_of(&created);
    // The answer came while the pushes were still travelling: nobody waited for them.
    assert!(dakar.ventes.pushes_in_flight() >= 1, "the write was answered after its pushes ended");
    assert!(stores[1].get(id).await.unwrap().is_none(), "Thies already had it: the answer waited for the push");
    let at_home = stores[0].get(id).await.unwrap().expect("committed at home");
    assert_eq!(at_home.version.origin.as_str(), "Dakar");
    assert_eq!(at_home.region.as_str(), "Thies", "the region field stays data");
    // Reads are served from home.
    let read: Value = dakar.get(&format!("/api/ventes/{id}")).await.json().await.unwrap();
    assert_eq!(read["produit"], "Mil");

    // Then the pushes arrive, with the same version.
    dakar.ventes.settled().await;
    for store in &stores[1..] {
        let copy = store.get(id).await.unwrap().expect("pushed after the answer");
        assert_eq!(copy.version, at_home.version);
    }
}

#[tokio::test]
async fn each_instance_pulls_into_its_home_only_and_together_they_converge() {
    let Some(urls) = three_databases() else { return };
    let apps = [instance(&urls, "Dakar").await, instance(&urls, "Thies").await, instance(&urls, "Saint-Louis").await];
    let stores = direct(&urls).await;
    // Written in Dakar by another program: no push, only rounds carry them.
    for i in 0..3 {
        let vente = crate::sync::new_vente(&stores, 0, &format!("Sac {i}"), "100");
        let write = dsms::domain::LocalWrite::Create { id: dsms::domain::VenteId::generate(), vente };
        stores[0].write(&write, chrono::Utc::now()).await.unwrap();
    }

    // (Each instance is also woken by PostgreSQL's notifications: whatever round runs, it fills
    // its own home only.)
    for (app, home) in apps.iter().zip(NAMES) {
        let report = app.scheduler.run_now().await;
        assert_eq!(report.pairs.len(), 2, "{home}: one pull from each other region");
        assert!(report.pairs.iter().all(|p| p.target.as_str() == home), "{home}: {:?}", report.pairs);
    }
    assert_eq!(stores[1].count_live().await.unwrap(), 3);
    let (check, divergent) = dsms::sync::verify::verify(&stores, 10).await.unwrap();
    assert_eq!(divergent, 0, "{:?}", check.divergent);
    assert_eq!(stores[2].count_live().await.unwrap(), 3);
}

#[tokio::test]
async fn two_instances_editing_one_sale_at_once_converge_by_lww_with_one_conflict() {
    let Some(urls) = three_databases() else { return };
    let apps = [instance(&urls, "Dakar").await, instance(&urls, "Thies").await, instance(&urls, "Saint-Louis").await];
    let stores = direct(&urls).await;
    let created = create(&apps[0], &sale("Arachide", 700, "Dakar")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    apps[0].ventes.settled().await;

    // Dakar's and Thies's instances each lose sight of the other regions, then edit the sale.
    for (app, others) in [(&apps[0], ["Thies", "Saint-Louis"]), (&apps[1], ["Dakar", "Saint-Louis"])] {
        for region in others {
            app.monitor.set_drill(region, true).await.unwrap();
        }
    }
    let path = format!("/api/ventes/{id}");
    for (app, montant) in [(&apps[0], 800), (&apps[1], 900)] {
        let etag = app.get(&path).await.headers()["etag"].to_str().unwrap().to_owned();
        let edit = app.http.put(app.url(&path)).header("if-match", etag).json(&sale("Arachide", montant, "Dakar")).send().await.unwrap();
        assert_eq!(edit.status(), 200);
        app.ventes.settled().await;
    }
    for (app, others) in [(&apps[0], ["Thies", "Saint-Louis"]), (&apps[1], ["Dakar", "Saint-Louis"])] {
        for region in others {
            app.monitor.set_drill(region, false).await.unwrap();
        }
    }
    for app in &apps {
        app.scheduler.run_now().await;
    }
    let (check, divergent) = dsms::sync::verify::verify(&stores, 10).await.unwrap();
    assert_eq!(divergent, 0, "{:?}", check.divergent);
    let mut losers = HashSet::new();
    for store in &stores {
        for conflict in store.conflicts(100).await.unwrap() {
            losers.insert((conflict.loser.id, conflict.loser.version.to_string()));
        }
    }
    assert_eq!(losers.len(), 1, "one edit lost, logged once: {losers:?}");
}

#[test]
fn the_deployment_examples_are_valid_configurations_one_per_site() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pg-password");
    std::fs::write(&password, "secret\n").unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for (file, home) in [("dakar.toml", "Dakar"), ("thies.toml", "Thies"), ("saint-louis.toml", "Saint-Louis")] {
        let text = std::fs::read_to_string(root.join(file)).unwrap().replace("/etc/dsms/pg-password", password.to_str().unwrap());
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let config = dsms::config::load(dsms::config::ConfigSource::Explicit(&path)).unwrap();
        assert_eq!(config.home.as_ref().map(|h| h.as_str()), Some(home), "{file}");
        assert_eq!(config.regions.len(), 3, "{file}");
        assert!(config.edge.tls.is_some(), "{file}: HTTPS");
        for region in &config.regions {
            let DatabaseUrl::Postgres(url) = &region.url else { panic!("{file}: PostgreSQL regions") };
            assert!(url.contains("sslmode=verify-full") && url.contains(":secret@"), "{file}: {}", region.url.redacted());
        }
    }
}

/// Runs rounds of `app` until one reaches every region (a pool may need one failed call to notice
/// a link that was cut), at most `max`.
async fn rounds_until_all_reached(app: &TestApp, max: usize) {
    for _ in 0..max {
        if app.scheduler.run_now().await.regions.iter().all(|r| r.error.is_none()) {
            return;
        }
    }
    panic!("no round reached every region in {max} tries");
}

#[tokio::test]
async fn a_link_cut_between_two_sites_then_restored_catches_up_both_ways() {
    let Some(urls) = three_databases() else { return };
    let stores = direct(&urls).await;
    for store in &stores {
        store.migrate().await.unwrap();
    }
    // The link between Dakar and Thies, 10 ms each way, seen from each side.
    let (to_thies, thies_url) = DelayProxy::in_front_of(&urls[1], Duration::from_millis(10)).await.unwrap();
    let (to_dakar, dakar_url) = DelayProxy::in_front_of(&urls[0], Duration::from_millis(10)).await.unwrap();
    let dakar = instance(&[urls[0].clone(), thies_url, urls[2].clone()], "Dakar").await;
    let thies = instance(&[dakar_url, urls[1].clone(), urls[2].clone()], "Thies").await;
    // Saint-Louis stays out of it, so nothing travels around the cut.
    for app in [&dakar, &thies] {
        app.monitor.set_drill("Saint-Louis", true).await.unwrap();
    }

    to_thies.set_cut(true);
    to_dakar.set_cut(true);
    let in_dakar = id_of(&create(&dakar, &sale("Niébé", 300, "Dakar")).await);
    let in_thies = id_of(&create(&thies, &sale("Bissap", 400, "Thies")).await);
    dakar.ventes.settled().await;
    thies.ventes.settled().await;
    let report = dakar.scheduler.run_now().await;
    assert!(report.regions.iter().any(|r| r.region.as_str() == "Thies" && r.error.is_some()), "the cut is seen: {:?}", report.regions);
    assert!(stores[1].get(in_dakar).await.unwrap().is_none(), "nothing crossed the cut");
    assert!(stores[0].get(in_thies).await.unwrap().is_none(), "nothing crossed the cut");

    // The link comes back: each side's rounds catch up, with no restart and no manual step.
    to_thies.set_cut(false);
    to_dakar.set_cut(false);
    for app in [&dakar, &thies] {
        app.monitor.set_drill("Saint-Louis", false).await.unwrap();
    }
    rounds_until_all_reached(&dakar, 5).await;
    rounds_until_all_reached(&thies, 5).await;
    assert!(stores[0].get(in_thies).await.unwrap().is_some(), "Dakar caught up");
    assert!(stores[1].get(in_dakar).await.unwrap().is_some(), "Thies caught up");
    // Saint-Louis has no instance of its own here: a central round fills it, then all agree.
    dsms::sync::engine::Engine::new(stores.clone(), Default::default()).round().await;
    let (check, divergent) = dsms::sync::verify::verify(&stores, 10).await.unwrap();
    assert_eq!(divergent, 0, "{:?}", check.divergent);
}
