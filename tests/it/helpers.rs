//! Spawning the real application over real databases, and talking to it like a client.

use std::sync::{Arc, OnceLock};

use chrono::{Days, Utc};
use dsms::app::{App, AppError};
use dsms::config::{Config, DatabaseUrl};
use dsms::monitor::Monitor;
use dsms::testkit::pg::PgCluster;
use dsms::ventes::Ventes;
use serde_json::{Value, json};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Which databases the regions of a test app live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backends {
    Sqlite,
    Postgres,
    /// Dakar in PostgreSQL, the others in SQLite.
    Mixed,
}

pub const ALL_BACKENDS: [Backends; 3] = [Backends::Sqlite, Backends::Postgres, Backends::Mixed];

/// The PostgreSQL cluster shared by this test binary (one per process; databases are per test).
/// `None` (after a loud SKIP line) when PostgreSQL is missing and `DSMS_REQUIRE_PG` is unset.
pub fn pg() -> Option<&'static PgCluster> {
    static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            if PgCluster::bin_dir().is_none() {
                if std::env::var("DSMS_REQUIRE_PG").is_ok_and(|v| v == "1") {
                    panic!("DSMS_REQUIRE_PG=1 but PostgreSQL is not installed (apt-get install postgresql)");
                }
                eprintln!(
                    "\n*** SKIP: PostgreSQL not installed; PostgreSQL tests do not run (set DSMS_REQUIRE_PG=1 to fail instead) ***\n"
                );
                return None;
            }
            let cluster = PgCluster::start().expect("start a private PostgreSQL cluster");
            cluster.stop_when_process_exits().expect("exit watcher");
            Some(cluster)
        })
        .as_ref()
}

/// A fresh, empty database on the shared cluster.
pub fn pg_database() -> Option<String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cluster = pg()?;
    let name = format!("t{}", NEXT.fetch_add(1, Ordering::SeqCst));
    Some(cluster.create_database(&name).expect("create database"))
}

/// A PostgreSQL cluster of the calling test's own (one it stops, freezes or keeps a long
/// transaction on, which would disturb the other tests on the shared one); `None` when PostgreSQL
/// is missing and not required.
pub async fn private_cluster() -> Option<PgCluster> {
    if PgCluster::bin_dir().is_none() {
        assert!(std::env::var("DSMS_REQUIRE_PG").as_deref() != Ok("1"), "DSMS_REQUIRE_PG=1 but PostgreSQL is not installed");
        eprintln!("*** SKIP: PostgreSQL not installed ***");
        return None;
    }
    Some(tokio::task::spawn_blocking(PgCluster::start).await.unwrap().unwrap())
}

/// The three default regions on the given backends, in a temp dir, listening on a free port.
/// `None` when the backends need PostgreSQL and it is skipped.
pub fn config_for(backends: Backends, dir: &std::path::Path) -> Option<Config> {
    let sqlite = |slug: &str| DatabaseUrl::Sqlite(dir.join(format!("{slug}.db")));
    let postgres = || pg_database().map(DatabaseUrl::Postgres);
    let urls = match backends {
        Backends::Sqlite => vec![sqlite("dakar"), sqlite("thies"), sqlite("saint-louis")],
        Backends::Postgres => vec![postgres()?, postgres()?, postgres()?],
        Backends::Mixed => vec![postgres()?, sqlite("thies"), sqlite("saint-louis")],
    };
    let mut config = Config::with_regions(["Dakar", "Thies", "Saint-Louis"].into_iter().zip(urls).collect());
    config.listen = ([127, 0, 0, 1], 0).into();
    config.sync_interval = None;
    // The state database lives with the test; probes run at start-up and on demand only.
    config.data_dir = dir.to_owned();
    config.probe_interval = None;
    Some(config)
}

/// A running server and a client for it; stopped when dropped.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub ventes: Arc<Ventes>,
    pub scheduler: Arc<dsms::sync::scheduler::Scheduler>,
    pub monitor: Arc<Monitor>,
    pub auth: Arc<dsms::auth::Auth>,
    pub config: Config,
    _dir: tempfile::TempDir,
    _stop: DropGuard,
    task: tokio::task::JoinHandle<Result<(), AppError>>,
}

pub async fn spawn_app(backends: Backends) -> Option<TestApp> {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(backends, dir.path())?;
    Some(spawn_app_in(config, dir).await)
}

/// Starts the real application with `config`; `dir` lives as long as the app.
pub async fn spawn_app_in(config: Config, dir: tempfile::TempDir) -> TestApp {
    let app = App::build(config.clone()).await.expect("build the app");
    let base = format!("http://{}", app.local_addr());
    let (ventes, monitor, scheduler, auth) = (app.ventes(), app.monitor(), app.scheduler(), app.auth());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    TestApp { base, http: reqwest::Client::new(), ventes, monitor, scheduler, auth, config, _dir: dir, _stop: stop.drop_guard(), task }
}

impl TestApp {
    /// Stops the server and waits until it has finished (statistics saved); returns its folder
    /// so another app can start on the same data.
    pub async fn stop(self) -> tempfile::TempDir {
        self._stop.disarm().cancel();
        self.task.await.expect("server task").expect("server ended cleanly");
        self._dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(body).send().await.unwrap()
    }

    /// POSTs a sale, asserts 201, returns its JSON.
    pub async fn create_vente(&self, region: &str, produit: &str, montant: &str) -> Value {
        let body = json!({"produit": produit, "montant": montant, "dateVente": "2026-01-15", "region": region});
        let response = self.post_json("/api/ventes", &body).await;
        assert_eq!(response.status(), 201, "create {body}");
        let text = response.text().await.unwrap();
        let mut vente: Value = serde_json::from_str(&text).unwrap();
        vente["montantText"] = Value::String(montant_text(&text));
        vente
    }
}

/// The `montant` of a JSON answer exactly as written on the wire (a float parse would lose `.50`).
pub fn montant_text(body: &str) -> String {
    let start = body.find("\"montant\":").expect("montant in body") + "\"montant\":".len();
    body[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect()
}

impl TestApp {
    /// Sends `body` as is, with this `Content-Type` (none when `None`).
    pub async fn send(&self, method: reqwest::Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> reqwest::Response {
        let mut request = self.http.request(method, self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.unwrap()
    }

    /// Every live sale the listing shows, walking `nextCursor` with pages of `limit`; the query
    /// string `filters` (e.g. `region=dakar`) applies to every page. Asserts each page's shape.
    pub async fn list_all(&self, filters: &str, limit: u32) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/ventes?limit={limit}&{filters}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let response = self.get(&path).await;
            assert_eq!(response.status(), 200, "{path}");
            let page: Value = response.json().await.unwrap();
            let page_items = page["items"].as_array().expect("items").clone();
            assert!(page_items.len() <= limit as usize, "{path}");
            items.extend(page_items);
            match &page["nextCursor"] {
                Value::Null => return items,
                Value::String(next) => {
                    assert_eq!(page["items"].as_array().unwrap().len(), limit as usize, "a page before the last is full");
                    cursor = Some(next.clone());
                }
                other => panic!("nextCursor must be a string or null, got {other}"),
            }
        }
    }
}

/// A sale body for POST/PUT.
pub fn vente_body(produit: &str, montant: Value, date: &str, region: &str) -> Value {
    json!({"produit": produit, "montant": montant, "dateVente": date, "region": region})
}

/// Asserts an error answer: this status, JSON `{error, message, details}` with exactly these keys,
/// this code and a non-empty (French) message. Returns the body.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str, context: &str) -> Value {
    assert_eq!(response.status(), status, "{context}");
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"), "{context}");
    let body: Value = response.json().await.unwrap();
    let keys: Vec<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
    assert_eq!(keys, ["details", "error", "message"], "{context}: {body}");
    assert_eq!(body["error"], code, "{context}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{context}: {body}");
    body
}

/// The field names of a validation error's `details.fields`.
pub fn error_fields(body: &Value) -> Vec<String> {
    body["details"]["fields"]
        .as_array()
        .map(|fields| fields.iter().map(|f| f["field"].as_str().expect("field name").to_owned()).collect())
        .unwrap_or_default()
}

/// Today ± `days`, as `YYYY-MM-DD` (the server's "today" is UTC too).
pub fn day(days: i64) -> String {
    let today = Utc::now().date_naive();
    let date = if days >= 0 { today + Days::new(days as u64) } else { today - Days::new(days.unsigned_abs()) };
    date.format("%Y-%m-%d").to_string()
}

/// POSTs `body`, asserts 201, returns the sale.
pub async fn create(app: &TestApp, body: &Value) -> Value {
    let response = app.post_json("/api/ventes", body).await;
    assert_eq!(response.status(), 201, "{body}");
    response.json().await.unwrap()
}
