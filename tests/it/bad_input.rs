//! The bad-input matrix: every kind of malformed, mistyped, out-of-range or unwanted input gets a
//! clear 4xx in the error shape — never a 5xx — on SQLite-only, PostgreSQL-only and mixed regions,
//! and writes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ALL_BACKENDS, assert_error, create, day, error_fields, spawn_app, vente_body};

/// One request of the bad-input matrix and what it must get.
struct Bad {
    what: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    /// For 422: the fields `details.fields` must name.
    fields: &'static [&'static str],
}

fn post(what: &'static str, body: impl Into<Vec<u8>>, status: u16, code: &'static str, fields: &'static [&'static str]) -> Bad {
    Bad {
        what,
        method: Method::POST,
        path: "/api/ventes".into(),
        content_type: Some("application/json"),
        body: body.into(),
        status,
        code,
        fields,
    }
}

/// A valid body with one member replaced by raw JSON text (`None`: removed).
fn with(member: &str, raw: Option<&str>) -> Vec<u8> {
    let mut members = vec![
        ("produit".to_owned(), "\"Riz\"".to_owned()),
        ("montant".to_owned(), "1500".to_owned()),
        ("dateVente".to_owned(), format!("\"{}\"", day(-1))),
        ("region".to_owned(), "\"Dakar\"".to_owned()),
    ];
    members.retain(|(name, _)| name != member);
    if let Some(raw) = raw {
        members.push((member.to_owned(), raw.to_owned()));
    }
    let inner: Vec<String> = members.iter().map(|(name, raw)| format!("\"{name}\": {raw}")).collect();
    format!("{{{}}}", inner.join(", ")).into_bytes()
}

fn get(what: &'static str, path: String, status: u16, code: &'static str, fields: &'static [&'static str]) -> Bad {
    Bad { what, method: Method::GET, path, content_type: None, body: Vec::new(), status, code, fields }
}

fn bad_inputs() -> Vec<Bad> {
    let long = format!("\"{}\"", "p".repeat(10_000));
    let huge = format!("{{\"produit\": \"{}\", \"montant\": 1, \"dateVente\": \"{}\", \"region\": \"Dakar\"}}", "p".repeat(70_000), day(0));
    let in_two_days = format!("\"{}\"", day(2));
    vec![
        post("malformed JSON", "{\"produit\": ", 400, "malformed", &[]),
        post("empty body", "", 400, "malformed", &[]),
        post("trailing garbage", "{} x", 400, "malformed", &[]),
        post("an array", "[1, 2]", 400, "malformed", &[]),
        post("a string", "\"vente\"", 400, "malformed", &[]),
        post("a number", "42", 400, "malformed", &[]),
        post("null", "null", 400, "malformed", &[]),
        post("invalid UTF-8", b"{\"produit\": \"\xff\xfe\", \"montant\": 1}".to_vec(), 400, "malformed", &[]),
        post("NaN literal", with("montant", Some("NaN")), 400, "malformed", &[]),
        post("Infinity literal", with("montant", Some("Infinity")), 400, "malformed", &[]),
        post("-Infinity literal", with("montant", Some("-Infinity")), 400, "malformed", &[]),
        post("body over 64 KiB", huge, 413, "payload_too_large", &[]),
        post("missing fields", "{}", 422, "validation", &["dateVente", "montant", "produit", "region"]),
        post("null fields", with("produit", Some("null")), 422, "validation", &["produit"]),
        post("produit a number", with("produit", Some("123")), 422, "validation", &["produit"]),
        post("produit an object", with("produit", Some("{\"a\": 1}")), 422, "validation", &["produit"]),
        post("montant a boolean", with("montant", Some("true")), 422, "validation", &["montant"]),
        post("montant an array", with("montant", Some("[1500]")), 422, "validation", &["montant"]),
        post("dateVente a number", with("dateVente", Some("20260115")), 422, "validation", &["dateVente"]),
        post("region an array", with("region", Some("[\"Dakar\"]")), 422, "validation", &["region"]),
        post("id a number", with("id", Some("5")), 422, "validation", &["id"]),
        post("id not a UUID", with("id", Some("\"vente-1\"")), 422, "validation", &["id"]),
        post("unknown field", with("prix", Some("12")), 422, "validation", &["prix"]),
        post("NaN as a string", with("montant", Some("\"NaN\"")), 422, "validation", &["montant"]),
        post("Infinity as a string", with("montant", Some("\"Infinity\"")), 422, "validation", &["montant"]),
        post("negative amount", with("montant", Some("-5")), 422, "validation", &["montant"]),
        post("negative amount text", with("montant", Some("\"-5\"")), 422, "validation", &["montant"]),
        post("zero amount", with("montant", Some("0")), 422, "validation", &["montant"]),
        post("zero amount text", with("montant", Some("\"0.00\"")), 422, "validation", &["montant"]),
        post("three decimals", with("montant", Some("1.234")), 422, "validation", &["montant"]),
        post("three decimals text", with("montant", Some("\"1.234\"")), 422, "validation", &["montant"]),
        post("1e10", with("montant", Some("1e10")), 422, "validation", &["montant"]),
        post("10^10 text", with("montant", Some("\"10000000000\"")), 422, "validation", &["montant"]),
        post("a huge number", with("montant", Some("1e400")), 422, "validation", &["montant"]),
        post("a tiny number", with("montant", Some("5e-324")), 422, "validation", &["montant"]),
        post("montant text not plain", with("montant", Some("\" 1500\"")), 422, "validation", &["montant"]),
        post("empty produit", with("produit", Some("\"   \"")), 422, "validation", &["produit"]),
        post("10,000-character produit", with("produit", Some(&long)), 422, "validation", &["produit"]),
        post("control character", with("produit", Some("\"a\\u0000b\"")), 422, "validation", &["produit"]),
        post("unknown region", with("region", Some("\"Ziguinchor\"")), 422, "validation", &["region"]),
        post("date in 2 days", with("dateVente", Some(&in_two_days)), 422, "validation", &["dateVente"]),
        post("no such day", with("dateVente", Some("\"2026-02-30\"")), 422, "validation", &["dateVente"]),
        post("French date", with("dateVente", Some("\"15/01/2026\"")), 422, "validation", &["dateVente"]),
        post("before 1900", with("dateVente", Some("\"1899-12-31\"")), 422, "validation", &["dateVente"]),
        post(
            "several bad fields",
            "{\"produit\": 1, \"montant\": \"x\", \"dateVente\": \"y\", \"region\": \"z\", \"w\": 0}",
            422,
            "validation",
            &["dateVente", "montant", "produit", "region", "w"],
        ),
        Bad { content_type: Some("text/plain"), ..post("text/plain", with("x", None), 415, "unsupported_media_type", &[]) },
        Bad { content_type: None, ..post("no Content-Type", with("x", None), 415, "unsupported_media_type", &[]) },
        Bad {
            content_type: Some("application/x-www-form-urlencoded"),
            ..post("a form", "produit=Riz", 415, "unsupported_media_type", &[])
        },
        get("invalid UUID in path", "/api/ventes/not-a-uuid".into(), 400, "malformed", &[]),
        get("UUID without hyphens", "/api/ventes/0190d7a27c4e7b519f3e4c0a1b2c3d4e".into(), 400, "malformed", &[]),
        get("invalid UTF-8 in path", "/api/ventes/%FF".into(), 400, "malformed", &[]),
        Bad { method: Method::DELETE, ..get("DELETE invalid UUID", "/api/ventes/42".into(), 400, "malformed", &[]) },
        Bad {
            method: Method::PUT,
            content_type: Some("application/json"),
            body: with("x", None),
            ..get("PUT invalid UUID", "/api/ventes/42".into(), 400, "malformed", &[])
        },
        get("limit=0", "/api/ventes?limit=0".into(), 422, "validation", &["limit"]),
        get("limit=501", "/api/ventes?limit=501".into(), 422, "validation", &["limit"]),
        get("limit=abc", "/api/ventes?limit=abc".into(), 422, "validation", &["limit"]),
        get("limit=-1", "/api/ventes?limit=-1".into(), 422, "validation", &["limit"]),
        get("garbage cursor", "/api/ventes?cursor=garbage".into(), 400, "malformed", &[]),
        get("cursor with a bad id", "/api/ventes?cursor=12_x".into(), 400, "malformed", &[]),
        get("unknown region filter", "/api/ventes?region=Kaolack".into(), 422, "validation", &["region"]),
        get("bad from", "/api/ventes?from=hier".into(), 422, "validation", &["from"]),
        get("bad to", "/api/ventes?to=2026-13-01".into(), 422, "validation", &["to"]),
        get("q too long", format!("/api/ventes?q={}", "a".repeat(201)), 422, "validation", &["q"]),
        get("a parameter twice", "/api/ventes?limit=1&limit=2".into(), 400, "malformed", &[]),
        get("unknown route", "/api/nothing".into(), 404, "not_found", &[]),
        Bad { method: Method::PATCH, ..get("unknown method", "/api/ventes".into(), 405, "method_not_allowed", &[]) },
    ]
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_in_the_error_shape_never_a_5xx() {
    for backends in ALL_BACKENDS {
        let Some(app) = spawn_app(backends).await else { continue };
        let existing = create(&app, &vente_body("Riz", json!(1500), &day(-1), "Dakar")).await;
        for bad in bad_inputs() {
            let context = format!("{backends:?}: {} ({} {})", bad.what, bad.method, bad.path);
            let response = app.send(bad.method.clone(), &bad.path, bad.content_type, bad.body.clone()).await;
            assert!(response.status().as_u16() < 500, "{context}: {}", response.status());
            let body = assert_error(response, bad.status, bad.code, &context).await;
            let mut fields = error_fields(&body);
            fields.sort();
            assert_eq!(fields, bad.fields, "{context}: {body}");
            // The same bodies on PUT are refused the same way.
            if bad.method == Method::POST {
                let path = format!("/api/ventes/{}", existing["id"].as_str().unwrap());
                let response = app.send(Method::PUT, &path, bad.content_type, bad.body).await;
                let body = assert_error(response, bad.status, bad.code, &format!("PUT {context}")).await;
                let mut put_fields = error_fields(&body);
                put_fields.sort();
                assert_eq!(put_fields, fields, "PUT {context}");
            }
        }
        // Nothing bad was written.
        let all = app.list_all("", 50).await;
        assert_eq!(all.len(), 1, "{backends:?}");
        assert_eq!(all[0], app.get(&format!("/api/ventes/{}", existing["id"].as_str().unwrap())).await.json::<Value>().await.unwrap());
    }
}
