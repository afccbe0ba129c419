package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"rotor.sh/rotor/storage"
)

// --- definitions ---

func (s *Store) PutWorkflow(ctx context.Context, args storage.PutWorkflowArgs) error {
	w := args.Workflow
	w.Version = args.ExpectedVersion + 1
	what := "workflow " + strconv.Quote(w.Name)
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		var cur storage.Workflow
		var body string
		err := tx.QueryRow(ctx, `SELECT body::text FROM workflows WHERE workspace_id=$1 AND name=$2 FOR UPDATE`, w.WorkspaceID, w.Name).Scan(&body)
		found := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if found {
			if err := json.Unmarshal([]byte(body), &cur); err != nil {
				return err
			}
		}
		switch {
		case args.ExpectedVersion == 0 && found:
			return fmt.Errorf("%s: %w", what, storage.ErrExists)
		case args.ExpectedVersion != 0 && !found:
			return fmt.Errorf("%s: %w", what, storage.ErrNotFound)
		case found && cur.Version != args.ExpectedVersion:
			return fmt.Errorf("%s: version %d, expected %d: %w", what, cur.Version, args.ExpectedVersion, storage.ErrConflict)
		}
		if found {
			w.CreatedAt = cur.CreatedAt
		}
		b, err := json.Marshal(w)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO workflows (workspace_id, name, version, body) VALUES ($1,$2,$3,$4)
			ON CONFLICT (workspace_id, name) DO UPDATE SET version=excluded.version, body=excluded.body`, w.WorkspaceID, w.Name, w.Version, string(b)); err != nil {
			return err
		}
		return appendAudit(ctx, tx, args.Audit)
	}), what)
}

func scanWorkflow(row pgx.Row) (storage.Workflow, error) {
	var body string
	var w storage.Workflow
	if err := row.Scan(&body); err != nil {
		return w, err
	}
	return w, json.Unmarshal([]byte(body), &w)
}

func (s *Store) GetWorkflow(ctx context.Context, workspaceID, name string) (storage.Workflow, error) {
	w, err := scanWorkflow(s.pool.QueryRow(ctx, `SELECT body::text FROM workflows WHERE workspace_id=$1 AND name=$2`, workspaceID, name))
	return w, mapErr(err, "workflow "+strconv.Quote(name))
}

func (s *Store) ListWorkflows(ctx context.Context, workspaceID string) ([]storage.Workflow, error) {
	rows, err := s.pool.Query(ctx, `SELECT body::text FROM workflows WHERE workspace_id=$1 ORDER BY name`, workspaceID)
	if err != nil {
		return nil, mapErr(err, "workflows")
	}
	out, err := collect(rows, scanWorkflow)
	if out == nil && err == nil {
		out = []storage.Workflow{}
	}
	return out, mapErr(err, "workflows")
}

func (s *Store) DeleteWorkflow(ctx context.Context, args storage.DeleteWorkflowArgs) error {
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM workflows WHERE workspace_id=$1 AND name=$2`, args.WorkspaceID, args.Name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		rows, err := tx.Query(ctx, `SELECT body::text FROM workflow_runs WHERE workspace_id=$1 AND workflow=$2 AND status IN ('running','waiting') FOR UPDATE`, args.WorkspaceID, args.Name)
		if err != nil {
			return err
		}
		open, err := collect(rows, scanRun)
		if err != nil {
			return err
		}
		for _, r := range open {
			storage.CancelRunState(&r, args.At)
			if err := saveRun(ctx, tx, r); err != nil {
				return err
			}
		}
		return appendAudit(ctx, tx, args.Audit)
	}), "workflow "+strconv.Quote(args.Name))
}

// --- runs ---

func scanRun(row pgx.Row) (storage.WorkflowRun, error) {
	var body string
	var r storage.WorkflowRun
	if err := row.Scan(&body); err != nil {
		return r, err
	}
	return r, json.Unmarshal([]byte(body), &r)
}

// runDueAt is the due_at column: when the run is next leasable, if ever.
func runDueAt(r storage.WorkflowRun) any {
	switch {
	case storage.RunFinished(r.Status):
		return nil
	case r.LeaseOwner != "":
		return r.LeaseUntil
	case r.WakeAt.IsZero():
		return nil
	}
	return r.WakeAt
}

func saveRun(ctx context.Context, q querier, r storage.WorkflowRun) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `UPDATE workflow_runs SET status=$2, due_at=$3, lease_token=$4, body=$5, updated_at=$6 WHERE id=$1`,
		r.ID, r.Status, runDueAt(r), int64(r.LeaseToken), string(body), r.UpdatedAt)
	return err
}

func (s *Store) CreateRun(ctx context.Context, args storage.CreateRunArgs) (storage.WorkflowRun, bool, error) {
	var out storage.WorkflowRun
	existing := false
	err := s.tx(ctx, func(tx pgx.Tx) error {
		r := args.Run
		existing = false
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM workflows WHERE workspace_id=$1 AND name=$2 FOR KEY SHARE`, r.WorkspaceID, r.Workflow).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("workflow %q: %w", r.Workflow, storage.ErrNotFound)
			}
			return err
		}
		if r.IdempotencyKey != "" {
			// Claim the key, or find the run that holds it.
			var prevID string
			if err := tx.QueryRow(ctx, `INSERT INTO workflow_run_idempotency (workspace_id, workflow, key, run_id, created_at) VALUES ($1,$2,$3,$4,$5)
				ON CONFLICT (workspace_id, workflow, key) DO UPDATE SET run_id = CASE WHEN workflow_run_idempotency.created_at < $6 THEN excluded.run_id ELSE workflow_run_idempotency.run_id END,
				  created_at = CASE WHEN workflow_run_idempotency.created_at < $6 THEN excluded.created_at ELSE workflow_run_idempotency.created_at END
				RETURNING run_id`, r.WorkspaceID, r.Workflow, r.IdempotencyKey, r.ID, args.Now, args.Now.Add(-storage.IdempotencyWindow)).Scan(&prevID); err != nil {
				return err
			}
			if prevID != r.ID {
				prev, err := scanRun(tx.QueryRow(ctx, `SELECT body::text FROM workflow_runs WHERE id=$1`, prevID))
				if err != nil {
					return err
				}
				out, existing = prev, true
				return nil
			}
		}
		body, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO workflow_runs (id, workspace_id, workflow, status, due_at, lease_token, body, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
			r.ID, r.WorkspaceID, r.Workflow, r.Status, runDueAt(r), int64(r.LeaseToken), string(body), r.CreatedAt, r.UpdatedAt); err != nil {
			return err
		}
		out = r
		if err := appendAudit(ctx, tx, args.Audit); err != nil {
			return err
		}
		return notify(ctx, tx, storage.Change{Kind: storage.ChangeWorkflowRuns})
	})
	return out, existing, mapErr(err, "run "+strconv.Quote(args.Run.ID))
}

func (s *Store) GetRun(ctx context.Context, workspaceID, id string) (storage.WorkflowRun, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT body::text FROM workflow_runs WHERE id=$1 AND workspace_id=$2`, id, workspaceID))
	return r, mapErr(err, "run "+strconv.Quote(id))
}

func (s *Store) ListRuns(ctx context.Context, q storage.RunQuery) (storage.RunPage, error) {
	limit := q.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT body::text FROM workflow_runs WHERE workspace_id=$1
		AND ($2 = '' OR workflow=$2) AND ($3 = '' OR status=$3) AND ($4 = '' OR id < $4)
		ORDER BY id DESC LIMIT $5`, q.WorkspaceID, q.Workflow, q.Status, q.Before, limit+1)
	if err != nil {
		return storage.RunPage{}, mapErr(err, "runs")
	}
	runs, err := collect(rows, scanRun)
	if err != nil {
		return storage.RunPage{}, mapErr(err, "runs")
	}
	page := storage.RunPage{Runs: runs}
	if page.Runs == nil {
		page.Runs = []storage.WorkflowRun{}
	}
	if len(page.Runs) > limit {
		page.Runs = page.Runs[:limit]
		page.Next = page.Runs[limit-1].ID
	}
	return page, nil
}

// leaseRuns picks due runs, the earliest of each workspace first, then the
// second of each, and so on (workspaces take turns), skipping runs another
// node is leasing right now.
const leaseRuns = `WITH c AS (
		SELECT id, row_number() OVER (PARTITION BY workspace_id ORDER BY due_at, id) AS turn
		FROM workflow_runs WHERE due_at <= $1 AND status IN ('running','waiting'))
	SELECT r.body::text FROM workflow_runs r JOIN c ON c.id = r.id
	WHERE c.turn <= $2 AND r.due_at <= $1 AND r.status IN ('running','waiting')
	ORDER BY c.turn, r.due_at, r.id LIMIT $3 FOR UPDATE OF r SKIP LOCKED`

func (s *Store) LeaseRuns(ctx context.Context, args storage.LeaseRunsArgs) ([]storage.WorkflowRun, error) {
	if args.Limit <= 0 {
		return nil, nil
	}
	var leased []storage.WorkflowRun
	err := s.tx(ctx, func(tx pgx.Tx) error {
		leased = leased[:0]
		// Read more than Limit, from deeper than Limit turns per
		// workspace, so workspaces at their slot bound and rows other
		// nodes hold (SKIP LOCKED) do not leave the call short or empty.
		depth := args.Limit * 4
		rows, err := tx.Query(ctx, leaseRuns, args.Now, depth, depth)
		if err != nil {
			return err
		}
		cands, err := collect(rows, scanRun)
		if err != nil {
			return err
		}
		per := map[string]int{}
		for _, r := range cands {
			if len(leased) == args.Limit {
				break
			}
			if slots, ok := args.WorkspaceSlots[r.WorkspaceID]; ok && per[r.WorkspaceID] >= slots {
				continue
			}
			per[r.WorkspaceID]++
			r.LeaseOwner, r.LeaseUntil = args.Owner, args.Now.Add(args.Visibility)
			r.LeaseToken++
			r.Leases++
			r.UpdatedAt = args.Now
			if err := saveRun(ctx, tx, r); err != nil {
				return err
			}
			leased = append(leased, r)
		}
		return nil
	})
	return leased, mapErr(err, "lease runs")
}

// modifyRun locks a workspace's run, lets fn change it, and saves it with
// audit, in one transaction.
func (s *Store) modifyRun(ctx context.Context, ws, id string, audit []storage.AuditEvent, wake bool, fn func(r *storage.WorkflowRun) error) (storage.WorkflowRun, error) {
	var out storage.WorkflowRun
	err := s.tx(ctx, func(tx pgx.Tx) error {
		r, err := scanRun(tx.QueryRow(ctx, `SELECT body::text FROM workflow_runs WHERE id=$1 AND workspace_id=$2 FOR UPDATE`, id, ws))
		if err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		if err := saveRun(ctx, tx, r); err != nil {
			return err
		}
		out = r
		if err := appendAudit(ctx, tx, audit); err != nil {
			return err
		}
		if wake {
			return notify(ctx, tx, storage.Change{Kind: storage.ChangeWorkflowRuns})
		}
		return nil
	})
	return out, mapErr(err, "run "+strconv.Quote(id))
}

func (s *Store) CheckpointRun(ctx context.Context, args storage.CheckpointRunArgs) (storage.WorkflowRun, error) {
	return s.modifyRun(ctx, args.Run.WorkspaceID, args.Run.ID, args.Audit, false, func(r *storage.WorkflowRun) error {
		n, err := storage.ApplyCheckpoint(*r, args)
		*r = n
		return err
	})
}

func (s *Store) SignalRun(ctx context.Context, args storage.SignalRunArgs) (storage.WorkflowRun, error) {
	return s.modifyRun(ctx, args.WorkspaceID, args.RunID, args.Audit, true, func(r *storage.WorkflowRun) error {
		return storage.ApplySignal(r, args.Signal, args.Now)
	})
}

func (s *Store) CancelRun(ctx context.Context, args storage.CancelRunArgs) (storage.WorkflowRun, error) {
	return s.modifyRun(ctx, args.WorkspaceID, args.RunID, args.Audit, false, func(r *storage.WorkflowRun) error {
		return storage.ApplyCancel(r, args.At)
	})
}

func (s *Store) RetryRun(ctx context.Context, args storage.RetryRunArgs) (storage.WorkflowRun, error) {
	return s.modifyRun(ctx, args.WorkspaceID, args.RunID, args.Audit, true, func(r *storage.WorkflowRun) error {
		return storage.ApplyRetry(r, args.At)
	})
}

func (s *Store) CountRuns(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT status, count(*) FROM workflow_runs GROUP BY status`)
	if err != nil {
		return nil, mapErr(err, "count runs")
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, mapErr(err, "count runs")
		}
		out[st] = n
	}
	return out, mapErr(rows.Err(), "count runs")
}

func (s *Store) PruneRuns(ctx context.Context, args storage.PruneRunsArgs) (int, error) {
	if args.Limit <= 0 {
		return 0, nil
	}
	n := 0
	err := s.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM workflow_runs WHERE id IN (
				SELECT id FROM workflow_runs WHERE status IN ('completed','failed','canceled') AND updated_at < $1
				ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
			RETURNING workspace_id, workflow, id`, args.Before, args.Limit)
		if err != nil {
			return err
		}
		type gone struct{ ws, wf, id string }
		var del []gone
		for rows.Next() {
			var g gone
			if err := rows.Scan(&g.ws, &g.wf, &g.id); err != nil {
				rows.Close()
				return err
			}
			del = append(del, g)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, g := range del {
			if _, err := tx.Exec(ctx, `DELETE FROM workflow_run_idempotency WHERE workspace_id=$1 AND workflow=$2 AND run_id=$3`, g.ws, g.wf, g.id); err != nil {
				return err
			}
		}
		n = len(del)
		return nil
	})
	return n, mapErr(err, "prune runs")
}
