package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"rotor.sh/rotor/storage"
)

// --- queues: the queue as JSON, with its key and revision as columns ---

func (s *Store) CreateQueue(ctx context.Context, args storage.CreateQueueArgs) error {
	q := args.Queue
	q.Revision = 1
	spec, err := json.Marshal(q)
	if err != nil {
		return err
	}
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO queues (workspace_id, name, spec, revision) VALUES ($1,$2,$3,1)`, q.WorkspaceID, q.Name, string(spec)); err != nil {
			return err
		}
		return appendAudit(ctx, tx, args.Audit)
	}), "queue "+strconv.Quote(q.Name))
}

func (s *Store) UpdateQueue(ctx context.Context, args storage.UpdateQueueArgs) error {
	q := args.Queue
	q.Revision = args.ExpectedRevision + 1
	spec, err := json.Marshal(q)
	if err != nil {
		return err
	}
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		var rev int64
		if err := tx.QueryRow(ctx, `SELECT revision FROM queues WHERE workspace_id=$1 AND name=$2 FOR UPDATE`, q.WorkspaceID, q.Name).Scan(&rev); err != nil {
			return err
		}
		if rev != args.ExpectedRevision {
			return fmt.Errorf("queue %q: %w", q.Name, storage.ErrConflict)
		}
		if _, err := tx.Exec(ctx, `UPDATE queues SET spec=$3, revision=$4 WHERE workspace_id=$1 AND name=$2`, q.WorkspaceID, q.Name, string(spec), q.Revision); err != nil {
			return err
		}
		return appendAudit(ctx, tx, args.Audit)
	}), "queue "+strconv.Quote(q.Name))
}

func scanQueue(row pgx.Row) (storage.Queue, error) {
	var spec string
	var q storage.Queue
	if err := row.Scan(&spec); err != nil {
		return q, err
	}
	return q, json.Unmarshal([]byte(spec), &q)
}

func (s *Store) GetQueue(ctx context.Context, workspaceID, name string) (storage.Queue, error) {
	q, err := scanQueue(s.pool.QueryRow(ctx, `SELECT spec::text FROM queues WHERE workspace_id=$1 AND name=$2`, workspaceID, name))
	return q, mapErr(err, "queue "+strconv.Quote(name))
}

func (s *Store) ListQueues(ctx context.Context, workspaceID string) ([]storage.Queue, error) {
	rows, err := s.pool.Query(ctx, `SELECT spec::text FROM queues WHERE workspace_id=$1 ORDER BY name`, workspaceID)
	if err != nil {
		return nil, mapErr(err, "queues")
	}
	return collect(rows, scanQueue)
}

func (s *Store) DeleteQueue(ctx context.Context, args storage.DeleteQueueArgs) error {
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM queues WHERE workspace_id=$1 AND name=$2`, args.WorkspaceID, args.Name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		rows, err := tx.Query(ctx, `SELECT body::text FROM jobs WHERE workspace_id=$1 AND queue=$2 AND status IN ('queued','leased') FOR UPDATE`, args.WorkspaceID, args.Name)
		if err != nil {
			return err
		}
		open, err := collect(rows, scanJob)
		if err != nil {
			return err
		}
		for _, j := range open {
			j.Status, j.UpdatedAt, j.LeaseToken, j.LeaseUntil = storage.JobCanceled, args.At, 0, time.Time{}
			if err := saveJob(ctx, tx, j); err != nil {
				return err
			}
		}
		return appendAudit(ctx, tx, args.Audit)
	}), "queue "+strconv.Quote(args.Name))
}

// --- jobs: the job as JSON, with the columns leasing and listing need ---

func scanJob(row pgx.Row) (storage.Job, error) {
	var body string
	var j storage.Job
	if err := row.Scan(&body); err != nil {
		return j, err
	}
	return j, json.Unmarshal([]byte(body), &j)
}

func dueAt(j storage.Job) any {
	switch j.Status {
	case storage.JobQueued:
		return j.RunAt
	case storage.JobLeased:
		return j.LeaseUntil
	}
	return nil
}

func saveJob(ctx context.Context, q querier, j storage.Job) error {
	body, err := json.Marshal(j)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `UPDATE jobs SET status=$2, due_at=$3, lease_token=$4, body=$5 WHERE id=$1`, j.ID, j.Status, dueAt(j), int64(j.LeaseToken), string(body))
	return err
}

// enqueueOne is the common case, one job without an idempotency key, as a
// single statement: one round trip, atomic without an explicit transaction
// (the queue check, the insert and the wake-up notification together).
const enqueueOne = `WITH q AS (SELECT 1 FROM queues WHERE workspace_id=$2 AND name=$3 FOR KEY SHARE),
	ins AS (INSERT INTO jobs (id, workspace_id, queue, status, due_at, body, created_at)
		SELECT $1, $2, $3, 'queued', $4, $5, $6 FROM q RETURNING 1)
	SELECT (SELECT count(*) FROM ins), pg_notify($7, $8)`

func (s *Store) EnqueueJobs(ctx context.Context, args storage.EnqueueJobsArgs) ([]storage.EnqueueResult, error) {
	if len(args.Jobs) == 1 && args.Jobs[0].IdempotencyKey == "" {
		j := args.Jobs[0]
		j.Status = storage.JobQueued
		body, err := json.Marshal(j)
		if err != nil {
			return nil, err
		}
		wake, _ := json.Marshal(storage.Change{Kind: storage.ChangeJobs})
		var n int
		var ignored string
		if err := s.pool.QueryRow(ctx, enqueueOne, j.ID, j.WorkspaceID, j.Queue, j.RunAt, string(body), j.CreatedAt, s.channel, string(wake)).Scan(&n, &ignored); err != nil {
			return nil, mapErr(err, "enqueue")
		}
		if n == 0 {
			return nil, fmt.Errorf("queue %q: %w", j.Queue, storage.ErrNotFound)
		}
		return []storage.EnqueueResult{{Job: j}}, nil
	}
	var results []storage.EnqueueResult
	err := s.tx(ctx, func(tx pgx.Tx) error {
		results = results[:0]
		for _, j := range args.Jobs {
			var one int
			if err := tx.QueryRow(ctx, `SELECT 1 FROM queues WHERE workspace_id=$1 AND name=$2 FOR KEY SHARE`, j.WorkspaceID, j.Queue).Scan(&one); err != nil {
				if errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("queue %q: %w", j.Queue, storage.ErrNotFound)
				}
				return err
			}
			if j.IdempotencyKey != "" {
				// Claim the key, or find the job that holds it.
				var prevID string
				var created time.Time
				err := tx.QueryRow(ctx, `INSERT INTO job_idempotency (workspace_id, queue, key, job_id, created_at) VALUES ($1,$2,$3,$4,$5)
					ON CONFLICT (workspace_id, queue, key) DO UPDATE SET job_id = CASE WHEN job_idempotency.created_at < $6 THEN excluded.job_id ELSE job_idempotency.job_id END,
					  created_at = CASE WHEN job_idempotency.created_at < $6 THEN excluded.created_at ELSE job_idempotency.created_at END
					RETURNING job_id, created_at`, j.WorkspaceID, j.Queue, j.IdempotencyKey, j.ID, args.Now, args.Now.Add(-storage.IdempotencyWindow)).Scan(&prevID, &created)
				if err != nil {
					return err
				}
				if prevID != j.ID {
					prev, err := scanJob(tx.QueryRow(ctx, `SELECT body::text FROM jobs WHERE id=$1`, prevID))
					if err != nil {
						return err
					}
					results = append(results, storage.EnqueueResult{Job: prev, Existing: true})
					continue
				}
			}
			j.Status = storage.JobQueued
			body, err := json.Marshal(j)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO jobs (id, workspace_id, queue, status, due_at, body, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
				j.ID, j.WorkspaceID, j.Queue, j.Status, j.RunAt, string(body), j.CreatedAt); err != nil {
				return err
			}
			results = append(results, storage.EnqueueResult{Job: j})
		}
		return notify(ctx, tx, storage.Change{Kind: storage.ChangeJobs})
	})
	return results, mapErr(err, "enqueue")
}

func (s *Store) GetJob(ctx context.Context, workspaceID, id string) (storage.Job, error) {
	j, err := scanJob(s.pool.QueryRow(ctx, `SELECT body::text FROM jobs WHERE id=$1 AND workspace_id=$2`, id, workspaceID))
	return j, mapErr(err, "job "+strconv.Quote(id))
}

func (s *Store) ListJobs(ctx context.Context, q storage.JobQuery) (storage.JobPage, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	before := q.Before
	if before == "" {
		before = "\uffff"
	}
	rows, err := s.pool.Query(ctx, `SELECT body::text FROM jobs WHERE workspace_id=$1 AND queue=$2 AND ($3='' OR status=$3) AND id < $4 ORDER BY id DESC LIMIT $5`,
		q.WorkspaceID, q.Queue, q.Status, before, limit+1)
	if err != nil {
		return storage.JobPage{}, mapErr(err, "jobs")
	}
	jobs, err := collect(rows, scanJob)
	if err != nil {
		return storage.JobPage{}, err
	}
	page := storage.JobPage{Jobs: jobs}
	if len(jobs) > limit {
		page.Jobs = jobs[:limit]
		page.Next = jobs[limit-1].ID
	}
	return page, nil
}

// LeaseJobs locks due jobs with FOR UPDATE SKIP LOCKED, so nodes sharing the
// database never lease the same job at once.
func (s *Store) LeaseJobs(ctx context.Context, args storage.LeaseJobsArgs) ([]storage.Job, error) {
	var leased []storage.Job
	err := s.tx(ctx, func(tx pgx.Tx) error {
		leased = leased[:0]
		rows, err := tx.Query(ctx, `SELECT body::text FROM jobs WHERE due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
			args.Now, args.Limit*8+16)
		if err != nil {
			return err
		}
		cands, err := collect(rows, scanJob)
		if err != nil {
			return err
		}
		slots := map[string]int{}
		for k, n := range args.Slots {
			slots[k] = n
		}
		for _, j := range cands {
			if len(leased) == args.Limit {
				break
			}
			qk := storage.QueueKey(j.WorkspaceID, j.Queue)
			if n, limited := slots[qk]; limited {
				if n <= 0 {
					continue
				}
				slots[qk] = n - 1
			}
			var tok int64
			if err := tx.QueryRow(ctx, `SELECT nextval('lease_token_seq')`).Scan(&tok); err != nil {
				return err
			}
			j.Status, j.LeaseToken, j.LeaseUntil, j.UpdatedAt = storage.JobLeased, uint64(tok), args.Now.Add(args.Visibility), args.Now
			j.Leases++
			if err := saveJob(ctx, tx, j); err != nil {
				return err
			}
			leased = append(leased, j)
		}
		return nil
	})
	return leased, mapErr(err, "lease")
}

func (s *Store) CompleteAttempts(ctx context.Context, results []storage.AttemptResult) error {
	if len(results) == 0 {
		return nil
	}
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		for _, r := range results {
			j, err := scanJob(tx.QueryRow(ctx, `SELECT body::text FROM jobs WHERE id=$1 AND workspace_id=$2 AND status='leased' AND lease_token=$3 FOR UPDATE`,
				r.JobID, r.WorkspaceID, int64(r.LeaseToken)))
			if errors.Is(err, pgx.ErrNoRows) {
				continue // fenced: the lease is gone
			}
			if err != nil {
				return err
			}
			j.Attempts = append(j.Attempts, r.Attempt)
			j.Status, j.UpdatedAt, j.LeaseUntil, j.LeaseToken = r.Status, r.At, time.Time{}, 0
			switch r.Status {
			case storage.JobQueued:
				j.RunAt = r.RunAt
			case storage.JobDelivered:
				j.DeliveredAt = r.At
			case storage.JobDead:
			default:
				return fmt.Errorf("postgres: bad next status %q", r.Status)
			}
			if err := saveJob(ctx, tx, j); err != nil {
				return err
			}
		}
		return nil
	}), "complete")
}

func (s *Store) CancelJob(ctx context.Context, workspaceID, id string, at time.Time) (storage.Job, error) {
	var j storage.Job
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		if j, err = scanJob(tx.QueryRow(ctx, `SELECT body::text FROM jobs WHERE id=$1 AND workspace_id=$2 FOR UPDATE`, id, workspaceID)); err != nil {
			return err
		}
		if j.Status != storage.JobQueued && j.Status != storage.JobLeased {
			return fmt.Errorf("job %s is %s: %w", id, j.Status, storage.ErrConflict)
		}
		j.Status, j.UpdatedAt, j.LeaseToken, j.LeaseUntil = storage.JobCanceled, at, 0, time.Time{}
		return saveJob(ctx, tx, j)
	})
	return j, mapErr(err, "job "+strconv.Quote(id))
}

func (s *Store) RetryJobs(ctx context.Context, args storage.RetryJobsArgs) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx pgx.Tx) error {
		n = 0
		var jobs []storage.Job
		if args.ID != "" {
			j, err := scanJob(tx.QueryRow(ctx, `SELECT body::text FROM jobs WHERE id=$1 AND workspace_id=$2 FOR UPDATE`, args.ID, args.WorkspaceID))
			if err != nil {
				return err
			}
			if j.Status != storage.JobDead && j.Status != storage.JobCanceled {
				return fmt.Errorf("job %s is %s; only dead or canceled jobs can be retried: %w", j.ID, j.Status, storage.ErrConflict)
			}
			jobs = []storage.Job{j}
		} else {
			var one int
			if err := tx.QueryRow(ctx, `SELECT 1 FROM queues WHERE workspace_id=$1 AND name=$2`, args.WorkspaceID, args.Queue).Scan(&one); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT body::text FROM jobs WHERE workspace_id=$1 AND queue=$2 AND status='dead' FOR UPDATE`, args.WorkspaceID, args.Queue)
			if err != nil {
				return err
			}
			if jobs, err = collect(rows, scanJob); err != nil {
				return err
			}
		}
		for _, j := range jobs {
			j.Status, j.RunAt, j.UpdatedAt, j.RetryFrom = storage.JobQueued, args.At, args.At, len(j.Attempts)
			if err := saveJob(ctx, tx, j); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, mapErr(err, "retry")
}

func (s *Store) CountJobs(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT status, count(*) FROM jobs GROUP BY status`)
	if err != nil {
		return nil, mapErr(err, "count")
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, mapErr(rows.Err(), "count")
}
