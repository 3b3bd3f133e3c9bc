-- The database each row version was received from (NULL: written here). A region reading this
-- feed is not sent back the versions it sent itself: it holds them, or newer ones. A database
-- that is recreated gets a new identity, so it is sent everything again.
ALTER TABLE vente ADD COLUMN IF NOT EXISTS via uuid;
