package api

import (
	"context"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/storage"
)

// slowUsage counts reads and takes a while to answer, like a storage call
// under load.
type slowUsage struct {
	reads atomic.Int64
	u     storage.JobUsage
}

func (s *slowUsage) JobUsage(ctx context.Context, ws string) (storage.JobUsage, error) {
	if err := ctx.Err(); err != nil {
		return storage.JobUsage{}, err
	}
	s.reads.Add(1)
	time.Sleep(20 * time.Millisecond)
	return s.u, nil
}

// TestQuotaGateOneReadAndExactCount: concurrent enqueues to one workspace
// read its usage from storage once, not once each (issue 16), and each
// admitted enqueue is counted: with room for 10 jobs, exactly 10 of 64
// concurrent ones pass (before, each wrote back its own copy and most
// counts were lost).
func TestQuotaGateOneReadAndExactCount(t *testing.T) {
	src := &slowUsage{u: storage.JobUsage{OpenJobs: 5}}
	g := newQuotaGate(Quotas{MaxOpenJobs: 15, MaxOpenBytes: -1}, src, prometheus.NewRegistry())
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if g.admit(context.Background(), httptest.NewRecorder(), "ws_1", 10) == nil {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	if n := src.reads.Load(); n != 1 {
		t.Errorf("%d usage reads for 64 concurrent enqueues, want 1", n)
	}
	if n := admitted.Load(); n != 10 {
		t.Errorf("%d admitted, want 10 (room for 10 more)", n)
	}
	// A canceled request waiting for the first read gives up.
	g2 := newQuotaGate(Quotas{MaxOpenJobs: 15, MaxOpenBytes: -1}, src, prometheus.NewRegistry())
	go g2.admit(context.Background(), httptest.NewRecorder(), "ws_2", 1)
	time.Sleep(5 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g2.admit(ctx, httptest.NewRecorder(), "ws_2", 1); err == nil {
		t.Error("a canceled waiter was admitted")
	}
}
