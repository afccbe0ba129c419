package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"rotor.sh/rotor/storage"
)

var (
	bucketQueues    = []byte("queues")     // ws -> name -> Queue
	bucketJobs      = []byte("jobs")       // id -> Job
	bucketJobIndex  = []byte("job_index")  // ws -> queue -> id -> status
	bucketDue       = []byte("jobs_due")   // be64(unix nanos) + id -> ""
	bucketIdem      = []byte("job_idem")   // ws -> queue \x00 key -> id
	bucketJobCounts = []byte("job_counts") // status -> be64 count
	keyLeaseSeq     = []byte("lease_seq")
)

// jobBuckets are created by init along with the others.
var jobBuckets = [][]byte{bucketQueues, bucketJobs, bucketJobIndex, bucketDue, bucketIdem, bucketJobCounts}

func dueKey(t time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	return append(k, id...)
}

func nested(tx *bbolt.Tx, root []byte, path ...string) (*bbolt.Bucket, error) {
	b := tx.Bucket(root)
	for _, p := range path {
		var err error
		if b, err = b.CreateBucketIfNotExists([]byte(p)); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func nestedRO(tx *bbolt.Tx, root []byte, path ...string) *bbolt.Bucket {
	b := tx.Bucket(root)
	for _, p := range path {
		if b = b.Bucket([]byte(p)); b == nil {
			return nil
		}
	}
	return b
}

func countJob(tx *bbolt.Tx, from, to string) error {
	b := tx.Bucket(bucketJobCounts)
	adj := func(status string, d int64) error {
		if status == "" {
			return nil
		}
		var n int64
		if v := b.Get([]byte(status)); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		return b.Put([]byte(status), be64(uint64(max(0, n+d))))
	}
	if from == to {
		return nil
	}
	if err := adj(from, -1); err != nil {
		return err
	}
	return adj(to, 1)
}

// putJob stores a job and keeps the index and counters in step with a
// status change from prev ("" for a new job).
func putJob(tx *bbolt.Tx, j storage.Job, prev string) error {
	if err := put(tx.Bucket(bucketJobs), []byte(j.ID), j); err != nil {
		return err
	}
	idx, err := nested(tx, bucketJobIndex, j.WorkspaceID, j.Queue)
	if err != nil {
		return err
	}
	if err := idx.Put([]byte(j.ID), []byte(j.Status)); err != nil {
		return err
	}
	return countJob(tx, prev, j.Status)
}

func getJob(tx *bbolt.Tx, id string) (storage.Job, bool, error) {
	var j storage.Job
	ok, err := get(tx.Bucket(bucketJobs), []byte(id), &j)
	return j, ok, err
}

// --- queues ---

func (s *Store) CreateQueue(ctx context.Context, args storage.CreateQueueArgs) error {
	q := args.Queue
	return s.update(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketWorkspaces).Get([]byte(q.WorkspaceID)) == nil {
			return fmt.Errorf("workspace %q: %w", q.WorkspaceID, storage.ErrNotFound)
		}
		b, err := nested(tx, bucketQueues, q.WorkspaceID)
		if err != nil {
			return err
		}
		if b.Get([]byte(q.Name)) != nil {
			return fmt.Errorf("queue %q: %w", q.Name, storage.ErrExists)
		}
		q.Revision = 1
		if err := put(b, []byte(q.Name), q); err != nil {
			return err
		}
		return appendAudit(tx, slices.Clone(args.Audit))
	})
}

func (s *Store) UpdateQueue(ctx context.Context, args storage.UpdateQueueArgs) error {
	q := args.Queue
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := nestedRO(tx, bucketQueues, q.WorkspaceID)
		var cur storage.Queue
		ok := false
		if b != nil {
			var err error
			if ok, err = get(b, []byte(q.Name), &cur); err != nil {
				return err
			}
		}
		if !ok {
			return fmt.Errorf("queue %q: %w", q.Name, storage.ErrNotFound)
		}
		if cur.Revision != args.ExpectedRevision {
			return fmt.Errorf("queue %q: %w", q.Name, storage.ErrConflict)
		}
		q.Revision = cur.Revision + 1
		if err := put(b, []byte(q.Name), q); err != nil {
			return err
		}
		return appendAudit(tx, slices.Clone(args.Audit))
	})
}

func (s *Store) GetQueue(ctx context.Context, workspaceID, name string) (storage.Queue, error) {
	var q storage.Queue
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		ok := false
		if b := nestedRO(tx, bucketQueues, workspaceID); b != nil {
			var err error
			if ok, err = get(b, []byte(name), &q); err != nil {
				return err
			}
		}
		if !ok {
			return fmt.Errorf("queue %q: %w", name, storage.ErrNotFound)
		}
		return nil
	})
	return q, err
}

func (s *Store) ListQueues(ctx context.Context, workspaceID string) ([]storage.Queue, error) {
	var out []storage.Queue
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := nestedRO(tx, bucketQueues, workspaceID)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var q storage.Queue
			if err := json.Unmarshal(v, &q); err != nil {
				return err
			}
			out = append(out, q)
			return nil
		})
	})
	return out, err
}

func (s *Store) DeleteQueue(ctx context.Context, args storage.DeleteQueueArgs) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := nestedRO(tx, bucketQueues, args.WorkspaceID)
		if b == nil || b.Get([]byte(args.Name)) == nil {
			return fmt.Errorf("queue %q: %w", args.Name, storage.ErrNotFound)
		}
		if err := b.Delete([]byte(args.Name)); err != nil {
			return err
		}
		if idx := nestedRO(tx, bucketJobIndex, args.WorkspaceID, args.Name); idx != nil {
			var open []string
			if err := idx.ForEach(func(k, v []byte) error {
				if st := string(v); st == storage.JobQueued || st == storage.JobLeased {
					open = append(open, string(k))
				}
				return nil
			}); err != nil {
				return err
			}
			for _, id := range open {
				if _, err := cancelJob(tx, id, args.At); err != nil {
					return err
				}
			}
		}
		return appendAudit(tx, slices.Clone(args.Audit))
	})
}

// --- jobs ---

func (s *Store) EnqueueJobs(ctx context.Context, args storage.EnqueueJobsArgs) ([]storage.EnqueueResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var results []storage.EnqueueResult
	// Batch coalesces concurrent enqueues into one transaction (one fsync).
	// It may run fn again alone after a failure, so fn starts afresh.
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		results = results[:0]
		for _, j := range args.Jobs {
			qb := nestedRO(tx, bucketQueues, j.WorkspaceID)
			if qb == nil || qb.Get([]byte(j.Queue)) == nil {
				return fmt.Errorf("queue %q: %w", j.Queue, storage.ErrNotFound)
			}
			if j.IdempotencyKey != "" {
				ib, err := nested(tx, bucketIdem, j.WorkspaceID)
				if err != nil {
					return err
				}
				ik := []byte(j.Queue + "\x00" + j.IdempotencyKey)
				if id := ib.Get(ik); id != nil {
					prev, ok, err := getJob(tx, string(id))
					if err != nil {
						return err
					}
					if ok && args.Now.Sub(prev.CreatedAt) < storage.IdempotencyWindow {
						results = append(results, storage.EnqueueResult{Job: prev, Existing: true})
						continue
					}
				}
				if err := ib.Put(ik, []byte(j.ID)); err != nil {
					return err
				}
			}
			if tx.Bucket(bucketJobs).Get([]byte(j.ID)) != nil {
				return fmt.Errorf("job %q: %w", j.ID, storage.ErrExists)
			}
			j.Status = storage.JobQueued
			if err := putJob(tx, j, ""); err != nil {
				return err
			}
			if err := tx.Bucket(bucketDue).Put(dueKey(j.RunAt, j.ID), nil); err != nil {
				return err
			}
			results = append(results, storage.EnqueueResult{Job: j})
		}
		return nil
	})
	return results, err
}

func (s *Store) GetJob(ctx context.Context, workspaceID, id string) (storage.Job, error) {
	var j storage.Job
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var ok bool
		var err error
		if j, ok, err = getJob(tx, id); err != nil {
			return err
		}
		if !ok || j.WorkspaceID != workspaceID {
			return fmt.Errorf("job %q: %w", id, storage.ErrNotFound)
		}
		return nil
	})
	return j, err
}

func (s *Store) ListJobs(ctx context.Context, q storage.JobQuery) (storage.JobPage, error) {
	var page storage.JobPage
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		idx := nestedRO(tx, bucketJobIndex, q.WorkspaceID, q.Queue)
		if idx == nil {
			return nil
		}
		c := idx.Cursor()
		var k, v []byte
		if q.Before != "" {
			k, v = c.Seek([]byte(q.Before))
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && bytes.Compare(k, []byte(q.Before)) >= 0 {
				k, v = c.Prev()
			}
		} else {
			k, v = c.Last()
		}
		for ; k != nil; k, v = c.Prev() {
			if q.Status != "" && string(v) != q.Status {
				continue
			}
			if len(page.Jobs) == limit {
				page.Next = page.Jobs[len(page.Jobs)-1].ID
				return nil
			}
			j, ok, err := getJob(tx, string(k))
			if err != nil {
				return err
			}
			if ok {
				page.Jobs = append(page.Jobs, j)
			}
		}
		return nil
	})
	return page, err
}

// leaseScanFactor bounds how many due entries one lease call looks at, per
// job it may lease (entries of full queues are skipped, not leased).
const leaseScanFactor = 8

func (s *Store) LeaseJobs(ctx context.Context, args storage.LeaseJobsArgs) ([]storage.Job, error) {
	var leased []storage.Job
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		leased = leased[:0]
		due := tx.Bucket(bucketDue)
		now := uint64(args.Now.UnixNano())
		type cand struct {
			key []byte
			id  string
		}
		var cands []cand
		c := due.Cursor()
		for k, _ := c.First(); k != nil && len(cands) < args.Limit*leaseScanFactor+16; k, _ = c.Next() {
			if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) > now {
				break
			}
			cands = append(cands, cand{key: bytes.Clone(k), id: string(k[8:])})
		}
		slots := map[string]int{}
		for qk, n := range args.Slots {
			slots[qk] = n
		}
		meta := tx.Bucket(bucketMeta)
		for _, cd := range cands {
			if len(leased) == args.Limit {
				break
			}
			j, ok, err := getJob(tx, cd.id)
			if err != nil {
				return err
			}
			if !ok || (j.Status != storage.JobQueued && j.Status != storage.JobLeased) {
				// A stale index entry: drop it.
				if err := due.Delete(cd.key); err != nil {
					return err
				}
				continue
			}
			qk := storage.QueueKey(j.WorkspaceID, j.Queue)
			if n, limited := slots[qk]; limited {
				if n <= 0 {
					continue
				}
				slots[qk] = n - 1
			}
			seq := uint64(1)
			if v := meta.Get(keyLeaseSeq); len(v) == 8 {
				seq = binary.BigEndian.Uint64(v) + 1
			}
			if err := meta.Put(keyLeaseSeq, be64(seq)); err != nil {
				return err
			}
			prev := j.Status
			j.Status = storage.JobLeased
			j.LeaseToken = seq
			j.Leases++
			j.LeaseUntil = args.Now.Add(args.Visibility)
			j.UpdatedAt = args.Now
			if err := due.Delete(cd.key); err != nil {
				return err
			}
			if err := due.Put(dueKey(j.LeaseUntil, j.ID), nil); err != nil {
				return err
			}
			if err := putJob(tx, j, prev); err != nil {
				return err
			}
			leased = append(leased, j)
		}
		return nil
	})
	return leased, err
}

func (s *Store) CompleteAttempts(ctx context.Context, results []storage.AttemptResult) error {
	if len(results) == 0 {
		return nil
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		due := tx.Bucket(bucketDue)
		for _, r := range results {
			j, ok, err := getJob(tx, r.JobID)
			if err != nil {
				return err
			}
			if !ok || j.WorkspaceID != r.WorkspaceID || j.Status != storage.JobLeased || j.LeaseToken != r.LeaseToken {
				continue // fenced: the lease is gone
			}
			if err := due.Delete(dueKey(j.LeaseUntil, j.ID)); err != nil {
				return err
			}
			j.Attempts = append(j.Attempts, r.Attempt)
			j.Status, j.UpdatedAt = r.Status, r.At
			j.LeaseUntil, j.LeaseToken = time.Time{}, 0
			switch r.Status {
			case storage.JobQueued:
				j.RunAt = r.RunAt
				if err := due.Put(dueKey(j.RunAt, j.ID), nil); err != nil {
					return err
				}
			case storage.JobDelivered:
				j.DeliveredAt = r.At
			case storage.JobDead:
			default:
				return fmt.Errorf("bolt: bad next status %q", r.Status)
			}
			if err := putJob(tx, j, storage.JobLeased); err != nil {
				return err
			}
		}
		return nil
	})
}

func cancelJob(tx *bbolt.Tx, id string, at time.Time) (storage.Job, error) {
	j, ok, err := getJob(tx, id)
	if err != nil || !ok {
		return j, err
	}
	prev := j.Status
	switch prev {
	case storage.JobQueued:
		if err := tx.Bucket(bucketDue).Delete(dueKey(j.RunAt, j.ID)); err != nil {
			return j, err
		}
	case storage.JobLeased:
		if err := tx.Bucket(bucketDue).Delete(dueKey(j.LeaseUntil, j.ID)); err != nil {
			return j, err
		}
	default:
		return j, fmt.Errorf("job %s is %s: %w", id, prev, storage.ErrConflict)
	}
	j.Status, j.UpdatedAt, j.LeaseToken, j.LeaseUntil = storage.JobCanceled, at, 0, time.Time{}
	return j, putJob(tx, j, prev)
}

func (s *Store) CancelJob(ctx context.Context, workspaceID, id string, at time.Time) (storage.Job, error) {
	var j storage.Job
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		cur, ok, err := getJob(tx, id)
		if err != nil {
			return err
		}
		if !ok || cur.WorkspaceID != workspaceID {
			return fmt.Errorf("job %q: %w", id, storage.ErrNotFound)
		}
		j, err = cancelJob(tx, id, at)
		return err
	})
	return j, err
}

func (s *Store) RetryJobs(ctx context.Context, args storage.RetryJobsArgs) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		var ids []string
		if args.ID != "" {
			j, ok, err := getJob(tx, args.ID)
			if err != nil {
				return err
			}
			if !ok || j.WorkspaceID != args.WorkspaceID {
				return fmt.Errorf("job %q: %w", args.ID, storage.ErrNotFound)
			}
			if j.Status != storage.JobDead && j.Status != storage.JobCanceled {
				return fmt.Errorf("job %s is %s; only dead or canceled jobs can be retried: %w", j.ID, j.Status, storage.ErrConflict)
			}
			ids = []string{j.ID}
		} else {
			if qb := nestedRO(tx, bucketQueues, args.WorkspaceID); qb == nil || qb.Get([]byte(args.Queue)) == nil {
				return fmt.Errorf("queue %q: %w", args.Queue, storage.ErrNotFound)
			}
			if idx := nestedRO(tx, bucketJobIndex, args.WorkspaceID, args.Queue); idx != nil {
				if err := idx.ForEach(func(k, v []byte) error {
					if string(v) == storage.JobDead {
						ids = append(ids, string(k))
					}
					return nil
				}); err != nil {
					return err
				}
			}
		}
		for _, id := range ids {
			j, _, err := getJob(tx, id)
			if err != nil {
				return err
			}
			prev := j.Status
			j.Status, j.RunAt, j.UpdatedAt, j.RetryFrom = storage.JobQueued, args.At, args.At, len(j.Attempts)
			if err := tx.Bucket(bucketDue).Put(dueKey(j.RunAt, j.ID), nil); err != nil {
				return err
			}
			if err := putJob(tx, j, prev); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

func (s *Store) CountJobs(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketJobCounts).ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				out[string(k)] = int(binary.BigEndian.Uint64(v))
			}
			return nil
		})
	})
	return out, err
}
