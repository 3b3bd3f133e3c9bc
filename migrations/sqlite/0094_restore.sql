-- Restores and rewinds (a copy of an older file, `.backup` put back, a volume snapshot) are
-- detected by epochs: at each round that finds new changes in this database's feed, dsms records a
-- fresh random epoch here, with the feed position below which every change had committed before
-- it. Each reader keeps, in its cursor row on this database, the epoch under which it last read. A
-- restore to a point before that epoch loses it: the reader finds it missing at the next contact,
-- and this database gets a new identity (`dsms_meta.db_id`), so that its peers read it again from
-- the start and it reads them without the `via` filter (see src/sync/restore.rs).
CREATE TABLE IF NOT EXISTS dsms_epoch (
    n          INTEGER NOT NULL PRIMARY KEY,              -- the latest epoch is the greatest
    epoch      BLOB    NOT NULL UNIQUE,
    below      INTEGER NOT NULL,                          -- every change below this position committed before the epoch
    created_at INTEGER NOT NULL                           -- microseconds since the epoch
);
CREATE INDEX IF NOT EXISTS dsms_epoch_time ON dsms_epoch (created_at);

-- The epoch of the source under which this cursor last moved (NULL: none known, nothing to check).
ALTER TABLE dsms_cursor ADD COLUMN epoch BLOB;
