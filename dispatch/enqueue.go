package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"rotor.sh/rotor/storage"
)

// maxEnqueueBatch bounds the jobs one grouped EnqueueJobs call carries.
const maxEnqueueBatch = 256

// enqueueGroup sends the jobs of concurrent Enqueue calls (those without
// an idempotency key) to storage in one EnqueueJobs call: one round trip to
// the storage plugin and one transaction for many API requests. The first
// caller to find no call in flight leads: it sends what queued up and hands
// the lead to the next waiter. There is no timer: a lone enqueue is sent at
// once; under load, batches grow with the wait for the previous call.
type enqueueGroup struct {
	store storage.Store

	mu      sync.Mutex
	pending []*enqueueCall
	leading bool
}

type enqueueCall struct {
	job  storage.Job
	now  time.Time
	res  storage.EnqueueResult
	err  error
	done chan struct{}
	lead chan struct{} // closed when this call is handed the lead
}

// enqueue stores j and returns its result as EnqueueJobs would for j alone.
func (g *enqueueGroup) enqueue(ctx context.Context, j storage.Job, now time.Time) (storage.EnqueueResult, error) {
	if err := ctx.Err(); err != nil {
		return storage.EnqueueResult{}, err
	}
	c := &enqueueCall{job: j, now: now, done: make(chan struct{}), lead: make(chan struct{})}
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if g.leading {
		g.mu.Unlock()
		select {
		case <-c.done:
			return c.res, c.err
		case <-c.lead:
		}
		g.mu.Lock()
	}
	g.leading = true
	// The batch is written whatever becomes of this request: other callers
	// wait for it.
	sctx := context.WithoutCancel(ctx)
	for {
		n := min(len(g.pending), maxEnqueueBatch)
		batch := g.pending[:n:n]
		g.pending = g.pending[n:]
		g.mu.Unlock()
		g.send(sctx, batch)
		g.mu.Lock()
		select {
		case <-c.done:
		default:
			continue // more than a batch was waiting ahead of c
		}
		if len(g.pending) == 0 {
			g.leading = false
		} else {
			close(g.pending[0].lead)
		}
		g.mu.Unlock()
		return c.res, c.err
	}
}

// send stores a batch in one call and closes each call's done.
func (g *enqueueGroup) send(ctx context.Context, batch []*enqueueCall) {
	g.store1(ctx, batch)
	for _, c := range batch {
		close(c.done)
	}
}

// store1 stores a batch in one call. The call is all or nothing, so when
// it fails for a reason other than storage being unavailable (a job's
// queue was deleted meanwhile), each half is sent again, down to single
// jobs, so each job gets its own answer for a few more calls.
func (g *enqueueGroup) store1(ctx context.Context, batch []*enqueueCall) {
	jobs := make([]storage.Job, len(batch))
	for i, c := range batch {
		jobs[i] = c.job
	}
	res, err := g.store.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: jobs, Now: batch[len(batch)-1].now})
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("dispatch: storage answered %d enqueues with %d results", len(batch), len(res))
	}
	if err == nil {
		for i, c := range batch {
			c.res = res[i]
		}
		return
	}
	if len(batch) == 1 || errors.Is(err, storage.ErrUnavailable) {
		for _, c := range batch {
			c.err = err
		}
		return
	}
	g.store1(ctx, batch[:len(batch)/2])
	g.store1(ctx, batch[len(batch)/2:])
}
