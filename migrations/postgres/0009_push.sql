-- A write pushed to another region travels in one message: one call of `dsms_push`, in autocommit
-- (no BEGIN, no COMMIT, no read before the write), so over a wide-area link it is visible there
-- one-way delay plus apply time after its local commit.
--
-- The function writes only what needs no judgement beyond the SQL guard: a sale the region does
-- not hold (insert), and a newer version whose writer had seen the stored one (an ordinary edit).
-- Every other row it leaves as it is (locked) and returns with the stored version and history:
-- dsms then judges them by the LWW rule (`domain::lww::judge`): the same version or an older one
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

-- Applies pushed versions (arrays of one length, one element per sale, ids distinct); returns the
-- rows it left: their id and the stored version and history. Runs as one statement's transaction.
CREATE OR REPLACE FUNCTION dsms_push(
    p_id uuid[], p_produit text[], p_produit_norm text[], p_montant numeric[], p_date date[], p_region text[],
    p_updated_at timestamptz[], p_deleted boolean[], p_hlc bigint[], p_origin text[], p_seen text[])
RETURNS TABLE (id uuid, hlc bigint, origin text, seen text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    written uuid[];
BEGIN
    -- As every apply: listeners are not woken, the clock moves past every version received
    -- (clock row first, then the rows: the order local writes lock in too).
    PERFORM set_config('dsms.applying', 'on', true);
    UPDATE dsms_clock SET hlc = greatest(dsms_clock.hlc, (SELECT max(h) FROM unnest(p_hlc) AS h));
    WITH w AS (
        INSERT INTO vente AS v (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seen, via)
        SELECT r.*, NULL::uuid FROM unnest(p_id, p_produit, p_produit_norm, p_montant, p_date, p_region,
                                           p_updated_at, p_deleted, p_hlc, p_origin, p_seen) AS r
        ON CONFLICT (id) DO UPDATE SET produit = EXCLUDED.produit, produit_norm = EXCLUDED.produit_norm,
            montant = EXCLUDED.montant, date_vente = EXCLUDED.date_vente, region = EXCLUDED.region,
            updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted, hlc = EXCLUDED.hlc,
            origin = EXCLUDED.origin, seen = EXCLUDED.seen, via = NULL, txid = pg_current_xact_id()
        WHERE (EXCLUDED.hlc, EXCLUDED.origin) > (v.hlc, v.origin) AND dsms_seen_includes(EXCLUDED.seen, v.seen)
        RETURNING v.id
    )
    SELECT coalesce(array_agg(w.id), '{}') INTO written FROM w;
    -- The rows left were locked by the conflicting insert: this later statement reads them as
    -- they stay until the end of the transaction.
    RETURN QUERY SELECT s.id, s.hlc, s.origin, s.seen FROM vente AS s
        WHERE s.id = ANY (p_id) AND NOT (s.id = ANY (written));
END
$$;
