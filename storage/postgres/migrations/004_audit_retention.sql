-- Audit retention (issue 11): the marker pruning leaves, MAC'd by the
-- vault, so the remaining trail verifies from the last pruned row.
CREATE TABLE audit_retention (
    workspace_id  text PRIMARY KEY,
    through_id    bigint NOT NULL,
    chain         bytea NOT NULL,
    rows          bigint NOT NULL,
    pruned_at     timestamptz NOT NULL,
    mac           bytea NOT NULL
);
