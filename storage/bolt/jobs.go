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
	bucketQueues   = []byte("queues")    // ws -> name -> Queue
	bucketJobs     = []byte("jobs")      // id -> Job
	bucketJobIndex = []byte("job_index") // ws -> queue -> id -> status
	bucketDue      = []byte("jobs_due")  // before the ready index: be64(unix nanos) + id -> "" (migrated, then emptied)
	// bucketReady holds each queue's open jobs by when they are due (RunAt
	// while queued, LeaseUntil while leased): ws -> queue -> be64(unix
	// nanos) + id -> "". A queue's bucket is removed when it empties, so
	// leasing visits only queues with open jobs, and in each only the jobs
	// it leases.
	bucketReady = []byte("jobs_ready")
	// bucketLeased holds each queue's leased jobs: ws -> queue -> id ->
	// be64(lease until), to count a queue's running jobs.
	bucketLeased  = []byte("jobs_leased")
	keyReadyIndex = []byte("ready_index") // meta: jobs_due was migrated
	// bucketUsage is each workspace's open jobs: ws -> be64(count) +
	// be64(payload bytes), kept by putJob.
	bucketUsage     = []byte("job_usage")
	bucketIdem      = []byte("job_idem")   // ws -> queue \x00 key -> id
	bucketJobCounts = []byte("job_counts") // status -> be64 count
	keyLeaseSeq     = []byte("lease_seq")
)

// jobBuckets are created by init along with the others.
var jobBuckets = [][]byte{bucketQueues, bucketJobs, bucketJobIndex, bucketDue, bucketIdem, bucketJobCounts, bucketReady, bucketLeased, bucketUsage}

// putDue and delDue keep a job's entry in its queue's ready index.
func putDue(tx *bbolt.Tx, j storage.Job, at time.Time) error {
	b, err := nested(tx, bucketReady, j.WorkspaceID, j.Queue)
	if err != nil {
		return err
	}
	return b.Put(dueKey(at, j.ID), nil)
}

func delDue(tx *bbolt.Tx, j storage.Job, at time.Time) error {
	wb := nestedRO(tx, bucketReady, j.WorkspaceID)
	if wb == nil {
		return nil
	}
	b := wb.Bucket([]byte(j.Queue))
	if b == nil {
		return nil
	}
	if err := b.Delete(dueKey(at, j.ID)); err != nil {
		return err
	}
	if k, _ := b.Cursor().First(); k == nil {
		return wb.DeleteBucket([]byte(j.Queue))
	}
	return nil
}

// migrateReadyIndex moves a file written before the ready index from the
// single jobs_due index to the per-queue one, once.
func migrateReadyIndex(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keyReadyIndex) != nil {
		return nil
	}
	due := tx.Bucket(bucketDue)
	var keys [][]byte
	if err := due.ForEach(func(k, _ []byte) error {
		keys = append(keys, bytes.Clone(k))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if len(k) < 8 {
			continue
		}
		j, ok, err := getJob(tx, string(k[8:]))
		if err != nil {
			return err
		}
		if ok && (j.Status == storage.JobQueued || j.Status == storage.JobLeased) {
			at := j.RunAt
			if j.Status == storage.JobLeased {
				at = j.LeaseUntil
				if err := putLeased(tx, j); err != nil {
					return err
				}
			}
			if err := putDue(tx, j, at); err != nil {
				return err
			}
			if err := addUsage(tx, j.WorkspaceID, 1, int64(len(j.Payload))); err != nil {
				return err
			}
		}
		if err := due.Delete(k); err != nil {
			return err
		}
	}
	return meta.Put(keyReadyIndex, []byte{1})
}

func isOpen(status string) bool { return status == storage.JobQueued || status == storage.JobLeased }

func addUsage(tx *bbolt.Tx, ws string, jobs, bytes int64) error {
	b := tx.Bucket(bucketUsage)
	u := readUsage(b.Get([]byte(ws)))
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uint64(max(0, int64(u.OpenJobs)+jobs)))
	binary.BigEndian.PutUint64(v[8:], uint64(max(0, u.PayloadBytes+bytes)))
	return b.Put([]byte(ws), v)
}

func readUsage(v []byte) storage.JobUsage {
	if len(v) != 16 {
		return storage.JobUsage{}
	}
	return storage.JobUsage{OpenJobs: int(binary.BigEndian.Uint64(v)), PayloadBytes: int64(binary.BigEndian.Uint64(v[8:]))}
}

func (s *Store) JobUsage(ctx context.Context, workspaceID string) (storage.JobUsage, error) {
	var u storage.JobUsage
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		u = readUsage(tx.Bucket(bucketUsage).Get([]byte(workspaceID)))
		return nil
	})
	return u, err
}

// putLeased keeps the leased-jobs index in step with j's status.
func putLeased(tx *bbolt.Tx, j storage.Job) error {
	if j.Status == storage.JobLeased {
		b, err := nested(tx, bucketLeased, j.WorkspaceID, j.Queue)
		if err != nil {
			return err
		}
		return b.Put([]byte(j.ID), be64(uint64(j.LeaseUntil.UnixNano())))
	}
	if b := nestedRO(tx, bucketLeased, j.WorkspaceID, j.Queue); b != nil {
		return b.Delete([]byte(j.ID))
	}
	return nil
}

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
	data, err := encodeJob(j)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketJobs).Put([]byte(j.ID), data); err != nil {
		return err
	}
	idx, err := nested(tx, bucketJobIndex, j.WorkspaceID, j.Queue)
	if err != nil {
		return err
	}
	if err := idx.Put([]byte(j.ID), []byte(j.Status)); err != nil {
		return err
	}
	if prev == storage.JobLeased || j.Status == storage.JobLeased {
		if err := putLeased(tx, j); err != nil {
			return err
		}
	}
	if was, is := isOpen(prev), isOpen(j.Status); was != is {
		d := int64(1)
		if was {
			d = -1
		}
		if err := addUsage(tx, j.WorkspaceID, d, d*int64(len(j.Payload))); err != nil {
			return err
		}
	}
	return countJob(tx, prev, j.Status)
}

func getJob(tx *bbolt.Tx, id string) (storage.Job, bool, error) {
	data := tx.Bucket(bucketJobs).Get([]byte(id))
	if data == nil {
		return storage.Job{}, false, nil
	}
	j, err := decodeJob(data)
	if err != nil {
		return j, true, fmt.Errorf("bolt: decode job %s: %w", id, err)
	}
	return j, true, nil
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
		return s.appendAudit(tx, slices.Clone(args.Audit))
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
		return s.appendAudit(tx, slices.Clone(args.Audit))
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
		return s.appendAudit(tx, slices.Clone(args.Audit))
	})
}

// --- jobs ---

func (s *Store) EnqueueJobs(ctx context.Context, args storage.EnqueueJobsArgs) ([]storage.EnqueueResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var results []storage.EnqueueResult
	// Batch coalesces concurrent enqueues, leases and results into one
	// transaction (one fsync). It may run fn again alone after a failure,
	// so fn starts afresh.
	err := s.batch(ctx, len(args.Jobs), func(tx *bbolt.Tx) error {
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
			if err := putDue(tx, j, j.RunAt); err != nil {
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

// LeaseJobs visits the queues with open jobs (the ready index's queue
// buckets), reads the first entry of each, and leases from each queue at
// most its LeaseCap, shared out by s.fair: the cost is the number of queues
// with open jobs plus the jobs leased, whatever the depth of any queue.
func (s *Store) LeaseJobs(ctx context.Context, args storage.LeaseJobsArgs) ([]storage.Job, error) {
	var leased []storage.Job
	// Shared with concurrent enqueues and results (one fsync); fn may run
	// again after a failure, so it starts afresh.
	err := s.batch(ctx, args.Limit, func(tx *bbolt.Tx) error {
		leased = leased[:0]
		now := uint64(args.Now.UnixNano())
		var ready []storage.ReadyQueue
		var idx []*bbolt.Bucket
		err := tx.Bucket(bucketReady).ForEachBucket(func(ws []byte) error {
			wb := tx.Bucket(bucketReady).Bucket(ws)
			return wb.ForEachBucket(func(name []byte) error {
				b := wb.Bucket(name)
				k, _ := b.Cursor().First()
				if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) > now {
					return nil
				}
				var q storage.Queue
				ok := false
				if qb := nestedRO(tx, bucketQueues, string(ws)); qb != nil {
					var err error
					if ok, err = get(qb, name, &q); err != nil {
						return err
					}
				}
				if !ok {
					return nil // deleted: its jobs were canceled
				}
				running := 0
				if lb := nestedRO(tx, bucketLeased, string(ws), string(name)); lb != nil {
					if err := lb.ForEach(func(_, v []byte) error {
						if len(v) == 8 && binary.BigEndian.Uint64(v) > now {
							running++
						}
						return nil
					}); err != nil {
						return err
					}
				}
				ready = append(ready, storage.ReadyQueue{WorkspaceID: string(ws), Name: string(name), Max: storage.LeaseCap(q, running, args.Slots)})
				idx = append(idx, b)
				return nil
			})
		})
		if err != nil {
			return err
		}
		counts := s.fair.Allocate(ready, args.Limit, args.WorkspaceSlots)
		meta := tx.Bucket(bucketMeta)
		for i, n := range counts {
			if n == 0 {
				continue
			}
			// Collect first: the index changes as jobs are leased.
			var keys [][]byte
			c := idx[i].Cursor()
			for k, _ := c.First(); k != nil && len(keys) < n; k, _ = c.Next() {
				if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) > now {
					break
				}
				keys = append(keys, bytes.Clone(k))
			}
			for _, k := range keys {
				j, ok, err := getJob(tx, string(k[8:]))
				if err != nil {
					return err
				}
				if !ok || (j.Status != storage.JobQueued && j.Status != storage.JobLeased) {
					// A stale index entry: drop it.
					if err := idx[i].Delete(k); err != nil {
						return err
					}
					continue
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
				if err := idx[i].Delete(k); err != nil {
					return err
				}
				if err := idx[i].Put(dueKey(j.LeaseUntil, j.ID), nil); err != nil {
					return err
				}
				if err := putJob(tx, j, prev); err != nil {
					return err
				}
				leased = append(leased, j)
			}
		}
		return nil
	})
	return leased, err
}

func (s *Store) CompleteAttempts(ctx context.Context, results []storage.AttemptResult) error {
	if len(results) == 0 {
		return nil
	}
	// Shared with concurrent enqueues and leases (one fsync).
	return s.batch(ctx, len(results), func(tx *bbolt.Tx) error {
		for _, r := range results {
			j, ok, err := getJob(tx, r.JobID)
			if err != nil {
				return err
			}
			if !ok || j.WorkspaceID != r.WorkspaceID || j.Status != storage.JobLeased || j.LeaseToken != r.LeaseToken {
				continue // fenced: the lease is gone
			}
			if err := delDue(tx, j, j.LeaseUntil); err != nil {
				return err
			}
			j.LeaseUntil, j.LeaseToken = time.Time{}, 0
			if r.Release {
				j.Status, j.UpdatedAt = storage.JobQueued, r.At
				j.Leases = max(0, j.Leases-1)
				if !r.RunAt.IsZero() {
					j.RunAt = r.RunAt
				}
				if err := putDue(tx, j, j.RunAt); err != nil {
					return err
				}
				if err := putJob(tx, j, storage.JobLeased); err != nil {
					return err
				}
				continue
			}
			j.Attempts = append(j.Attempts, r.Attempt)
			j.Status, j.UpdatedAt = r.Status, r.At
			switch r.Status {
			case storage.JobQueued:
				j.RunAt = r.RunAt
				if err := putDue(tx, j, j.RunAt); err != nil {
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
		if err := delDue(tx, j, j.RunAt); err != nil {
			return j, err
		}
	case storage.JobLeased:
		if err := delDue(tx, j, j.LeaseUntil); err != nil {
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
			if err := putDue(tx, j, j.RunAt); err != nil {
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

// QueueStats walks the ready index: per queue, its entries up to now are
// ready; the leased-jobs index gives the running ones.
func (s *Store) QueueStats(ctx context.Context, now time.Time) ([]storage.QueueStat, error) {
	var out []storage.QueueStat
	n := uint64(now.UnixNano())
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketReady)
		return root.ForEachBucket(func(ws []byte) error {
			wb := root.Bucket(ws)
			return wb.ForEachBucket(func(name []byte) error {
				st := storage.QueueStat{WorkspaceID: string(ws), Queue: string(name)}
				c := wb.Bucket(name).Cursor()
				for k, _ := c.First(); len(k) >= 8 && binary.BigEndian.Uint64(k[:8]) <= n; k, _ = c.Next() {
					if st.Ready == 0 {
						st.OldestReady = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC()
					}
					st.Ready++
				}
				if lb := nestedRO(tx, bucketLeased, string(ws), string(name)); lb != nil {
					if err := lb.ForEach(func(_, v []byte) error {
						if len(v) == 8 && binary.BigEndian.Uint64(v) > n {
							st.Running++
						}
						return nil
					}); err != nil {
						return err
					}
				}
				out = append(out, st)
				return nil
			})
		})
	})
	return out, err
}
