-- The apply log: each transaction that applies rows read from a source's feed records the feed
-- positions its rows took here (`lo..=hi`, handed out under the write lock: no other row shares
-- them), the source database, and the source's feed position the batch ended at (where this
-- database's cursor on that source moved). A reader that has read that source's feed past that
-- end holds those versions, or newer ones: the range is skipped for it without being read
-- (store/skip.rs says why that is safe). One row per applied batch.
CREATE TABLE IF NOT EXISTS dsms_applied (
    hi        INTEGER NOT NULL PRIMARY KEY,
    lo        INTEGER NOT NULL,
    source_db BLOB    NOT NULL,
    end_pos   INTEGER NOT NULL,
    end_id    BLOB    NOT NULL,
    rows      INTEGER NOT NULL,                    -- rows written (some may have moved on since)
    -- This database's identity when the row was written: one given a new identity (restored,
    -- copied) ignores its older log.
    here_db   BLOB    NOT NULL
);
