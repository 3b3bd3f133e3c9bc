-- Quarantine: rows dsms cannot take as they are, set aside instead of blocking a feed, a listing or
-- an apply. A row of this database that cannot be decoded (written by hand around the triggers: a
-- product of spaces, a control character, an unreadable `seen`, an amount out of range) is recorded
-- with `region` = this database's region; a replicated version refused because it is too far in
-- the future is recorded with `region` = the region it came from. An item leaves when the row reads
-- well again (fixed by any writer, which gives it a new feed position) or when an acceptable
-- version of it arrives from that region.
CREATE TABLE IF NOT EXISTS dsms_quarantine (
    region     text COLLATE "C" NOT NULL,   -- the region the row belongs to
    vente_id   uuid        NOT NULL,
    field      text        NOT NULL,         -- the column at fault (`version`: too far in the future)
    raw        text        NOT NULL,         -- the row as found or received, JSON
    reason     text        NOT NULL,         -- why, in French
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (region, vente_id)
);
CREATE INDEX IF NOT EXISTS dsms_quarantine_vente ON dsms_quarantine (vente_id);

-- A foreign write that fixes a row whose history (`seen`) is unreadable starts from what can be
-- read of it: parts that are not `name=clock` are dropped instead of being carried on.
CREATE OR REPLACE FUNCTION dsms_seen_after(p_seen text, p_region text, p_hlc bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH me AS (SELECT replace(replace(replace(p_region, '%', '%25'), '=', '%3D'), ';', '%3B') AS name),
         entries AS (
             SELECT left(part, length(part) - strpos(reverse(part), '=')) AS name, part
             FROM unnest(string_to_array(coalesce(p_seen, ''), ';')) AS part
             WHERE part ~ '^[^=]*=-?[0-9]{1,18}$'
         )
    SELECT string_agg(s.part, ';' ORDER BY s.name COLLATE "C")
    FROM (SELECT e.name, e.part FROM entries e, me WHERE e.name <> me.name
          UNION ALL
          SELECT me.name, me.name || '=' || p_hlc FROM me) AS s
$$;
