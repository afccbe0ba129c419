-- Fair leasing (docs/dispatch.md): each queue's next due jobs are found
-- without reading other queues' jobs, and each queue's running (leased)
-- jobs are counted without reading its backlog. jobs_due ordered every due
-- job of every queue together, which let one deep queue fill the scan.
-- payload_bytes (each job's payload size, for quotas) rides in jobs_ready
-- so a workspace's open jobs and bytes are summed from the index alone.
ALTER TABLE jobs ADD COLUMN payload_bytes integer NOT NULL DEFAULT 0;
UPDATE jobs SET payload_bytes = octet_length((body->'payload')::text) WHERE due_at IS NOT NULL;
CREATE INDEX jobs_ready ON jobs (workspace_id, queue, due_at) INCLUDE (payload_bytes) WHERE due_at IS NOT NULL;
CREATE INDEX jobs_leased ON jobs (workspace_id, queue) WHERE status = 'leased';
DROP INDEX jobs_due;
