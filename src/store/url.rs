//! Where a region's database is: its URL (PostgreSQL or an SQLite file), parsed and redacted for
//! logs. Owns the URL forms `store::open` understands. Leaves: reading them from the config
//! (config.rs), secrets from files.

use std::fmt;
use std::path::PathBuf;

use crate::domain::RegionName;

/// One region: its name and where its database lives.
#[derive(Clone)]
pub struct RegionConfig {
    pub name: RegionName,
    pub url: DatabaseUrl,
}

impl fmt::Debug for RegionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionConfig").field("name", &self.name).field("url", &self.url.redacted()).finish()
    }
}

/// A region database: PostgreSQL or an SQLite file.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("sqlite://").or_else(|| text.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err("chemin SQLite vide (ex. sqlite://dsms-data/dakar.db)".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return url::Url::parse(text).map(|_| Self::Postgres(text.to_owned())).map_err(|e| format!("URL PostgreSQL invalide : {e}"));
        }
        Err("l'URL doit commencer par postgres:// ou sqlite://".into())
    }

    /// The URL with any password replaced by `***`, safe for logs and errors.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(text) => match url::Url::parse(text) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    // libpq-style parameters may carry the password too (`?password=…`).
                    if url.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
                        let pairs: Vec<(String, String)> = url
                            .query_pairs()
                            .map(|(k, v)| {
                                let v = if k.eq_ignore_ascii_case("password") { "***".to_owned() } else { v.into_owned() };
                                (k.into_owned(), v)
                            })
                            .collect();
                        url.query_pairs_mut().clear().extend_pairs(pairs);
                    }
                    url.to_string()
                }
                // Unreadable: show only the scheme, the rest may hold a secret.
                Err(_) => "postgres://***".to_owned(),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}
