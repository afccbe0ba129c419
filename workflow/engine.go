package workflow

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

// Engine defaults.
const (
	DefaultWorkers      = 64
	DefaultVisibility   = 2 * time.Minute
	DefaultPollInterval = 250 * time.Millisecond
	leaseBatch          = 64
)

// Options configure an Engine.
type Options struct {
	Store storage.Store
	// Actors checks, before each request step, that the key that started
	// the run may still act for its workspace: the vault (*vault.Vault),
	// as for the dispatcher. Required.
	Actors Actors
	// ProxyURL is the resolving proxy (loopback) and InternalToken its
	// dispatcher credential, shared with the job dispatcher.
	ProxyURL      string
	InternalToken string
	// Transport, when set, carries step requests instead of HTTP to
	// ProxyURL: the co-located proxy's InternalTransport (see
	// dispatch.Options.Transport).
	Transport  http.RoundTripper
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	Rand       func() float64
	// Workers bounds the runs executing at once (sleeping and waiting runs
	// take none).
	Workers      int
	Visibility   time.Duration
	PollInterval time.Duration
	// Owner names this node in leases (a random id when empty).
	Owner string
	// SignAudit gives the engine's audit rows (run completed, failed) the
	// vault's row nonce and MAC (vault.Vault.SignAudit); rotor serve always
	// sets it, so verify can tell them from forged rows.
	SignAudit func([]storage.AuditEvent)
}

// Actors is what the engine asks about the key that started a run.
// *vault.Vault implements it: ActorActive answers from a short per-key
// cache shared with the dispatcher (no storage read per step), cleared at
// once by a revocation on this node.
type Actors interface {
	// ActorActive: nil when keyID may act for workspaceID; an error
	// wrapping vault.ErrActorRevoked when it may not; any other error when
	// that could not be told.
	ActorActive(ctx context.Context, workspaceID, keyID string) error
}

// Engine leases due runs and executes their steps.
type Engine struct {
	o      Options
	client *http.Client
	log    *slog.Logger
	m      *metrics
	wake   chan struct{}

	mu      sync.Mutex
	running int
	busyWS  map[string]int
}

// NewEngine returns an Engine; Run starts it.
func NewEngine(o Options) (*Engine, error) {
	if o.Actors == nil {
		return nil, fmt.Errorf("workflow: %w", ErrNoActors)
	}
	client, err := dispatch.DeliveryClient(o.Transport, o.ProxyURL, 256)
	if err != nil {
		return nil, fmt.Errorf("workflow: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Visibility <= 0 {
		o.Visibility = DefaultVisibility
	}
	// A request step may take MaxRequestTimeout: the lease must outlast it.
	o.Visibility = max(o.Visibility, MaxRequestTimeout+10*time.Second)
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Owner == "" {
		b := make([]byte, 6)
		_, _ = cryptoRead(b)
		o.Owner = "node_" + hex.EncodeToString(b)
	}
	e := &Engine{
		o: o, client: client,
		log: o.Logger, wake: make(chan struct{}, 1), busyWS: map[string]int{},
	}
	e.m = newMetrics(o.Registerer, o.Store)
	return e, nil
}

var cryptoRead = crand.Read

// Notify wakes the engine (a run was started, signaled or retried) instead
// of waiting for its next poll.
func (e *Engine) Notify() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run executes runs until ctx ends, then waits for the steps in flight (a
// step's request is abandoned after its timeout; its run's lease expires
// and another node, or this one after a restart, resumes it). It owns
// every goroutine it starts.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	freed := make(chan struct{}, 1)
	failing := false
	for {
		free := e.o.Workers - e.runningCount()
		if free > 0 && ctx.Err() == nil {
			runs, err := e.o.Store.LeaseRuns(ctx, storage.LeaseRunsArgs{Owner: e.o.Owner, Now: e.o.Now(), Limit: min(free, leaseBatch),
				Visibility: e.o.Visibility, WorkspaceSlots: e.wsSlots()})
			switch {
			case err != nil && ctx.Err() == nil:
				if !failing {
					e.log.Error("leasing workflow runs failed; runs pause until storage answers", "err", err)
				}
				failing = true
			case err == nil && failing:
				failing = false
				e.log.Info("leasing workflow runs again")
			}
			for _, r := range runs {
				e.start(r.WorkspaceID)
				wg.Go(func() {
					defer e.done(r.WorkspaceID, freed)
					e.execute(ctx, r)
				})
			}
			if len(runs) > 0 {
				continue
			}
		}
		select {
		case <-ctx.Done():
			e.client.CloseIdleConnections()
			return nil
		case <-e.wake:
		case <-freed:
		case <-time.After(e.o.PollInterval):
		}
	}
}

func (e *Engine) runningCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running
}

// wsSlots leaves an eighth of the workers to other workspaces whatever one
// workspace does (the dispatcher's rule).
func (e *Engine) wsSlots() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	limit := dispatch.DefaultWorkspaceWorkers(e.o.Workers)
	out := make(map[string]int, len(e.busyWS))
	for ws, n := range e.busyWS {
		out[ws] = max(0, limit-n)
	}
	return out
}

func (e *Engine) start(ws string) {
	e.mu.Lock()
	e.running++
	e.busyWS[ws]++
	e.mu.Unlock()
	e.m.inflight.Inc()
}

func (e *Engine) done(ws string, freed chan struct{}) {
	e.mu.Lock()
	e.running--
	if e.busyWS[ws]--; e.busyWS[ws] <= 0 {
		delete(e.busyWS, ws)
	}
	e.mu.Unlock()
	e.m.inflight.Dec()
	select {
	case freed <- struct{}{}:
	default:
	}
}

// planCache would save parsing a run's definition per lease; definitions
// are small, so the engine parses each time and keeps no state per run.
func planOf(r *storage.WorkflowRun) (*plan, error) {
	d, err := ParseDefinition(r.Definition)
	if err != nil {
		return nil, err
	}
	return compile(d)
}

// execute runs a leased run's steps from its current one until the run
// finishes, sleeps, waits, schedules a retry, or loses its lease.
func (e *Engine) execute(ctx context.Context, r storage.WorkflowRun) {
	p, err := planOf(&r)
	if err != nil {
		// Stored definitions were validated; one that no longer compiles
		// (a newer engine's) fails the run rather than looping.
		now := e.o.Now()
		r.Status, r.ErrorCode, r.FinishedAt, r.WakeAt = storage.RunFailed, "definition_invalid", now, time.Time{}
		e.checkpoint(ctx, &r, true, e.finishAudit(r, now))
		return
	}
	for len(r.Steps) < len(p.steps) {
		r.Steps = append(r.Steps, storage.StepState{ID: p.steps[len(r.Steps)].ID, Status: storage.StepPending})
	}
	for ctx.Err() == nil {
		if r.Step >= len(p.steps) {
			now := e.o.Now()
			r.Status, r.FinishedAt, r.WakeAt, r.WaitingFor = storage.RunCompleted, now, time.Time{}, ""
			e.checkpoint(ctx, &r, true, e.finishAudit(r, now))
			return
		}
		ps := p.steps[r.Step]
		st := &r.Steps[r.Step]
		var cont bool
		switch ps.kind {
		case KindRequest:
			cont = e.requestStep(ctx, &r, ps, st)
		case KindSleep:
			cont = e.sleepStep(ctx, &r, ps, st)
		case KindWait:
			cont = e.waitStep(ctx, &r, ps, st)
		}
		if !cont {
			return
		}
	}
	e.release(ctx, &r)
}

// release gives a run's lease back at shutdown, due at once, so a
// restarted node (or another) resumes it without waiting for the lease to
// expire. Its current step runs again (at least once).
func (e *Engine) release(ctx context.Context, r *storage.WorkflowRun) {
	r.Status, r.WakeAt, r.WaitingFor = storage.RunRunning, e.o.Now(), ""
	e.checkpoint(ctx, r, true, nil)
}

// checkpoint stores the run's state under its lease; false when the lease
// is lost (the run was canceled, retried or taken over) or storage failed:
// the caller stops, and the run resumes from its last checkpoint.
func (e *Engine) checkpoint(ctx context.Context, r *storage.WorkflowRun, release bool, audit []storage.AuditEvent) bool {
	now := e.o.Now()
	r.UpdatedAt = now
	stored, err := e.o.Store.CheckpointRun(context.WithoutCancel(ctx), storage.CheckpointRunArgs{Run: *r, LeaseUntil: now.Add(e.o.Visibility),
		Release: release, At: now, Audit: audit})
	if err != nil {
		if !errors.Is(err, storage.ErrConflict) {
			e.log.Warn("workflow checkpoint failed; the run resumes when its lease expires", "run_id", r.ID, "err", err)
		}
		return false
	}
	*r = stored
	if storage.RunFinished(stored.Status) {
		e.m.finished.WithLabelValues(stored.Status).Inc()
	}
	return true
}

// complete marks the current step completed and moves on.
func (e *Engine) complete(st *storage.StepState, r *storage.WorkflowRun, output json.RawMessage, truncated bool, now time.Time) {
	st.Status, st.Output, st.OutputTruncated, st.ErrorCode, st.FinishedAt = storage.StepCompleted, output, truncated, "", now
	r.Step++
	r.Status, r.WakeAt, r.WaitingFor = storage.RunRunning, now, ""
	if r.Step < len(r.Steps) {
		r.Steps[r.Step].Status = storage.StepRunning
		r.Steps[r.Step].StartedAt = now
	}
}

// starterCheckRetry is how long a step waits when the key that started
// its run could not be looked up.
const starterCheckRetry = 5 * time.Second

// starterRevoked reports whether the key that started r is revoked, or
// gone, or of another workspace (the run must not act for it). The answer
// is the vault's cached one (Options.Actors), as for a job's delivery.
func (e *Engine) starterRevoked(ctx context.Context, r *storage.WorkflowRun) (bool, error) {
	switch err := e.o.Actors.ActorActive(ctx, r.WorkspaceID, r.StartedBy); {
	case errors.Is(err, vault.ErrActorRevoked):
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil
}

// fail marks the current step and the run failed.
func (e *Engine) fail(ctx context.Context, r *storage.WorkflowRun, st *storage.StepState, code string, now time.Time) {
	st.Status, st.ErrorCode, st.FinishedAt = storage.StepFailed, code, now
	r.Status, r.ErrorCode, r.FinishedAt, r.WakeAt, r.WaitingFor = storage.RunFailed, code, now, time.Time{}, ""
	e.checkpoint(ctx, r, true, e.finishAudit(*r, now))
}

func (e *Engine) requestStep(ctx context.Context, r *storage.WorkflowRun, ps planStep, st *storage.StepState) bool {
	start := e.o.Now()
	if st.StartedAt.IsZero() {
		st.StartedAt = start
	}
	st.Status = storage.StepRunning
	n := len(st.Attempts) + 1
	// A run acts for the key that started it (the proxy records that key
	// as the actor): once the key is revoked, its runs send nothing more.
	switch revoked, err := e.starterRevoked(ctx, r); {
	case err != nil:
		// Storage failing: try again shortly rather than send unchecked.
		e.log.Warn("workflow step postponed: the starting key could not be checked", "run_id", r.ID, "step_id", ps.ID, "err", err)
		r.Status, r.WakeAt, r.WaitingFor = storage.RunRunning, start.Add(starterCheckRetry), ""
		e.checkpoint(ctx, r, true, nil)
		return false
	case revoked:
		st.Attempts = append(st.Attempts, storage.Attempt{N: n, StartedAt: start, ErrorCode: ErrCodeActorRevoked})
		e.m.attempts.WithLabelValues(OutcomeFailed).Inc()
		e.log.Info("workflow step failed", "run_id", r.ID, "step_id", ps.ID, "workspace_id", r.WorkspaceID, "error_code", ErrCodeActorRevoked)
		e.fail(ctx, r, st, ErrCodeActorRevoked, start)
		return false
	}
	b, err := build(ps, r)
	if err != nil {
		// Data, not the network: retrying cannot help.
		st.Attempts = append(st.Attempts, storage.Attempt{N: n, StartedAt: start, ErrorCode: ErrCodeExpression})
		e.m.attempts.WithLabelValues(OutcomeFailed).Inc()
		e.log.Info("workflow step failed", "run_id", r.ID, "step_id", ps.ID, "workspace_id", r.WorkspaceID, "error_code", ErrCodeExpression, "err", err)
		e.fail(ctx, r, st, ErrCodeExpression, start)
		return false
	}
	res := e.send(ctx, r, ps, b, n, start)
	end := e.o.Now()
	if ctx.Err() != nil && res.code != "" {
		// Shutting down mid-request: no attempt to record.
		e.release(ctx, r)
		return false
	}
	st.Attempts = append(st.Attempts, storage.Attempt{N: n, StartedAt: start, Duration: end.Sub(start), StatusCode: res.status, ErrorCode: res.code})
	e.m.stepLatency.Observe(end.Sub(start).Seconds())
	used := n - st.RetryFrom
	outcome := OutcomeCompleted
	switch {
	case res.code == "":
		e.complete(st, r, res.output, res.truncated, end)
	case res.status == http.StatusGone || used >= ps.maxAttempts:
		outcome = OutcomeFailed
	default:
		outcome = OutcomeRetry
	}
	e.m.attempts.WithLabelValues(outcome).Inc()
	e.log.Info("workflow step attempt", "run_id", r.ID, "step_id", ps.ID, "workspace_id", r.WorkspaceID, "attempt", n,
		"status", res.status, "error_code", res.code, "outcome", outcome, "duration_ms", float64(end.Sub(start).Microseconds())/1000)
	switch outcome {
	case OutcomeCompleted:
		return e.checkpoint(ctx, r, false, nil)
	case OutcomeFailed:
		e.fail(ctx, r, st, res.code, end)
		return false
	}
	// A retry later: the run holds no lease and no worker meanwhile.
	delay := dispatch.Backoff(used, ps.backoffBase, ps.backoffCap, e.o.Rand)
	if res.status == http.StatusTooManyRequests || res.status == http.StatusServiceUnavailable {
		if ra, ok := dispatch.RetryAfter(res.header, end); ok {
			delay = ra
		}
	}
	r.Status, r.WakeAt = storage.RunRunning, end.Add(delay)
	e.checkpoint(ctx, r, true, nil)
	return false
}

func (e *Engine) sleepStep(ctx context.Context, r *storage.WorkflowRun, ps planStep, st *storage.StepState) bool {
	now := e.o.Now()
	if st.Status != storage.StepSleeping {
		st.Status = storage.StepSleeping
		if st.StartedAt.IsZero() {
			st.StartedAt = now
		}
	}
	until := st.StartedAt.Add(ps.sleep)
	if !now.Before(until) {
		e.complete(st, r, nil, false, now)
		return e.checkpoint(ctx, r, false, nil)
	}
	r.Status, r.WakeAt, r.WaitingFor = storage.RunWaiting, until, ""
	e.checkpoint(ctx, r, true, nil)
	return false
}

func (e *Engine) waitStep(ctx context.Context, r *storage.WorkflowRun, ps planStep, st *storage.StepState) bool {
	now := e.o.Now()
	if st.StartedAt.IsZero() {
		st.StartedAt = now
	}
	// A signal sent before the wait began is kept: take the first unused.
	for i := range r.Signals {
		if sg := &r.Signals[i]; sg.Name == ps.WaitForSignal && sg.UsedBy == "" {
			sg.UsedBy = ps.ID
			data := sg.Data
			if len(data) == 0 {
				data = json.RawMessage("null")
			}
			e.complete(st, r, data, false, now)
			return e.checkpoint(ctx, r, false, nil)
		}
	}
	var deadline time.Time
	if ps.timeout > 0 {
		deadline = st.StartedAt.Add(ps.timeout)
		if !now.Before(deadline) {
			st.Attempts = append(st.Attempts, storage.Attempt{N: len(st.Attempts) + 1, StartedAt: st.StartedAt, Duration: now.Sub(st.StartedAt), ErrorCode: ErrCodeWaitTimeout})
			e.fail(ctx, r, st, ErrCodeWaitTimeout, now)
			return false
		}
	}
	st.Status = storage.StepWaiting
	r.Status, r.WakeAt, r.WaitingFor = storage.RunWaiting, deadline, ps.WaitForSignal
	e.checkpoint(ctx, r, true, nil)
	return false
}

// finishAudit is the audit row of a run that finished (completed or
// failed); its actor is the key that started the run.
func (e *Engine) finishAudit(r storage.WorkflowRun, now time.Time) []storage.AuditEvent {
	typ := EventRunCompleted
	out := map[string]any{"status": r.Status}
	if r.Status == storage.RunFailed {
		typ = EventRunFailed
		out["error_code"] = r.ErrorCode
		if r.Step < len(r.Steps) {
			out["step_id"] = r.Steps[r.Step].ID
		}
	}
	evs := []storage.AuditEvent{runAudit(r.StartedBy, typ, r, now, nil, out)}
	if e.o.SignAudit != nil {
		e.o.SignAudit(evs)
	}
	return evs
}

func runAudit(actor, typ string, r storage.WorkflowRun, now time.Time, in, out map[string]any) storage.AuditEvent {
	if in == nil {
		in = map[string]any{}
	}
	in["workflow"], in["version"] = r.Workflow, r.Version
	ev := storage.AuditEvent{OccurredAt: now.UTC(), WorkspaceID: r.WorkspaceID, ActorID: actor, EventType: typ, ResourceType: ResourceRun, ResourceID: r.ID}
	ev.Input, _ = json.Marshal(in)
	if out != nil {
		ev.Output, _ = json.Marshal(out)
	}
	return ev
}

// NewRunID returns a time-ordered run id (retention relies on the order).
func NewRunID(now time.Time) string {
	var b [14]byte
	ms := uint64(now.UnixMilli())
	for i := 7; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = cryptoRead(b[8:])
	return "run_" + hex.EncodeToString(b[2:])
}
