-- One covering index for /api/analytics (recomputed after every write): per-region totals and the
-- 30-day series are answered by index-only scans. Numbered apart from the sync engine's
-- migrations so the two never collide.
CREATE INDEX IF NOT EXISTS idx_vente_analytics ON vente (region, date_vente) INCLUDE (montant) WHERE deleted = false;
