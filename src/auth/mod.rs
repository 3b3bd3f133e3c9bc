//! Users, roles and how a request proves who it is: passwords (argon2id), API tokens, web sessions,
//! and the throttling of guesses. A service between the web layer and the state database.
//! Owns: the rules (names, roles, expiry, who may do what). Leaves: the SQL (store/users.rs), HTTP
//! (web/auth.rs), the command line (cli/users).
//!
//! Authentication is on as soon as one user exists, off otherwise.

pub mod password;
pub mod throttle;

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::store::users::{UserDb, UsersError};
use password::Hasher;
use throttle::Throttle;

/// What a user may do; each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads everything: sales, statistics, dashboard, conflicts, metrics.
    Lecteur,
    /// Also creates, edits and deletes sales.
    Vendeur,
    /// Also runs sync rounds and outage drills, and sees the users.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Lecteur, Role::Vendeur, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lecteur => "lecteur",
            Self::Vendeur => "vendeur",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| format!("rôle inconnu « {text} » : lecteur, vendeur ou admin"))
    }
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// A user as listed (never the hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub created_at: chrono::DateTime<Utc>,
    pub tokens: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Db(#[from] UsersError),
    #[error("nom d'utilisateur invalide : {0}")]
    BadName(String),
    #[error("{0}")]
    BadPassword(String),
    #[error("l'utilisateur « {0} » existe déjà")]
    Exists(String),
    #[error("utilisateur inconnu : « {0} »")]
    Unknown(String),
    #[error("hachage du mot de passe impossible : {0}")]
    Hash(String),
}

/// Why a password was not accepted.
#[derive(Debug)]
pub enum Refusal {
    /// Too many recent failures for this name or address: try again after this long.
    Throttled(Duration),
    /// Unknown user or wrong password (which one is not said).
    BadCredentials,
    Error(AuthError),
}

/// Lifetimes and limits, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct AuthConfig {
    /// A web session unused for this long ends.
    pub session_idle: Duration,
    /// A web session ends this long after login, used or not.
    pub session_lifetime: Duration,
    /// Failures (per user name, per address) within `login_window` before refusing with 429.
    pub login_max_failures: u32,
    pub login_window: Duration,
    /// Whether, with no user, anyone may do everything. `App` sets it from `listen` and
    /// `allow_anonymous`: false when the last user is removed while serving on the network, so
    /// the server then refuses everyone rather than opening up.
    pub anonymous_without_users: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 3600),
            login_max_failures: 5,
            login_window: Duration::from_secs(60),
            anonymous_without_users: true,
        }
    }
}

/// Checks a user name: 1 to 64 letters, digits, `.`, `_`, `-` or `@` (never `:`, Basic's separator).
pub fn check_name(name: &str) -> Result<(), AuthError> {
    let chars = name.chars().count();
    if chars == 0 || chars > 64 {
        return Err(AuthError::BadName("de 1 à 64 caractères".into()));
    }
    if !name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')) {
        return Err(AuthError::BadName("lettres, chiffres, « . », « _ », « - » ou « @ » seulement".into()));
    }
    Ok(())
}

/// A new random secret (API token or session id): 256 bits, URL-safe base64.
fn secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// What is stored for a secret: its SHA-256 in hex (a secret of 256 random bits needs no salt).
fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A name as given, cut and kept on one line, for the logs.
fn shown(name: &str) -> String {
    name.chars().take(64).collect()
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The prefix of API tokens, so that a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "dsms_";

/// The users service.
pub struct Auth {
    db: UserDb,
    config: AuthConfig,
    hasher: Hasher,
    throttle: Throttle,
    /// Passwords verified lately, by SHA-256 of (stored hash, password): Basic clients send the
    /// password with every request, and argon2 is slow on purpose. A changed password changes
    /// the stored hash, so it never matches an old entry.
    verified: moka::future::Cache<[u8; 32], ()>,
    /// Verified against for unknown names, so that both answers take as long.
    dummy: tokio::sync::OnceCell<String>,
    /// Whether users exist, as read lately (asked on every request; another process, `dsms user`,
    /// may add or remove users, so it is read again after `USERS_TTL`).
    users_seen: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

/// How long `Auth` trusts its last look at whether users exist.
const USERS_TTL: Duration = Duration::from_secs(1);

impl Auth {
    pub async fn open(data_dir: &Path, config: AuthConfig) -> Result<Self, AuthError> {
        let db = UserDb::open(data_dir).await?;
        let verified = moka::future::Cache::builder().max_capacity(1_000).time_to_live(Duration::from_secs(600)).build();
        Ok(Self {
            db,
            config,
            hasher: Hasher::default(),
            throttle: Throttle::new(config.login_max_failures, config.login_window),
            verified,
            dummy: tokio::sync::OnceCell::new(),
            users_seen: std::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// True when authentication is on: at least one user exists (or anonymous access is not
    /// allowed here, see `AuthConfig::anonymous_without_users`).
    pub async fn enabled(&self) -> Result<bool, AuthError> {
        Ok(!self.config.anonymous_without_users || self.any_user().await?)
    }

    /// True when at least one user exists.
    pub async fn any_user(&self) -> Result<bool, AuthError> {
        if let Ok(seen) = self.users_seen.lock() {
            if let Some((at, any)) = *seen {
                if at.elapsed() < USERS_TTL {
                    return Ok(any);
                }
            }
        }
        let any = self.db.any_user().await?;
        if let Ok(mut seen) = self.users_seen.lock() {
            *seen = Some((std::time::Instant::now(), any));
        }
        Ok(any)
    }

    fn forget_users_seen(&self) {
        if let Ok(mut seen) = self.users_seen.lock() {
            *seen = None;
        }
    }

    // ---- administration (the `dsms user` commands) ----

    pub async fn add_user(&self, name: &str, role: Role, password: &str) -> Result<(), AuthError> {
        check_name(name)?;
        password::check_rules(password).map_err(AuthError::BadPassword)?;
        if self.db.user(name).await?.is_some() {
            return Err(AuthError::Exists(name.to_owned()));
        }
        let hash = self.hasher.hash(password).await.map_err(AuthError::Hash)?;
        if !self.db.insert_user(name, role.as_str(), &hash, now_micros()).await? {
            return Err(AuthError::Exists(name.to_owned()));
        }
        self.forget_users_seen();
        Ok(())
    }

    /// Changes a password; the user's web sessions end.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), AuthError> {
        password::check_rules(password).map_err(AuthError::BadPassword)?;
        let hash = self.hasher.hash(password).await.map_err(AuthError::Hash)?;
        if self.db.set_password(name, &hash).await? { Ok(()) } else { Err(AuthError::Unknown(name.to_owned())) }
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), AuthError> {
        let removed = self.db.delete_user(name).await?;
        self.forget_users_seen();
        if removed { Ok(()) } else { Err(AuthError::Unknown(name.to_owned())) }
    }

    pub async fn users(&self) -> Result<Vec<UserInfo>, AuthError> {
        Ok(self
            .db
            .users()
            .await?
            .into_iter()
            .filter_map(|row| {
                Some(UserInfo {
                    role: row.role.parse().ok()?,
                    created_at: chrono::DateTime::from_timestamp_micros(row.created_at)?,
                    tokens: u64::try_from(row.tokens).unwrap_or(0),
                    name: row.name,
                })
            })
            .collect())
    }

    /// A new API token for `name`, returned once: only its digest is kept.
    pub async fn new_token(&self, name: &str) -> Result<String, AuthError> {
        let user = self.db.user(name).await?.ok_or_else(|| AuthError::Unknown(name.to_owned()))?;
        let token = format!("{TOKEN_PREFIX}{}", secret());
        self.db.insert_token(&user.name, &digest(&token), now_micros()).await?;
        Ok(token)
    }

    /// Revokes every token of `name`; returns how many.
    pub async fn revoke_tokens(&self, name: &str) -> Result<u64, AuthError> {
        let user = self.db.user(name).await?.ok_or_else(|| AuthError::Unknown(name.to_owned()))?;
        Ok(self.db.delete_tokens(&user.name).await?)
    }

    // ---- proving who one is ----

    /// Checks a user name and password (Basic or the login form), throttled per name and address.
    pub async fn check_password(&self, name: &str, password: &str, from: IpAddr) -> Result<Principal, Refusal> {
        if let Some(wait) = self.throttle.blocked(name, from) {
            tracing::warn!(target: "dsms::audit", utilisateur = ?shown(name), adresse = %from, "tentative refusée : trop d'échecs récents");
            return Err(Refusal::Throttled(wait));
        }
        let user = self.db.user(name).await.map_err(|e| Refusal::Error(e.into()))?;
        let accepted = match &user {
            Some(user) => self.verify(password, &user.password_hash).await,
            None => {
                // As long as for a real user: the answer does not tell which names exist.
                if let Ok(dummy) = self.dummy.get_or_try_init(|| self.hasher.hash("mot de passe factice")).await {
                    self.hasher.verify(password, dummy).await;
                }
                false
            }
        };
        match user.filter(|_| accepted).and_then(|u| Some(Principal { role: u.role.parse().ok()?, name: u.name })) {
            Some(principal) => {
                self.throttle.succeeded(name);
                Ok(principal)
            }
            None => {
                self.throttle.failed(name, from);
                tracing::warn!(target: "dsms::audit", utilisateur = ?shown(name), adresse = %from, "échec d'authentification");
                Err(Refusal::BadCredentials)
            }
        }
    }

    async fn verify(&self, password: &str, hash: &str) -> bool {
        let key: [u8; 32] = Sha256::new().chain_update(hash).chain_update([0]).chain_update(password).finalize().into();
        if self.verified.get(&key).await.is_some() {
            return true;
        }
        let ok = self.hasher.verify(password, hash).await;
        if ok {
            self.verified.insert(key, ()).await;
        }
        ok
    }

    /// The holder of an API token; `None` for an unknown or revoked token.
    pub async fn check_token(&self, token: &str) -> Result<Option<Principal>, AuthError> {
        let Some((name, role)) = self.db.token_user(&digest(token)).await? else { return Ok(None) };
        Ok(role.parse().ok().map(|role| Principal { name, role }))
    }

    /// Logs in: a new session (a fresh random id, so a session id planted before login is worthless).
    /// Returns the session id for the cookie.
    pub async fn login(&self, name: &str, password: &str, from: IpAddr) -> Result<(String, Principal), Refusal> {
        let principal = self.check_password(name, password, from).await?;
        let id = secret();
        let now = now_micros();
        self.db.insert_session(&digest(&id), &principal.name, now).await.map_err(|e| Refusal::Error(e.into()))?;
        // Now and then, forget expired sessions.
        if rand::random::<u8>() < 16 {
            let _ = self.db.purge_sessions(now - micros(self.config.session_idle), now - micros(self.config.session_lifetime)).await;
        }
        tracing::info!(target: "dsms::audit", utilisateur = %principal.name, role = %principal.role, adresse = %from, "connexion");
        Ok((id, principal))
    }

    /// The user of a live session; an expired one (idle or too old) is deleted and gives `None`.
    pub async fn session(&self, id: &str) -> Result<Option<Principal>, AuthError> {
        let key = digest(id);
        let Some(row) = self.db.session(&key).await? else { return Ok(None) };
        let now = now_micros();
        let idle = micros(self.config.session_idle);
        if now.saturating_sub(row.last_seen) >= idle || now.saturating_sub(row.created_at) >= micros(self.config.session_lifetime) {
            self.db.delete_session(&key).await?;
            return Ok(None);
        }
        // The idle clock is moved on at most every few seconds (one write per page otherwise).
        if now.saturating_sub(row.last_seen) >= (idle / 20).min(60_000_000) {
            self.db.touch_session(&key, now).await?;
        }
        Ok(row.role.parse().ok().map(|role| Principal { name: row.user_name, role }))
    }

    pub async fn logout(&self, id: &str) -> Result<(), AuthError> {
        Ok(self.db.delete_session(&digest(id)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_read_from_their_french_names() {
        assert!(Role::Lecteur < Role::Vendeur && Role::Vendeur < Role::Admin);
        assert_eq!("Vendeur".parse::<Role>(), Ok(Role::Vendeur));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn names_cannot_carry_a_colon() {
        assert!(check_name("awa.diop@dakar").is_ok());
        assert!(check_name("awa:diop").is_err());
        assert!(check_name("").is_err());
    }

    #[tokio::test]
    async fn authentication_is_on_once_a_user_exists_and_off_when_the_last_one_goes() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::open(dir.path(), AuthConfig::default()).await.unwrap();
        assert!(!auth.enabled().await.unwrap());
        auth.add_user("awa", Role::Lecteur, "un mot de passe long").await.unwrap();
        assert!(auth.enabled().await.unwrap());
        let token = auth.new_token("AWA").await.unwrap();
        assert_eq!(auth.check_token(&token).await.unwrap(), Some(Principal { name: "awa".into(), role: Role::Lecteur }));
        auth.remove_user("awa").await.unwrap();
        assert!(!auth.enabled().await.unwrap());
        assert_eq!(auth.check_token(&token).await.unwrap(), None, "tokens go with their user");
        let guarded = Auth::open(dir.path(), AuthConfig { anonymous_without_users: false, ..AuthConfig::default() }).await.unwrap();
        assert!(guarded.enabled().await.unwrap(), "serving on the network without users: nobody gets in");
    }

    #[test]
    fn secrets_are_stored_as_digests() {
        let token = secret();
        assert_eq!(token.len(), 43);
        assert_eq!(digest(&token).len(), 64);
        assert_ne!(secret(), token);
    }
}
