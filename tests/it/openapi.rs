//! The OpenAPI document the server serves: OpenAPI 3.1, every route with every status it can
//! answer, errors in the one error shape. (Conformance of actual answers to it is fuzzed by
//! `scripts/fuzz-api`.)

use serde_json::Value;

use crate::helpers::{ALL_BACKENDS, spawn_app};

/// Every route and the statuses it answers, as the handlers and layers produce them.
const ROUTES: &[(&str, &str, &[u16])] = &[
    ("/api/ventes", "get", &[200, 400, 401, 403, 422, 429, 503]),
    ("/api/ventes", "post", &[201, 400, 401, 403, 409, 413, 415, 422, 429, 503]),
    ("/api/ventes/{id}", "get", &[200, 400, 401, 403, 404, 429, 503]),
    ("/api/ventes/{id}", "put", &[200, 400, 401, 403, 404, 409, 412, 413, 415, 422, 429, 503]),
    ("/api/ventes/{id}", "delete", &[204, 400, 401, 403, 404, 412, 429, 503]),
    ("/api/sync", "post", &[200, 202, 401, 403, 415, 429]),
    ("/api/conflicts", "get", &[200, 400, 401, 403, 422, 429, 503]),
    ("/api/quarantine", "get", &[200, 400, 401, 403, 422, 429, 503]),
    ("/api/stats", "get", &[200, 401, 403, 429]),
    ("/api/stats/history", "get", &[200, 400, 401, 403, 422, 429]),
    ("/api/analytics", "get", &[200, 401, 403, 429, 503]),
    ("/api/regions/{name}/drill", "post", &[200, 400, 401, 403, 404, 413, 415, 422, 429]),
    ("/api/users", "get", &[200, 401, 403, 429, 503]),
    ("/metrics", "get", &[200, 401, 403, 429]),
    ("/api/openapi.json", "get", &[200, 401, 403, 429]),
    ("/healthz", "get", &[200]),
    ("/readyz", "get", &[200, 503]),
];

#[tokio::test]
async fn the_openapi_document_is_3_1_and_documents_every_route_with_its_error_statuses() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let response = app.get("/api/openapi.json").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let doc: Value = response.json().await.unwrap();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);

        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (path.clone(), method.clone())))
            .filter(|(_, method)| ["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()))
            .collect();
        documented.sort();
        let mut expected: Vec<(String, String)> = ROUTES.iter().map(|(p, m, _)| (p.to_string(), m.to_string())).collect();
        expected.sort();
        assert_eq!(documented, expected, "{backends:?}: the documented operations are the routes");

        for (path, method, statuses) in ROUTES {
            let operation = &paths[*path][*method];
            let mut codes: Vec<u16> = operation["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
            codes.sort();
            assert_eq!(&codes, statuses, "{method} {path}");
            for code in codes.iter().filter(|c| **c >= 400) {
                let schema = &operation["responses"][code.to_string()]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {code}");
            }
            assert!(operation["operationId"].is_string(), "{method} {path}");
            let open = ["/healthz", "/readyz"].contains(path);
            // No user exists here: authentication is off, so credentials are optional (`{}`).
            let security = if open { serde_json::json!([]) } else { serde_json::json!([{ "basic": [] }, { "bearer": [] }, {}]) };
            assert_eq!(operation["security"], security, "{method} {path}");
            let role = match (*path, *method) {
                ("/healthz" | "/readyz", _) => Value::Null,
                ("/api/sync" | "/api/regions/{name}/drill" | "/api/users" | "/api/quarantine", _) => "admin".into(),
                ("/api/ventes" | "/api/ventes/{id}", "post" | "put" | "delete") => "vendeur".into(),
                _ => "lecteur".into(),
            };
            assert_eq!(operation["x-dsms-role"], role, "{method} {path}");
        }

        assert_eq!(doc["components"]["securitySchemes"]["basic"]["scheme"], "basic");
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        let schemas = &doc["components"]["schemas"];
        let error = &schemas["ErrorBody"];
        assert_eq!(error["required"], serde_json::json!(["error", "message", "details"]));
        for schema in ["VenteInput", "VenteJson"] {
            assert_eq!(schemas[schema]["properties"]["region"]["enum"], serde_json::json!(["Dakar", "Thies", "Saint-Louis"]), "{schema}");
        }
        assert_eq!(schemas["VenteInput"]["additionalProperties"], false, "unknown fields are refused");
        let montant = &schemas["VenteInput"]["properties"]["montant"]["oneOf"];
        assert_eq!(montant[0]["multipleOf"], 0.01);
        assert_eq!(montant[1]["pattern"], dsms::domain::Montant::PLAIN_PATTERN);
        assert_eq!(schemas["VenteInput"]["properties"]["produit"]["pattern"], dsms::domain::Produit::PATTERN);
        let date = schemas["VenteInput"]["properties"]["dateVente"]["pattern"].as_str().unwrap();
        let tomorrow = (chrono::Utc::now().date_naive() + chrono::Days::new(1)).format("%Y-%m-%d").to_string();
        let date = regex::Regex::new(date).unwrap();
        assert!(date.is_match(&tomorrow) && date.is_match("1900-01-01") && !date.is_match("1899-12-31"), "{date}");
    }
}
