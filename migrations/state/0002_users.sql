-- Users of the web UI and the API, their API tokens and their web sessions (issue 14).
-- Passwords are argon2id PHC strings; tokens and session ids are kept only as SHA-256 digests.
CREATE TABLE IF NOT EXISTS app_user (
    name          TEXT    NOT NULL PRIMARY KEY COLLATE NOCASE,
    role          TEXT    NOT NULL CHECK (role IN ('lecteur', 'vendeur', 'admin')),
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL     -- microseconds UTC
);

CREATE TABLE IF NOT EXISTS api_token (
    digest     TEXT    NOT NULL PRIMARY KEY,   -- hex SHA-256 of the token
    user_name  TEXT    NOT NULL COLLATE NOCASE REFERENCES app_user (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_api_token_user ON api_token (user_name);

CREATE TABLE IF NOT EXISTS web_session (
    digest     TEXT    NOT NULL PRIMARY KEY,   -- hex SHA-256 of the cookie's session id
    user_name  TEXT    NOT NULL COLLATE NOCASE REFERENCES app_user (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,               -- microseconds UTC: absolute expiry counts from here
    last_seen  INTEGER NOT NULL                -- microseconds UTC: idle expiry counts from here
);
CREATE INDEX IF NOT EXISTS idx_web_session_user ON web_session (user_name);
