//! The dashboard in a real browser: a sync from the home page, the drill buttons, a real
//! PostgreSQL outage seen by the auto-refresh, screenshots and the refresh script's behaviour.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dsms::config::DatabaseUrl;
use dsms::domain::VenteId;

use fantoccini::Locator;
use serde_json::{Value, json};

use super::session::{Browser, run_in_browser, run_in_browser_with};
use crate::helpers::{Backends, TestApp, config_for, day, spawn_app_in, vente_body};
use crate::sync::new_vente;
use dsms::domain::LocalWrite;

/// Writes a sale straight into region `i`'s database: only a round brings it to the others.
async fn write_directly(app: &TestApp, i: usize, id: VenteId, produit: &str, montant: &str) {
    let stores = app.ventes.stores();
    let write = LocalWrite::Create { id, vente: new_vente(stores, i, produit, montant) };
    stores[i].write(&write, Utc::now()).await.unwrap();
}

async fn history_rows(b: &Browser) -> Vec<String> {
    let mut rows = Vec::new();
    for row in b.client.find_all(Locator::Css("table.history tbody tr")).await.unwrap() {
        rows.push(row.text().await.unwrap());
    }
    rows
}

fn status_is(slug: &str, status: &str) -> String {
    format!("return document.querySelector('#region-{slug}').getAttribute('data-status') === '{status}';")
}

#[tokio::test]
async fn a_sync_started_from_the_home_page_appears_on_the_dashboard() {
    run_in_browser(async |b, app| {
        write_directly(app, 0, VenteId::generate(), "Mil", "1000").await;
        b.goto(app, "/").await;
        assert_eq!(b.content_of("#stat-syncs").await, "0");
        assert_eq!(b.content_of("#stat-echecs").await, "0");
        b.click_to_page("#synchroniser").await;
        let flash = b.text_of(".flash").await;
        assert!(flash.starts_with("Synchronisation réussie en "), "{flash}");
        assert!(flash.ends_with(" : Dakar 0 ligne, Thies 1 ligne, Saint-Louis 1 ligne."), "{flash}");
        assert_eq!(b.content_of("#stat-syncs").await, "1");

        b.click_to_page(".stat-link").await;
        assert!(b.client.title().await.unwrap().starts_with("Tableau de Bord - Statistiques Système"));
        assert_eq!(b.text_of("h1").await, "Tableau de Bord - Statistiques Système");
        assert_eq!(b.content_of("#stat-total").await, "1");
        assert_eq!(b.content_of("#stat-succes").await, "1");
        let rows = history_rows(b).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(rows[0].contains("Réussie"), "{rows:?}");

        // Once more from the dashboard: back on it, one more round listed first.
        b.click_to_page("#synchroniser").await;
        assert!(b.text_of(".flash").await.contains("Dakar 0 ligne, Thies 0 ligne, Saint-Louis 0 ligne"));
        assert_eq!(history_rows(b).await.len(), 2);
        assert_eq!(b.content_of("#stat-total").await, "2");
        b.click_to_page(".back-link a").await;
        assert_eq!(b.client.title().await.unwrap(), "Système de Gestion des Ventes Multi-Régions");
    })
    .await;
}

#[tokio::test]
async fn a_simulated_outage_turns_a_region_card_offline_and_back_online() {
    run_in_browser(async |b, app| {
        b.goto(app, "/stats").await;
        assert_eq!(b.attr_of("#region-thies", "data-status").await.as_deref(), Some("ONLINE"));
        assert_eq!(b.content_of("#panne-thies").await, "Simuler une panne sur Thies");
        b.click_to_page("#panne-thies").await;

        assert!(b.text_of(".flash").await.starts_with("Panne simulée sur Thies : la région est maintenant OFFLINE"));
        assert_eq!(b.attr_of("#region-thies", "data-status").await.as_deref(), Some("OFFLINE"));
        let status = b.text_of("#region-thies .status").await;
        assert!(status.contains("✕") && status.contains("OFFLINE") && status.contains("hors ligne"), "{status}");
        assert!(b.text_of("#region-thies .drill-tag").await.contains("Exercice de panne en cours"));
        assert_eq!(b.content_of("#panne-thies").await, "Rétablir Thies");
        assert_eq!(b.attr_of("#region-dakar", "data-status").await.as_deref(), Some("ONLINE"));
        let stats: Value = app.get("/api/stats").await.json().await.unwrap();
        assert_eq!(stats["regions"]["Thies"]["drill"], true);

        b.click_to_page("#panne-thies").await;
        assert_eq!(b.text_of(".flash").await, "Thies rétablie : la région est maintenant ONLINE.");
        assert_eq!(b.attr_of("#region-thies", "data-status").await.as_deref(), Some("ONLINE"));
        assert!(!b.has("#region-thies .drill-tag").await);
        assert_eq!(b.content_of("#panne-thies").await, "Simuler une panne sur Thies");
    })
    .await;
}

#[tokio::test]
async fn a_stopped_postgresql_region_turns_offline_on_the_dashboard_by_itself() {
    let Some(cluster) = crate::helpers::private_cluster().await else { return };
    let cluster = Arc::new(cluster);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.regions[2].url = DatabaseUrl::Postgres(cluster.create_database("saint_louis").unwrap());
    config.probe_interval = Some(Duration::from_millis(500));
    let app = spawn_app_in(config, dir).await;
    run_in_browser_with(&app, async |b, app| {
        // The page refreshes itself every second here (10 s by default).
        b.goto(app, "/stats?actualisation=1").await;
        assert_eq!(b.text_of("#actualisation-etat").await, "Actualisation automatique : 1 s");
        assert_eq!(b.attr_of("#region-saint-louis", "data-status").await.as_deref(), Some("ONLINE"));
        assert_eq!(b.content_of("#region-saint-louis .backend").await, "PostgreSQL");
        b.mark_page().await;

        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.stop_immediate()).await.unwrap().unwrap();
        b.wait_until(&status_is("saint-louis", "OFFLINE"), Duration::from_secs(60), "Saint-Louis OFFLINE").await;
        let status = b.text_of("#region-saint-louis .status").await;
        assert!(status.contains("OFFLINE") && status.contains("hors ligne"), "{status}");
        assert!(b.text_of("#region-saint-louis .reason").await.contains("Saint-Louis"), "the reason is shown");
        assert_eq!(b.attr_of("#region-dakar", "data-status").await.as_deref(), Some("ONLINE"));
        let same_page = b.client.execute("return window.dsmsOldPage === true;", vec![]).await.unwrap();
        assert_eq!(same_page, json!(true), "refreshed in place, not reloaded");
        assert!(b.content_of("#annonces").await.contains("Saint-Louis : OFFLINE"), "announced to screen readers");

        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.restart()).await.unwrap().unwrap();
        b.wait_until(&status_is("saint-louis", "ONLINE"), Duration::from_secs(60), "Saint-Louis ONLINE again").await;
        assert!(b.text_of("#region-saint-louis .status").await.contains("ONLINE"));
        assert!(b.content_of("#annonces").await.contains("Saint-Louis : ONLINE"));
    })
    .await;
}

/// Marks the dashboard's current data, to wait for the next refresh.
async fn mark_data(b: &Browser) {
    b.client.execute("window.dsmsData = document.querySelector('.generated time').getAttribute('datetime');", vec![]).await.unwrap();
}

async fn wait_for_refresh(b: &Browser) {
    let script = "return document.querySelector('.generated time').getAttribute('datetime') !== window.dsmsData;";
    b.wait_until(script, Duration::from_secs(15), "an automatic refresh").await;
}

#[tokio::test]
async fn dashboard_screenshots_at_desktop_and_phone_widths_and_the_refresh_script_behaves() {
    run_in_browser(async |b, app| {
        for (i, (region, produit, montant)) in [
            ("Dakar", "Réfrigérateur 250 L", "214830"),
            ("Thies", "Thiéboudienne (plat)", "2814"),
            ("Saint-Louis", "Lait en poudre 2,5 kg", "12684.47"),
            ("Dakar", "Panneau solaire 200 W", "75908"),
            ("Thies", "Tissu wax 6 yards", "15933"),
            ("Dakar", "Ciment 50 kg", "4690"),
            ("Saint-Louis", "Poisson séché 5 kg", "17500"),
            ("Thies", "Arachides 25 kg", "21000"),
        ]
        .into_iter()
        .enumerate()
        {
            let date = day(-((i as i64 * 5) % 29));
            assert_eq!(app.post_json("/api/ventes", &vente_body(produit, json!(montant), &date, region)).await.status(), 201);
        }
        let id = VenteId::generate();
        write_directly(app, 0, id, "Sac de riz 50 kg", "18500").await;
        write_directly(app, 1, id, "Sac de riz 25 kg", "9250").await;
        for _ in 0..3 {
            app.scheduler.run_now().await;
        }
        app.monitor.set_drill("Saint-Louis", true).await.unwrap();
        app.scheduler.run_now().await;
        app.monitor.probe_all().await;

        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, width, mobile) in [("stats-bureau-1280.png", 1280, false), ("stats-telephone-375.png", 375, true)] {
            b.cdp("Emulation.setDeviceMetricsOverride", json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile}))
                .await;
            b.goto(app, "/stats").await;
            assert_eq!(b.attr_of("#region-saint-louis", "data-status").await.as_deref(), Some("OFFLINE"));
            assert!(b.content_of(".conflicts").await.contains("Gagnante"));
            let png = b.full_page_png().await;
            assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), width, "{name}");
            std::fs::write(dir.join(name), &png).unwrap();
            let scroll_width: Value = b.client.execute("return document.documentElement.scrollWidth;", vec![]).await.unwrap();
            assert_eq!(scroll_width, json!(width), "{name}: no horizontal scrolling");
        }

        // The refresh keeps the focus and the open data tables where they were.
        b.goto(app, "/stats?actualisation=1").await;
        assert_eq!(b.text_of("#actualisation-etat").await, "Actualisation automatique : 1 s");
        b.click("#graphe-durees-donnees summary").await;
        b.client.execute("document.getElementById('panne-dakar').focus();", vec![]).await.unwrap();
        mark_data(b).await;
        wait_for_refresh(b).await;
        let focused = b.client.active_element().await.unwrap().attr("id").await.unwrap();
        assert_eq!(focused.as_deref(), Some("panne-dakar"), "the focus stays on the button");
        assert_eq!(b.attr_of("#graphe-durees-donnees", "open").await.as_deref(), Some("true"), "the table stays open");

        // Pause holds the data still; Reprendre starts again.
        b.click("#actualisation-pause").await;
        assert_eq!(b.text_of("#actualisation-etat").await, "Actualisation automatique : en pause");
        assert_eq!(b.text_of("#actualisation-pause").await, "Reprendre");
        mark_data(b).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let still = b
            .client
            .execute("return document.querySelector('.generated time').getAttribute('datetime') === window.dsmsData;", vec![])
            .await;
        assert_eq!(still.unwrap(), json!(true), "paused: no refresh");
        b.click("#actualisation-pause").await;
        assert_eq!(b.text_of("#actualisation-pause").await, "Pause");
        wait_for_refresh(b).await;

        let problems: Vec<Value> = b.console().await.into_iter().filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING").collect();
        assert!(problems.is_empty(), "console errors: {problems:#?}");
    })
    .await;
}
