-- An apply in one message: one call of `dsms_apply` in autocommit (no BEGIN, no COMMIT, no read
-- before the write). A write pushed to another region goes this way, so over a wide-area link it
-- is visible there one-way delay plus apply time after its local commit; so do a round's small
-- batches (the steady trickle of changes), cursor move and apply log included.
--
-- The function writes only what needs no judgement beyond the SQL guard: a sale the region does
-- not hold (insert), and a newer version whose writer had seen the stored one (an ordinary edit).
-- Every other row it leaves as it is (locked) and returns with the stored version and history:
-- dsms then judges them by the LWW rule (`domain::lww::judge`). The same version or an older one
-- already seen changes nothing; a conflict goes through the full apply, which logs it.

-- Whether the history `p_seen` includes every write `p_other` includes (`Seen::includes`): each
-- region of `p_other` has an entry in `p_seen` at least as great. Both are `Region=hlc;…` text, names
-- escaped the same way, so names compare as they are. Text that does not parse includes nothing and
-- is included by nothing: dsms's own judgement then takes over (and quarantines what it cannot read).
CREATE OR REPLACE FUNCTION dsms_seen_entries(p_seen text) RETURNS TABLE (name text, hlc bigint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT left(part, length(part) - strpos(reverse(part), '=')),
           CASE WHEN right(part, strpos(reverse(part), '=') - 1) ~ '^[0-9]{1,18}$'
                THEN right(part, strpos(reverse(part), '=') - 1)::bigint END
    FROM unnest(string_to_array(coalesce(p_seen, ''), ';')) AS part
    WHERE part <> ''
$$;

CREATE OR REPLACE FUNCTION dsms_seen_includes(p_seen text, p_other text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_seen IS NOT NULL AND p_other IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM dsms_seen_entries(p_seen) AS s WHERE s.hlc IS NULL OR strpos(s.name, '=') > 0)
       AND NOT EXISTS (
           SELECT 1 FROM dsms_seen_entries(p_other) AS o
           WHERE o.hlc IS NULL OR strpos(o.name, '=') > 0
              OR NOT EXISTS (SELECT 1 FROM dsms_seen_entries(p_seen) AS s WHERE s.name = o.name AND s.hlc >= o.hlc))
$$;

-- Whether a stored version (`s_…`) makes an incoming one (`r_…`) change nothing, as
-- `domain::lww::judge` says `Same` or `Stale`: the same version, or an older one that the stored
-- one's writer had seen (or that had seen it: not concurrent).
CREATE OR REPLACE FUNCTION dsms_settles(s_hlc bigint, s_origin text, s_seen text, r_hlc bigint, r_origin text, r_seen text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (s_hlc, s_origin) = (r_hlc, r_origin)
        OR ((s_hlc, s_origin) > (r_hlc, r_origin) AND (dsms_seen_includes(s_seen, r_seen) OR dsms_seen_includes(r_seen, s_seen)))
$$;

-- Applies versions (arrays of one length, one element per sale, ids distinct): pushed ones
-- (`p_source` NULL), or a small batch read from `p_source`'s feed up to `p_end` (marked `via`
-- `p_via`), in the region `p_here`. Returns the rows it left: their id, the stored version and history, and whether the
-- stored version makes the incoming one change nothing (`settled`: the same version, or an older
-- one that the stored one's writer had seen, or that had seen it). When every row left is settled,
-- a batch's cursor moves to `p_end` (recording `p_epoch`) and the apply is logged (`dsms_applied`,
-- when rows were written), all in this one statement's transaction; otherwise nothing moves and
-- dsms applies the unsettled rows with the full apply, which moves the cursor.
CREATE OR REPLACE FUNCTION dsms_apply(
    p_id uuid[], p_produit text[], p_produit_norm text[], p_montant numeric[], p_date date[], p_region text[],
    p_updated_at timestamptz[], p_deleted boolean[], p_hlc bigint[], p_origin text[], p_seen text[],
    p_via uuid, p_source text, p_source_db uuid, p_end_pos bigint, p_end_id uuid, p_epoch uuid, p_now timestamptz,
    p_here text)
RETURNS TABLE (id uuid, hlc bigint, origin text, seen text, settled boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    written uuid[];
    unsettled boolean;
BEGIN
    -- As every apply: listeners are not woken, the clock moves past every version received
    -- (clock row first, then the rows: the order local writes lock in too).
    PERFORM set_config('dsms.applying', 'on', true);
    UPDATE dsms_clock SET hlc = greatest(dsms_clock.hlc, (SELECT max(h) FROM unnest(p_hlc) AS h));
    WITH w AS (
        INSERT INTO vente AS v (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seen, via)
        SELECT r.*, p_via FROM unnest(p_id, p_produit, p_produit_norm, p_montant, p_date, p_region,
                                      p_updated_at, p_deleted, p_hlc, p_origin, p_seen) AS r
        ON CONFLICT (id) DO UPDATE SET produit = EXCLUDED.produit, produit_norm = EXCLUDED.produit_norm,
            montant = EXCLUDED.montant, date_vente = EXCLUDED.date_vente, region = EXCLUDED.region,
            updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted, hlc = EXCLUDED.hlc,
            origin = EXCLUDED.origin, seen = EXCLUDED.seen, via = EXCLUDED.via, txid = pg_current_xact_id()
        WHERE (EXCLUDED.hlc, EXCLUDED.origin) > (v.hlc, v.origin) AND dsms_seen_includes(EXCLUDED.seen, v.seen)
        RETURNING v.id
    )
    SELECT coalesce(array_agg(w.id), '{}') INTO written FROM w;
    -- A stored row set aside as unreadable (`p_here`'s quarantine) and now replaced is readable.
    DELETE FROM dsms_quarantine AS q WHERE q.region = p_here AND q.vente_id = ANY (written);
    -- The rows left were locked by the conflicting insert: later statements read them as they
    -- stay until the end of the transaction.
    SELECT EXISTS (
        SELECT 1 FROM vente AS s JOIN unnest(p_id, p_hlc, p_origin, p_seen) AS r(id, hlc, origin, seen) ON r.id = s.id
        WHERE NOT (s.id = ANY (written)) AND NOT dsms_settles(s.hlc, s.origin, s.seen, r.hlc, r.origin, r.seen)
    ) INTO unsettled;
    IF p_source IS NOT NULL AND NOT unsettled THEN
        INSERT INTO dsms_cursor AS c (source, source_db, pos, id, updated_at, epoch)
            VALUES (p_source, p_source_db, p_end_pos, p_end_id, p_now, p_epoch)
            ON CONFLICT (source, source_db) DO UPDATE SET pos = EXCLUDED.pos, id = EXCLUDED.id, updated_at = EXCLUDED.updated_at,
                epoch = coalesce(EXCLUDED.epoch, c.epoch)
            WHERE (c.pos, c.id) < (EXCLUDED.pos, EXCLUDED.id);
        IF cardinality(written) > 0 THEN
            INSERT INTO dsms_applied (txid, source_db, end_pos, end_id, rows, here_db)
                SELECT pg_current_xact_id(), p_source_db, p_end_pos, p_end_id, cardinality(written), m.db_id FROM dsms_meta m
                ON CONFLICT (txid, source_db) DO UPDATE SET rows = dsms_applied.rows + EXCLUDED.rows;
        END IF;
    END IF;
    RETURN QUERY
        SELECT s.id, s.hlc, s.origin, s.seen, dsms_settles(s.hlc, s.origin, s.seen, r.hlc, r.origin, r.seen)
        FROM vente AS s JOIN unnest(p_id, p_hlc, p_origin, p_seen) AS r(id, hlc, origin, seen) ON r.id = s.id
        WHERE NOT (s.id = ANY (written));
END
$$;
