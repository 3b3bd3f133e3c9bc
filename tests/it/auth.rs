//! Access control and the hardened edge (issue 14): the role matrix over every route, login and
//! sessions, throttling, protected mode, the Host allowlist and slow clients.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backends, TestApp, assert_error, config_for, spawn_app_in};
use dsms::auth::Role;
use dsms::config::Config;

const PASSWORD: &str = "mot-de-passe-solide";

/// An app over SQLite with `edit` applied to its configuration, and users lecteur, vendeur and
/// admin (named after their role, password `PASSWORD`).
async fn app_with_users(edit: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    edit(&mut config);
    let app = spawn_app_in(config, dir).await;
    for role in Role::ALL {
        app.auth.add_user(role.as_str(), role, PASSWORD).await.unwrap();
    }
    app
}

fn basic(name: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}")))
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

/// The value of cookie `name` set by `response`, if any.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).find(|v| v.starts_with(&format!("{name}=")))
}

fn token_in(html: &str) -> String {
    let start = html.find(r#"name="csrf" value=""#).expect("a CSRF field") + r#"name="csrf" value=""#.len();
    html[start..].chars().take_while(|c| *c != '"').collect()
}

/// A browser without a browser: its cookies and the CSRF token of the last page.
struct Visitor<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    cookies: Vec<String>,
}

impl<'a> Visitor<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self { app, http: no_redirects(), cookies: Vec::new() }
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let pair = value.to_str().unwrap().split(';').next().unwrap().to_owned();
            let name = pair.split('=').next().unwrap().to_owned();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            if !pair.ends_with('=') {
                self.cookies.push(pair);
            }
        }
    }

    async fn get(&mut self, path: &str) -> reqwest::Response {
        let response = self.http.get(self.app.url(path)).header(COOKIE, self.cookies.join("; ")).send().await.unwrap();
        self.keep(&response);
        response
    }

    /// The CSRF token of the page at `path`.
    async fn token(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        token_in(&page.text().await.unwrap())
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let response = self.http.post(self.app.url(path)).header(COOKIE, self.cookies.join("; ")).form(fields).send().await.unwrap();
        self.keep(&response);
        response
    }

    /// Logs in through the form; returns the answer to the POST.
    async fn login(&mut self, name: &str, password: &str, retour: &str) -> reqwest::Response {
        let token = self.token(&format!("/connexion?retour={retour}")).await;
        self.post("/connexion", &[("csrf", &token), ("nom", name), ("mot_de_passe", password), ("retour", retour)]).await
    }
}

/// A sale recorded behind the HTTP layer; its id.
async fn seed_vente(app: &TestApp) -> String {
    let fields = dsms::domain::vente::VenteFields {
        produit: Some("Mil"),
        montant: Some("1500"),
        date_vente: Some("2026-01-15"),
        region: Some("Dakar"),
    };
    let vente = dsms::domain::NewVente::parse(&fields, app.ventes.regions(), app.ventes.today()).unwrap();
    app.ventes.create(None, vente).await.unwrap().vente.id.to_string()
}

/// (method, path, JSON body, status once allowed, role needed; `None`: open).
type ApiCase = (Method, String, Option<Value>, u16, Option<Role>);
/// (method, path, form fields, status once allowed, role needed; `None`: open).
type PageCase<'a> = (Method, &'a str, Vec<(&'a str, &'a str)>, u16, Option<Role>);

/// Who sends a request in the matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    Role(Role),
    /// Basic with the admin's name and a wrong password.
    BadPassword,
    RevokedToken,
}

#[tokio::test]
async fn every_api_route_answers_each_role_with_its_exact_status() {
    // Many wrong passwords on purpose: no throttling here (it has its own test).
    let app = app_with_users(|c| c.auth.login_max_failures = 10_000).await;
    let mut tokens = std::collections::HashMap::new();
    for role in Role::ALL {
        tokens.insert(role, app.auth.new_token(role.as_str()).await.unwrap());
    }
    let revoked = app.auth.new_token("admin").await.unwrap();
    let admin_token = app.auth.new_token("admin").await.unwrap();
    app.auth.revoke_tokens("admin").await.unwrap();
    assert_eq!(app.auth.check_token(&admin_token).await.unwrap(), None, "--revoke revokes every token of the user");
    tokens.insert(Role::Admin, app.auth.new_token("admin").await.unwrap());

    let id = seed_vente(&app).await;
    let unknown = "0190d7a2-7c4e-7b51-9f3e-4c0a1b2c3d4e";
    let sale = json!({"produit": "Riz", "montant": "100", "dateVente": "2026-01-15", "region": "Thies"});
    // (method, path, JSON body, status once allowed, role needed; None: open)
    let routes: Vec<ApiCase> = vec![
        (Method::GET, "/api/ventes".into(), None, 200, Some(Role::Lecteur)),
        (Method::POST, "/api/ventes".into(), Some(sale.clone()), 201, Some(Role::Vendeur)),
        (Method::GET, format!("/api/ventes/{id}"), None, 200, Some(Role::Lecteur)),
        (Method::PUT, format!("/api/ventes/{unknown}"), Some(sale.clone()), 404, Some(Role::Vendeur)),
        (Method::DELETE, format!("/api/ventes/{unknown}"), None, 404, Some(Role::Vendeur)),
        (Method::POST, "/api/sync".into(), Some(json!({})), 200, Some(Role::Admin)),
        (Method::GET, "/api/conflicts".into(), None, 200, Some(Role::Lecteur)),
        (Method::GET, "/api/stats".into(), None, 200, Some(Role::Lecteur)),
        (Method::GET, "/api/stats/history".into(), None, 200, Some(Role::Lecteur)),
        (Method::GET, "/api/analytics".into(), None, 200, Some(Role::Lecteur)),
        (Method::POST, "/api/regions/Thies/drill".into(), Some(json!({"down": false})), 200, Some(Role::Admin)),
        (Method::GET, "/api/users".into(), None, 200, Some(Role::Admin)),
        (Method::GET, "/metrics".into(), None, 200, Some(Role::Lecteur)),
        (Method::GET, "/api/openapi.json".into(), None, 200, Some(Role::Lecteur)),
        (Method::GET, "/healthz".into(), None, 200, None),
        (Method::GET, "/readyz".into(), None, 200, None),
        (Method::GET, "/favicon.ico".into(), None, 200, None),
    ];
    let everyone =
        [Who::Anonymous, Who::Role(Role::Lecteur), Who::Role(Role::Vendeur), Who::Role(Role::Admin), Who::BadPassword, Who::RevokedToken];
    for (method, path, body, allowed, needed) in &routes {
        for who in everyone {
            let mut request = app.http.request(method.clone(), app.url(path));
            if let Some(body) = body {
                request = request.json(body);
            }
            request = match who {
                Who::Anonymous => request,
                // Half the roles by token, the admin by password (Basic).
                Who::Role(Role::Admin) => request.header(AUTHORIZATION, basic("admin", PASSWORD)),
                Who::Role(role) => request.bearer_auth(&tokens[&role]),
                Who::BadPassword => request.header(AUTHORIZATION, basic("admin", "pas-le-bon-mot-de-passe")),
                Who::RevokedToken => request.bearer_auth(&revoked),
            };
            let response = request.send().await.unwrap();
            let expected = match (who, needed) {
                (_, None) => *allowed,
                (Who::Role(role), Some(needed)) if role >= *needed => *allowed,
                (Who::Role(_), Some(_)) => 403,
                (_, Some(_)) => 401,
            };
            let context = format!("{who:?} {method} {path}");
            match expected {
                401 => {
                    let challenges: Vec<_> =
                        response.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
                    assert!(
                        challenges.iter().any(|c| c.starts_with("Basic ")) && challenges.iter().any(|c| c.starts_with("Bearer ")),
                        "{context}: {challenges:?}"
                    );
                    assert_error(response, 401, "unauthorized", &context).await;
                }
                403 => {
                    let body = assert_error(response, 403, "forbidden", &context).await;
                    assert_eq!(body["details"]["required"], needed.unwrap().as_str(), "{context}");
                }
                status => assert_eq!(response.status().as_u16(), status, "{context}"),
            }
        }
    }
    // What the users list shows: names and roles, never a hash.
    let users = app.http.get(app.url("/api/users")).bearer_auth(&tokens[&Role::Admin]).send().await.unwrap().text().await.unwrap();
    assert!(users.contains("\"vendeur\"") && !users.contains("argon2"), "{users}");
}

#[tokio::test]
async fn every_page_answers_each_role_with_its_exact_status() {
    let app = app_with_users(|_| {}).await;
    let id = seed_vente(&app).await;
    let unknown = "0190d7a2-7c4e-7b51-9f3e-4c0a1b2c3d4e";
    let sale: Vec<(&str, &str)> = vec![("produit", "Riz"), ("montant", "100"), ("dateVente", "2026-01-15"), ("region", "Thies")];
    // (method, path, form fields, status once allowed, role needed; None: open)
    let edit = format!("/ventes/{id}/modifier");
    let delete_page = format!("/ventes/{id}/supprimer");
    let delete_unknown = format!("/ventes/{unknown}/supprimer");
    let pages: Vec<PageCase> = vec![
        (Method::GET, "/", vec![], 200, Some(Role::Lecteur)),
        (Method::POST, "/", sale.clone(), 303, Some(Role::Vendeur)),
        (Method::GET, &edit, vec![], 200, Some(Role::Vendeur)),
        (Method::GET, &delete_page, vec![], 200, Some(Role::Vendeur)),
        (Method::POST, &delete_unknown, vec![("confirme", "oui")], 404, Some(Role::Vendeur)),
        (Method::POST, "/synchroniser", vec![("retour", "/")], 303, Some(Role::Admin)),
        (Method::GET, "/stats", vec![], 200, Some(Role::Lecteur)),
        (Method::GET, "/stats/contenu", vec![], 200, Some(Role::Lecteur)),
        (Method::POST, "/stats/panne", vec![("region", "Thies"), ("action", "retablir")], 303, Some(Role::Admin)),
        (Method::GET, "/connexion", vec![], 200, None),
    ];
    let mut anonymous = Visitor::new(&app);
    let anonymous_token = anonymous.token("/connexion").await;
    for role in [None, Some(Role::Lecteur), Some(Role::Vendeur), Some(Role::Admin)] {
        let mut visitor = Visitor::new(&app);
        let token = match role {
            None => anonymous_token.clone(),
            Some(role) => {
                let response = visitor.login(role.as_str(), PASSWORD, "/").await;
                assert_eq!(response.status(), 303, "{role:?}");
                visitor.token("/").await
            }
        };
        for (method, path, fields, allowed, needed) in &pages {
            let response = if *method == Method::GET {
                visitor.get(path).await
            } else {
                let mut form = vec![("csrf", token.as_str())];
                form.extend(fields.iter().copied());
                let cookies = if role.is_none() { anonymous.cookies.join("; ") } else { visitor.cookies.join("; ") };
                visitor.http.post(app.url(path)).header(COOKIE, cookies).form(&form).send().await.unwrap()
            };
            let context = format!("{role:?} {method} {path}");
            let expected = match (role, needed) {
                // Logged in, the login page sends back to the site.
                (Some(_), None) => 303,
                (None, None) => *allowed,
                (Some(role), Some(needed)) if role >= *needed => *allowed,
                (Some(_), Some(_)) => 403,
                (None, Some(_)) => 303,
            };
            assert_eq!(response.status().as_u16(), expected, "{context}");
            let location = response.headers().get(LOCATION).map(|v| v.to_str().unwrap().to_owned());
            if role.is_none() && needed.is_some() {
                let back = if *method == Method::GET && *path != "/" {
                    format!("/connexion?retour={}", url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>())
                } else {
                    "/connexion".to_owned()
                };
                assert_eq!(location.as_deref(), Some(back.as_str()), "{context}");
            }
            if expected == 403 {
                assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8", "{context}");
                assert!(response.text().await.unwrap().contains("Accès refusé"), "{context}");
            }
        }
    }
}

#[tokio::test]
async fn a_login_opens_a_session_that_returns_to_the_page_asked_for_until_logout() {
    let app = app_with_users(|_| {}).await;
    let mut visitor = Visitor::new(&app);
    // A session id planted before login (session fixation) is never the one the login gives.
    let planted = format!("dsms_session={}", "A".repeat(43));
    visitor.cookies.push(planted.clone());
    let first = visitor.get("/stats?actualisation=5").await;
    assert_eq!(first.status(), 303);
    assert_eq!(first.headers()[LOCATION], "/connexion?retour=%2Fstats%3Factualisation%3D5");
    let form = visitor.get("/connexion?retour=%2Fstats%3Factualisation%3D5").await;
    assert_eq!(form.status(), 200);
    let html = form.text().await.unwrap();
    assert!(
        html.contains(r#"<label for="nom">Nom d'utilisateur</label>"#) && html.contains(r#"autocomplete="current-password""#),
        "{html}"
    );
    let login_token = token_in(&html);

    // A wrong password: the form again, 401, the name kept, no session.
    let wrong = visitor
        .post("/connexion", &[("csrf", &login_token), ("nom", "vendeur"), ("mot_de_passe", "pas-le-bon-mot"), ("retour", "/stats")])
        .await;
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong, "dsms_session").is_none());
    assert!(wrong.text().await.unwrap().contains("Nom d&#39;utilisateur ou mot de passe incorrect."));
    // Without the CSRF token, even the right password is refused.
    let forged = visitor.post("/connexion", &[("nom", "vendeur"), ("mot_de_passe", PASSWORD)]).await;
    assert_eq!(forged.status(), 403);

    let ok = visitor
        .post("/connexion", &[("csrf", &login_token), ("nom", "vendeur"), ("mot_de_passe", PASSWORD), ("retour", "/stats?actualisation=5")])
        .await;
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()[LOCATION], "/stats?actualisation=5");
    let cookie = set_cookie(&ok, "dsms_session").unwrap();
    let flags: Vec<&str> = cookie.split("; ").skip(1).collect();
    assert_eq!(flags, ["Path=/", "HttpOnly", "SameSite=Lax"], "no Secure over plain HTTP: {cookie}");
    let first_id = cookie.split(';').next().unwrap().to_owned();
    assert_ne!(first_id, planted);

    let page = visitor.get("/stats").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"Connecté : <strong id="utilisateur">vendeur</strong>"#), "{html}");
    assert!(html.contains("Se déconnecter"));
    assert!(!html.contains("/synchroniser") && !html.contains("/stats/panne"), "a vendeur sees no sync or drill button");

    // CSRF stays on, bound to the session: the token of the anonymous login page no longer works.
    let sale = [("produit", "Riz"), ("montant", "100"), ("dateVente", "2026-01-15"), ("region", "Thies")];
    let mut fields = vec![("csrf", login_token.as_str())];
    fields.extend(sale);
    assert_eq!(visitor.post("/", &fields).await.status(), 403, "anonymous token");
    assert_eq!(visitor.post("/", &sale).await.status(), 403, "no token");
    let token = visitor.token("/").await;
    let mut fields = vec![("csrf", token.as_str())];
    fields.extend(sale);
    assert_eq!(visitor.post("/", &fields).await.status(), 303, "the session's token");

    // Logging in again (from a page of the session) gives a new session id and ends the old one.
    let token = visitor.token("/").await;
    let again = visitor.post("/connexion", &[("csrf", &token), ("nom", "vendeur"), ("mot_de_passe", PASSWORD), ("retour", "/")]).await;
    assert_eq!(again.status(), 303);
    let second_id = set_cookie(&again, "dsms_session").unwrap().split(';').next().unwrap().to_owned();
    assert_ne!(first_id, second_id);
    let stolen = no_redirects().get(app.url("/")).header(COOKIE, &first_id).send().await.unwrap();
    assert_eq!(stolen.status(), 303, "the session before the new login has ended");

    // « Se déconnecter » ends it.
    let token = visitor.token("/").await;
    let out = visitor.post("/deconnexion", &[("csrf", &token)]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()[LOCATION], "/connexion");
    assert!(set_cookie(&out, "dsms_session").unwrap().contains("Max-Age=0"));
    let after = no_redirects().get(app.url("/")).header(COOKIE, &second_id).send().await.unwrap();
    assert_eq!(after.status(), 303, "the session is over on the server too");
}

#[tokio::test]
async fn a_session_ends_when_idle_and_after_its_lifetime() {
    let app = app_with_users(|c| {
        c.auth.session_idle = Duration::from_secs(3);
        c.auth.session_lifetime = Duration::from_secs(5);
    })
    .await;
    let (mut busy, mut idle) = (Visitor::new(&app), Visitor::new(&app));
    assert_eq!(busy.login("lecteur", PASSWORD, "/").await.status(), 303);
    assert_eq!(idle.login("lecteur", PASSWORD, "/").await.status(), 303);
    let start = Instant::now();
    let at = |seconds: f64| tokio::time::sleep_until((start + Duration::from_secs_f64(seconds)).into());
    at(1.5).await;
    assert_eq!(busy.get("/").await.status(), 200);
    at(3.0).await;
    assert_eq!(busy.get("/").await.status(), 200);
    at(3.5).await;
    let gone = idle.get("/").await;
    assert_eq!(gone.status(), 303, "unused for 3 s");
    assert!(set_cookie(&gone, "dsms_session").unwrap().contains("Max-Age=0"), "the stale cookie is removed");
    assert_eq!(busy.get("/").await.status(), 200);
    at(5.3).await;
    assert_eq!(busy.get("/").await.status(), 303, "5 s after login, used or not");
}

#[tokio::test]
async fn repeated_failures_are_refused_with_429_then_accepted_again() {
    let app = app_with_users(|c| {
        c.auth.login_max_failures = 3;
        c.auth.login_window = Duration::from_secs(2);
    })
    .await;
    let get = |auth: String| app.http.get(app.url("/api/stats")).header(AUTHORIZATION, auth).send();
    for _ in 0..3 {
        assert_eq!(get(basic("admin", "mauvais-mot-de-passe")).await.unwrap().status(), 401);
    }
    let blocked = get(basic("admin", PASSWORD)).await.unwrap();
    let wait: u64 = blocked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_error(blocked, 429, "too_many_requests", "even the right password, for a while").await;
    // The login form is refused too (same name), as a French page.
    let mut visitor = Visitor::new(&app);
    let page = visitor.login("admin", PASSWORD, "/").await;
    assert_eq!(page.status(), 429);
    assert!(page.headers().contains_key("retry-after"));
    assert!(page.text().await.unwrap().contains("Trop de tentatives"));
    // Tokens are not passwords: they still work.
    let token = app.auth.new_token("lecteur").await.unwrap();
    assert_eq!(app.http.get(app.url("/api/stats")).bearer_auth(&token).send().await.unwrap().status(), 200);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get(basic("admin", PASSWORD)).await.unwrap().status(), 200, "recovered once the window has passed");
}

#[tokio::test]
async fn with_no_user_a_non_loopback_listen_is_refused_and_anonymous_access_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.listen = ([0, 0, 0, 0], 0).into();
    let refused = dsms::app::App::build(config).await.err().expect("refused");
    let message = refused.to_string();
    assert!(message.contains("listen") && message.contains("dsms user add") && message.contains("allow_anonymous = true"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");

    // On loopback with no user, everything stays open (the other tests run so).
    let app = spawn_app_in(config_for(Backends::Sqlite, dir.path()).unwrap(), tempfile::tempdir().unwrap()).await;
    let response = app.http.post(app.url("/api/sync")).header(CONTENT_TYPE, "application/json").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.get("/").await.status(), 200);
    // A sync cannot be triggered by a cross-site form (not JSON).
    let form =
        app.http.post(app.url("/api/sync")).header(CONTENT_TYPE, "application/x-www-form-urlencoded").body("a=1").send().await.unwrap();
    assert_error(form, 415, "unsupported_media_type", "form-encoded sync").await;
}

#[tokio::test]
async fn a_request_for_another_host_name_gets_421() {
    let app = app_with_users(|_| {}).await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    for host in ["evil.example".to_owned(), format!("rebind.example:{port}"), format!("localhost.evil.example:{port}")] {
        let response = app.http.get(app.url("/healthz")).header("host", &host).send().await.unwrap();
        assert_error(response, 421, "misdirected", &host).await;
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "LOCALHOST".to_owned()] {
        let response = app.http.get(app.url("/healthz")).header("host", &host).send().await.unwrap();
        assert_eq!(response.status(), 200, "{host}");
    }

    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.edge.allowed_hosts = Some(vec!["ventes.example.sn".into()]);
    let named = spawn_app_in(config, dir).await;
    let ok = named.http.get(named.url("/healthz")).header("host", "ventes.example.sn").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(named.get("/healthz").await.status(), 421, "only the configured names");
}

#[tokio::test]
async fn half_sent_requests_neither_block_others_nor_stay_open_past_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.edge.header_read_timeout = Duration::from_secs(2);
    let app = spawn_app_in(config, dir).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Lent: ").await.unwrap();
        slow.push(stream);
    }
    let started = Instant::now();
    let response = app.http.get(app.url("/healthz")).timeout(Duration::from_secs(5)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1), "answered in {:?} beside 300 slow clients", started.elapsed());

    // Each slow connection is closed by the server once its headers are late.
    let closed = futures::future::join_all(slow.into_iter().map(|mut stream| async move {
        let mut buffer = [0u8; 512];
        tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }))
    .await;
    assert!(closed.iter().all(|c| *c), "{} of 300 still open", closed.iter().filter(|c| !**c).count());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(Backends::Sqlite, dir.path()).unwrap();
    config.edge.idle_timeout = Duration::from_secs(1);
    config.edge.header_read_timeout = Duration::from_secs(30);
    let app = spawn_app_in(config, dir).await;
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.ends_with(b"ok") {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buffer[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    // Kept alive, then closed for idleness (long before the 30 s header timeout).
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}
