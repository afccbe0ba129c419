package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"

	"rotor.sh/rotor/storage"
)

var (
	bucketWfDefs  = []byte("wf_defs")      // ws -> name -> Workflow
	bucketWfRuns  = []byte("wf_runs")      // run id -> WorkflowRun
	bucketWfIndex = []byte("wf_run_index") // ws -> run id -> workflow \x00 status
	// bucketWfDue holds each workflow's due-able runs by when they are due
	// (WakeAt, or LeaseUntil while leased): ws -> workflow -> be64(unix
	// nanos) + id -> "". Runs waiting without a timeout are not in it, and a
	// workflow's bucket is removed when it empties: leasing reads only the
	// runs it leases and the first key of each workflow with open runs.
	bucketWfDue    = []byte("wf_due")
	bucketWfIdem   = []byte("wf_idem")   // ws -> workflow \x00 key -> run id
	bucketWfCounts = []byte("wf_counts") // status -> be64 count
)

var workflowBuckets = [][]byte{bucketWfDefs, bucketWfRuns, bucketWfIndex, bucketWfDue, bucketWfIdem, bucketWfCounts}

// runDue is when a run is next leasable, if ever.
func runDue(r storage.WorkflowRun) (time.Time, bool) {
	switch {
	case storage.RunFinished(r.Status):
		return time.Time{}, false
	case r.LeaseOwner != "":
		return r.LeaseUntil, true
	case r.WakeAt.IsZero():
		return time.Time{}, false
	}
	return r.WakeAt, true
}

func getRun(tx *bbolt.Tx, id string) (storage.WorkflowRun, bool, error) {
	var r storage.WorkflowRun
	ok, err := get(tx.Bucket(bucketWfRuns), []byte(id), &r)
	return r, ok, err
}

// saveRun writes r and keeps the indexes in step with it; old is the
// stored version (nil for a new run).
func saveRun(tx *bbolt.Tx, old *storage.WorkflowRun, r storage.WorkflowRun) error {
	if old != nil {
		if at, ok := runDue(*old); ok {
			if err := delRunDue(tx, *old, at); err != nil {
				return err
			}
		}
	}
	if at, ok := runDue(r); ok {
		b, err := nested(tx, bucketWfDue, r.WorkspaceID, r.Workflow)
		if err != nil {
			return err
		}
		if err := b.Put(dueKey(at, r.ID), nil); err != nil {
			return err
		}
	}
	idx, err := nested(tx, bucketWfIndex, r.WorkspaceID)
	if err != nil {
		return err
	}
	if err := idx.Put([]byte(r.ID), []byte(r.Workflow+"\x00"+r.Status)); err != nil {
		return err
	}
	from := ""
	if old != nil {
		from = old.Status
	}
	if err := countRun(tx, from, r.Status); err != nil {
		return err
	}
	return put(tx.Bucket(bucketWfRuns), []byte(r.ID), r)
}

func delRunDue(tx *bbolt.Tx, r storage.WorkflowRun, at time.Time) error {
	wb := nestedRO(tx, bucketWfDue, r.WorkspaceID)
	if wb == nil {
		return nil
	}
	b := wb.Bucket([]byte(r.Workflow))
	if b == nil {
		return nil
	}
	if err := b.Delete(dueKey(at, r.ID)); err != nil {
		return err
	}
	if k, _ := b.Cursor().First(); k == nil {
		return wb.DeleteBucket([]byte(r.Workflow))
	}
	return nil
}

func countRun(tx *bbolt.Tx, from, to string) error {
	if from == to {
		return nil
	}
	b := tx.Bucket(bucketWfCounts)
	for _, d := range []struct {
		status string
		n      int64
	}{{from, -1}, {to, 1}} {
		if d.status == "" {
			continue
		}
		var n int64
		if v := b.Get([]byte(d.status)); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		if err := b.Put([]byte(d.status), be64(uint64(max(0, n+d.n)))); err != nil {
			return err
		}
	}
	return nil
}

// --- definitions ---

func (s *Store) PutWorkflow(ctx context.Context, args storage.PutWorkflowArgs) error {
	w := args.Workflow
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := nested(tx, bucketWfDefs, w.WorkspaceID)
		if err != nil {
			return err
		}
		var cur storage.Workflow
		ok, err := get(b, []byte(w.Name), &cur)
		if err != nil {
			return err
		}
		switch {
		case args.ExpectedVersion == 0 && ok:
			return fmt.Errorf("workflow %q: %w", w.Name, storage.ErrExists)
		case args.ExpectedVersion != 0 && !ok:
			return fmt.Errorf("workflow %q: %w", w.Name, storage.ErrNotFound)
		case ok && cur.Version != args.ExpectedVersion:
			return fmt.Errorf("workflow %q: version %d, expected %d: %w", w.Name, cur.Version, args.ExpectedVersion, storage.ErrConflict)
		}
		w.Version = args.ExpectedVersion + 1
		if ok {
			w.CreatedAt = cur.CreatedAt
		}
		if err := put(b, []byte(w.Name), w); err != nil {
			return err
		}
		return s.appendAudit(tx, args.Audit)
	})
}

func (s *Store) GetWorkflow(ctx context.Context, workspaceID, name string) (storage.Workflow, error) {
	var w storage.Workflow
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := nestedRO(tx, bucketWfDefs, workspaceID)
		if b == nil {
			return fmt.Errorf("workflow %q: %w", name, storage.ErrNotFound)
		}
		ok, err := get(b, []byte(name), &w)
		if err == nil && !ok {
			err = fmt.Errorf("workflow %q: %w", name, storage.ErrNotFound)
		}
		return err
	})
	return w, err
}

func (s *Store) ListWorkflows(ctx context.Context, workspaceID string) ([]storage.Workflow, error) {
	out := []storage.Workflow{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := nestedRO(tx, bucketWfDefs, workspaceID)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var w storage.Workflow
			if err := json.Unmarshal(v, &w); err != nil {
				return fmt.Errorf("bolt: decode workflow %s: %w", k, err)
			}
			out = append(out, w)
			return nil
		})
	})
	return out, err
}

func (s *Store) DeleteWorkflow(ctx context.Context, args storage.DeleteWorkflowArgs) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := nestedRO(tx, bucketWfDefs, args.WorkspaceID)
		if b == nil || b.Get([]byte(args.Name)) == nil {
			return fmt.Errorf("workflow %q: %w", args.Name, storage.ErrNotFound)
		}
		if err := b.Delete([]byte(args.Name)); err != nil {
			return err
		}
		// Cancel its open runs: the index says which runs are open without
		// decoding the finished ones.
		var open []string
		if idx := nestedRO(tx, bucketWfIndex, args.WorkspaceID); idx != nil {
			if err := idx.ForEach(func(k, v []byte) error {
				wf, st, _ := strings.Cut(string(v), "\x00")
				if wf == args.Name && !storage.RunFinished(st) {
					open = append(open, string(k))
				}
				return nil
			}); err != nil {
				return err
			}
		}
		for _, id := range open {
			r, ok, err := getRun(tx, id)
			if err != nil || !ok {
				return err
			}
			old := r
			storage.CancelRunState(&r, args.At)
			if err := saveRun(tx, &old, r); err != nil {
				return err
			}
		}
		return s.appendAudit(tx, args.Audit)
	})
}

// --- runs ---

func (s *Store) CreateRun(ctx context.Context, args storage.CreateRunArgs) (storage.WorkflowRun, bool, error) {
	r := args.Run
	existing := false
	err := s.batch(ctx, 1+len(args.Audit), func(tx *bbolt.Tx) error {
		existing = false
		r = args.Run
		if b := nestedRO(tx, bucketWfDefs, r.WorkspaceID); b == nil || b.Get([]byte(r.Workflow)) == nil {
			return fmt.Errorf("workflow %q: %w", r.Workflow, storage.ErrNotFound)
		}
		var ib *bbolt.Bucket
		var ik []byte
		if r.IdempotencyKey != "" {
			var err error
			if ib, err = nested(tx, bucketWfIdem, r.WorkspaceID); err != nil {
				return err
			}
			ik = []byte(r.Workflow + "\x00" + r.IdempotencyKey)
			if id := ib.Get(ik); id != nil {
				prev, ok, err := getRun(tx, string(id))
				if err != nil {
					return err
				}
				if ok && args.Now.Sub(prev.CreatedAt) < storage.IdempotencyWindow {
					r, existing = prev, true
					return nil
				}
			}
		}
		if tx.Bucket(bucketWfRuns).Get([]byte(r.ID)) != nil {
			return fmt.Errorf("run %q: %w", r.ID, storage.ErrExists)
		}
		if err := saveRun(tx, nil, r); err != nil {
			return err
		}
		if ib != nil {
			if err := ib.Put(ik, []byte(r.ID)); err != nil {
				return err
			}
		}
		return s.appendAudit(tx, args.Audit)
	})
	return r, existing, err
}

func (s *Store) GetRun(ctx context.Context, workspaceID, id string) (storage.WorkflowRun, error) {
	var r storage.WorkflowRun
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var ok bool
		var err error
		r, ok, err = getRun(tx, id)
		if err == nil && (!ok || r.WorkspaceID != workspaceID) {
			err = fmt.Errorf("run %q: %w", id, storage.ErrNotFound)
		}
		return err
	})
	return r, err
}

func (s *Store) ListRuns(ctx context.Context, q storage.RunQuery) (storage.RunPage, error) {
	limit := q.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	page := storage.RunPage{Runs: []storage.WorkflowRun{}}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		page.Runs, page.Next = page.Runs[:0], ""
		idx := nestedRO(tx, bucketWfIndex, q.WorkspaceID)
		if idx == nil {
			return nil
		}
		c := idx.Cursor()
		var k, v []byte
		if q.Before == "" {
			k, v = c.Last()
		} else {
			k, v = c.Seek([]byte(q.Before))
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && string(k) >= q.Before {
				k, v = c.Prev()
			}
		}
		for ; k != nil; k, v = c.Prev() {
			wf, st, _ := strings.Cut(string(v), "\x00")
			if (q.Workflow != "" && wf != q.Workflow) || (q.Status != "" && st != q.Status) {
				continue
			}
			if len(page.Runs) == limit {
				page.Next = page.Runs[len(page.Runs)-1].ID
				return nil
			}
			r, ok, err := getRun(tx, string(k))
			if err != nil {
				return err
			}
			if ok {
				page.Runs = append(page.Runs, r)
			}
		}
		return nil
	})
	return page, err
}

func (s *Store) LeaseRuns(ctx context.Context, args storage.LeaseRunsArgs) ([]storage.WorkflowRun, error) {
	if args.Limit <= 0 {
		return nil, nil
	}
	// Engines poll: look in a read transaction first, so an idle node (or
	// one whose runs all sleep or wait) costs no write and no fsync.
	anyDue := false
	if err := s.view(ctx, func(tx *bbolt.Tx) error {
		now := uint64(args.Now.UnixNano())
		root := tx.Bucket(bucketWfDue)
		return root.ForEachBucket(func(ws []byte) error {
			wb := root.Bucket(ws)
			return wb.ForEachBucket(func(wf []byte) error {
				if k, _ := wb.Bucket(wf).Cursor().First(); k != nil && binary.BigEndian.Uint64(k[:8]) <= now {
					anyDue = true
				}
				return nil
			})
		})
	}); err != nil || !anyDue {
		return nil, err
	}
	var leased []storage.WorkflowRun
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		leased = leased[:0]
		now := uint64(args.Now.UnixNano())
		var ready []storage.ReadyQueue
		root := tx.Bucket(bucketWfDue)
		if err := root.ForEachBucket(func(ws []byte) error {
			wb := root.Bucket(ws)
			return wb.ForEachBucket(func(wf []byte) error {
				// Count its due runs, up to what one call can take.
				n := 0
				c := wb.Bucket(wf).Cursor()
				for k, _ := c.First(); k != nil && n < args.Limit && binary.BigEndian.Uint64(k[:8]) <= now; k, _ = c.Next() {
					n++
				}
				if n > 0 {
					ready = append(ready, storage.ReadyQueue{WorkspaceID: string(ws), Name: string(wf), Max: n})
				}
				return nil
			})
		}); err != nil {
			return err
		}
		counts := s.wfFair.Allocate(ready, args.Limit, args.WorkspaceSlots)
		for i, rq := range ready {
			if counts[i] == 0 {
				continue
			}
			var ids []string
			c := root.Bucket([]byte(rq.WorkspaceID)).Bucket([]byte(rq.Name)).Cursor()
			for k, _ := c.First(); k != nil && len(ids) < counts[i]; k, _ = c.Next() {
				ids = append(ids, string(k[8:]))
			}
			for _, id := range ids {
				r, ok, err := getRun(tx, id)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				old := r
				r.LeaseOwner, r.LeaseUntil = args.Owner, args.Now.Add(args.Visibility)
				r.LeaseToken++
				r.Leases++
				r.UpdatedAt = args.Now
				if err := saveRun(tx, &old, r); err != nil {
					return err
				}
				leased = append(leased, r)
			}
		}
		return nil
	})
	return leased, err
}

func (s *Store) CheckpointRun(ctx context.Context, args storage.CheckpointRunArgs) (storage.WorkflowRun, error) {
	var out storage.WorkflowRun
	err := s.batch(ctx, 1+len(args.Audit), func(tx *bbolt.Tx) error {
		cur, ok, err := getRun(tx, args.Run.ID)
		if err != nil {
			return err
		}
		if !ok || cur.WorkspaceID != args.Run.WorkspaceID {
			return fmt.Errorf("run %q: %w", args.Run.ID, storage.ErrNotFound)
		}
		r, err := storage.ApplyCheckpoint(cur, args)
		if err != nil {
			return err
		}
		if err := saveRun(tx, &cur, r); err != nil {
			return err
		}
		out = r
		return s.appendAudit(tx, args.Audit)
	})
	return out, err
}

// modifyRun reads a workspace's run, lets fn change it, and saves it with
// audit, in one transaction.
func (s *Store) modifyRun(ctx context.Context, ws, id string, audit []storage.AuditEvent, fn func(r *storage.WorkflowRun) error) (storage.WorkflowRun, error) {
	var out storage.WorkflowRun
	err := s.batch(ctx, 1+len(audit), func(tx *bbolt.Tx) error {
		cur, ok, err := getRun(tx, id)
		if err != nil {
			return err
		}
		if !ok || cur.WorkspaceID != ws {
			return fmt.Errorf("run %q: %w", id, storage.ErrNotFound)
		}
		r := cur
		r.Steps = slices.Clone(cur.Steps)
		r.Signals = slices.Clone(cur.Signals)
		if err := fn(&r); err != nil {
			return err
		}
		if err := saveRun(tx, &cur, r); err != nil {
			return err
		}
		out = r
		return s.appendAudit(tx, audit)
	})
	return out, err
}

func (s *Store) SignalRun(ctx context.Context, args storage.SignalRunArgs) (storage.WorkflowRun, error) {
	return s.modifyRun(ctx, args.WorkspaceID, args.RunID, args.Audit, func(r *storage.WorkflowRun) error {
		return storage.ApplySignal(r, args.Signal, args.Now)
	})
}

func (s *Store) CancelRun(ctx context.Context, args storage.CancelRunArgs) (storage.WorkflowRun, error) {
	return s.modifyRun(ctx, args.WorkspaceID, args.RunID, args.Audit, func(r *storage.WorkflowRun) error {
		return storage.ApplyCancel(r, args.At)
	})
}

func (s *Store) RetryRun(ctx context.Context, args storage.RetryRunArgs) (storage.WorkflowRun, error) {
	return s.modifyRun(ctx, args.WorkspaceID, args.RunID, args.Audit, func(r *storage.WorkflowRun) error {
		return storage.ApplyRetry(r, args.At)
	})
}

func (s *Store) CountRuns(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketWfCounts).ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				out[string(k)] = int(binary.BigEndian.Uint64(v))
			}
			return nil
		})
	})
	return out, err
}

func (s *Store) PruneRuns(ctx context.Context, args storage.PruneRunsArgs) (int, error) {
	if args.Limit <= 0 {
		return 0, nil
	}
	n := 0
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		var victims []storage.WorkflowRun
		c := tx.Bucket(bucketWfRuns).Cursor()
		scanned := 0
		for k, v := c.First(); k != nil && len(victims) < args.Limit && scanned < args.Limit*pruneScanFactor; k, v = c.Next() {
			scanned++
			var r storage.WorkflowRun
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("bolt: decode run %s: %w", k, err)
			}
			if r.CreatedAt.After(args.Before) {
				break
			}
			if storage.RunFinished(r.Status) && r.UpdatedAt.Before(args.Before) {
				victims = append(victims, r)
			}
		}
		for _, r := range victims {
			if err := tx.Bucket(bucketWfRuns).Delete([]byte(r.ID)); err != nil {
				return err
			}
			if idx := nestedRO(tx, bucketWfIndex, r.WorkspaceID); idx != nil {
				if err := idx.Delete([]byte(r.ID)); err != nil {
					return err
				}
			}
			if r.IdempotencyKey != "" {
				if ib := nestedRO(tx, bucketWfIdem, r.WorkspaceID); ib != nil {
					ik := []byte(r.Workflow + "\x00" + r.IdempotencyKey)
					if bytes.Equal(ib.Get(ik), []byte(r.ID)) {
						if err := ib.Delete(ik); err != nil {
							return err
						}
					}
				}
			}
			if err := countRun(tx, r.Status, ""); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
