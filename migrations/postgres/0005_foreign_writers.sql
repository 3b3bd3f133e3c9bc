-- Every writer replicates: rows inserted, updated or deleted with plain SQL (psql, the guide's
-- Spring application, any other program) get a version and a feed position here, in the database,
-- as dsms's own writes do. dsms's sessions carry `dsms.writer` (set by every dsms connection
-- pool): they stamp their writes themselves, so the triggers below skip them in their WHEN clause,
-- before any function is called (COPY and the bulk load pay one setting lookup per row, no more).

-- The region this database serves: foreign writes are stamped with it (dsms records it at migrate).
ALTER TABLE dsms_meta ADD COLUMN IF NOT EXISTS region text COLLATE "C";

-- A writer naming only the guide's columns, or fewer, gets an id.
ALTER TABLE vente ALTER COLUMN id SET DEFAULT gen_random_uuid();

-- The search key, as dsms's Rust `fold` computes it: canonical decomposition, combining marks
-- dropped, lower case (the common combining blocks; `lower` follows the database's locale).
CREATE OR REPLACE FUNCTION dsms_fold(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(regexp_replace(normalize(t, NFD),
        '[\u0300-\u036F\u0483-\u0489\u0591-\u05BD\u1AB0-\u1AFF\u1DC0-\u1DFF\u20D0-\u20FF\uFE20-\uFE2F]', '', 'g'))
$$;

-- What a write stamped `p_hlc` by `p_region` had seen: the row's previous `seen` (text
-- `Region=hlc;…`, names escaped as `Seen::encode` does) with that region's entry set to `p_hlc`.
CREATE OR REPLACE FUNCTION dsms_seen_after(p_seen text, p_region text, p_hlc bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH me AS (SELECT replace(replace(replace(p_region, '%', '%25'), '=', '%3D'), ';', '%3B') AS name),
         entries AS (
             SELECT left(part, length(part) - strpos(reverse(part), '=')) AS name, part
             FROM unnest(string_to_array(coalesce(p_seen, ''), ';')) AS part
             WHERE part <> ''
         )
    SELECT string_agg(s.part, ';' ORDER BY s.name COLLATE "C")
    FROM (SELECT e.name, e.part FROM entries e, me WHERE e.name <> me.name
          UNION ALL
          SELECT me.name, me.name || '=' || p_hlc FROM me) AS s
$$;

-- A foreign INSERT or UPDATE: checked against dsms's rules (French messages), then stamped: a
-- version greater than the region's clock (read, not locked: a psql session left open must not
-- stop the region's other writers), than the database's wall clock and than the row it replaces,
-- this region as origin, what the writer had seen (the row it replaced), this transaction as feed
-- position, derived columns filled in. Versions only need to be unique per row, and the row lock
-- orders a row's writers: a later foreign write starts from the row an earlier one left, and
-- dsms's own write path locks the row and passes its version too. Values the writer gave to
-- dsms's columns are replaced.
CREATE OR REPLACE FUNCTION dsms_stamp_foreign_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    this_region text;
    stamped bigint;
    wall bigint := (floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint << 16;
BEGIN
    SELECT m.region INTO this_region FROM dsms_meta m;
    IF this_region IS NULL THEN
        RAISE EXCEPTION 'vente : la région de cette base est inconnue ; lancez « dsms migrate »'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    NEW.produit := regexp_replace(NEW.produit,
        '^[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+|[\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+$',
        '', 'g');
    IF NEW.produit IS NULL OR NEW.produit = '' THEN
        RAISE EXCEPTION 'vente : le produit est obligatoire' USING ERRCODE = 'check_violation';
    ELSIF char_length(NEW.produit) > 200 THEN
        RAISE EXCEPTION 'vente : le produit ne peut dépasser 200 caractères' USING ERRCODE = 'check_violation';
    ELSIF NEW.produit ~ '[\u0001-\u001F\u007F-\u009F]' THEN
        RAISE EXCEPTION 'vente : le produit contient des caractères de contrôle' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.montant IS NULL OR NEW.montant <= 0 THEN
        RAISE EXCEPTION 'vente : le montant doit être supérieur à 0 (FCFA, au plus 2 décimales)' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.date_vente IS NULL OR NEW.date_vente < DATE '1900-01-01' THEN
        RAISE EXCEPTION 'vente : la date de vente est obligatoire et postérieure au 01/01/1900' USING ERRCODE = 'check_violation';
    ELSIF NEW.date_vente > (clock_timestamp() AT TIME ZONE 'UTC')::date + 1 THEN
        RAISE EXCEPTION 'vente : la date de vente ne peut dépasser demain (UTC)' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.region IS NULL OR btrim(NEW.region) = '' THEN
        RAISE EXCEPTION 'vente : la région est obligatoire' USING ERRCODE = 'check_violation';
    END IF;
    NEW.deleted := coalesce(NEW.deleted, false);

    SELECT greatest(c.hlc + 1, wall) INTO stamped FROM dsms_clock c;
    IF TG_OP = 'UPDATE' THEN
        stamped := greatest(stamped, OLD.hlc + 1);
    END IF;
    NEW.hlc := stamped;
    NEW.origin := this_region;
    NEW.seen := dsms_seen_after(CASE WHEN TG_OP = 'UPDATE' THEN OLD.seen ELSE '' END, this_region, stamped);
    NEW.updated_at := clock_timestamp();
    NEW.produit_norm := dsms_fold(NEW.produit);
    NEW.txid := pg_current_xact_id();
    NEW.via := NULL;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS vente_foreign_write ON vente;
CREATE TRIGGER vente_foreign_write BEFORE INSERT OR UPDATE ON vente FOR EACH ROW
    WHEN (coalesce(current_setting('dsms.writer', true), '') = '')
    EXECUTE FUNCTION dsms_stamp_foreign_write();

-- A foreign hard DELETE becomes a replicated deletion: the row is soft-deleted instead (an UPDATE,
-- stamped by the trigger above) and the DELETE itself skips it (psql reports `DELETE 0`). Deleting
-- a row already deleted changes nothing.
CREATE OR REPLACE FUNCTION dsms_delete_as_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE vente SET deleted = true WHERE id = OLD.id AND NOT deleted;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS vente_foreign_delete ON vente;
CREATE TRIGGER vente_foreign_delete BEFORE DELETE ON vente FOR EACH ROW
    WHEN (coalesce(current_setting('dsms.writer', true), '') = '')
    EXECUTE FUNCTION dsms_delete_as_tombstone();

-- TRUNCATE cannot be replicated row by row (no row trigger fires): it is refused, unless the
-- session says it knows what it does by naming itself in `dsms.writer` (maintenance, tests). The
-- other regions would send every sale back at the next round anyway.
CREATE OR REPLACE FUNCTION dsms_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('dsms.writer', true), '') = '' THEN
        RAISE EXCEPTION 'TRUNCATE de vente refusé : il ne serait pas répliqué ; supprimez les ventes par DELETE (suppressions répliquées)'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Pour vider volontairement cette base (maintenance), SET dsms.writer = ''maintenance'' dans la session.';
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS vente_truncate ON vente;
CREATE TRIGGER vente_truncate BEFORE TRUNCATE ON vente FOR EACH STATEMENT EXECUTE FUNCTION dsms_refuse_truncate();
