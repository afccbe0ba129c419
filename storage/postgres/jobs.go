package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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
	body, err := marshalJob(j)
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
	ins AS (INSERT INTO jobs (id, workspace_id, queue, status, due_at, body, created_at, payload_bytes)
		SELECT $1, $2, $3, 'queued', $4, $5, $6, $9 FROM q RETURNING 1)
	SELECT (SELECT count(*) FROM ins), pg_notify($7, $8)`

// enqueueMany inserts a batch of jobs without idempotency keys in one
// statement; fewer rows than jobs means a queue is missing (the caller's
// transaction then rolls back).
const enqueueMany = `WITH t AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::timestamptz[], $7::int[])
		AS t(id, ws, queue, due, body, created, bytes)),
	q AS (SELECT workspace_id, name FROM queues WHERE (workspace_id, name) IN (SELECT ws, queue FROM t) FOR KEY SHARE),
	ins AS (INSERT INTO jobs (id, workspace_id, queue, status, due_at, body, created_at, payload_bytes)
		SELECT t.id, t.ws, t.queue, 'queued', t.due, t.body::json, t.created, t.bytes FROM t JOIN q ON q.workspace_id=t.ws AND q.name=t.queue RETURNING 1)
	SELECT (SELECT count(*) FROM ins), pg_notify($8, $9)`

// missingQueue names the first of the batch's queues that does not exist.
const missingQueue = `SELECT t.queue FROM unnest($1::text[], $2::text[]) AS t(ws, queue)
	WHERE NOT EXISTS (SELECT 1 FROM queues WHERE workspace_id=t.ws AND name=t.queue) LIMIT 1`

// enqueueBatch is EnqueueJobs for several jobs without idempotency keys:
// one transaction of one statement (the dispatch service groups
// concurrent enqueues into such batches).
func (s *Store) enqueueBatch(ctx context.Context, args storage.EnqueueJobsArgs) ([]storage.EnqueueResult, error) {
	n := len(args.Jobs)
	ids, wss, queues, bodies := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	dues, created, sizes := make([]time.Time, n), make([]time.Time, n), make([]int32, n)
	results := make([]storage.EnqueueResult, n)
	for i, j := range args.Jobs {
		j.Status = storage.JobQueued
		body, err := marshalJob(j)
		if err != nil {
			return nil, err
		}
		ids[i], wss[i], queues[i], bodies[i] = j.ID, j.WorkspaceID, j.Queue, string(body)
		dues[i], created[i], sizes[i] = j.RunAt, j.CreatedAt, int32(len(j.Payload))
		results[i] = storage.EnqueueResult{Job: j}
	}
	wake, _ := json.Marshal(storage.Change{Kind: storage.ChangeJobs})
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var got int
		var ignored string
		if err := tx.QueryRow(ctx, enqueueMany, ids, wss, queues, dues, bodies, created, sizes, s.channel, string(wake)).Scan(&got, &ignored); err != nil {
			return err
		}
		if got == n {
			return nil
		}
		var name string
		if err := tx.QueryRow(ctx, missingQueue, wss, queues).Scan(&name); err != nil {
			return err
		}
		return fmt.Errorf("queue %q: %w", name, storage.ErrNotFound)
	})
	if err != nil {
		return nil, mapErr(err, "enqueue")
	}
	return results, nil
}

func (s *Store) EnqueueJobs(ctx context.Context, args storage.EnqueueJobsArgs) ([]storage.EnqueueResult, error) {
	if len(args.Jobs) > 1 && !slices.ContainsFunc(args.Jobs, func(j storage.Job) bool { return j.IdempotencyKey != "" }) {
		return s.enqueueBatch(ctx, args)
	}
	if len(args.Jobs) == 1 && args.Jobs[0].IdempotencyKey == "" {
		j := args.Jobs[0]
		j.Status = storage.JobQueued
		body, err := marshalJob(j)
		if err != nil {
			return nil, err
		}
		wake, _ := json.Marshal(storage.Change{Kind: storage.ChangeJobs})
		var n int
		var ignored string
		if err := s.pool.QueryRow(ctx, enqueueOne, j.ID, j.WorkspaceID, j.Queue, j.RunAt, string(body), j.CreatedAt, s.channel, string(wake), len(j.Payload)).Scan(&n, &ignored); err != nil {
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
			body, err := marshalJob(j)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO jobs (id, workspace_id, queue, status, due_at, body, created_at, payload_bytes) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
				j.ID, j.WorkspaceID, j.Queue, j.Status, j.RunAt, string(body), j.CreatedAt, len(j.Payload)); err != nil {
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

// Lease statements (their plans: docs/benchmarks.md). readyQueues finds
// the queues with due jobs, one probe of jobs_ready per queue: the first
// entry of each queue, in index order (asked any other way, the planner
// reads every due job of a deep queue), with their
// unexpired leases (jobs_leased).
const (
	readyQueues = `SELECT q.spec::text,
		(SELECT count(*) FROM jobs l WHERE l.workspace_id=q.workspace_id AND l.queue=q.name AND l.status='leased' AND l.due_at > $1)
		FROM queues q
		CROSS JOIN LATERAL (SELECT j.due_at FROM jobs j WHERE j.workspace_id=q.workspace_id AND j.queue=q.name AND j.due_at IS NOT NULL
			ORDER BY j.due_at LIMIT 1) r
		WHERE r.due_at <= $1`
	// lockQueues takes the queues this call leases from; a node leasing
	// from the same queue at once skips it, so concurrency holds across
	// nodes (the count after the lock sees the other node's leases).
	lockQueues = `SELECT q.workspace_id, q.name FROM queues q
		JOIN unnest($1::text[], $2::text[]) AS s(ws, name) ON q.workspace_id=s.ws AND q.name=s.name
		FOR NO KEY UPDATE OF q SKIP LOCKED`
	countLeased = `SELECT j.workspace_id, j.queue, count(*) FROM jobs j
		JOIN unnest($1::text[], $2::text[]) AS s(ws, name) ON j.workspace_id=s.ws AND j.queue=s.name
		WHERE j.status='leased' AND j.due_at > $3 GROUP BY 1, 2`
	// pickJobs reads each chosen queue's first n due jobs from jobs_ready,
	// each with a new lease token.
	pickJobs = `SELECT p.body::text, nextval('lease_token_seq') FROM unnest($1::text[], $2::text[], $3::int[]) AS s(ws, name, n)
		CROSS JOIN LATERAL (SELECT body FROM jobs WHERE workspace_id=s.ws AND queue=s.name AND due_at <= $4
			ORDER BY due_at LIMIT s.n FOR UPDATE SKIP LOCKED) p`
	markLeased = `UPDATE jobs SET status='leased', due_at=$2, lease_token=t.tok, body=t.body::json
		FROM unnest($1::text[], $3::bigint[], $4::text[]) AS t(id, tok, body) WHERE jobs.id=t.id`
)

// LeaseJobs leases fairly (storage.Fair) from the queues with due jobs, at
// most storage.LeaseCap from each, with FOR UPDATE SKIP LOCKED on the
// queues and the jobs so nodes sharing the database never lease the same
// job, nor more than a queue's concurrency between them.
func (s *Store) LeaseJobs(ctx context.Context, args storage.LeaseJobsArgs) ([]storage.Job, error) {
	var leased []storage.Job
	err := s.tx(ctx, func(tx pgx.Tx) error {
		leased = leased[:0]
		rows, err := tx.Query(ctx, readyQueues, args.Now)
		if err != nil {
			return err
		}
		type readyQ struct {
			q      storage.Queue
			leased int
		}
		cands, err := collect(rows, func(r pgx.Row) (readyQ, error) {
			var spec string
			var rq readyQ
			if err := r.Scan(&spec, &rq.leased); err != nil {
				return rq, err
			}
			return rq, json.Unmarshal([]byte(spec), &rq.q)
		})
		if err != nil || len(cands) == 0 {
			return err
		}
		ready := make([]storage.ReadyQueue, len(cands))
		for i, c := range cands {
			ready[i] = storage.ReadyQueue{WorkspaceID: c.q.WorkspaceID, Name: c.q.Name, Max: storage.LeaseCap(c.q, c.leased, args.Slots)}
		}
		counts := s.fair.Allocate(ready, args.Limit, args.WorkspaceSlots)
		var wss, names []string
		want := map[string]int{}
		for i, n := range counts {
			if n > 0 {
				wss, names = append(wss, ready[i].WorkspaceID), append(names, ready[i].Name)
				want[storage.QueueKey(ready[i].WorkspaceID, ready[i].Name)] = i
			}
		}
		if len(wss) == 0 {
			return nil
		}
		rows, err = tx.Query(ctx, lockQueues, wss, names)
		if err != nil {
			return err
		}
		locked, err := collect(rows, func(r pgx.Row) ([2]string, error) {
			var k [2]string
			return k, r.Scan(&k[0], &k[1])
		})
		if err != nil || len(locked) == 0 {
			return err
		}
		wss, names = wss[:0], names[:0]
		for _, k := range locked {
			wss, names = append(wss, k[0]), append(names, k[1])
		}
		running := map[string]int{}
		rows, err = tx.Query(ctx, countLeased, wss, names, args.Now)
		if err != nil {
			return err
		}
		type qcount struct {
			key string
			n   int
		}
		lc, err := collect(rows, func(r pgx.Row) (qcount, error) {
			var ws, name string
			var c qcount
			err := r.Scan(&ws, &name, &c.n)
			c.key = storage.QueueKey(ws, name)
			return c, err
		})
		if err != nil {
			return err
		}
		for _, c := range lc {
			running[c.key] = c.n
		}
		ns := make([]int32, len(wss))
		for i := range wss {
			k := storage.QueueKey(wss[i], names[i])
			c := cands[want[k]]
			ns[i] = int32(min(counts[want[k]], storage.LeaseCap(c.q, running[k], args.Slots)))
		}
		rows, err = tx.Query(ctx, pickJobs, wss, names, ns, args.Now)
		if err != nil {
			return err
		}
		type picked struct {
			j   storage.Job
			tok int64
		}
		ps, err := collect(rows, func(r pgx.Row) (picked, error) {
			var body string
			var p picked
			if err := r.Scan(&body, &p.tok); err != nil {
				return p, err
			}
			return p, json.Unmarshal([]byte(body), &p.j)
		})
		if err != nil || len(ps) == 0 {
			return err
		}
		jobs, toks := make([]storage.Job, len(ps)), make([]int64, len(ps))
		for i, p := range ps {
			jobs[i], toks[i] = p.j, p.tok
		}
		until := args.Now.Add(args.Visibility)
		ids, bodies := make([]string, len(jobs)), make([]string, len(jobs))
		for i, j := range jobs {
			j.Status, j.LeaseToken, j.LeaseUntil, j.UpdatedAt = storage.JobLeased, uint64(toks[i]), until, args.Now
			j.Leases++
			body, err := marshalJob(j)
			if err != nil {
				return err
			}
			ids[i], bodies[i] = j.ID, string(body)
			leased = append(leased, j)
		}
		_, err = tx.Exec(ctx, markLeased, ids, until, toks, bodies)
		return err
	})
	return leased, mapErr(err, "lease")
}

const (
	// lockCompleted reads and locks the jobs whose leases the results still
	// hold, in id order so two nodes' batches cannot deadlock.
	lockCompleted = `SELECT j.body::text FROM jobs j JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS r(id, ws, tok)
		ON j.id=r.id AND j.workspace_id=r.ws AND j.status='leased' AND j.lease_token=r.tok ORDER BY j.id FOR UPDATE OF j`
	saveCompleted = `UPDATE jobs SET status=t.status, due_at=t.due, lease_token=0, body=t.body::json
		FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS t(id, status, due, body) WHERE jobs.id=t.id`
)

// CompleteAttempts reads the batch's jobs in one statement and writes them
// back in another: two round trips whatever the batch size.
func (s *Store) CompleteAttempts(ctx context.Context, results []storage.AttemptResult) error {
	if len(results) == 0 {
		return nil
	}
	for _, r := range results {
		if !r.Release && r.Status != storage.JobQueued && r.Status != storage.JobDelivered && r.Status != storage.JobDead {
			return fmt.Errorf("postgres: bad next status %q", r.Status)
		}
	}
	ids, wss, toks := make([]string, len(results)), make([]string, len(results)), make([]int64, len(results))
	for i, r := range results {
		ids[i], wss[i], toks[i] = r.JobID, r.WorkspaceID, int64(r.LeaseToken)
	}
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, lockCompleted, ids, wss, toks)
		if err != nil {
			return err
		}
		held, err := collect(rows, scanJob)
		if err != nil {
			return err
		}
		if len(held) == 0 {
			return nil // every lease is gone
		}
		leased := make(map[string]storage.Job, len(held))
		for _, j := range held {
			leased[j.ID] = j
		}
		var uids, statuses, bodies []string
		var dues []pgtype.Timestamptz
		for _, r := range results {
			j, ok := leased[r.JobID]
			if !ok || j.WorkspaceID != r.WorkspaceID || j.LeaseToken != r.LeaseToken {
				continue // fenced: the lease is gone
			}
			// A second result for the same lease finds it gone, as it would
			// one transaction later.
			delete(leased, r.JobID)
			if r.Release {
				j.Status, j.UpdatedAt, j.LeaseUntil, j.LeaseToken = storage.JobQueued, r.At, time.Time{}, 0
				j.Leases = max(0, j.Leases-1)
				if !r.RunAt.IsZero() {
					j.RunAt = r.RunAt
				}
			} else {
				j.Attempts = append(j.Attempts, r.Attempt)
				j.Status, j.UpdatedAt, j.LeaseUntil, j.LeaseToken = r.Status, r.At, time.Time{}, 0
				switch r.Status {
				case storage.JobQueued:
					j.RunAt = r.RunAt
				case storage.JobDelivered:
					j.DeliveredAt = r.At
				}
			}
			body, err := marshalJob(j)
			if err != nil {
				return err
			}
			due := pgtype.Timestamptz{}
			if j.Status == storage.JobQueued {
				due = pgtype.Timestamptz{Time: j.RunAt, Valid: true}
			}
			uids, statuses, dues, bodies = append(uids, j.ID), append(statuses, j.Status), append(dues, due), append(bodies, string(body))
		}
		if len(uids) == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, saveCompleted, uids, statuses, dues, bodies)
		return err
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

// JobUsage sums a workspace's open jobs (due_at set) from jobs_ready, an
// index-only scan of that workspace's open jobs.
func (s *Store) JobUsage(ctx context.Context, workspaceID string) (storage.JobUsage, error) {
	var u storage.JobUsage
	err := s.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(payload_bytes), 0) FROM jobs WHERE workspace_id=$1 AND due_at IS NOT NULL`, workspaceID).Scan(&u.OpenJobs, &u.PayloadBytes)
	return u, mapErr(err, "usage")
}

// QueueStats groups the open jobs (jobs_ready) by queue.
func (s *Store) QueueStats(ctx context.Context, now time.Time) ([]storage.QueueStat, error) {
	rows, err := s.pool.Query(ctx, `SELECT workspace_id, queue, count(*) FILTER (WHERE due_at <= $1), min(due_at) FILTER (WHERE due_at <= $1),
		count(*) FILTER (WHERE status='leased' AND due_at > $1)
		FROM jobs WHERE due_at IS NOT NULL GROUP BY 1, 2`, now)
	if err != nil {
		return nil, mapErr(err, "queue stats")
	}
	out, err := collect(rows, func(r pgx.Row) (storage.QueueStat, error) {
		var st storage.QueueStat
		var oldest *time.Time
		err := r.Scan(&st.WorkspaceID, &st.Queue, &st.Ready, &oldest, &st.Running)
		if oldest != nil {
			st.OldestReady = oldest.UTC()
		}
		return st, err
	})
	return out, mapErr(err, "queue stats")
}
