-- Replication state: what each row version had seen, this database's identity, the feed
-- position reached per source, the conflict log, and a wake-up for other processes.
ALTER TABLE vente ADD COLUMN IF NOT EXISTS seen text NOT NULL DEFAULT '';

CREATE TABLE IF NOT EXISTS dsms_meta (
    id    boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (id),
    db_id uuid    NOT NULL DEFAULT gen_random_uuid()   -- a recreated database gets a new one
);
INSERT INTO dsms_meta (id) VALUES (true) ON CONFLICT DO NOTHING;

-- How far this database has applied each source's change feed (moved with each applied batch).
CREATE TABLE IF NOT EXISTS dsms_cursor (
    source     text COLLATE "C" NOT NULL,
    source_db  uuid        NOT NULL,
    pos        bigint      NOT NULL,
    id         uuid        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_db)
);

-- Writes overwritten by a concurrent write (their writers had not seen each other), once each.
CREATE TABLE IF NOT EXISTS dsms_conflict (
    vente_id      uuid        NOT NULL,
    loser_hlc     bigint      NOT NULL,
    loser_origin  text COLLATE "C" NOT NULL,
    winner_hlc    bigint      NOT NULL,
    winner_origin text COLLATE "C" NOT NULL,
    loser         text        NOT NULL,                -- the lost row, JSON
    winner        text        NOT NULL,                -- the row that won, JSON
    detected_in   text        NOT NULL,
    detected_at   timestamptz NOT NULL,
    PRIMARY KEY (vente_id, loser_hlc, loser_origin)
);
CREATE INDEX IF NOT EXISTS dsms_conflict_time ON dsms_conflict (detected_at DESC);

-- Any committed change to vente wakes the servers listening on this database, except the
-- replication's own applies (they set dsms.applying), which would only wake rounds for echoes.
CREATE OR REPLACE FUNCTION dsms_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('dsms.applying', true), '') <> 'on' THEN
        PERFORM pg_notify('dsms_vente', '');
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS vente_notify ON vente;
CREATE TRIGGER vente_notify AFTER INSERT OR UPDATE OR DELETE ON vente
    FOR EACH STATEMENT EXECUTE FUNCTION dsms_notify_change();
