package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

// Quota defaults (docs/dispatch.md, "Quotas").
const (
	DefaultMaxPayloadBytes = 256 << 10 // one job's payload
	DefaultMaxOpenJobs     = 100_000   // a workspace's queued and leased jobs
	DefaultMaxOpenBytes    = 1 << 30   // their payload bytes
	// QuotaRetryAfter is the Retry-After of a 429 for a full workspace: its
	// jobs are delivered, or canceled, to make room.
	QuotaRetryAfter = 30 * time.Second
	// usageTTL is how long a workspace's usage read from storage is used,
	// with this node's own enqueues added, before it is read again.
	usageTTL = time.Second
)

// Error codes of quota refusals.
const (
	CodePayloadTooLarge = "payload_too_large"
	CodeQuotaExceeded   = "quota_exceeded"
)

// Quotas bound what one workspace may hold in queues. Zero fields take the
// defaults; a negative field disables that limit.
type Quotas struct {
	MaxPayloadBytes int
	MaxOpenJobs     int
	MaxOpenBytes    int64
}

// UsageSource reads a workspace's open jobs (storage.Store does).
type UsageSource interface {
	JobUsage(ctx context.Context, workspaceID string) (storage.JobUsage, error)
}

func (q Quotas) withDefaults() Quotas {
	if q.MaxPayloadBytes == 0 {
		q.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if q.MaxOpenJobs == 0 {
		q.MaxOpenJobs = DefaultMaxOpenJobs
	}
	if q.MaxOpenBytes == 0 {
		q.MaxOpenBytes = DefaultMaxOpenBytes
	}
	return q
}

// quotaGate checks enqueues against Quotas. Usage is read from storage at
// most once per usageTTL per workspace, and this node's accepted enqueues
// are added meanwhile: enqueues racing on several nodes (or within one
// read) can pass a limit by what they add together, and nothing stored is
// ever removed to enforce it.
type quotaGate struct {
	q     Quotas
	src   UsageSource
	use   *prometheus.GaugeVec
	mu    sync.Mutex
	cache map[string]cachedUsage
	// loading holds a channel per workspace whose usage is being read,
	// closed when the read ends: one read per workspace at a time, not one
	// per waiting request (issue 16: every client re-read it each second).
	loading map[string]chan struct{}
}

type cachedUsage struct {
	u  storage.JobUsage
	at time.Time
}

func newQuotaGate(q Quotas, src UsageSource, reg prometheus.Registerer) *quotaGate {
	g := &quotaGate{q: q.withDefaults(), src: src, cache: map[string]cachedUsage{}, loading: map[string]chan struct{}{},
		// Workspace IDs are server-made, one per workspace an operator
		// created: bounded, unlike queue names.
		use: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rotor_workspace_quota_used_ratio",
			Help: "A workspace's use of its queue quotas (open_jobs, payload_bytes), as a fraction of the limit; updated on enqueue.",
		}, []string{"workspace", "quota"}),
	}
	reg.MustRegister(g.use)
	return g
}

// payload refuses one payload over the size limit (413).
func (g *quotaGate) payload(n int) error {
	if g.q.MaxPayloadBytes > 0 && n > g.q.MaxPayloadBytes {
		return &requestError{status: http.StatusRequestEntityTooLarge, code: CodePayloadTooLarge,
			message: fmt.Sprintf("payload is %d bytes; this server accepts at most %d per job", n, g.q.MaxPayloadBytes)}
	}
	return nil
}

// admit checks a workspace's room for one more job of n payload bytes and,
// when there is room, counts it (429 with Retry-After when there is not).
func (g *quotaGate) admit(ctx context.Context, w http.ResponseWriter, ws string, n int) error {
	if g.src == nil || (g.q.MaxOpenJobs < 0 && g.q.MaxOpenBytes < 0) {
		return nil
	}
	read, err := g.usage(ctx, ws)
	if err != nil {
		return err
	}
	// Checked and counted under the lock, on the newest figures (they may
	// hold enqueues admitted since read): concurrent admits each count.
	g.mu.Lock()
	c, ok := g.cache[ws]
	if !ok || c.at.Before(read.at) {
		c = read
	}
	switch {
	case g.q.MaxOpenJobs > 0 && c.u.OpenJobs+1 > g.q.MaxOpenJobs:
		err = &requestError{status: http.StatusTooManyRequests, code: CodeQuotaExceeded,
			message: fmt.Sprintf("the workspace has %d queued jobs, its limit; retry when some are delivered", c.u.OpenJobs)}
	case g.q.MaxOpenBytes > 0 && c.u.PayloadBytes+int64(n) > g.q.MaxOpenBytes:
		err = &requestError{status: http.StatusTooManyRequests, code: CodeQuotaExceeded,
			message: fmt.Sprintf("the workspace's queued payloads hold %d bytes; %d more would pass its limit of %d", c.u.PayloadBytes, n, g.q.MaxOpenBytes)}
	default:
		c.u.OpenJobs++
		c.u.PayloadBytes += int64(n)
	}
	if len(g.cache) > 10_000 {
		clear(g.cache) // bounded; entries are re-read within usageTTL anyway
	}
	g.cache[ws] = c
	g.mu.Unlock()
	if g.q.MaxOpenJobs > 0 {
		g.use.WithLabelValues(ws, "open_jobs").Set(float64(c.u.OpenJobs) / float64(g.q.MaxOpenJobs))
	}
	if g.q.MaxOpenBytes > 0 {
		g.use.WithLabelValues(ws, "payload_bytes").Set(float64(c.u.PayloadBytes) / float64(g.q.MaxOpenBytes))
	}
	if err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(QuotaRetryAfter/time.Second)))
	}
	return err
}

// usage is the workspace's cached usage, read from storage when older
// than usageTTL. While one request reads it, the others use the figures
// they have (or, having none, wait for that read).
func (g *quotaGate) usage(ctx context.Context, ws string) (cachedUsage, error) {
	for {
		g.mu.Lock()
		c, ok := g.cache[ws]
		if ok && time.Since(c.at) <= usageTTL {
			g.mu.Unlock()
			return c, nil
		}
		if wait, busy := g.loading[ws]; busy {
			g.mu.Unlock()
			if ok {
				return c, nil // a read is under way; these figures are a second old at most
			}
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return cachedUsage{}, ctx.Err()
			}
		}
		done := make(chan struct{})
		g.loading[ws] = done
		g.mu.Unlock()
		u, err := g.src.JobUsage(ctx, ws)
		g.mu.Lock()
		delete(g.loading, ws)
		close(done)
		g.mu.Unlock()
		if err != nil {
			return cachedUsage{}, err
		}
		return cachedUsage{u: u, at: time.Now()}, nil // admit stores it
	}
}

// checkQuota is the enqueue handler's quota check: payload size, then the
// workspace's room.
func (s *Server) checkQuota(ctx context.Context, w http.ResponseWriter, actor vault.Actor, payload int) error {
	if err := s.quota.payload(payload); err != nil {
		return err
	}
	return s.quota.admit(ctx, w, actor.WorkspaceID, payload)
}
