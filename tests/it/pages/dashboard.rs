//! The dashboard (`/stats`), « Synchroniser maintenant » and the drill buttons, over HTTP only.

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

use super::Visitor;
use crate::helpers::{Backends, TestApp, config_for, spawn_app, spawn_app_in};
use crate::sync::new_vente;
use dsms::domain::LocalWrite;
use dsms::domain::VenteId;

/// The text of the element with this id (up to its first tag).
fn text_by_id(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = html.find(&marker).unwrap_or_else(|| panic!("#{id} in the page")) + marker.len();
    html[start..].chars().take_while(|c| *c != '<').collect()
}

/// A count as the pages write it (narrow no-break spaces between digit groups).
fn fr(n: &Value) -> String {
    let digits = n.as_u64().unwrap().to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(d);
    }
    out
}

/// The opening tag of a region's card.
fn card_tag<'h>(html: &'h str, slug: &str) -> &'h str {
    let start = html.find(&format!("id=\"region-{slug}\"")).unwrap_or_else(|| panic!("card of {slug}"));
    let open = html[..start].rfind('<').unwrap();
    &html[open..start + html[start..].find('>').unwrap()]
}

/// A card's markup, up to the next card (or the end of the list).
fn card<'h>(html: &'h str, slug: &str) -> &'h str {
    let start = html.find(&format!("id=\"region-{slug}\"")).unwrap();
    let end = html[start..].find("</article>").unwrap();
    &html[start..start + end]
}

/// A page after the 303 of a form: the next GET, carrying the flash cookie.
async fn follow(visitor: &Visitor<'_>, answer: reqwest::Response) -> String {
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let location = answer.headers()[LOCATION].to_str().unwrap().to_owned();
    let flash = answer.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let path = location.split('#').next().unwrap();
    let page = visitor.http.get(visitor.app.url(path)).header(COOKIE, format!("{}; {flash}", visitor.cookie)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

async fn api_stats(app: &TestApp) -> Value {
    app.get("/api/stats").await.json().await.unwrap()
}

#[tokio::test]
async fn stats_shows_every_french_label_and_the_numbers_of_api_stats() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.sync_on_write = false; // only the rounds below
    let app = spawn_app_in(config, dir).await;
    app.create_vente("Dakar", "Mil", "1500").await;
    let id = app.create_vente("Thies", "Riz", "750000.50").await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.http.delete(app.url(&format!("/api/ventes/{id}"))).send().await.unwrap().status(), 204);
    app.scheduler.run_now().await;
    app.monitor.set_drill("Saint-Louis", true).await.unwrap();
    app.scheduler.run_now().await;

    let page = app.get("/stats").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    let stats = api_stats(&app).await;
    assert!(html.starts_with("<!doctype html>\n<html lang=\"fr\">"));
    for label in [
        "<title>Tableau de Bord - Statistiques Système",
        "<h1 class=\"page-title\">Tableau de Bord - Statistiques Système</h1>",
        "Actualisation automatique : 10 s",
        ">Actualiser</a>",
        "Statistiques de Synchronisation",
        "<dt>Total</dt>",
        "<dt>Succès</dt>",
        "<dt>Échecs</dt>",
        "<dt>Taux</dt>",
        "Taux de succès des synchronisations",
        "<progress id=\"taux-succes\" max=\"100\"",
        "Synchroniser maintenant",
        "État des Régions",
        "<dt>Erreurs</dt>",
        "<dt>Dernier accès</dt>",
        "<dt>En attente (retard)</dt>",
        "<dt>Latence</dt>",
        "<dt>Décalage d'horloge</dt>",
        "Simuler une panne",
        "Rétablir",
        "Exercice de panne en cours",
        "Opérations CRUD",
        "<dt>Créées</dt>",
        "<dt>Modifs</dt>",
        "<dt>Suppr.</dt>",
        "Historique (10 dernières syncs)",
        "<th scope=\"col\">Date/Heure (UTC)</th>",
        "<th scope=\"col\">Statut</th>",
        ">Durée</th>",
        "<th scope=\"col\">Erreur</th>",
        "Graphiques",
        "Durée des synchronisations",
        "Ventes par région",
        "Ventes des 30 derniers jours",
        "Conflits de réplication",
        "Aucun conflit enregistré.",
        "Retour à l'Accueil",
    ] {
        assert!(html.contains(label), "{label}");
    }
    assert!(!html.contains("http-equiv=\"refresh\""), "no full-page reloads");

    assert_eq!(text_by_id(&html, "stat-total"), fr(&stats["totalSyncs"]));
    assert_eq!(text_by_id(&html, "stat-succes"), fr(&stats["successfulSyncs"]));
    assert_eq!(text_by_id(&html, "stat-echecs"), fr(&stats["failedSyncs"]));
    assert_eq!(stats["successRate"], 50.0);
    assert_eq!(text_by_id(&html, "stat-taux"), "50\u{a0}%");
    assert!(html.contains("<progress id=\"taux-succes\" max=\"100\" value=\"50\">"));
    assert_eq!(text_by_id(&html, "crud-total"), fr(&stats["totalVentes"]));
    assert_eq!(text_by_id(&html, "crud-creees"), fr(&stats["ventesCrees"]));
    assert_eq!(text_by_id(&html, "crud-modifiees"), fr(&stats["ventesModifiees"]));
    assert_eq!(text_by_id(&html, "crud-supprimees"), fr(&stats["ventesSupprimees"]));
    assert_eq!((stats["ventesCrees"].as_u64(), stats["ventesSupprimees"].as_u64()), (Some(2), Some(1)));

    for (name, slug) in [("Dakar", "dakar"), ("Thies", "thies"), ("Saint-Louis", "saint-louis")] {
        let region = &stats["regions"][name];
        assert!(card_tag(&html, slug).contains(&format!("data-status=\"{}\"", region["status"].as_str().unwrap())), "{name}");
        let card = card(&html, slug);
        assert!(card.contains(&format!("<dd class=\"errors\">{}</dd>", fr(&region["errors"]))), "{name}: {card}");
        assert!(card.contains(&format!("{}</strong>", region["status"].as_str().unwrap())), "{name}: icon, word");
    }
    let saint_louis = card(&html, "saint-louis");
    assert!(saint_louis.contains("OFFLINE") && saint_louis.contains("panne simulée") && saint_louis.contains("Rétablir"));
    assert_eq!(stats["regions"]["Dakar"]["status"], "ONLINE");

    let rows = html.matches("<td data-label=\"Statut\">").count();
    assert_eq!(rows, stats["syncHistory"].as_array().unwrap().len());
    assert!(html.contains("Partielle") && html.contains("Réussie"));
    let error = stats["syncHistory"][0]["error"].as_str().unwrap();
    assert!(html.contains(&error.replace('\'', "&#39;")), "{error}");
    // Amounts in the charts' tables are exact.
    assert!(html.contains("1\u{202f}500 FCFA"), "Dakar's total");
}

#[tokio::test]
async fn the_dashboard_refreshes_through_its_content_alone() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let fragment = app.get("/stats/contenu").await;
    assert_eq!(fragment.status(), 200);
    let html = fragment.text().await.unwrap();
    assert!(html.trim_start().starts_with("<div id=\"tableau-contenu\""), "{html}");
    assert!(!html.contains("<html") && !html.contains("Retour à l'Accueil"));
    assert!(html.contains("État des Régions"));
    let data_refresh = |html: &str| {
        let start = html.find("data-refresh=\"").unwrap() + "data-refresh=\"".len();
        html[start..].chars().take_while(|c| *c != '"').collect::<String>()
    };
    assert_eq!(data_refresh(&app.get("/stats?actualisation=1").await.text().await.unwrap()), "1");
    assert_eq!(data_refresh(&app.get("/stats?actualisation=0").await.text().await.unwrap()), "10");
    assert_eq!(data_refresh(&app.get("/stats?actualisation=abc").await.text().await.unwrap()), "10");
    assert_eq!(app.http.post(app.url("/stats")).send().await.unwrap().status(), 405);
}

#[tokio::test]
async fn the_sync_button_runs_a_round_and_says_what_each_region_received() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.sync_on_write = false; // the button's round is the only one
    let app = spawn_app_in(config, dir).await;
    // Straight into Thies's database: only a round brings it to the others (a sale written through
    // the server is also pushed to them at once).
    let stores = app.ventes.stores();
    let write = LocalWrite::Create { id: VenteId::generate(), vente: new_vente(stores, 1, "Mil", "1000") };
    stores[1].write(&write, Utc::now()).await.unwrap();
    let visitor = Visitor::new(&app).await;
    let home = visitor.get("/").await.text().await.unwrap();
    assert!(home.contains("Voir Statistiques") && home.contains("href=\"/stats\""));
    assert_eq!((text_by_id(&home, "stat-syncs"), text_by_id(&home, "stat-echecs")), ("0".into(), "0".into()));
    assert_eq!(text_by_id(&home, "stat-ventes"), "0", "Dakar, read first, does not hold the sale yet");

    // Without the token, or from another site: refused, and no round runs.
    let forged = visitor.http.post(app.url("/synchroniser")).header(COOKIE, &visitor.cookie).form(&[("retour", "/")]).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let cross = visitor
        .http
        .post(app.url("/synchroniser"))
        .header(COOKIE, &visitor.cookie)
        .header("origin", "http://evil.example")
        .form(&[("csrf", visitor.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(api_stats(&app).await["totalSyncs"], 0);

    let answer = visitor.post("/synchroniser", &[("retour", "/")]).await;
    assert_eq!(answer.headers()[LOCATION], "/");
    let html = follow(&visitor, answer).await;
    let flash = html.split("<p class=\"flash flash-ok\" role=\"status\">").nth(1).expect("a success flash");
    let flash: String = flash.chars().take_while(|c| *c != '<').collect();
    assert!(flash.starts_with("Synchronisation réussie en "), "{flash}");
    assert!(flash.ends_with(" : Dakar 1 ligne, Thies 0 ligne, Saint-Louis 1 ligne."), "{flash}");
    assert_eq!(text_by_id(&html, "stat-syncs"), "1");
    assert_eq!(text_by_id(&html, "stat-ventes"), "1", "now in Dakar too");
    let stats = api_stats(&app).await;
    assert_eq!((stats["totalSyncs"].as_u64(), stats["syncHistory"].as_array().unwrap().len()), (Some(1), 1));

    // From the dashboard it comes back to the dashboard; an outside address is never followed.
    let answer = visitor.post("/synchroniser", &[("retour", "/stats")]).await;
    assert_eq!(answer.headers()[LOCATION], "/stats");
    let dashboard = follow(&visitor, answer).await;
    assert!(dashboard.contains("Synchronisation réussie en") && dashboard.contains("Dakar 0 ligne"));
    assert_eq!(text_by_id(&dashboard, "stat-total"), "2");
    let answer = visitor.post("/synchroniser", &[("retour", "https://evil.example/")]).await;
    assert_eq!(answer.headers()[LOCATION], "/");

    // A region down: the round is partial, and the flash says which one and why.
    app.monitor.set_drill("Thies", true).await.unwrap();
    let html = follow(&visitor, visitor.post("/synchroniser", &[]).await).await;
    let flash = html.split("<p class=\"flash flash-attention\" role=\"status\">").nth(1).expect("a warning flash");
    assert!(flash.starts_with("Synchronisation partielle en "), "{flash}");
    assert!(flash.contains("Dakar 0 ligne, Saint-Louis 0 ligne, échec pour Thies — région Thies injoignable"), "{flash}");
    assert_eq!(text_by_id(&html, "stat-echecs"), "1");
    assert_eq!(api_stats(&app).await["totalSyncs"], 4);
}

#[tokio::test]
async fn drill_buttons_take_a_region_down_and_back_with_csrf_enforced() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let visitor = Visitor::new(&app).await;
    let dashboard = visitor.get("/stats").await.text().await.unwrap();
    assert!(card(&dashboard, "thies").contains("Simuler une panne<span class=\"visually-hidden\"> sur Thies</span>"));
    let down = [("region", "Thies"), ("action", "panne")];

    let forged = visitor.http.post(app.url("/stats/panne")).header(COOKIE, &visitor.cookie).form(&down).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let mut fields = vec![("csrf", visitor.token.as_str())];
    fields.extend_from_slice(&down);
    let cross = visitor
        .http
        .post(app.url("/stats/panne"))
        .header(COOKIE, &visitor.cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(api_stats(&app).await["regions"]["Thies"]["drill"], false, "refused: nothing changed");

    let answer = visitor.post("/stats/panne", &down).await;
    assert_eq!(answer.headers()[LOCATION], "/stats#region-thies");
    let html = follow(&visitor, answer).await;
    assert!(html.contains("Panne simulée sur Thies : la région est maintenant OFFLINE (région Thies injoignable : panne simulée"));
    let thies = api_stats(&app).await["regions"]["Thies"].clone();
    assert_eq!((thies["drill"].as_bool(), thies["status"].as_str()), (Some(true), Some("OFFLINE")));
    assert!(card_tag(&html, "thies").contains("data-status=\"OFFLINE\""));
    let card_html = card(&html, "thies");
    assert!(
        card_html.contains("✕") && card_html.contains("OFFLINE") && card_html.contains("hors ligne"),
        "icon and words, not colour alone"
    );
    assert!(card_html.contains("Rétablir<span class=\"visually-hidden\"> Thies</span>"));
    assert!(card_tag(&html, "dakar").contains("data-status=\"ONLINE\""));

    let html = follow(&visitor, visitor.post("/stats/panne", &[("region", "thies"), ("action", "retablir")]).await).await;
    assert!(html.contains("Thies rétablie : la région est maintenant ONLINE."), "regions are named loosely");
    let thies = api_stats(&app).await["regions"]["Thies"].clone();
    assert_eq!((thies["drill"].as_bool(), thies["status"].as_str()), (Some(false), Some("ONLINE")));
    assert!(card(&html, "thies").contains("Simuler une panne"));

    let unknown = visitor.post("/stats/panne", &[("region", "Ziguinchor"), ("action", "panne")]).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.text().await.unwrap().contains("région inconnue « Ziguinchor »"));
    assert_eq!(visitor.post("/stats/panne", &[("region", "Thies"), ("action", "couper")]).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_conflict_between_two_regions_is_listed_with_both_versions() {
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    let stores = app.ventes.stores();
    let id = VenteId::generate();
    // Two regions write the same sale without seeing each other (straight into their databases).
    for (i, produit, montant) in [(0, "Version de Dakar", "10"), (1, "Version <de> Thies", "20.50")] {
        let write = LocalWrite::Create { id, vente: new_vente(stores, i, produit, montant) };
        stores[i].write(&write, Utc::now()).await.unwrap();
    }
    app.scheduler.run_now().await;
    app.scheduler.run_now().await;
    let conflicts: Value = app.get("/api/conflicts").await.json().await.unwrap();
    assert_eq!(conflicts.as_array().unwrap().len(), 1);
    let c = &conflicts[0];

    let html = app.get("/stats").await.text().await.unwrap();
    assert!(!html.contains("Aucun conflit enregistré."));
    let start = html.find("<ol class=\"conflicts\">").expect("the conflict list");
    let list = &html[start..start + html[start..].find("</ol>").unwrap()];
    assert_eq!(list.matches("<li class=\"conflict\">").count(), 1);
    assert!(list.contains(&format!("<code class=\"id\">{id}</code>")));
    assert!(list.contains(&format!("détecté dans {}", c["detectedIn"].as_str().unwrap())));
    assert!(list.contains("Version de Dakar</strong> — 10 FCFA — Dakar"), "{list}");
    assert!(
        list.contains("Version &#60;de&#62; Thies</strong> — 20,50 FCFA — Thies") || list.contains("Version &lt;de&gt; Thies"),
        "{list}"
    );
    let winner = list.find("Gagnante").unwrap();
    let loser = list.find("Perdante").unwrap();
    let winner_produit = c["winner"]["produit"].as_str().unwrap().replace('<', "&#60;").replace('>', "&#62;");
    let at = list.find(&format!("{winner_produit}</strong>")).unwrap();
    assert!(winner < at && at < loser, "the winner is listed as such: {list}");
}

#[tokio::test]
async fn with_no_region_reachable_the_dashboard_still_shows_what_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let unreachable = |db: &str| dsms::config::DatabaseUrl::Postgres(format!("postgres://dsms@127.0.0.1:1/{db}"));
    let mut config = dsms::config::Config::with_regions(vec![("Dakar", unreachable("a")), ("Thies", unreachable("b"))]);
    config.listen = ([127, 0, 0, 1], 0).into();
    config.sync_interval = None;
    config.data_dir = dir.path().to_owned();
    config.connect_timeout = std::time::Duration::from_millis(300);
    let app = spawn_app_in(config, dir).await;
    let page = app.get("/stats").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert_eq!(html.matches("data-status=\"OFFLINE\"").count(), 2);
    assert!(html.contains("Indisponibles : aucune région n&#39;est joignable pour le moment."), "charts");
    assert!(html.contains("Journal des conflits indisponible."));
    assert!(html.contains("Aucune synchronisation pour l&#39;instant.") || html.contains("Aucune synchronisation pour l'instant."));
}

#[tokio::test]
async fn a_sync_button_round_longer_than_the_wait_runs_on_and_the_flash_links_to_the_history() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.sync_on_write = false;
    config.sync_request_wait = std::time::Duration::from_millis(200);
    config.statement_timeout = std::time::Duration::from_secs(20);
    let thies = dir.path().join("thies.db");
    let app = spawn_app_in(config, dir).await;
    let stores = app.ventes.stores();
    let write = LocalWrite::Create { id: VenteId::generate(), vente: new_vente(stores, 0, "Mil", "1000") };
    stores[0].write(&write, Utc::now()).await.unwrap();
    // Thies made slow: another process holds its write lock.
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", thies.display())).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();

    let visitor = Visitor::new(&app).await;
    let answer = visitor.post("/synchroniser", &[("retour", "/")]).await;
    assert_eq!(answer.headers()[LOCATION], "/");
    let html = follow(&visitor, answer).await;
    let flash = html.split("<p class=\"flash flash-attention\" role=\"status\">").nth(1).expect("a warning flash");
    let flash = flash.split("</p>").next().unwrap();
    assert!(flash.contains("continue en arrière-plan"), "{flash}");
    assert!(flash.contains("<a href=\"/stats#historique-titre\">Voir l&#39;historique des synchronisations</a>"), "{flash}");

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while api_stats(&app).await["totalSyncs"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the round never finished");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(api_stats(&app).await["syncHistory"][0]["status"], "success");
}
