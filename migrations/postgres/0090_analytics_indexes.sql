-- Covering indexes for /api/analytics (recomputed after every write): per-region totals and the
-- 30-day series can be answered by index-only scans.
-- Numbered apart from the sync engine's migrations so the two never collide.
CREATE INDEX IF NOT EXISTS idx_vente_analytics_region ON vente (region) INCLUDE (montant) WHERE deleted = false;
CREATE INDEX IF NOT EXISTS idx_vente_analytics_day    ON vente (date_vente, region) INCLUDE (montant) WHERE deleted = false;
