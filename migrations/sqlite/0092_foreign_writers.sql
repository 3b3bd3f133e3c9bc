-- Every writer replicates: rows inserted, updated or deleted by the `sqlite3` shell or any other
-- program get a version and a feed position from the triggers below, as dsms's own writes do. dsms
-- marks its write transactions in the clock row (`dsms_clock.dsms = 1`, set by the statement that
-- advances the clock, cleared before commit): the triggers skip those writes in their WHEN clause.
-- SQLite has one writer at a time, so the mark is never seen by another writer's statements.
-- The triggers stamp with `dsms = 2` while they write, so their own updates fire nothing.

ALTER TABLE dsms_meta ADD COLUMN region TEXT;            -- the region this database serves (set at migrate)
ALTER TABLE dsms_clock ADD COLUMN dsms INTEGER NOT NULL DEFAULT 0;

-- Defaults for every column a foreign writer may leave out (SQLite checks NOT NULL before AFTER
-- triggers run, and cannot add a default to a column in place): the table is rebuilt, rows and
-- indexes as they were.
CREATE TABLE vente_new (
    id           BLOB    NOT NULL PRIMARY KEY DEFAULT (randomblob(16)),  -- UUID, 16 bytes
    produit      TEXT    NOT NULL,
    produit_norm TEXT    NOT NULL DEFAULT '',               -- folded (lower case, no accents) for search
    montant      INTEGER NOT NULL CHECK (montant > 0),      -- exact cents
    date_vente   TEXT    NOT NULL,                          -- YYYY-MM-DD
    region       TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL DEFAULT 0,                -- microseconds since the Unix epoch, UTC
    deleted      INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    hlc          INTEGER NOT NULL DEFAULT 0,                -- version: hybrid logical clock
    origin       TEXT    NOT NULL DEFAULT '',               -- version tie-break: region that stamped it
    seq          INTEGER NOT NULL DEFAULT 0,                -- change-feed position, gap-free in commit order
    seen         TEXT    NOT NULL DEFAULT '',
    via          BLOB
);
INSERT INTO vente_new (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seq, seen, via)
    SELECT id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seq, seen, via FROM vente;
DROP TABLE vente;
ALTER TABLE vente_new RENAME TO vente;
CREATE INDEX IF NOT EXISTS idx_vente_sync       ON vente (updated_at DESC, id DESC) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS idx_vente_region     ON vente (region, updated_at DESC, id DESC) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS idx_vente_date_vente ON vente (date_vente DESC) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS idx_vente_produit    ON vente (produit_norm) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS idx_vente_deleted    ON vente (updated_at) WHERE deleted = 1;
CREATE INDEX IF NOT EXISTS idx_vente_updated_at ON vente (updated_at DESC);
CREATE INDEX IF NOT EXISTS vente_feed ON vente (seq);
CREATE INDEX IF NOT EXISTS idx_vente_analytics ON vente (region, date_vente, montant) WHERE deleted = 0;

-- A foreign write is checked against dsms's rules first (French messages; the statement fails).
CREATE TRIGGER vente_foreign_check_insert BEFORE INSERT ON vente
WHEN (SELECT dsms FROM dsms_clock WHERE id = 1) = 0
BEGIN
    SELECT RAISE(ABORT, 'vente : la région de cette base est inconnue ; lancez « dsms migrate »')
        WHERE (SELECT region FROM dsms_meta WHERE id = 1) IS NULL;
    SELECT RAISE(ABORT, 'vente : id doit être un UUID de 16 octets (X''0190…'') ou omis')
        WHERE typeof(NEW.id) <> 'blob' OR length(NEW.id) <> 16;
    SELECT RAISE(ABORT, 'vente : le produit est obligatoire')
        WHERE typeof(NEW.produit) <> 'text' OR trim(NEW.produit, char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288)) = '';
    SELECT RAISE(ABORT, 'vente : le produit ne peut dépasser 200 caractères')
        WHERE length(trim(NEW.produit, char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288))) > 200;
    SELECT RAISE(ABORT, 'vente : le produit contient des caractères de contrôle')
        WHERE trim(NEW.produit, char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288)) GLOB ('*[' || char(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159) || ']*');
    SELECT RAISE(ABORT, 'vente : le montant est un nombre entier de centimes, > 0 et < 10^12 (1 500,50 FCFA s''écrit 150050)')
        WHERE typeof(NEW.montant) <> 'integer' OR NEW.montant <= 0 OR NEW.montant >= 1000000000000;
    SELECT RAISE(ABORT, 'vente : la date de vente est obligatoire, au format AAAA-MM-JJ, postérieure au 01/01/1900')
        WHERE typeof(NEW.date_vente) <> 'text' OR date(NEW.date_vente) IS NOT NEW.date_vente OR NEW.date_vente < '1900-01-01';
    SELECT RAISE(ABORT, 'vente : la date de vente ne peut dépasser demain (UTC)')
        WHERE NEW.date_vente > date('now', '+1 day');
    SELECT RAISE(ABORT, 'vente : la région est obligatoire')
        WHERE typeof(NEW.region) <> 'text' OR trim(NEW.region) = '';
    SELECT RAISE(ABORT, 'vente : deleted vaut 0 ou 1')
        WHERE NEW.deleted IS NULL OR NEW.deleted NOT IN (0, 1);
END;

CREATE TRIGGER vente_foreign_check_update BEFORE UPDATE ON vente
WHEN (SELECT dsms FROM dsms_clock WHERE id = 1) = 0
BEGIN
    SELECT RAISE(ABORT, 'vente : la région de cette base est inconnue ; lancez « dsms migrate »')
        WHERE (SELECT region FROM dsms_meta WHERE id = 1) IS NULL;
    SELECT RAISE(ABORT, 'vente : id doit être un UUID de 16 octets (X''0190…'') ou omis')
        WHERE typeof(NEW.id) <> 'blob' OR length(NEW.id) <> 16;
    SELECT RAISE(ABORT, 'vente : le produit est obligatoire')
        WHERE typeof(NEW.produit) <> 'text' OR trim(NEW.produit, char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288)) = '';
    SELECT RAISE(ABORT, 'vente : le produit ne peut dépasser 200 caractères')
        WHERE length(trim(NEW.produit, char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288))) > 200;
    SELECT RAISE(ABORT, 'vente : le produit contient des caractères de contrôle')
        WHERE trim(NEW.produit, char(9, 10, 11, 12, 13, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288)) GLOB ('*[' || char(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159) || ']*');
    SELECT RAISE(ABORT, 'vente : le montant est un nombre entier de centimes, > 0 et < 10^12 (1 500,50 FCFA s''écrit 150050)')
        WHERE typeof(NEW.montant) <> 'integer' OR NEW.montant <= 0 OR NEW.montant >= 1000000000000;
    SELECT RAISE(ABORT, 'vente : la date de vente est obligatoire, au format AAAA-MM-JJ, postérieure au 01/01/1900')
        WHERE typeof(NEW.date_vente) <> 'text' OR date(NEW.date_vente) IS NOT NEW.date_vente OR NEW.date_vente < '1900-01-01';
    SELECT RAISE(ABORT, 'vente : la date de vente ne peut dépasser demain (UTC)')
        WHERE NEW.date_vente > date('now', '+1 day');
    SELECT RAISE(ABORT, 'vente : la région est obligatoire')
        WHERE typeof(NEW.region) <> 'text' OR trim(NEW.region) = '';
    SELECT RAISE(ABORT, 'vente : deleted vaut 0 ou 1')
        WHERE NEW.deleted IS NULL OR NEW.deleted NOT IN (0, 1);
END;

-- Then stamped: the clock row advanced (hlc from this host's clock, the next feed position), this
-- region as origin, what the writer had seen (the row it replaced), derived columns filled in.
-- Values the writer gave to dsms's columns (hlc, origin, seq, seen, via, produit_norm, updated_at)
-- are replaced, so a writer can never reuse a feed position.
CREATE TRIGGER vente_foreign_insert AFTER INSERT ON vente
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
    UPDATE vente SET
        seen = replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=' || hlc
        WHERE rowid = NEW.rowid;
    UPDATE dsms_clock SET dsms = 0 WHERE id = 1;
END;

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
    UPDATE vente SET
        seen = CASE WHEN instr((';' || OLD.seen || ';'), (';' || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=')) = 0 THEN (CASE WHEN OLD.seen = '' THEN '' ELSE OLD.seen || ';' END) || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=' || hlc
                ELSE trim(substr((';' || OLD.seen || ';'), 1, instr((';' || OLD.seen || ';'), (';' || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '='))) || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=' || hlc || substr(substr((';' || OLD.seen || ';'), instr((';' || OLD.seen || ';'), (';' || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=')) + 1), instr(substr((';' || OLD.seen || ';'), instr((';' || OLD.seen || ';'), (';' || replace(replace(replace(origin, '%', '%25'), '=', '%3D'), ';', '%3B') || '=')) + 1), ';')), ';') END
        WHERE rowid = NEW.rowid;
    UPDATE dsms_clock SET dsms = 0 WHERE id = 1;
END;

-- A foreign hard DELETE becomes a replicated deletion: the row is soft-deleted (an UPDATE, stamped
-- above) and the DELETE skips it. Deleting a row already deleted changes nothing.
CREATE TRIGGER vente_foreign_delete BEFORE DELETE ON vente
WHEN (SELECT dsms FROM dsms_clock WHERE id = 1) = 0
BEGIN
    UPDATE vente SET deleted = 1 WHERE rowid = OLD.rowid AND deleted = 0;
    SELECT RAISE(IGNORE);
END;
