-- Sales of every region, with the version columns replication needs.
CREATE TABLE IF NOT EXISTS vente (
    id           BLOB    NOT NULL PRIMARY KEY,           -- UUID, 16 bytes
    produit      TEXT    NOT NULL,
    produit_norm TEXT    NOT NULL,                       -- folded (lower case, no accents) for search
    montant      INTEGER NOT NULL CHECK (montant > 0),   -- exact cents
    date_vente   TEXT    NOT NULL,                       -- YYYY-MM-DD
    region       TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL,                       -- microseconds since the Unix epoch, UTC
    deleted      INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    hlc          INTEGER NOT NULL,                       -- version: hybrid logical clock
    origin       TEXT    NOT NULL,                       -- version tie-break: region that stamped it
    seq          INTEGER NOT NULL                        -- change-feed position, gap-free in commit order
);

-- The guide's six indexes, each shaped for the query it serves.
CREATE INDEX IF NOT EXISTS idx_vente_sync       ON vente (updated_at DESC, id DESC) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS idx_vente_region     ON vente (region, updated_at DESC, id DESC) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS idx_vente_date_vente ON vente (date_vente DESC) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS idx_vente_produit    ON vente (produit_norm) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS idx_vente_deleted    ON vente (updated_at) WHERE deleted = 1;
CREATE INDEX IF NOT EXISTS idx_vente_updated_at ON vente (updated_at DESC);
-- The change feed.
CREATE INDEX IF NOT EXISTS vente_feed ON vente (seq);

-- This region's clock: the last version stamped or seen, and the last feed position.
CREATE TABLE IF NOT EXISTS dsms_clock (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    hlc INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO dsms_clock (id, hlc, seq) VALUES (1, 0, 0);
