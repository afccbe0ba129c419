-- Row MACs (issue 11): each audit row carries a nonce and a MAC made by the
-- host that holds the master key, so a database writer cannot add or edit
-- a row that verifies. Rows from before this migration have neither; the
-- seal's row_mac_from says from which id on every row must have one.
ALTER TABLE audit_event ADD COLUMN row_nonce bytea, ADD COLUMN row_mac bytea;
ALTER TABLE audit_checkpoint ADD COLUMN row_mac_from bigint NOT NULL DEFAULT 0;
