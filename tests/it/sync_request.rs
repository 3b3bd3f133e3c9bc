//! A round started by a request survives the request (issue 12): `POST /api/sync` waits for its
//! round only `sync_request_wait`, then answers 202 with where the report will be; the round runs
//! on to completion, even for a client that went away, and its report appears in the history.

use std::time::Duration;

use chrono::Utc;
use dsms::domain::{LocalWrite, VenteId};
use serde_json::Value;
use sqlx::Connection as _;

use crate::helpers::{Backends, config_for, spawn_app_in};
use crate::sync::new_vente;

#[tokio::test]
async fn a_round_longer_than_the_wait_gets_202_runs_to_completion_and_its_report_reaches_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.sync_on_write = false;
    config.sync_request_wait = Duration::from_millis(200);
    config.statement_timeout = Duration::from_secs(20);
    let thies = dir.path().join("thies.db");
    let app = spawn_app_in(config, dir).await;

    // A sale in Dakar only (written straight into its database: no push), and Thies made slow:
    // another process holds its write lock, so the round's apply into it waits.
    let stores = app.ventes.stores();
    let id = VenteId::generate();
    stores[0].write(&LocalWrite::Create { id, vente: new_vente(stores, 0, "Mil", "1000") }, Utc::now()).await.unwrap();
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", thies.display())).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();

    let asked = Utc::now() - chrono::Duration::milliseconds(1);
    // A client that gives up before any answer: its round goes on all the same.
    let gone =
        app.http.post(app.url("/api/sync")).header("content-type", "application/json").timeout(Duration::from_millis(150)).send().await;
    assert!(gone.is_err(), "the client went away first");
    let response = app.http.post(app.url("/api/sync")).header("content-type", "application/json").send().await.unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "running");
    assert_eq!(body["report"], location.as_str());
    assert!(location.starts_with("/api/stats/history?since="), "{location}");
    assert!(body["message"].as_str().unwrap().contains("arrière-plan"), "{body}");
    let history: Value = app.get(&location).await.json().await.unwrap();
    assert!(history.as_array().unwrap().is_empty(), "no report yet: the rounds wait for Thies: {history}");

    // Thies is free again: both rounds finish, their reports appear in the history.
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let since = format!("/api/stats/history?since={}", asked.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let rounds = loop {
        let rounds: Value = app.get(&since).await.json().await.unwrap();
        if rounds.as_array().unwrap().len() >= 2 {
            break rounds;
        }
        assert!(tokio::time::Instant::now() < deadline, "the rounds never reached the history: {rounds}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rounds = rounds.as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    let first = &rounds[1];
    assert_eq!(first["status"], "success", "{first}");
    assert_eq!(first["rowsApplied"]["Thies"], 1, "the request that went away carried the sale to Thies: {first}");
    let ours: Value = app.get(&location).await.json().await.unwrap();
    assert!(!ours.as_array().unwrap().is_empty(), "the 202's link now lists its round: {ours}");
    assert!(stores[1].get(id).await.unwrap().is_some(), "Thies holds the sale");

    // A quick round is answered as before: 200 with its report.
    let response = app.http.post(app.url("/api/sync")).header("content-type", "application/json").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["status"], "success");
    assert_eq!(app.get("/api/stats/history?since=hier").await.status(), 422);
}
