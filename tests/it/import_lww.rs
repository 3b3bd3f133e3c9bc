//! Importing never reverts (issue 12): an old export re-imported after edits and deletions made
//! through the API leaves them standing in every region, counted as skipped; `--replace` makes the
//! file win. On real stores, SQLite and PostgreSQL.

use dsms::csvio::{self, ImportReport};
use dsms::domain::VenteId;
use dsms::ventes::ImportMode;
use indicatif::ProgressBar;
use serde_json::{Value, json};

use crate::helpers::{Backends, TestApp, spawn_app};

async fn sync(app: &TestApp) {
    let response = app.http.post(app.url("/api/sync")).header("content-type", "application/json").send().await.unwrap();
    assert_eq!(response.status(), 200);
}

async fn export(app: &TestApp) -> Vec<u8> {
    let mut out = Vec::new();
    csvio::export(app.ventes.stores()[0].as_ref(), &mut out, false, &ProgressBar::hidden()).await.unwrap();
    out
}

async fn import(app: &TestApp, csv: &[u8], mode: ImportMode) -> ImportReport {
    csvio::import(&app.ventes, csv, mode, &ProgressBar::hidden()).await.unwrap()
}

/// What every region holds of sale `id`: (produit, deleted) per region.
async fn everywhere(app: &TestApp, id: &str) -> Vec<(String, bool)> {
    let id: VenteId = id.parse().unwrap();
    let mut held = Vec::new();
    for store in app.ventes.stores() {
        let vente = store.get(id).await.unwrap().unwrap_or_else(|| panic!("{} holds {id}", store.region()));
        held.push((vente.produit.to_string(), vente.deleted));
    }
    held
}

async fn an_old_export_reimported_leaves_newer_edits_and_deletions_standing(backends: Backends) {
    let Some(app) = spawn_app(backends).await else { return };
    let regions = ["Dakar", "Thies", "Saint-Louis"];
    let mut ids = Vec::new();
    for i in 0..20 {
        let vente = app.create_vente(regions[i % 3], &format!("Produit {i}"), "1500").await;
        ids.push(vente["id"].as_str().unwrap().to_owned());
    }
    sync(&app).await;
    let old = export(&app).await;

    for (i, id) in ids.iter().enumerate().take(10) {
        let body = json!({"produit": format!("Modifié {i}"), "montant": "2500", "dateVente": "2026-01-15", "region": regions[i % 3]});
        let response = app.http.put(app.url(&format!("/api/ventes/{id}"))).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200, "edit {id}");
    }
    for id in &ids[10..15] {
        assert_eq!(app.http.delete(app.url(&format!("/api/ventes/{id}"))).send().await.unwrap().status(), 204);
    }
    sync(&app).await;

    let report = import(&app, &old, ImportMode::Dated).await;
    assert_eq!((report.created, report.updated, report.older, report.unchanged), (0, 0, 15, 5), "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");
    assert!(csvio::summary(&report).contains("15 ignorées (version plus récente en base)"), "{}", csvio::summary(&report));
    sync(&app).await;
    for (i, id) in ids.iter().enumerate() {
        let expected = match i {
            0..10 => (format!("Modifié {i}"), false),
            10..15 => (format!("Produit {i}"), true),
            _ => (format!("Produit {i}"), false),
        };
        assert_eq!(everywhere(&app, id).await, vec![expected; 3], "sale {i} in every region");
    }
    let (_, divergent) = dsms::sync::verify::verify(app.ventes.stores(), 10).await.unwrap();
    assert_eq!(divergent, 0);

    // A newer line (dated after the edit) wins; a line without a date is dated now.
    let newer = format!(
        "id,produit,montant,date_vente,region,updated_at\n{},Plus récent,3000,2026-01-15,Dakar,{}\n",
        ids[0],
        chrono::Utc::now().to_rfc3339()
    );
    let report = import(&app, newer.as_bytes(), ImportMode::Dated).await;
    assert_eq!((report.updated, report.older), (1, 0), "{report:?}");
    assert_eq!(everywhere(&app, &ids[0]).await, vec![("Plus récent".to_owned(), false); 3]);

    // `--replace`: the file wins, edits are reverted and deleted sales come back, everywhere.
    let report = import(&app, &old, ImportMode::Replace).await;
    assert_eq!((report.created, report.updated, report.older), (0, 20, 0), "{report:?}");
    sync(&app).await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(everywhere(&app, id).await, vec![(format!("Produit {i}"), false); 3], "sale {i} reverted everywhere");
    }
    let listed: Vec<Value> = app.list_all("", 100).await;
    assert_eq!(listed.len(), 20);
    let (_, divergent) = dsms::sync::verify::verify(app.ventes.stores(), 10).await.unwrap();
    assert_eq!(divergent, 0);
}

#[tokio::test]
async fn an_old_export_reimported_on_sqlite_reverts_nothing_and_replace_reverts_everything() {
    an_old_export_reimported_leaves_newer_edits_and_deletions_standing(Backends::Sqlite).await;
}

#[tokio::test]
async fn an_old_export_reimported_on_postgres_reverts_nothing_and_replace_reverts_everything() {
    an_old_export_reimported_leaves_newer_edits_and_deletions_standing(Backends::Postgres).await;
}

#[tokio::test]
async fn an_old_export_reimported_on_mixed_regions_reverts_nothing_and_replace_reverts_everything() {
    an_old_export_reimported_leaves_newer_edits_and_deletions_standing(Backends::Mixed).await;
}
