-- Sales of every region, with the version columns replication needs.
CREATE TABLE IF NOT EXISTS vente (
    id           uuid          NOT NULL PRIMARY KEY,
    produit      text          NOT NULL CHECK (char_length(produit) BETWEEN 1 AND 200),
    produit_norm text          NOT NULL,                      -- folded (lower case, no accents) for search
    montant      numeric(12,2) NOT NULL CHECK (montant > 0),
    date_vente   date          NOT NULL,
    region       text          NOT NULL,
    updated_at   timestamptz   NOT NULL,
    deleted      boolean       NOT NULL DEFAULT false,
    hlc          bigint        NOT NULL,                      -- version: hybrid logical clock
    origin       text COLLATE "C" NOT NULL,                   -- version tie-break, compared bytewise as in Rust
    txid         xid8          NOT NULL DEFAULT pg_current_xact_id()  -- change-feed position
);

-- The guide's six indexes, each shaped for the query it serves. Every row by last write, tombstones
-- included (the same order as the live listing, so keyset pages work on it too):
CREATE INDEX IF NOT EXISTS idx_vente_updated_at ON vente (updated_at DESC, id DESC);
-- Live sales, newest write first: the listing (the guide's `WHERE deleted = false ORDER BY
-- updated_at DESC`). Never larger than idx_vente_updated_at, and created after it, so the planner
-- picks it for that query even when no row is deleted and their costs tie (later index first).
CREATE INDEX IF NOT EXISTS idx_vente_sync       ON vente (updated_at DESC, id DESC) WHERE deleted = false;
CREATE INDEX IF NOT EXISTS idx_vente_region     ON vente (region, updated_at DESC, id DESC) WHERE deleted = false;
CREATE INDEX IF NOT EXISTS idx_vente_date_vente ON vente (date_vente DESC) WHERE deleted = false;
CREATE INDEX IF NOT EXISTS idx_vente_produit    ON vente (produit_norm text_pattern_ops) WHERE deleted = false;
CREATE INDEX IF NOT EXISTS idx_vente_deleted    ON vente (updated_at) WHERE deleted = true;
-- The change feed: rows by writing transaction.
CREATE INDEX IF NOT EXISTS vente_feed ON vente (txid, id);

-- This region's clock: the last version stamped or seen.
CREATE TABLE IF NOT EXISTS dsms_clock (
    id  boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (id),
    hlc bigint  NOT NULL
);
INSERT INTO dsms_clock (id, hlc) VALUES (true, 0) ON CONFLICT DO NOTHING;
