-- The apply log: each transaction that applies rows read from a source's feed records, per
-- source, the feed position its rows took here (its own transaction id: every row it wrote
-- carries it), the source database, and the source's feed position the batch ended at (where
-- this database's cursor on that source moved). A reader that has read that source's feed past
-- that end holds those versions, or newer ones: the range is skipped for it without being read
-- (store/skip.rs says why that is safe). One row per applied batch; a bulk load, one per source.
CREATE TABLE IF NOT EXISTS dsms_applied (
    txid      xid8   NOT NULL,
    source_db uuid   NOT NULL,
    end_pos   bigint NOT NULL,
    end_id    uuid   NOT NULL,
    rows      bigint NOT NULL,                     -- rows written (some may have moved on since)
    -- This database's identity when the row was written: one given a new identity (restored
    -- elsewhere, where transaction ids may be handed out again) ignores its older log.
    here_db   uuid   NOT NULL,
    PRIMARY KEY (txid, source_db)
);
