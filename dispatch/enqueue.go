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

// maxEnqueueCalls is how many grouped calls may be in flight at once: a
// few, so one slow call (or a leader the scheduler is slow to wake on a
// busy machine) does not hold up every enqueue behind it.
const maxEnqueueCalls = 4

// enqueueGroup sends the jobs of concurrent Enqueue calls (those without
// an idempotency key) to storage in one EnqueueJobs call: one round trip to
// the storage plugin and one transaction for many API requests. A caller
// that finds fewer than maxEnqueueCalls calls in flight leads: it sends
// what queued up, and when done hands the lead to the next waiter. There is
// no timer: a lone enqueue is sent at once; under load, batches grow with
// the wait for the calls in flight.
type enqueueGroup struct {
	store storage.Store

	mu      sync.Mutex
	pending []*enqueueCall
	leaders int // callers holding a leader slot (at most maxEnqueueCalls)
}

type enqueueCall struct {
	job  storage.Job
	now  time.Time
	res  storage.EnqueueResult
	err  error
	done chan struct{}
	led  bool          // holds a leader slot (under enqueueGroup.mu)
	lead chan struct{} // closed when this call is handed a leader slot
}

// enqueue stores j and returns its result as EnqueueJobs would for j alone.
func (g *enqueueGroup) enqueue(ctx context.Context, j storage.Job, now time.Time) (storage.EnqueueResult, error) {
	if err := ctx.Err(); err != nil {
		return storage.EnqueueResult{}, err
	}
	c := &enqueueCall{job: j, now: now, done: make(chan struct{}), lead: make(chan struct{})}
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if g.leaders < maxEnqueueCalls {
		g.leaders++
		c.led = true
	} else {
		g.mu.Unlock()
		select {
		case <-c.done:
		case <-c.lead:
		}
		g.mu.Lock()
		if !c.led {
			g.mu.Unlock()
			return c.res, c.err
		}
	}
	// c holds a leader slot: send batches until c is written or nothing is
	// left, then pass the slot to a waiter. The batches are written
	// whatever becomes of this request: other callers wait for them.
	sctx := context.WithoutCancel(ctx)
	for len(g.pending) > 0 {
		n := min(len(g.pending), maxEnqueueBatch)
		batch := g.pending[:n:n]
		g.pending = g.pending[n:]
		g.mu.Unlock()
		g.send(sctx, batch)
		g.mu.Lock()
		if isClosed(c.done) {
			break
		}
	}
	g.leaders--
	for _, w := range g.pending {
		if !w.led {
			w.led = true
			g.leaders++
			close(w.lead)
			break
		}
	}
	g.mu.Unlock()
	<-c.done // another leader may be writing c
	return c.res, c.err
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
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
