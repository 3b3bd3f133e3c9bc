//! The sales API, the same suite over SQLite-only, PostgreSQL-only and mixed regions.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{ALL_BACKENDS, assert_error, create, day, error_fields, montant_text, spawn_app, vente_body};

fn updated_at(vente: &Value) -> DateTime<Utc> {
    vente["updatedAt"].as_str().unwrap().parse().unwrap()
}

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

        let page: Value = app.get("/api/ventes?q=RIZ%20BRISE").await.json().await.unwrap();
        assert_eq!(page["items"][0]["id"], id, "{backends:?}");

        let update = json!({"produit": "Riz parfumé", "montant": 1200, "dateVente": "2026-01-16", "region": "Dakar"});
        let stale =
            app.http.put(app.url(&format!("/api/ventes/{id}"))).header("if-match", "\"1.dakar\"").json(&update).send().await.unwrap();
        assert_eq!(stale.status(), 412, "{backends:?}");
        let updated = app.http.put(app.url(&format!("/api/ventes/{id}"))).header("if-match", &etag).json(&update).send().await.unwrap();
        assert_eq!(updated.status(), 200, "{backends:?}");
        let updated = updated.text().await.unwrap();
        assert_eq!(montant_text(&updated), "1200.00");
        assert_eq!(serde_json::from_str::<Value>(&updated).unwrap()["region"], "Dakar");

        let deleted = app.http.delete(app.url(&format!("/api/ventes/{id}"))).send().await.unwrap();
        assert_eq!(deleted.status(), 204, "{backends:?}");
        assert_eq!(app.get(&format!("/api/ventes/{id}")).await.status(), 404, "{backends:?}");
        let page: Value = app.get("/api/ventes").await.json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 0, "{backends:?}");
    }
}

#[tokio::test]
async fn keyset_pages_show_every_sale_once_newest_first_and_end_with_a_null_cursor() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let regions = ["Dakar", "Thies", "Saint-Louis"];
        let mut ids = Vec::new();
        for i in 0..23 {
            let body = vente_body(&format!("Produit {i}"), json!(1000 + i), &day(-i), regions[i as usize % 3]);
            ids.push(create(&app, &body).await["id"].as_str().unwrap().to_owned());
        }
        for limit in [1, 5, 22, 23, 24, 500] {
            let items = app.list_all("", limit).await;
            let listed: Vec<&str> = items.iter().map(|v| v["id"].as_str().unwrap()).collect();
            assert_eq!(listed.len(), 23, "{backends:?} limit {limit}: no duplicates, no gaps");
            assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 23, "{backends:?} limit {limit}");
            let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
            assert_eq!(listed, newest_first, "{backends:?} limit {limit}: newest write first");
            for pair in items.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                assert!((updated_at(a), a["id"].as_str()) > (updated_at(b), b["id"].as_str()), "{backends:?}: strictly decreasing");
            }
        }

        // Writes made while a client pages do not shift the pages it has not read yet.
        let first: Value = app.get("/api/ventes?limit=10").await.json().await.unwrap();
        let cursor = first["nextCursor"].as_str().unwrap().to_owned();
        create(&app, &vente_body("Arrivée pendant la lecture", json!(5), &day(0), "Dakar")).await;
        let second: Value = app.get(&format!("/api/ventes?limit=10&cursor={cursor}")).await.json().await.unwrap();
        let expected: Vec<&str> = ids.iter().rev().skip(10).take(10).map(String::as_str).collect();
        let got: Vec<&str> = second["items"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
        assert_eq!(got, expected, "{backends:?}");

        // An empty listing is one page with a null cursor.
        let none: Value = app.get("/api/ventes?q=introuvable").await.json().await.unwrap();
        assert_eq!(none, json!({"items": [], "nextCursor": null}), "{backends:?}");
    }
}

#[tokio::test]
async fn listing_filters_by_region_product_text_and_dates() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let sales = [
            ("Thiéboudienne ÉPICÉE", "Saint-Louis", day(-10)),
            ("thieboudienne simple", "Dakar", day(-5)),
            ("Riz brisé 50 kg", "Saint-Louis", day(-3)),
            ("Remise 50% (soldes)", "Thies", day(-1)),
            ("Lait_en_poudre", "Thies", day(0)),
        ];
        for (produit, region, date) in &sales {
            create(&app, &vente_body(produit, json!("1500"), date, region)).await;
        }
        let produits = |items: Vec<Value>| -> Vec<String> {
            let mut names: Vec<String> = items.iter().map(|v| v["produit"].as_str().unwrap().to_owned()).collect();
            names.sort();
            names
        };
        for loose in ["saint%20louis", "SAINT-LOUIS", "Saint_Louis", "saint-louis"] {
            let got = produits(app.list_all(&format!("region={loose}"), 50).await);
            assert_eq!(got, ["Riz brisé 50 kg", "Thiéboudienne ÉPICÉE"], "{backends:?} region={loose}");
        }
        for q in ["THIEBOUDIENNE", "thiéboudienne", "ThIéBoU"] {
            let got = produits(app.list_all(&format!("q={q}"), 50).await);
            assert_eq!(got, ["Thiéboudienne ÉPICÉE", "thieboudienne simple"], "{backends:?} q={q}");
        }
        // LIKE wildcards in `q` are plain characters.
        assert_eq!(produits(app.list_all("q=50%25", 50).await), ["Remise 50% (soldes)"], "{backends:?}");
        assert_eq!(produits(app.list_all("q=t_e", 50).await), ["Lait_en_poudre"], "{backends:?}");
        assert_eq!(produits(app.list_all("q=epicee&region=dakar", 50).await), Vec::<String>::new(), "{backends:?}");

        let (from, to) = (day(-5), day(-1));
        let got = produits(app.list_all(&format!("from={from}&to={to}"), 2).await);
        assert_eq!(got, ["Remise 50% (soldes)", "Riz brisé 50 kg", "thieboudienne simple"], "{backends:?}: bounds included");
        let got = produits(app.list_all(&format!("from={from}&to={to}&region=thies"), 2).await);
        assert_eq!(got, ["Remise 50% (soldes)"], "{backends:?}");
        let got = produits(app.list_all(&format!("from={}", day(-3)), 50).await);
        assert_eq!(got.len(), 3, "{backends:?}");
        let got = produits(app.list_all(&format!("from={from}&to={}", day(-6)), 50).await);
        assert!(got.is_empty(), "{backends:?}: from after to is an empty list");
        // Empty parameters are absent parameters.
        assert_eq!(app.list_all("region=&q=&from=&to=&cursor=", 50).await.len(), 5, "{backends:?}");
    }
}

#[tokio::test]
async fn post_answers_201_with_location_and_etag_and_the_sale_exactly_as_stored() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let body = vente_body("  Café Touba 1 kg ", json!(3500.5), &day(1), "thiès");
        let response = app.post_json("/api/ventes", &body).await;
        assert_eq!(response.status(), 201, "{backends:?}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let text = response.text().await.unwrap();
        assert_eq!(montant_text(&text), "3500.50", "{backends:?}: exact, two decimals");
        let created: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(location, format!("/api/ventes/{}", created["id"].as_str().unwrap()));
        assert_eq!(created["produit"], "Café Touba 1 kg", "{backends:?}: trimmed");
        assert_eq!(created["region"], "Thies", "{backends:?}: the configured name");
        assert_eq!(created["dateVente"], day(1).as_str(), "{backends:?}: tomorrow is accepted");
        assert_eq!(created["deleted"], false);

        let fetched = app.get(&location).await;
        assert_eq!(fetched.status(), 200);
        assert_eq!(fetched.headers()["etag"].to_str().unwrap(), etag, "{backends:?}");
        assert_eq!(fetched.json::<Value>().await.unwrap(), created, "{backends:?}");
    }
}

#[tokio::test]
async fn a_client_supplied_id_makes_post_idempotent() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let id = "0190d7a2-7c4e-7b51-9f3e-4c0a1b2c3d4e";
        let mut body = vente_body("Mil 10 kg", json!("4000"), &day(-2), "Dakar");
        body["id"] = json!(id);
        let first = app.post_json("/api/ventes", &body).await;
        assert_eq!(first.status(), 201, "{backends:?}");
        let etag = first.headers()["etag"].clone();
        let first: Value = first.json().await.unwrap();
        assert_eq!(first["id"], id);

        // The same content, even spelled differently, is the same sale: nothing is written again.
        for replay in
            [body.clone(), json!({"id": id, "produit": " Mil 10 kg", "montant": 4000.00, "dateVente": day(-2), "region": "DAKAR"})]
        {
            let again = app.post_json("/api/ventes", &replay).await;
            assert_eq!(again.status(), 201, "{backends:?}");
            assert_eq!(again.headers()["etag"], etag, "{backends:?}");
            assert_eq!(again.json::<Value>().await.unwrap(), first, "{backends:?}");
        }
        assert_eq!(app.list_all("", 50).await.len(), 1, "{backends:?}");

        let mut different = body.clone();
        different["montant"] = json!("4000.01");
        let conflict = app.post_json("/api/ventes", &different).await;
        let error = assert_error(conflict, 409, "conflict", "same id, other content").await;
        assert_eq!(error["details"]["id"], id, "{backends:?}");
        assert_eq!(app.get(&format!("/api/ventes/{id}")).await.json::<Value>().await.unwrap(), first, "{backends:?}: unchanged");
    }
}

#[tokio::test]
async fn if_match_guards_updates_and_deletes() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let created = create(&app, &vente_body("Sucre 50 kg", json!(28000), &day(-1), "Thies")).await;
        let path = format!("/api/ventes/{}", created["id"].as_str().unwrap());
        let etag = app.get(&path).await.headers()["etag"].to_str().unwrap().to_owned();
        let put = |if_match: &str, montant: u32| {
            let body = vente_body("Sucre 50 kg", json!(montant), &day(-1), "Thies");
            app.http.put(app.url(&path)).header("if-match", if_match).json(&body).send()
        };

        let ok = put(&etag, 29000).await.unwrap();
        assert_eq!(ok.status(), 200, "{backends:?}");
        let new_etag = ok.headers()["etag"].to_str().unwrap().to_owned();
        assert_ne!(new_etag, etag, "{backends:?}: every write changes the ETag");

        let stale = assert_error(put(&etag, 30000).await.unwrap(), 412, "precondition_failed", "stale ETag").await;
        assert_eq!(stale["details"]["etag"], new_etag.as_str(), "{backends:?}: the current ETag is given");
        let weak = format!("W/{new_etag}");
        assert_error(put(&weak, 30000).await.unwrap(), 412, "precondition_failed", "weak ETags never match").await;
        assert_error(put("", 30000).await.unwrap(), 412, "precondition_failed", "an empty list matches nothing").await;
        assert_error(put("not-quoted", 30000).await.unwrap(), 400, "malformed", "malformed If-Match").await;
        let listed = format!("\"x\", {new_etag}");
        assert_eq!(put(&listed, 30000).await.unwrap().status(), 200, "{backends:?}: one of a list");
        assert_eq!(put("*", 31000).await.unwrap().status(), 200, "{backends:?}: * matches any version");
        assert_eq!(app.get(&path).await.json::<Value>().await.unwrap()["montant"], 31000.0, "{backends:?}");

        let delete = |if_match: &str| app.http.delete(app.url(&path)).header("if-match", if_match).send();
        assert_error(delete(&etag).await.unwrap(), 412, "precondition_failed", "stale delete").await;
        assert_eq!(app.get(&path).await.status(), 200, "{backends:?}: a refused delete deletes nothing");
        let current = app.get(&path).await.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(delete(&current).await.unwrap().status(), 204, "{backends:?}");
    }
}

#[tokio::test]
async fn a_deleted_sale_is_404_for_get_put_and_delete_and_its_id_stays_taken() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let body = vente_body("Ciment 50 kg", json!("4500"), &day(-1), "Dakar");
        let created = create(&app, &body).await;
        let id = created["id"].as_str().unwrap();
        let path = format!("/api/ventes/{id}");
        assert_eq!(app.http.delete(app.url(&path)).send().await.unwrap().status(), 204, "{backends:?}");

        assert_error(app.get(&path).await, 404, "not_found", "GET after DELETE").await;
        assert_error(app.http.put(app.url(&path)).json(&body).send().await.unwrap(), 404, "not_found", "PUT after DELETE").await;
        assert_error(app.http.put(app.url(&path)).header("if-match", "*").json(&body).send().await.unwrap(), 404, "not_found", "PUT *")
            .await;
        assert_error(app.http.delete(app.url(&path)).send().await.unwrap(), 404, "not_found", "DELETE after DELETE").await;
        let mut replay = body.clone();
        replay["id"] = json!(id);
        assert_error(app.post_json("/api/ventes", &replay).await, 409, "conflict", "POST of a deleted id").await;
        assert!(app.list_all("", 50).await.is_empty(), "{backends:?}");

        // An id never seen is 404 too, for each method.
        let unknown = "/api/ventes/0190d7a2-0000-7000-8000-000000000000";
        assert_error(app.get(unknown).await, 404, "not_found", "GET unknown").await;
        assert_error(app.http.put(app.url(unknown)).json(&body).send().await.unwrap(), 404, "not_found", "PUT unknown").await;
        assert_error(app.http.delete(app.url(unknown)).send().await.unwrap(), 404, "not_found", "DELETE unknown").await;
    }
}

#[tokio::test]
async fn put_replaces_the_content_and_refuses_a_body_id_that_is_not_the_path_id() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let created = create(&app, &vente_body("Tissu wax", json!(12000), &day(-4), "Dakar")).await;
        let path = format!("/api/ventes/{}", created["id"].as_str().unwrap());
        // A sale read from the API can be sent back as it is, with changes.
        let mut edited = created.clone();
        edited["produit"] = json!("Tissu wax 6 yards");
        edited["region"] = json!("saint louis");
        let response = app.http.put(app.url(&path)).json(&edited).send().await.unwrap();
        assert_eq!(response.status(), 200, "{backends:?}");
        let updated: Value = response.json().await.unwrap();
        assert_eq!((&updated["produit"], &updated["region"]), (&json!("Tissu wax 6 yards"), &json!("Saint-Louis")), "{backends:?}");
        assert!(updated_at(&updated) > updated_at(&created), "{backends:?}");
        assert_eq!(app.list_all("region=saint-louis", 50).await.len(), 1, "{backends:?}: listed under its new region");
        assert!(app.list_all("region=dakar", 50).await.is_empty(), "{backends:?}");

        edited["id"] = json!("0190d7a2-0000-7000-8000-000000000001");
        let error = assert_error(app.http.put(app.url(&path)).json(&edited).send().await.unwrap(), 409, "conflict", "id mismatch").await;
        assert_eq!(error_fields(&error), ["id"], "{backends:?}");
        edited["id"] = json!(null);
        edited["deleted"] = json!(true);
        let error = assert_error(app.http.put(app.url(&path)).json(&edited).send().await.unwrap(), 422, "validation", "deleted").await;
        assert_eq!(error_fields(&error), ["deleted"], "{backends:?}: PUT cannot delete");
    }
}

#[tokio::test]
async fn product_names_with_sql_html_and_any_unicode_are_stored_and_returned_verbatim() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let names = [
            "Robert'); DROP TABLE vente;--",
            "<script>alert('x')</script> & <b>gras</b>",
            r#"50% off \ "quoted" _x_ ; -- /* */"#,
            "Ṭhiéboudienne 🍲 ثيبودين 木",
            &"é".repeat(200),
        ];
        for name in names {
            let created = create(&app, &vente_body(name, json!(1), &day(0), "Dakar")).await;
            assert_eq!(created["produit"], name, "{backends:?}");
            let fetched: Value = app.get(&format!("/api/ventes/{}", created["id"].as_str().unwrap())).await.json().await.unwrap();
            assert_eq!(fetched["produit"], name, "{backends:?}");
        }
        let listed: HashSet<String> = app.list_all("", 50).await.iter().map(|v| v["produit"].as_str().unwrap().to_owned()).collect();
        assert_eq!(listed, names.iter().map(|n| n.to_string()).collect(), "{backends:?}: the table is intact");
        let found = app.list_all("q=drop%20table", 50).await;
        assert_eq!(found.len(), 1, "{backends:?}");
    }
}
