//! The web pages without a browser: what any HTTP client sees (encoding, CSRF, no-script paths,
//! errors as French pages, static files).

mod dashboard;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;

use crate::helpers::{Backends, TestApp, montant_text, spawn_app, spawn_app_in};
use dsms::config::{Config, DatabaseUrl};

/// A visitor without a browser: keeps the CSRF cookie and the form token of the last page.
struct Visitor<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    cookie: String,
    token: String,
}

impl<'a> Visitor<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        let page = http.get(app.url("/")).send().await.unwrap();
        let cookie = page.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
        assert!(cookie.starts_with("dsms_csrf="), "{cookie}");
        let token = token_in(&page.text().await.unwrap());
        Self { app, http, cookie, token }
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.token)];
        form.extend_from_slice(fields);
        self.http.post(self.app.url(path)).header(COOKIE, &self.cookie).form(&form).send().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.app.url(path)).header(COOKIE, &self.cookie).send().await.unwrap()
    }
}

fn token_in(html: &str) -> String {
    let start = html.find(r#"name="csrf" value=""#).expect("a CSRF field") + r#"name="csrf" value=""#.len();
    html[start..].chars().take_while(|c| *c != '"').collect()
}

fn sale<'a>(produit: &'a str, montant: &'a str, region: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("produit", produit), ("montant", montant), ("dateVente", "2026-01-15"), ("region", region)]
}

#[tokio::test]
async fn pages_are_utf8_html_with_french_accents() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let bytes = page.bytes().await.unwrap();
    let html = std::str::from_utf8(&bytes).expect("UTF-8");
    assert!(html.starts_with("<!doctype html>\n<html lang=\"fr\">"));
    assert!(html.contains("<title>Système de Gestion des Ventes Multi-Régions</title>"));
    for word in ["Système", "Région", "Ajouter une nouvelle vente", "Statistiques rapides"] {
        assert!(bytes.windows(word.len()).any(|w| w == word.as_bytes()), "{word}");
    }
    assert!(!html.contains("Syst&"), "è as UTF-8, not an entity");
}

#[tokio::test]
async fn a_form_post_records_the_sale_and_redirects_with_a_flash() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let visitor = Visitor::new(&app).await;
    let posted = visitor.post("/", &sale("Café Touba", "1 500,50", "saint louis")).await;
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    assert_eq!(posted.headers()[LOCATION], "/");
    let flash = posted.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();

    let page = visitor.http.get(app.url("/")).header(COOKIE, format!("{}; {flash}", visitor.cookie)).send().await.unwrap();
    let cleared = page.headers().get_all(SET_COOKIE).iter().any(|v| v.to_str().unwrap().starts_with("dsms_flash=;"));
    assert!(cleared, "the flash is shown once");
    let html = page.text().await.unwrap();
    assert!(html.contains("Vente « Café Touba » ajoutée."), "{html}");
    assert!(html.contains("1\u{202f}500,50 FCFA"));
    assert!(html.contains("Saint-Louis"));

    let listed = app.get("/api/ventes").await.text().await.unwrap();
    assert!(listed.contains("Café Touba"));
    assert_eq!(montant_text(&listed), "1500.50");
}

#[tokio::test]
async fn a_form_sent_twice_records_one_sale() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let visitor = Visitor::new(&app).await;
    let id = "01936d4e-5c1a-7000-8000-000000000001";
    let mut fields = sale("Mil", "1000", "Dakar");
    fields.push(("id", id));
    for _ in 0..2 {
        assert_eq!(visitor.post("/", &fields).await.status(), StatusCode::SEE_OTHER);
    }
    let listed: serde_json::Value = app.get("/api/ventes").await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], id);
}

#[tokio::test]
async fn invalid_fields_come_back_with_french_messages_and_the_values_typed() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let visitor = Visitor::new(&app).await;
    let answer =
        visitor.post("/", &[("produit", "<b>Oignons</b>"), ("montant", "0"), ("dateVente", "31/02/2026"), ("region", "Kaolack")]).await;
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let html = answer.text().await.unwrap();
    for message in [
        "le montant doit être strictement positif",
        "la date doit être au format AAAA-MM-JJ (ex. 2026-11-24)",
        "région inconnue ; régions possibles : Dakar, Thies, Saint-Louis",
    ] {
        assert!(html.contains(message), "{message}");
    }
    assert!(
        html.contains(r#"value="&#60;b&#62;Oignons&#60;/b&#62;""#) || html.contains(r#"value="&lt;b&gt;Oignons&lt;/b&gt;""#),
        "escaped, kept"
    );
    assert!(!html.contains("<b>Oignons"), "never raw");
    assert!(html.contains(r#"id="dateVente" name="dateVente" value="""#), "no such date: the date input is left empty");
    assert!(html.contains("Le formulaire contient 3 erreurs"));
    let missing = visitor.post("/", &[]).await.text().await.unwrap();
    assert_eq!(missing.matches("ce champ est obligatoire").count(), 8, "4 beside the fields, 4 in the summary");
}

#[tokio::test]
async fn forms_without_a_valid_token_or_from_another_site_are_refused() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let visitor = Visitor::new(&app).await;
    let other = Visitor::new(&app).await;
    let fields = sale("Mil", "1000", "Dakar");

    let no_cookie = visitor.http.post(app.url("/")).form(&[("csrf", visitor.token.as_str())]).send().await.unwrap();
    assert_eq!(no_cookie.status(), StatusCode::FORBIDDEN);
    assert!(no_cookie.text().await.unwrap().contains("Formulaire refusé"));
    let mut form = vec![("csrf", other.token.as_str())];
    form.extend_from_slice(&fields);
    let foreign_token = visitor.http.post(app.url("/")).header(COOKIE, &visitor.cookie).form(&form).send().await.unwrap();
    assert_eq!(foreign_token.status(), StatusCode::FORBIDDEN);
    let no_token = visitor.http.post(app.url("/")).header(COOKIE, &visitor.cookie).form(&fields).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let mut form = vec![("csrf", visitor.token.as_str())];
    form.extend_from_slice(&fields);
    for (header, value) in [("sec-fetch-site", "cross-site"), ("origin", "http://evil.example")] {
        let cross = visitor.http.post(app.url("/")).header(COOKIE, &visitor.cookie).header(header, value).form(&form).send().await.unwrap();
        assert_eq!(cross.status(), StatusCode::FORBIDDEN, "{header}");
    }
    let listed: serde_json::Value = app.get("/api/ventes").await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "nothing written");

    let same_site = visitor
        .http
        .post(app.url("/"))
        .header(COOKIE, &visitor.cookie)
        .header("origin", app.base.as_str())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn without_a_script_delete_asks_for_confirmation_first() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let visitor = Visitor::new(&app).await;
    let id = app.create_vente("Dakar", "Sucre 50 kg", "26125").await["id"].as_str().unwrap().to_owned();

    let asked = visitor.post(&format!("/ventes/{id}/supprimer"), &[("confirme", "")]).await;
    assert_eq!(asked.status(), StatusCode::OK);
    let html = asked.text().await.unwrap();
    assert!(html.contains("Supprimer cette vente ?") && html.contains("Sucre 50 kg"));
    assert!(html.contains(r#"name="confirme" value="oui""#));
    assert_eq!(app.get(&format!("/api/ventes/{id}")).await.status(), 200, "not deleted yet");
    assert_eq!(visitor.get(&format!("/ventes/{id}/supprimer")).await.status(), StatusCode::OK);

    let deleted = visitor.post(&format!("/ventes/{id}/supprimer"), &[("confirme", "oui")]).await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get(&format!("/api/ventes/{id}")).await.status(), 404);
    let gone = visitor.get(&format!("/ventes/{id}/modifier")).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert!(gone.text().await.unwrap().contains("Cette vente n&#39;existe pas ou a été supprimée."));
}

#[tokio::test]
async fn an_edit_based_on_a_stale_version_is_not_applied_silently() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let visitor = Visitor::new(&app).await;
    let id = app.create_vente("Dakar", "Mil", "1000").await["id"].as_str().unwrap().to_owned();
    let form = visitor.get(&format!("/ventes/{id}/modifier")).await.text().await.unwrap();
    let start = form.find(r#"name="version" value=""#).unwrap() + r#"name="version" value=""#.len();
    let seen: String = form[start..].chars().take_while(|c| *c != '"').collect();

    let body = serde_json::json!({"produit": "Mil rouge", "montant": 1100, "dateVente": "2026-01-15", "region": "Dakar"});
    assert_eq!(app.http.put(app.url(&format!("/api/ventes/{id}"))).json(&body).send().await.unwrap().status(), 200);

    let mut fields = sale("Mil blanc", "1200", "Dakar");
    fields.push(("version", &seen));
    let stale = visitor.post(&format!("/ventes/{id}/modifier"), &fields).await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    let html = stale.text().await.unwrap();
    assert!(html.contains("modifiée ailleurs entre-temps") && html.contains("Mil rouge"));
    assert!(html.contains(r#"value="Mil blanc""#), "the user's values are kept");
    let current: serde_json::Value = app.get(&format!("/api/ventes/{id}")).await.json().await.unwrap();
    assert_eq!(current["produit"], "Mil rouge");

    let again =
        visitor.post(&format!("/ventes/{id}/modifier"), &[&fields[..4], &[("version", token_after(&html, "version"))]].concat()).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER, "resent on the version now shown: applied");
}

fn token_after<'h>(html: &'h str, name: &str) -> &'h str {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker).unwrap() + marker.len();
    let end = html[start..].find('"').unwrap();
    &html[start..start + end]
}

#[tokio::test]
async fn unknown_pages_are_french_html_for_browsers_and_json_for_clients() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let page = app.http.get(app.url("/nulle-part")).header("accept", "text/html,*/*").send().await.unwrap();
    assert_eq!(page.status(), 404);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(page.text().await.unwrap().contains("Page introuvable"));
    let api = app.get("/nulle-part").await;
    assert_eq!(api.status(), 404);
    assert_eq!(api.headers()[CONTENT_TYPE], "application/json");
    let bad_id = app.get("/ventes/pas-un-uuid/modifier").await;
    assert_eq!(bad_id.status(), 404);
    assert!(bad_id.text().await.unwrap().contains("<html lang=\"fr\">"));
    let method = app.http.put(app.url("/")).send().await.unwrap();
    assert_eq!(method.status(), 405);
    assert!(method.text().await.unwrap().contains("Méthode non autorisée"));
}

#[tokio::test]
async fn with_no_region_reachable_the_home_page_says_so_with_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = |db: &str| DatabaseUrl::Postgres(format!("postgres://dsms@127.0.0.1:1/{db}"));
    let mut config = Config::with_regions(vec![("Dakar", unreachable("a")), ("Thies", unreachable("b"))]);
    config.listen = ([127, 0, 0, 1], 0).into();
    config.sync_interval = None;
    config.connect_timeout = std::time::Duration::from_millis(300);
    let app = spawn_app_in(config, dir).await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 503);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(page.text().await.unwrap().contains("Aucune région n&#39;est joignable"));
}

#[tokio::test]
async fn static_files_have_their_types_and_are_cached_by_version() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let html = app.get("/").await.text().await.unwrap();
    for (name, content_type) in
        [("app.css", "text/css; charset=utf-8"), ("app.js", "text/javascript; charset=utf-8"), ("icon.svg", "image/svg+xml")]
    {
        let start = html.find(&format!("/static/{name}?v=")).unwrap_or_else(|| panic!("{name} linked"));
        let url: String = html[start..].chars().take_while(|c| *c != '"').collect();
        let file = app.get(&url).await;
        assert_eq!(file.status(), 200, "{url}");
        assert_eq!(file.headers()[CONTENT_TYPE], content_type);
        assert_eq!(file.headers()["cache-control"], "public, max-age=31536000, immutable");
        let etag = file.headers()["etag"].clone();
        let again = app.http.get(app.url(&format!("/static/{name}"))).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{name}");
    }
    assert_eq!(app.get("/favicon.ico").await.headers()[CONTENT_TYPE], "image/svg+xml");
    assert_eq!(app.get("/static/absent.css").await.status(), 404);
}
