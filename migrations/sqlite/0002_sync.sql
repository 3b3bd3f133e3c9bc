-- Replication state: what each row version had seen, this database's identity, the feed
-- position reached per source, and the conflict log.
ALTER TABLE vente ADD COLUMN seen TEXT NOT NULL DEFAULT '';

CREATE TABLE IF NOT EXISTS dsms_meta (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    db_id BLOB    NOT NULL                         -- random; a recreated database gets a new one
);
INSERT OR IGNORE INTO dsms_meta (id, db_id) VALUES (1, randomblob(16));

-- How far this database has applied each source's change feed (moved with each applied batch).
CREATE TABLE IF NOT EXISTS dsms_cursor (
    source     TEXT    NOT NULL,
    source_db  BLOB    NOT NULL,
    pos        INTEGER NOT NULL,
    id         BLOB    NOT NULL,
    updated_at INTEGER NOT NULL,                   -- microseconds since the epoch
    PRIMARY KEY (source, source_db)
);

-- Writes overwritten by a concurrent write (their writer had not seen each other), once each.
CREATE TABLE IF NOT EXISTS dsms_conflict (
    vente_id      BLOB    NOT NULL,
    loser_hlc     INTEGER NOT NULL,
    loser_origin  TEXT    NOT NULL,
    winner_hlc    INTEGER NOT NULL,
    winner_origin TEXT    NOT NULL,
    loser         TEXT    NOT NULL,                -- the lost row, JSON
    winner        TEXT    NOT NULL,                -- the row that won, JSON
    detected_in   TEXT    NOT NULL,
    detected_at   INTEGER NOT NULL,                -- microseconds since the epoch
    PRIMARY KEY (vente_id, loser_hlc, loser_origin)
);
CREATE INDEX IF NOT EXISTS dsms_conflict_time ON dsms_conflict (detected_at DESC);
