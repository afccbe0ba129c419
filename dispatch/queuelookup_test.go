package dispatch_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
)

// harnessStore, when set, wraps the store the next harness's dispatcher
// uses (the service and vault keep the real one).
var harnessStore func(storage.Store) storage.Store

// queueDown fails GetQueue while down is set, as a database restart does
// between a lease and the queue's look-up.
type queueDown struct {
	storage.Store
	down *atomic.Bool
}

func (s queueDown) GetQueue(ctx context.Context, ws, name string) (storage.Queue, error) {
	if s.down.Load() {
		return storage.Queue{}, fmt.Errorf("test: %w", storage.ErrUnavailable)
	}
	return s.Store.GetQueue(ctx, ws, name)
}

// TestQueueLookupFailureGivesJobBack: a job leased just before storage
// failed, whose queue could then not be read, is given back and delivered
// once storage answers, not held for its whole lease (the PostgreSQL
// restart test lost such jobs: they stayed leased past its wait).
func TestQueueLookupFailureGivesJobBack(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	harnessStore = func(s storage.Store) storage.Store { return queueDown{s, &down} }
	defer func() { harnessStore = nil }()
	h := newHarness(t)
	h.queue("q", dispatch.QueueSpec{})
	h.start()
	t0 := h.clock.Now()
	j := h.enqueue("q", `{}`)
	j = h.waitJob(j.ID, "given back", func(j storage.Job) bool { return j.Status == storage.JobQueued && j.RunAt.After(t0) })
	if len(j.Attempts) != 0 || h.calls() != 0 {
		t.Fatalf("given back: %d attempts, %d calls", len(j.Attempts), h.calls())
	}
	down.Store(false)
	// Well inside the harness's one-minute lease.
	h.clock.Advance(5 * time.Second)
	j = h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	if len(j.Attempts) != 1 || h.calls() != 1 {
		t.Fatalf("after storage answered: %d attempts, %d calls", len(j.Attempts), h.calls())
	}
}
