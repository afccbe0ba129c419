-- Workflows (issue 14): definitions and runs. Each is stored as JSON (json,
-- not jsonb: definitions, inputs and outputs stay byte for byte) with the
-- columns that listing, leasing and idempotency need.
CREATE TABLE workflows (
    workspace_id  text NOT NULL,
    name          text NOT NULL,
    version       bigint NOT NULL,
    body          json NOT NULL,
    PRIMARY KEY (workspace_id, name)
);

CREATE TABLE workflow_runs (
    id            text PRIMARY KEY,
    workspace_id  text NOT NULL,
    workflow      text NOT NULL,
    status        text NOT NULL,
    -- due_at: wake_at, or lease_until while leased; NULL for a wait without
    -- a timeout and for finished runs. Waiting runs cost leasing nothing.
    due_at        timestamptz,
    lease_token   bigint NOT NULL DEFAULT 0,
    body          json NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX workflow_runs_due ON workflow_runs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX workflow_runs_list ON workflow_runs (workspace_id, id DESC);
CREATE INDEX workflow_runs_workflow ON workflow_runs (workspace_id, workflow, id DESC);

CREATE TABLE workflow_run_idempotency (
    workspace_id  text NOT NULL,
    workflow      text NOT NULL,
    key           text NOT NULL,
    run_id        text NOT NULL,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, workflow, key)
);
CREATE INDEX workflow_run_idempotency_run ON workflow_run_idempotency (run_id);
