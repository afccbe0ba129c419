-- Tamper evidence for audit_event (see docs/security.md): each row carries a
-- chain value, SHA-256 over the previous row's chain value (per workspace)
-- and this row's columns. audit_head serializes appends per workspace;
-- audit_checkpoint holds the vault's keyed seals of the head. audit_event
-- itself is only ever inserted into and read, so the role Rotor runs as can
-- be limited to INSERT and SELECT on it.
ALTER TABLE audit_event ADD COLUMN chain bytea;

CREATE TABLE audit_head (
    workspace_id  text PRIMARY KEY,
    last_id       bigint NOT NULL,
    chain         bytea NOT NULL
);

CREATE TABLE audit_checkpoint (
    workspace_id  text PRIMARY KEY,
    last_id       bigint NOT NULL,
    chain         bytea NOT NULL,
    mac           bytea NOT NULL,
    sealed_at     timestamptz NOT NULL
);
