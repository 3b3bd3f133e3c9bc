//! The sales API, the same suite over SQLite-only, PostgreSQL-only and mixed regions.

use serde_json::json;

use crate::helpers::{ALL_BACKENDS, montant_text, spawn_app};

#[tokio::test]
async fn a_sale_is_created_read_listed_updated_and_deleted_on_every_backend() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let created = app.create_vente("saint louis", "Riz brisé", "750000.5").await;
        assert_eq!(created["region"], "Saint-Louis", "{backends:?}");
        assert_eq!(created["montantText"], "750000.50", "{backends:?}");
        let id = created["id"].as_str().unwrap();

        let fetched = app.get(&format!("/api/ventes/{id}")).await;
        assert_eq!(fetched.status(), 200);
        let etag = fetched.headers()["etag"].to_str().unwrap().to_owned();

        let page: serde_json::Value = app.get("/api/ventes?q=RIZ%20BRISE").await.json().await.unwrap();
        assert_eq!(page["items"][0]["id"], id, "{backends:?}");

        let update = json!({"produit": "Riz parfumé", "montant": 1200, "dateVente": "2026-01-16", "region": "Dakar"});
        let stale =
            app.http.put(app.url(&format!("/api/ventes/{id}"))).header("if-match", "\"1.dakar\"").json(&update).send().await.unwrap();
        assert_eq!(stale.status(), 412, "{backends:?}");
        let updated = app.http.put(app.url(&format!("/api/ventes/{id}"))).header("if-match", &etag).json(&update).send().await.unwrap();
        assert_eq!(updated.status(), 200, "{backends:?}");
        let updated = updated.text().await.unwrap();
        assert_eq!(montant_text(&updated), "1200.00");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&updated).unwrap()["region"], "Dakar");

        let deleted = app.http.delete(app.url(&format!("/api/ventes/{id}"))).send().await.unwrap();
        assert_eq!(deleted.status(), 204, "{backends:?}");
        assert_eq!(app.get(&format!("/api/ventes/{id}")).await.status(), 404, "{backends:?}");
        let page: serde_json::Value = app.get("/api/ventes").await.json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 0, "{backends:?}");
    }
}
