-- Quarantine: rows dsms cannot take as they are, set aside instead of blocking a feed, a listing or
-- an apply. A row of this database that cannot be decoded (written around the triggers: a product of
-- spaces, a control character, an unreadable `seen`, an amount out of range, a value of the wrong
-- type) is recorded with `region` = this database's region; a replicated version refused because it
-- is too far in the future, with `region` = the region it came from. An item leaves when the row
-- reads well again (fixed by any writer, which gives it a new feed position) or when an acceptable
-- version of it arrives from that region.
CREATE TABLE IF NOT EXISTS dsms_quarantine (
    region     TEXT    NOT NULL,                 -- the region the row belongs to
    vente_id   BLOB    NOT NULL,
    field      TEXT    NOT NULL,                 -- the column at fault (`version`: too far in the future)
    raw        TEXT    NOT NULL,                 -- the row as found or received, JSON
    reason     TEXT    NOT NULL,                 -- why, in French
    first_seen INTEGER NOT NULL,                 -- microseconds since the epoch
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (region, vente_id)
);
CREATE INDEX IF NOT EXISTS dsms_quarantine_vente ON dsms_quarantine (vente_id);

-- A foreign write that fixes a row quarantined for its unreadable history (`seen`) starts a new
-- history instead of carrying the unreadable one on: the update trigger of migration 0092, with
-- that one step added.
DROP TRIGGER IF EXISTS vente_foreign_update;
CREATE TRIGGER vente_foreign_update AFTER UPDATE ON vente
WHEN (SELECT dsms FROM dsms_clock WHERE id = 1) = 0
BEGIN
    UPDATE dsms_clock SET hlc = max(hlc + 1, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) << 16),
        seq = seq + 1, dsms = 2 WHERE id = 1;
    UPDATE vente SET
        produit = trim(produit, char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288)),
        updated_at = CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER),
        hlc = (SELECT hlc FROM dsms_clock WHERE id = 1),
        seq = (SELECT seq FROM dsms_clock WHERE id = 1),
        origin = (SELECT region FROM dsms_meta WHERE id = 1),
        via = NULL
        WHERE rowid = NEW.rowid;
    UPDATE vente SET produit_norm = replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(lower(produit), 'à', 'a'), 'â', 'a'), 'ä', 'a'), 'á', 'a'), 'ã', 'a'), 'å', 'a'), 'À', 'a'), 'Â', 'a'), 'Ä', 'a'), 'Á', 'a'), 'Ã', 'a'), 'Å', 'a') WHERE rowid = NEW.rowid;
    UPDATE vente SET produit_norm = replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(produit_norm, 'é', 'e'), 'è', 'e'), 'ê', 'e'), 'ë', 'e'), 'É', 'e'), 'È', 'e'), 'Ê', 'e'), 'Ë', 'e'), 'î', 'i'), 'ï', 'i'), 'í', 'i'), 'ì', 'i') WHERE rowid = NEW.rowid;
    UPDATE vente SET produit_norm = replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(produit_norm, 'Î', 'i'), 'Ï', 'i'), 'Í', 'i'), 'Ì', 'i'), 'ô', 'o'), 'ö', 'o'), 'ó', 'o'), 'ò', 'o'), 'õ', 'o'), 'Ô', 'o'), 'Ö', 'o'), 'Ó', 'o') WHERE rowid = NEW.rowid;
    UPDATE vente SET produit_norm = replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(produit_norm, 'Ò', 'o'), 'Õ', 'o'), 'ù', 'u'), 'û', 'u'), 'ü', 'u'), 'ú', 'u'), 'Ù', 'u'), 'Û', 'u'), 'Ü', 'u'), 'Ú', 'u'), 'ç', 'c'), 'Ç', 'c') WHERE rowid = NEW.rowid;
    UPDATE vente SET produit_norm = replace(replace(replace(replace(replace(replace(replace(replace(produit_norm, 'ÿ', 'y'), 'ý', 'y'), 'Ÿ', 'y'), 'Ý', 'y'), 'ñ', 'n'), 'Ñ', 'n'), 'Œ', 'œ'), 'Æ', 'æ') WHERE rowid = NEW.rowid;
    -- A row quarantined for its unreadable history starts a new one (what it had cannot be read).
    UPDATE vente SET seen = CASE WHEN EXISTS (SELECT 1 FROM dsms_quarantine q WHERE q.vente_id = OLD.id AND q.field = 'seen')
                                 THEN '' ELSE OLD.seen END
        WHERE rowid = NEW.rowid;
    UPDATE vente SET
        seen = CASE WHEN instr((';' || seen || ';'), (';' || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=')) = 0 THEN (CASE WHEN seen = '' THEN '' ELSE seen || ';' END) || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=' || hlc
                ELSE trim(substr((';' || seen || ';'), 1, instr((';' || seen || ';'), (';' || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '='))) || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=' || hlc || substr(substr((';' || seen || ';'), instr((';' || seen || ';'), (';' || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=')) + 1), instr(substr((';' || seen || ';'), instr((';' || seen || ';'), (';' || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=')) + 1), ';')), ';') END
        WHERE rowid = NEW.rowid;
    UPDATE dsms_clock SET dsms = 0 WHERE id = 1;
END;
