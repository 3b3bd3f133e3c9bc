-- This server's own state (not a region's data): sync statistics, CRUD counters, sync history.
-- Counters are added to (value = value + delta), so several processes sharing the file add up.
CREATE TABLE IF NOT EXISTS counter (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
);

-- The last round: when it started (microseconds since the Unix epoch, UTC) and how long it took.
CREATE TABLE IF NOT EXISTS last_sync (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    started_at  INTEGER NOT NULL,
    duration_us INTEGER NOT NULL
);

-- Per region, by display name.
CREATE TABLE IF NOT EXISTS region_stats (
    region        TEXT    NOT NULL PRIMARY KEY,
    errors        INTEGER NOT NULL DEFAULT 0,
    last_access   INTEGER,            -- last successful contact, microseconds UTC
    last_error    TEXT,
    last_error_at INTEGER
);

-- One row per round, the newest 1000 kept.
CREATE TABLE IF NOT EXISTS sync_history (
    id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    started_at   INTEGER NOT NULL,    -- microseconds UTC
    status       TEXT    NOT NULL CHECK (status IN ('success', 'partial', 'failed')),
    duration_us  INTEGER NOT NULL,
    error        TEXT,
    rows_applied TEXT    NOT NULL,    -- JSON [["Dakar", 3], ...] in configuration order
    conflicts    INTEGER NOT NULL
);
