package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

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

// PruneAudit deletes the workspace's rows up to the marker and stores it in
// one transaction; the marker row's lock serializes concurrent pruners.
func (s *Store) PruneAudit(ctx context.Context, args storage.PruneAuditArgs) (int, error) {
	m := args.Marker
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, mapErr(err, "prune audit")
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `INSERT INTO audit_retention (workspace_id, through_id, chain, rows, pruned_at, mac) VALUES ($1,$2,$3,$4,$5,$6)
ON CONFLICT (workspace_id) DO UPDATE SET through_id=EXCLUDED.through_id, chain=EXCLUDED.chain, rows=EXCLUDED.rows, pruned_at=EXCLUDED.pruned_at, mac=EXCLUDED.mac
    WHERE audit_retention.through_id < EXCLUDED.through_id`, m.WorkspaceID, m.ThroughID, m.Chain, m.Rows, m.PrunedAt, m.MAC)
	if err != nil {
		return 0, mapErr(err, "prune audit")
	}
	if tag.RowsAffected() == 0 {
		return 0, nil // an older marker: another node pruned further
	}
	del, err := tx.Exec(ctx, `DELETE FROM audit_event WHERE workspace_id=$1 AND id <= $2`, m.WorkspaceID, m.ThroughID)
	if err != nil {
		return 0, mapErr(err, "prune audit")
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, mapErr(err, "prune audit")
	}
	return int(del.RowsAffected()), nil
}

func (s *Store) GetAuditRetention(ctx context.Context, workspaceID string) (storage.AuditRetention, error) {
	m := storage.AuditRetention{WorkspaceID: workspaceID}
	err := s.pool.QueryRow(ctx, `SELECT through_id, chain, rows, pruned_at, mac FROM audit_retention WHERE workspace_id=$1`, workspaceID).
		Scan(&m.ThroughID, &m.Chain, &m.Rows, &m.PrunedAt, &m.MAC)
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.AuditRetention{}, fmt.Errorf("audit retention: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.AuditRetention{}, mapErr(err, "audit retention")
	}
	m.PrunedAt = m.PrunedAt.UTC()
	return m, nil
}
