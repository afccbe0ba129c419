package postgres

import (
	"context"

	"rotor.sh/rotor/storage"
)

var _ storage.Retainer = (*Store)(nil)

// PruneJobs deletes finished jobs older than args.Before, oldest id first,
// with their idempotency records (attempts live in the job's body), in one
// statement that locks only the rows it deletes (SKIP LOCKED: another node
// pruning at the same time takes other rows). Dead tuples are left for
// autovacuum (docs/reliability.md).
func (s *Store) PruneJobs(ctx context.Context, args storage.PruneJobsArgs) (int, error) {
	if args.Limit <= 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `
WITH victims AS (
    SELECT id, workspace_id, queue FROM jobs
    WHERE due_at IS NULL AND status IN ('delivered', 'dead', 'canceled')
      AND (body->>'updated_at')::timestamptz < $1
    ORDER BY id LIMIT $2
    FOR UPDATE SKIP LOCKED
), idem AS (
    DELETE FROM job_idempotency i USING victims v
    WHERE i.workspace_id = v.workspace_id AND i.queue = v.queue AND i.job_id = v.id
)
DELETE FROM jobs j USING victims v WHERE j.id = v.id`, args.Before, args.Limit)
	if err != nil {
		return 0, mapErr(err, "prune jobs")
	}
	return int(tag.RowsAffected()), nil
}
