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

/// Runs the real `dsms args…` in `dir` (embedded SQLite regions), returns (exit code, stderr).
fn dsms(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dsms"))
        .current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_import_command_names_each_skipped_line_and_replace_makes_the_file_win() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(dsms(dir.path(), &["seed", "--count", "5"]).0, Some(0));
    assert_eq!(dsms(dir.path(), &["export", "-o", "old.csv"]).0, Some(0));
    let old = std::fs::read_to_string(dir.path().join("old.csv")).unwrap();
    // The same sales, edited later (a file written after the export: its lines are newer).
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut newer = csv::Writer::from_writer(Vec::new());
    for (i, record) in csv::Reader::from_reader(old.as_bytes()).records().enumerate() {
        let r = record.unwrap();
        if i == 0 {
            newer.write_record(["id", "produit", "montant", "date_vente", "region", "updated_at", "deleted"]).unwrap();
        }
        newer.write_record([&r[0], "Édité", &r[2], &r[3], &r[4], &now, "false"]).unwrap();
    }
    std::fs::write(dir.path().join("new.csv"), newer.into_inner().unwrap()).unwrap();

    let (code, stderr) = dsms(dir.path(), &["import", "-i", "new.csv"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("5 ventes importées (0 créées, 5 mises à jour)"), "{stderr}");
    let (code, stderr) = dsms(dir.path(), &["import", "-i", "old.csv"]);
    assert_eq!(code, Some(0), "skipped lines are not errors: {stderr}");
    assert!(stderr.contains("ligne 2 : ignorée : version plus récente en base"), "{stderr}");
    assert!(stderr.contains("0 ventes importées") && stderr.contains("5 ignorées (version plus récente en base)"), "{stderr}");
    assert_eq!(dsms(dir.path(), &["export", "-o", "now.csv"]).0, Some(0));
    let exported = std::fs::read_to_string(dir.path().join("now.csv")).unwrap();
    assert_eq!(exported.matches("Édité").count(), 5, "{exported}");

    let (code, stderr) = dsms(dir.path(), &["import", "-i", "old.csv", "--replace"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("5 ventes importées (0 créées, 5 mises à jour)"), "{stderr}");
    assert_eq!(dsms(dir.path(), &["export", "-o", "now.csv"]).0, Some(0));
    assert_eq!(std::fs::read_to_string(dir.path().join("now.csv")).unwrap().matches("Édité").count(), 0);
}
