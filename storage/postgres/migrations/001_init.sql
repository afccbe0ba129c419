-- Rotor schema, version 1. Ciphertext, wrapped keys and metadata only: no
-- plaintext secret value is ever stored.
CREATE TABLE workspaces (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id            text PRIMARY KEY,
    workspace_id  text NOT NULL REFERENCES workspaces(id),
    name          text NOT NULL,
    role          text NOT NULL,
    hash          bytea NOT NULL,
    created_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE keks (
    id          text PRIMARY KEY,
    wrapped     bytea NOT NULL,
    active      boolean NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE secrets (
    workspace_id   text NOT NULL REFERENCES workspaces(id),
    name           text NOT NULL,
    version        bigint NOT NULL,
    revision       bigint NOT NULL,
    hint           text NOT NULL,
    allowed_hosts  text[] NOT NULL DEFAULT '{}',
    kek_id         text NOT NULL,
    sealed         bytea NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, name)
);
CREATE INDEX secrets_kek ON secrets (kek_id);

-- The product guide's audit_event table.
CREATE TABLE audit_event (
    id             bigserial PRIMARY KEY,
    occurred_at    timestamptz NOT NULL,
    workspace_id   text NOT NULL,
    actor_id       text NOT NULL,
    event_type     text NOT NULL,
    resource_type  text NOT NULL,
    resource_id    text NOT NULL,
    input          jsonb,
    output         jsonb
);
CREATE INDEX audit_event_workspace ON audit_event (workspace_id, id DESC);

CREATE TABLE queues (
    workspace_id      text NOT NULL REFERENCES workspaces(id),
    name              text NOT NULL,
    spec              json NOT NULL,
    revision          bigint NOT NULL,
    PRIMARY KEY (workspace_id, name)
);

CREATE SEQUENCE lease_token_seq;

CREATE TABLE jobs (
    id            text PRIMARY KEY,
    workspace_id  text NOT NULL,
    queue         text NOT NULL,
    status        text NOT NULL,
    -- due_at: run_at while queued, lease_until while leased, NULL after.
    due_at        timestamptz,
    lease_token   bigint NOT NULL DEFAULT 0,
    body          json NOT NULL, -- the job as JSON; json keeps the payload byte for byte
    created_at    timestamptz NOT NULL
);
CREATE INDEX jobs_due ON jobs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX jobs_queue ON jobs (workspace_id, queue, id DESC);

CREATE TABLE job_idempotency (
    workspace_id  text NOT NULL,
    queue         text NOT NULL,
    key           text NOT NULL,
    job_id        text NOT NULL,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, queue, key)
);
