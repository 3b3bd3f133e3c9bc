//! Configuration: defaults < file (`--config`, `$DSMS_CONFIG`, `./dsms.toml`) < `DSMS_*` variables,
//! validated once into typed values. Owns: every knob and its default. Leaves: using them (app.rs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::{RegionName, Regions};

pub use crate::store::url::{DatabaseUrl, RegionConfig};
pub use crate::web::server::EdgeConfig;

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// The region this instance lives in (one instance per site): its writes commit there, its
    /// reads are served from there, its rounds pull into it only. `None`: one central instance.
    pub home: Option<RegionName>,
    /// `None`: no periodic rounds.
    pub sync_interval: Option<Duration>,
    pub sync_on_write: bool,
    /// A writer (this server) or region whose clock is further off than this is shown WARNING.
    pub max_clock_skew: Duration,
    /// A PostgreSQL region whose feed is held back by an old transaction for longer is WARNING.
    pub max_feed_hold: Duration,
    /// How long `POST /api/sync` and the sync button wait for their round before answering that it
    /// runs on (202); the round always runs to completion.
    pub sync_request_wait: Duration,
    /// A replicated version further ahead of the receiving database's clock is quarantined there.
    pub max_future: Duration,
    /// Timeout to open a connection to a region.
    pub connect_timeout: Duration,
    /// Timeout of each statement sent to a region.
    pub statement_timeout: Duration,
    pub log_json: bool,
    pub regions: Vec<RegionConfig>,
    /// Local state of this server (`dsms-state.db`: sync statistics and history); default `dsms-data`.
    pub data_dir: PathBuf,
    /// How often the monitor probes every region (reachability, latency, clock offset); `None`: never.
    pub probe_interval: Option<Duration>,
    /// With no user, serve on a non-loopback `listen` all the same (everyone may do everything).
    pub allow_anonymous: bool,
    /// Web sessions and the throttling of password guesses.
    pub auth: crate::auth::AuthConfig,
    /// What every listener enforces before a request reaches the router.
    pub edge: EdgeConfig,
}

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("configuration invalide : {key} : {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

/// The file as written (and the `DSMS_*` variables), before validation.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    home: Option<String>,
    sync_interval: String,
    sync_on_write: bool,
    max_clock_skew: String,
    max_feed_hold: String,
    sync_request_wait: String,
    max_future: String,
    connect_timeout: String,
    statement_timeout: String,
    log_format: String,
    data_dir: PathBuf,
    probe_interval: String,
    allow_anonymous: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allowed_hosts: Option<Vec<String>>,
    header_read_timeout: String,
    idle_timeout: String,
    max_connections: u32,
    session_idle: String,
    session_lifetime: String,
    login_max_failures: u32,
    login_window: String,
    /// HTTPS: the server's certificate chain and private key, PEM files (both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    regions: Vec<RawRegion>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// A file holding the URL (for secrets kept out of the config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url_file: Option<PathBuf>,
    /// A file holding the PostgreSQL password, inserted into `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_file: Option<PathBuf>,
}

/// The embedded default: Dakar, Thies and Saint-Louis in SQLite files under `data_dir`.
pub const DEFAULT_REGIONS: [&str; 3] = ["Dakar", "Thies", "Saint-Louis"];

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            home: None,
            sync_interval: "60s".into(),
            sync_on_write: true,
            max_clock_skew: "2s".into(),
            max_feed_hold: "60s".into(),
            sync_request_wait: "10s".into(),
            max_future: "24h".into(),
            connect_timeout: "3s".into(),
            statement_timeout: "10s".into(),
            log_format: "text".into(),
            data_dir: PathBuf::from("dsms-data"),
            probe_interval: "10s".into(),
            allow_anonymous: false,
            allowed_hosts: None,
            header_read_timeout: "10s".into(),
            idle_timeout: "60s".into(),
            max_connections: 1024,
            session_idle: "30m".into(),
            session_lifetime: "12h".into(),
            login_max_failures: 5,
            login_window: "1m".into(),
            tls_cert: None,
            tls_key: None,
            regions: Vec::new(),
        }
    }
}

/// Where the configuration file is looked for.
pub enum ConfigSource<'a> {
    /// `--config PATH` or `$DSMS_CONFIG`: must exist.
    Explicit(&'a Path),
    /// `./dsms.toml` if present, else defaults only.
    Default,
}

/// `DSMS_*` variables that are not configuration keys: the file's path, and the test scripts' knobs.
const NOT_CONFIG: &[&str] = &["config", "require_pg", "require_browser", "skip_browser", "pg_bin", "proptest_cases"];

/// Loads defaults < file < `DSMS_*` variables, then validates.
pub fn load(source: ConfigSource<'_>) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    match source {
        ConfigSource::Explicit(path) => {
            if !path.is_file() {
                return Err(ConfigError::new("config", format!("fichier introuvable : {}", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        ConfigSource::Default => figment = figment.merge(Toml::file("dsms.toml")),
    }
    figment = figment.merge(Env::prefixed("DSMS_").ignore(NOT_CONFIG));
    let raw: RawConfig = figment.extract().map_err(from_figment)?;
    raw.validate().map_err(|e| e.located(&figment))
}

impl ConfigError {
    /// Names the environment variable when the faulty key came from one (`listen (DSMS_LISTEN)`).
    fn located(mut self, figment: &Figment) -> Self {
        let top = self.key.split(['.', '[']).next().unwrap_or_default();
        if figment.find_metadata(top).is_some_and(|m| m.name.contains("environment")) {
            self.key = format!("{} (DSMS_{})", self.key, top.to_ascii_uppercase());
        }
        self
    }
}

/// The first error figment reports, with its key (`regions[0].url`, or `DSMS_FOO` for a
/// variable) and a French message.
fn from_figment(errors: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let Some(error) = errors.into_iter().next() else { return ConfigError::new("config", "configuration illisible") };
    let from_env = error.metadata.as_ref().is_some_and(|m| m.name.contains("environment"));
    let mut key = String::new();
    for part in &error.path {
        match part.parse::<usize>() {
            Ok(index) => key.push_str(&format!("[{index}]")),
            Err(_) if key.is_empty() => key.push_str(part),
            Err(_) => key.push_str(&format!(".{part}")),
        }
    }
    if from_env && !error.path.is_empty() {
        key = format!("DSMS_{}", error.path.join("_").to_ascii_uppercase());
    }
    if key.is_empty() {
        key = match error.metadata.as_ref().and_then(|m| m.source.as_ref()) {
            Some(figment::Source::File(path)) => path.display().to_string(),
            _ => "config".to_owned(),
        };
    }
    let expected = |text: &str| match text {
        "a string" => "une chaîne".to_owned(),
        "a boolean" => "un booléen (true ou false)".to_owned(),
        "a sequence" => "une liste".to_owned(),
        other => other.to_owned(),
    };
    let message = match &error.kind {
        Kind::UnknownField(name, known) => format!("clé inconnue « {name} » ; clés possibles : {}", known.join(", ")),
        Kind::MissingField(name) => format!("clé obligatoire manquante : {name}"),
        Kind::InvalidType(actual, wanted) => format!("type invalide ({actual}) ; attendu : {}", expected(wanted)),
        Kind::Message(message) => format!("fichier illisible : {message}"),
        other => other.to_string(),
    };
    ConfigError::new(key, message)
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim())
        .map_err(|_| ConfigError::new(key, format!("durée invalide « {text} » ; ex. \"60s\", \"500ms\", \"2m\"")))
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let listen = self
            .listen
            .parse()
            .map_err(|_| ConfigError::new("listen", format!("adresse invalide « {} » ; ex. \"127.0.0.1:8080\"", self.listen)))?;
        let sync_interval = match self.sync_interval.trim() {
            "off" | "false" | "0" => None,
            text => Some(duration("sync_interval", text)?).filter(|d| !d.is_zero()),
        };
        let probe_interval = match self.probe_interval.trim() {
            "off" | "false" | "0" => None,
            text => Some(duration("probe_interval", text)?).filter(|d| !d.is_zero()),
        };
        let log_json = match self.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => return Err(ConfigError::new("log_format", format!("« {other} » : valeurs possibles \"text\" ou \"json\""))),
        };
        let regions = if self.regions.is_empty() {
            DEFAULT_REGIONS
                .iter()
                .map(|name| {
                    let name = RegionName::new(name);
                    let url = DatabaseUrl::Sqlite(self.data_dir.join(format!("{}.db", name.slug())));
                    RegionConfig { name, url }
                })
                .collect()
        } else {
            validate_regions(self.regions)?
        };
        let home = match &self.home {
            None => None,
            Some(name) => {
                let names = Regions::new(regions.iter().map(|r| r.name.clone()).collect());
                let found = names.resolve(name).cloned();
                Some(
                    found
                        .ok_or_else(|| ConfigError::new("home", format!("région inconnue « {name} » ; régions : {}", names.describe())))?,
                )
            }
        };
        let positive = |key: &str, text: &str| {
            duration(key, text).and_then(|d| if d.is_zero() { Err(ConfigError::new(key, "doit être supérieure à 0")) } else { Ok(d) })
        };
        let auth = crate::auth::AuthConfig {
            session_idle: positive("session_idle", &self.session_idle)?,
            session_lifetime: positive("session_lifetime", &self.session_lifetime)?,
            login_max_failures: match self.login_max_failures {
                0 => return Err(ConfigError::new("login_max_failures", "doit être au moins 1")),
                n => n,
            },
            login_window: positive("login_window", &self.login_window)?,
            // Decided by `App` from `listen` and `allow_anonymous`.
            anonymous_without_users: true,
        };
        let allowed_hosts = match self.allowed_hosts {
            None => None,
            Some(hosts) => {
                let hosts: Vec<String> = hosts.iter().map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase()).collect();
                if hosts.is_empty() || hosts.iter().any(|h| h.is_empty() || h.contains(['/', ' ', '@'])) {
                    return Err(ConfigError::new(
                        "allowed_hosts",
                        "liste de noms d'hôte attendue, ex. [\"ventes.example.sn\", \"localhost\"]",
                    ));
                }
                Some(hosts)
            }
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(crate::web::tls::TlsFiles { cert, key }),
            (Some(_), None) => return Err(ConfigError::new("tls_key", "manquante : tls_cert demande aussi tls_key (la clé privée, PEM)")),
            (None, Some(_)) => return Err(ConfigError::new("tls_cert", "manquant : tls_key demande aussi tls_cert (le certificat, PEM)")),
        };
        let edge = EdgeConfig {
            tls,
            allowed_hosts,
            header_read_timeout: positive("header_read_timeout", &self.header_read_timeout)?,
            idle_timeout: positive("idle_timeout", &self.idle_timeout)?,
            max_connections: match self.max_connections {
                0 => return Err(ConfigError::new("max_connections", "doit être au moins 1")),
                n => n as usize,
            },
        };
        Ok(Config {
            allow_anonymous: self.allow_anonymous,
            auth,
            edge,
            listen,
            home,
            sync_interval,
            sync_on_write: self.sync_on_write,
            max_clock_skew: duration("max_clock_skew", &self.max_clock_skew)?,
            max_feed_hold: duration("max_feed_hold", &self.max_feed_hold)?,
            sync_request_wait: match duration("sync_request_wait", &self.sync_request_wait)? {
                wait if wait >= crate::web::TIME_LIMIT => {
                    return Err(ConfigError::new("sync_request_wait", "doit être inférieure à 30 s (la limite d'une requête)"));
                }
                wait => wait,
            },
            max_future: positive("max_future", &self.max_future)?,
            connect_timeout: duration("connect_timeout", &self.connect_timeout)?,
            statement_timeout: duration("statement_timeout", &self.statement_timeout)?,
            log_json,
            regions,
            data_dir: self.data_dir,
            probe_interval,
        })
    }
}

fn validate_regions(raw: Vec<RawRegion>) -> Result<Vec<RegionConfig>, ConfigError> {
    if !(2..=16).contains(&raw.len()) {
        return Err(ConfigError::new("regions", format!("il faut de 2 à 16 régions ({} configurées)", raw.len())));
    }
    let mut regions: Vec<RegionConfig> = Vec::with_capacity(raw.len());
    for (i, region) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("regions[{i}].{field}");
        let name = region.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ConfigError::new(key("name"), "nom de région vide, trop long ou invalide"));
        }
        let name = RegionName::new(name);
        if name.slug().is_empty() {
            return Err(ConfigError::new(key("name"), "le nom doit contenir au moins une lettre ou un chiffre"));
        }
        if let Some(other) = regions
            .iter()
            .find(|r| RegionName::key_of(r.name.as_str()) == RegionName::key_of(name.as_str()) || r.name.slug() == name.slug())
        {
            return Err(ConfigError::new(key("name"), format!("« {name} » se confond avec « {} »", other.name)));
        }
        let text = match (region.url, region.url_file) {
            (Some(url), None) => url,
            (None, Some(file)) => std::fs::read_to_string(&file)
                .map(|s| s.trim().to_owned())
                .map_err(|e| ConfigError::new(key("url_file"), format!("{} : {e}", file.display())))?,
            (None, None) => return Err(ConfigError::new(key("url"), "URL manquante (url ou url_file)")),
            (Some(_), Some(_)) => return Err(ConfigError::new(key("url"), "url et url_file s'excluent")),
        };
        let mut url = DatabaseUrl::parse(&text).map_err(|m| ConfigError::new(key("url"), m))?;
        if let Some(file) = region.password_file {
            let password =
                std::fs::read_to_string(&file).map_err(|e| ConfigError::new(key("password_file"), format!("{} : {e}", file.display())))?;
            url = with_password(url, password.trim()).map_err(|m| ConfigError::new(key("password_file"), m))?;
        }
        regions.push(RegionConfig { name, url });
    }
    Ok(regions)
}

fn with_password(url: DatabaseUrl, password: &str) -> Result<DatabaseUrl, String> {
    match url {
        DatabaseUrl::Postgres(text) => {
            let mut parsed = url::Url::parse(&text).map_err(|e| e.to_string())?;
            parsed.set_password(Some(password)).map_err(|_| "cette URL ne peut porter de mot de passe".to_owned())?;
            Ok(DatabaseUrl::Postgres(parsed.to_string()))
        }
        DatabaseUrl::Sqlite(_) => Err("un mot de passe n'a de sens que pour PostgreSQL".into()),
    }
}

impl Config {
    /// The embedded default (three SQLite regions) under `data_dir`, for tests and `dsms` without config.
    pub fn embedded(data_dir: &Path) -> Self {
        let raw = RawConfig { data_dir: data_dir.to_owned(), ..RawConfig::default() };
        #[allow(clippy::expect_used, reason = "the built-in defaults are valid; a unit test checks it")]
        raw.validate().expect("default configuration is valid")
    }

    /// Any regions, other knobs at their defaults.
    pub fn with_regions(regions: Vec<(&str, DatabaseUrl)>) -> Self {
        let mut config = Self::embedded(Path::new("dsms-data"));
        config.regions = regions.into_iter().map(|(name, url)| RegionConfig { name: RegionName::new(name), url }).collect();
        config
    }

    pub fn region_names(&self) -> Regions {
        Regions::new(self.regions.iter().map(|r| r.name.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_names_a_configured_region_in_any_spelling() {
        let raw = |home: &str| RawConfig { home: Some(home.into()), ..RawConfig::default() };
        assert_eq!(raw("saint louis").validate().unwrap().home, Some(RegionName::new("Saint-Louis")));
        let error = raw("Ziguinchor").validate().unwrap_err();
        assert_eq!(error.key, "home");
        assert!(error.message.contains("Ziguinchor") && error.message.contains("Dakar, Thies, Saint-Louis"), "{error}");
        assert_eq!(RawConfig::default().validate().unwrap().home, None);
    }

    #[test]
    fn defaults_are_the_embedded_senegal_regions() {
        let config = Config::embedded(Path::new("/tmp/x"));
        let names: Vec<_> = config.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, DEFAULT_REGIONS);
        assert_eq!(config.regions[2].url, DatabaseUrl::Sqlite("/tmp/x/saint-louis.db".into()));
        assert_eq!(config.sync_interval, Some(Duration::from_secs(60)));
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.data_dir, Path::new("/tmp/x"));
        assert_eq!(config.probe_interval, Some(Duration::from_secs(10)));
        assert_eq!(config.max_clock_skew, Duration::from_secs(2));
        assert_eq!(config.max_future, Duration::from_secs(24 * 3600));
        let raw = RawConfig { max_future: "0s".into(), ..RawConfig::default() };
        assert_eq!(raw.validate().unwrap_err().key, "max_future");
    }

    #[test]
    fn errors_name_the_key() {
        let raw = RawConfig { sync_interval: "soon".into(), ..RawConfig::default() };
        assert_eq!(raw.validate().unwrap_err().key, "sync_interval");
        let one = RawRegion { name: "Dakar".into(), url: Some("mysql://x".into()), url_file: None, password_file: None };
        let two = RawRegion { name: "Thies".into(), url: Some("sqlite://t.db".into()), url_file: None, password_file: None };
        let raw = RawConfig { regions: vec![one, two], ..RawConfig::default() };
        assert_eq!(raw.validate().unwrap_err().key, "regions[0].url");
    }

    #[test]
    fn passwords_never_show() {
        let url = DatabaseUrl::parse("postgres://u:secret@h/db").unwrap();
        assert!(!format!("{url:?}").contains("secret"));
        let url = DatabaseUrl::parse("postgres://u@h/db?sslmode=require&password=secret").unwrap();
        assert_eq!(url.redacted(), "postgres://u@h/db?sslmode=require&password=***");
    }

    #[test]
    fn the_edge_and_session_knobs_have_safe_defaults() {
        let config = Config::embedded(Path::new("/tmp/x"));
        assert!(!config.allow_anonymous);
        assert_eq!(config.edge.allowed_hosts, None);
        assert_eq!(config.edge.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.edge.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.auth.login_max_failures, 5);
        let raw = RawConfig { allowed_hosts: Some(vec![]), ..RawConfig::default() };
        assert_eq!(raw.validate().unwrap_err().key, "allowed_hosts");
    }
}
