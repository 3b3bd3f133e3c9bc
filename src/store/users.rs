//! The users, API tokens and web sessions in the local state database (`dsms-state.db`, beside the
//! monitor's tables). Owns: their SQL, on a pool of its own. Leaves: hashing, roles and every
//! rule (auth/), the statistics tables (monitor).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::state::FILE_NAME;

#[derive(Debug, thiserror::Error)]
#[error("base d'état {path} : {message}")]
pub struct UsersError {
    pub path: PathBuf,
    pub message: String,
}

/// A user row as stored: the role as its text, the password as its PHC hash string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub created_at: i64,
    /// API tokens this user holds.
    pub tokens: i64,
}

/// A web session row, with its user's current role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub user_name: String,
    pub role: String,
    pub created_at: i64,
    pub last_seen: i64,
}

/// The user tables of the state database.
#[derive(Clone)]
pub struct UserDb {
    pool: SqlitePool,
    path: PathBuf,
}

impl UserDb {
    /// Opens (creating folder and file if needed) and migrates the state database.
    pub async fn open(data_dir: &Path) -> Result<Self, UsersError> {
        let path = data_dir.join(FILE_NAME);
        let fail = |message: String| UsersError { path: path.clone(), message };
        std::fs::create_dir_all(data_dir).map_err(|e| fail(format!("{} : {e}", data_dir.display())))?;
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| fail(e.to_string()))?
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| fail(e.to_string()))?;
        sqlx::migrate!("./migrations/state").run(&pool).await.map_err(|e| fail(e.to_string()))?;
        Ok(Self { pool, path })
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> UsersError + '_ {
        |e| UsersError { path: self.path.clone(), message: e.to_string() }
    }

    /// True when at least one user exists.
    pub async fn any_user(&self) -> Result<bool, UsersError> {
        let (any,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM app_user)").fetch_one(&self.pool).await.map_err(self.err())?;
        Ok(any)
    }

    /// Adds a user; `false` when the name (ignoring case) is taken.
    pub async fn insert_user(&self, name: &str, role: &str, password_hash: &str, now: i64) -> Result<bool, UsersError> {
        let done =
            sqlx::query("INSERT INTO app_user (name, role, password_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(role)
                .bind(password_hash)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(self.err())?;
        Ok(done.rows_affected() == 1)
    }

    /// The user named `name` (ignoring case).
    pub async fn user(&self, name: &str) -> Result<Option<UserRow>, UsersError> {
        let row: Option<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT u.name, u.role, u.password_hash, u.created_at, (SELECT COUNT(*) FROM api_token t WHERE t.user_name = u.name) \
             FROM app_user u WHERE u.name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(row.map(|(name, role, password_hash, created_at, tokens)| UserRow { name, role, password_hash, created_at, tokens }))
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRow>, UsersError> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT u.name, u.role, u.password_hash, u.created_at, (SELECT COUNT(*) FROM api_token t WHERE t.user_name = u.name) \
             FROM app_user u ORDER BY u.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|(name, role, password_hash, created_at, tokens)| UserRow { name, role, password_hash, created_at, tokens })
            .collect())
    }

    /// Replaces a user's password hash and ends their web sessions; `false` when there is no such user.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, UsersError> {
        let mut tx = self.pool.begin().await.map_err(self.err())?;
        let done = sqlx::query("UPDATE app_user SET password_hash = ? WHERE name = ?")
            .bind(password_hash)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(self.err())?;
        sqlx::query("DELETE FROM web_session WHERE user_name = ?").bind(name).execute(&mut *tx).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a user with their tokens and sessions; `false` when there is no such user.
    pub async fn delete_user(&self, name: &str) -> Result<bool, UsersError> {
        let mut tx = self.pool.begin().await.map_err(self.err())?;
        sqlx::query("DELETE FROM api_token WHERE user_name = ?").bind(name).execute(&mut *tx).await.map_err(self.err())?;
        sqlx::query("DELETE FROM web_session WHERE user_name = ?").bind(name).execute(&mut *tx).await.map_err(self.err())?;
        let done = sqlx::query("DELETE FROM app_user WHERE name = ?").bind(name).execute(&mut *tx).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_token(&self, name: &str, digest: &str, now: i64) -> Result<(), UsersError> {
        sqlx::query("INSERT INTO api_token (digest, user_name, created_at) VALUES (?, ?, ?)")
            .bind(digest)
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// Deletes every token of `name`; returns how many there were.
    pub async fn delete_tokens(&self, name: &str) -> Result<u64, UsersError> {
        let done = sqlx::query("DELETE FROM api_token WHERE user_name = ?").bind(name).execute(&self.pool).await.map_err(self.err())?;
        Ok(done.rows_affected())
    }

    /// The user (name, role) holding the token with this digest.
    pub async fn token_user(&self, digest: &str) -> Result<Option<(String, String)>, UsersError> {
        sqlx::query_as("SELECT u.name, u.role FROM api_token t JOIN app_user u ON u.name = t.user_name WHERE t.digest = ?")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())
    }

    pub async fn insert_session(&self, digest: &str, name: &str, now: i64) -> Result<(), UsersError> {
        sqlx::query("INSERT INTO web_session (digest, user_name, created_at, last_seen) VALUES (?, ?, ?, ?)")
            .bind(digest)
            .bind(name)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// The session with this digest and its user's role.
    pub async fn session(&self, digest: &str) -> Result<Option<SessionRow>, UsersError> {
        let row: Option<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT u.name, u.role, s.created_at, s.last_seen FROM web_session s JOIN app_user u ON u.name = s.user_name WHERE s.digest = ?",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(row.map(|(user_name, role, created_at, last_seen)| SessionRow { user_name, role, created_at, last_seen }))
    }

    pub async fn touch_session(&self, digest: &str, now: i64) -> Result<(), UsersError> {
        sqlx::query("UPDATE web_session SET last_seen = ? WHERE digest = ?")
            .bind(now)
            .bind(digest)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    pub async fn delete_session(&self, digest: &str) -> Result<(), UsersError> {
        sqlx::query("DELETE FROM web_session WHERE digest = ?").bind(digest).execute(&self.pool).await.map_err(self.err())?;
        Ok(())
    }

    /// Deletes sessions idle since before `idle_before` or created before `created_before`.
    pub async fn purge_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, UsersError> {
        let done = sqlx::query("DELETE FROM web_session WHERE last_seen < ? OR created_at < ?")
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(done.rows_affected())
    }
}
