-- Fair leasing (docs/dispatch.md): each queue's next due jobs are found
-- without reading other queues' jobs, and each queue's running (leased)
-- jobs are counted without reading its backlog. jobs_due ordered every due
-- job of every queue together, which let one deep queue fill the scan.
CREATE INDEX jobs_ready ON jobs (workspace_id, queue, due_at) WHERE due_at IS NOT NULL;
CREATE INDEX jobs_leased ON jobs (workspace_id, queue) WHERE status = 'leased';
DROP INDEX jobs_due;
