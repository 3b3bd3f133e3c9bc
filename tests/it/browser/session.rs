//! The browser harness: one chromedriver per test binary (free loopback port, its process group
//! ended with the tests), one session per test on a fresh Chromium profile, at most two at once.
//! Without chromium or chromedriver: a loud SKIP line, or a failure when `DSMS_REQUIRE_BROWSER=1`.

use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt as _;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::helpers::{Backends, TestApp, spawn_app};

const CHROMIUM_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// Browsers open at once (2 cores: more only slows every test down).
static SESSIONS: Semaphore = Semaphore::const_new(2);

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// chromedriver's port, started once for this test binary; `None` when skipped.
fn driver() -> Option<&'static (u16, PathBuf)> {
    static DRIVER: OnceLock<Option<(u16, PathBuf)>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            let (Some(chromium), Some(chromedriver)) = (on_path("chromium"), on_path("chromedriver")) else {
                if std::env::var("DSMS_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                    panic!("DSMS_REQUIRE_BROWSER=1 but chromium or chromedriver is missing (apt-get install chromium chromium-driver)");
                }
                // Straight to the process's stderr: the test harness does not capture it.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIP: chromium or chromedriver not installed; browser tests do not run (set DSMS_REQUIRE_BROWSER=1 to fail instead) ***\n"
                );
                return None;
            };
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut command = Command::new(chromedriver);
            command.arg(format!("--port={port}")).arg("--allowed-ips=127.0.0.1").env("LANGUAGE", "fr");
            // chromedriver and the browsers it starts share a process group, ended with this process.
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            let group = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map(|child| child.id())
                .expect("start chromedriver");
            let watcher = format!("while kill -0 {} 2>/dev/null; do sleep 1; done; kill -TERM -{group} 2>/dev/null", std::process::id());
            Command::new("sh").arg("-c").arg(watcher).stdin(Stdio::null()).spawn().map(drop).expect("start the chromedriver watcher");
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "chromedriver did not listen on port {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Some((port, chromium))
        })
        .as_ref()
}

/// A browser session on a fresh profile; closed by `run_in_browser`.
pub struct Browser {
    pub client: Client,
    driver_port: u16,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
    _permit: SemaphorePermit<'static>,
}

impl Browser {
    async fn open() -> Option<Self> {
        let (driver_port, chromium) = driver()?;
        let permit = SESSIONS.acquire().await.unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.extend([
            format!("--user-data-dir={}", profile.path().display()),
            "--window-size=1280,900".into(),
            "--lang=fr-FR".into(),
            "--hide-scrollbars".into(),
        ]);
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args, "prefs": {"intl.accept_languages": "fr-FR,fr"}},
            "goog:loggingPrefs": {"browser": "ALL"},
            "unhandledPromptBehavior": "ignore",
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .expect("open a chromedriver session");
        Some(Self { client, driver_port: *driver_port, http: reqwest::Client::new(), _profile: profile, _permit: permit })
    }

    /// A chromedriver command outside W3C WebDriver (`goog/cdp/execute`, `se/log`).
    async fn driver_command(&self, path: &str, body: Value) -> Value {
        let session = self.client.session_id().await.unwrap().unwrap();
        let url = format!("http://127.0.0.1:{}/session/{session}/{path}", self.driver_port);
        let answer: Value = self.http.post(url).json(&body).send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    /// A Chrome DevTools Protocol command.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.driver_command("goog/cdp/execute", json!({"cmd": cmd, "params": params})).await
    }

    /// The console messages since the last call.
    pub async fn console(&self) -> Vec<Value> {
        match self.driver_command("se/log", json!({"type": "browser"})).await {
            Value::Array(entries) => entries,
            other => panic!("browser logs unavailable: {other}"),
        }
    }

    /// A PNG of the whole page (beyond the viewport).
    pub async fn full_page_png(&self) -> Vec<u8> {
        let shot = self.cdp("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true})).await;
        base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap()
    }

    pub async fn goto(&self, app: &TestApp, path: &str) {
        self.client.goto(&app.url(path)).await.unwrap();
    }

    pub async fn text_of(&self, css: &str) -> String {
        self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    /// `textContent` (as in the DOM, before CSS such as `::first-letter` capitals).
    pub async fn content_of(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap().prop("textContent").await.unwrap().unwrap_or_default().trim().to_owned()
    }

    pub async fn value_of(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap().prop("value").await.unwrap().unwrap_or_default()
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Sets a field's value directly (date inputs read typed keys in the locale's order).
    pub async fn set_value(&self, css: &str, value: &str) {
        self.client.execute("document.querySelector(arguments[0]).value = arguments[1];", vec![json!(css), json!(value)]).await.unwrap();
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.client.find(Locator::Css(css)).await.unwrap().select_by_value(value).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    }

    /// Clicks something that loads a new page, and waits for that page.
    pub async fn click_to_page(&self, css: &str) {
        self.mark_page().await;
        self.click(css).await;
        self.wait_for_new_page().await;
    }

    /// Tags the current document, so `wait_for_new_page` can tell when it was replaced.
    pub async fn mark_page(&self) {
        self.client.execute("window.dsmsOldPage = true;", vec![]).await.unwrap();
    }

    pub async fn wait_for_new_page(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let script = "return window.dsmsOldPage === undefined && document.readyState === 'complete';";
        while !matches!(self.client.execute(script, vec![]).await, Ok(Value::Bool(true))) {
            assert!(Instant::now() < deadline, "no new page loaded");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The product names of the listed sales, top to bottom.
    pub async fn listed(&self) -> Vec<String> {
        let mut names = Vec::new();
        for cell in self.client.find_all(Locator::Css("table.ventes tbody td.produit")).await.unwrap() {
            names.push(cell.text().await.unwrap());
        }
        names
    }

    /// Waits until `script` (a function body) returns true; panics after `within`.
    pub async fn wait_until(&self, script: &str, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while !matches!(self.client.execute(script, vec![]).await, Ok(Value::Bool(true))) {
            assert!(Instant::now() < deadline, "waited {within:?} in vain for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An attribute of the first element matching `css`.
    pub async fn attr_of(&self, css: &str, name: &str) -> Option<String> {
        self.client.find(Locator::Css(css)).await.unwrap().attr(name).await.unwrap()
    }

    /// True when an element matches `css`.
    pub async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Runs `test` with a browser and a fresh SQLite app; the browser is closed even if it panics.
pub async fn run_in_browser(test: impl AsyncFnOnce(&Browser, &TestApp)) {
    if driver().is_none() {
        return;
    }
    let app = spawn_app(Backends::Sqlite).await.unwrap();
    run_in_browser_with(&app, test).await;
}

/// Runs `test` with a browser against `app`; the browser is closed even if it panics.
pub async fn run_in_browser_with(app: &TestApp, test: impl AsyncFnOnce(&Browser, &TestApp)) {
    let Some(browser) = Browser::open().await else { return };
    let outcome = AssertUnwindSafe(test(&browser, app)).catch_unwind().await;
    browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
