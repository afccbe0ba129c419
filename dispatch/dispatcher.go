package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

// Dispatcher defaults.
const (
	DefaultWorkers      = 256
	DefaultLeaseBatch   = 128
	DefaultVisibility   = 2 * time.Minute
	DefaultPollInterval = 100 * time.Millisecond
	completeBatch       = 256
	completeWait        = 5 * time.Millisecond
	// Retrying a results write while storage is unavailable: about 30 s.
	completeRetries  = 20
	completeRetryMin = 50 * time.Millisecond
	completeRetryMax = 2 * time.Second
	queueCacheTTL    = time.Second
	// actorCheckRetry: how long a job waits when its enqueuing key could
	// not be checked (storage failing), or its refusal could not be audited.
	actorCheckRetry = 5 * time.Second
	// queueLookupRetry: how long a leased job whose queue could not be
	// read (storage failing) waits before it is due again.
	queueLookupRetry = time.Second
	userAgent        = "Rotor-Dispatch/1"
)

// Options configure a Dispatcher.
type Options struct {
	Store storage.Store
	// Actors checks, before each attempt, that the key that enqueued the
	// job may still act for its workspace, and audits a refusal: the
	// vault (*vault.Vault). Required.
	Actors Actors
	// ProxyURL is the resolving proxy (loopback), and InternalToken its
	// dispatcher credential.
	ProxyURL      string
	InternalToken string
	// Transport, when set, carries deliveries instead of HTTP to ProxyURL
	// (which may then be empty): the co-located proxy's
	// (*proxy.Proxy).InternalTransport, which runs the proxy's request
	// handling in this process without a loopback socket.
	Transport    http.RoundTripper
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	Now          func() time.Time
	Rand         func() float64
	Workers      int
	LeaseBatch   int
	Visibility   time.Duration
	PollInterval time.Duration
	// DrainTimeout bounds how long Run waits for running attempts after
	// its context ends; then they are aborted (and retried later).
	DrainTimeout time.Duration
	// WorkspaceWorkers is the most workers one workspace may hold, so the
	// others always find some free (DefaultWorkspaceWorkers when 0).
	WorkspaceWorkers int
}

// Actors is what the dispatcher asks about the key that enqueued a job.
// *vault.Vault implements it: ActorActive answers from a short per-key
// cache (no storage read per job), cleared by a revocation on this node.
type Actors interface {
	// ActorActive: nil when keyID may act for workspaceID; an error
	// wrapping vault.ErrActorRevoked when it may not; any other error when
	// that could not be told.
	ActorActive(ctx context.Context, workspaceID, keyID string) error
	// RecordRefusal queues the audit row of a job not sent.
	RecordRefusal(ctx context.Context, r vault.Refusal) error
}

// DefaultWorkspaceWorkers leaves an eighth of the workers (at least one)
// to the other workspaces whatever one workspace does.
func DefaultWorkspaceWorkers(workers int) int { return max(1, workers-max(1, workers/8)) }

// Dispatcher leases due jobs and delivers them through the proxy.
type Dispatcher struct {
	o      Options
	client *http.Client
	log    *slog.Logger
	m      *metrics
	wake   chan struct{}

	mu       sync.Mutex
	inflight map[string]int // queue key -> attempts running
	wsBusy   map[string]int // workspace -> attempts running
	queues   map[string]cachedQueue
	running  int
	results  chan storage.AttemptResult
}

type cachedQueue struct {
	q       storage.Queue
	fetched time.Time
	limiter *limiter
}

// New returns a Dispatcher; Run starts it.
func New(o Options) (*Dispatcher, error) {
	if o.Actors == nil {
		return nil, fmt.Errorf("dispatch: %w", ErrNoActors)
	}
	client, err := DeliveryClient(o.Transport, o.ProxyURL, 1024)
	if err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
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
		o.Rand = defaultRand
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.LeaseBatch <= 0 {
		o.LeaseBatch = DefaultLeaseBatch
	}
	if o.Visibility <= 0 {
		o.Visibility = DefaultVisibility
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 15 * time.Second
	}
	if o.WorkspaceWorkers <= 0 {
		o.WorkspaceWorkers = DefaultWorkspaceWorkers(o.Workers)
	}
	d := &Dispatcher{
		o: o, client: client,
		log: o.Logger, wake: make(chan struct{}, 1), inflight: map[string]int{}, wsBusy: map[string]int{}, queues: map[string]cachedQueue{},
		results: make(chan storage.AttemptResult, completeBatch*4),
	}
	d.m = newMetrics(o.Registerer, o.Store)
	return d, nil
}

// Notify wakes the dispatcher (after an enqueue) instead of waiting for the
// next poll.
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers jobs until ctx ends, then waits for running attempts and
// records their results. It owns every goroutine it starts.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() { d.completer(done) })
	var attempts sync.WaitGroup
	slotFreed := make(chan struct{}, 1)
	// Attempts outlive ctx (a shutdown lets them finish, up to DrainTimeout).
	attemptCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	leaseFailing := false
	for {
		free := d.o.Workers - d.runningCount()
		if free > 0 && ctx.Err() == nil {
			slots, wsSlots := d.slots()
			jobs, err := d.o.Store.LeaseJobs(ctx, storage.LeaseJobsArgs{Now: d.o.Now(), Limit: min(free, d.o.LeaseBatch), Visibility: d.o.Visibility, Slots: slots, WorkspaceSlots: wsSlots})
			if err != nil && ctx.Err() == nil {
				if !leaseFailing {
					d.log.Error("leasing jobs failed; dispatch pauses until storage answers", "err", err)
				}
				leaseFailing = true
			} else if err == nil && leaseFailing {
				leaseFailing = false
				d.log.Info("leasing jobs again")
			}
			if len(jobs) > 0 {
				d.startLeased(attemptCtx, jobs, &attempts, slotFreed)
				continue
			}
		}
		select {
		case <-ctx.Done():
			drained := make(chan struct{})
			go func() { attempts.Wait(); close(drained) }()
			select {
			case <-drained:
			case <-time.After(d.o.DrainTimeout):
				d.log.Warn("dispatch: aborting attempts still running at shutdown; they will be retried")
				abort()
				<-drained
			}
			close(done)
			wg.Wait()
			d.client.CloseIdleConnections()
			return nil
		case <-d.wake:
		case <-slotFreed:
		case <-time.After(d.o.PollInterval):
		}
	}
}

func (d *Dispatcher) runningCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running
}

// slots is what each known queue can start now (free concurrency, and rate
// budget), and each busy workspace's free share of the workers, for the
// lease call: the store leases nothing this node would have to hold back.
func (d *Dispatcher) slots() (map[string]int, map[string]int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	s := make(map[string]int, len(d.queues))
	for k, cq := range d.queues {
		n := max(0, cq.q.Concurrency-d.inflight[k])
		if cq.limiter != nil && cq.limiter.rate > 0 {
			n = min(n, cq.limiter.available(now))
		}
		s[k] = n
	}
	ws := make(map[string]int, len(d.wsBusy))
	for w, n := range d.wsBusy {
		ws[w] = max(0, d.o.WorkspaceWorkers-n)
	}
	return s, ws
}

// queue returns a queue's settings, cached for a second.
func (d *Dispatcher) queue(ctx context.Context, ws, name string) (cachedQueue, error) {
	k := storage.QueueKey(ws, name)
	d.mu.Lock()
	cq, ok := d.queues[k]
	d.mu.Unlock()
	if ok && time.Since(cq.fetched) < queueCacheTTL {
		return cq, nil
	}
	q, err := d.o.Store.GetQueue(ctx, ws, name)
	if err != nil {
		return cachedQueue{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	lim := cq.limiter
	if lim == nil || lim.rate != q.RatePerSecond {
		lim = newLimiter(q.RatePerSecond)
	}
	cq = cachedQueue{q: q, fetched: time.Now(), limiter: lim}
	d.queues[k] = cq
	return cq, nil
}

// startLeased starts the jobs just leased. The lease call was bounded by
// what each queue could start, so each normally starts at once; one that
// cannot after all (its queue's settings changed meanwhile) is given back
// to the store rather than held: a job that cannot run holds no worker.
func (d *Dispatcher) startLeased(ctx context.Context, jobs []storage.Job, attempts *sync.WaitGroup, slotFreed chan struct{}) {
	for _, j := range jobs {
		if j.Leases > len(j.Attempts)+1 {
			d.m.leasesExpired.Add(float64(j.Leases - len(j.Attempts) - 1))
		}
		cq, err := d.queue(ctx, j.WorkspaceID, j.Queue)
		if errors.Is(err, storage.ErrNotFound) {
			// The queue is gone: its jobs were canceled with it.
			continue
		}
		if err != nil {
			// Storage failed between the lease and the queue's look-up (a
			// database restart): give the lease back, due again shortly,
			// rather than hold the job for its whole lease (Visibility,
			// minutes). The completer retries the release until storage
			// answers.
			d.log.Warn("queue look-up failed after leasing; job given back", LogFieldJobID, j.ID, LogFieldWorkspace, j.WorkspaceID, "err", err)
			d.m.released.Inc()
			now := d.o.Now()
			d.results <- released(j, now, now.Add(queueLookupRetry))
			continue
		}
		k := storage.QueueKey(j.WorkspaceID, j.Queue)
		d.mu.Lock()
		ok := d.inflight[k] < cq.q.Concurrency && d.wsBusy[j.WorkspaceID] < d.o.WorkspaceWorkers && cq.limiter.allow(time.Now())
		if ok {
			d.inflight[k]++
			d.wsBusy[j.WorkspaceID]++
			d.running++
			d.m.inflight.Inc()
		}
		d.mu.Unlock()
		if !ok {
			d.m.released.Inc()
			d.results <- released(j, d.o.Now(), time.Time{})
			continue
		}
		attempts.Go(func() {
			res := d.attempt(ctx, cq.q, j)
			d.results <- res
			d.mu.Lock()
			d.inflight[k]--
			if d.inflight[k] == 0 {
				delete(d.inflight, k)
			}
			if d.wsBusy[j.WorkspaceID]--; d.wsBusy[j.WorkspaceID] == 0 {
				delete(d.wsBusy, j.WorkspaceID)
			}
			d.running--
			d.mu.Unlock()
			d.m.inflight.Dec()
			select {
			case slotFreed <- struct{}{}:
			default:
			}
		})
	}
}

// completer writes attempt results in batches (one transaction each).
func (d *Dispatcher) completer(done chan struct{}) {
	var batch []storage.AttemptResult
	flush := func() {
		if len(batch) == 0 {
			return
		}
		// Background context: results of attempts already made are written
		// even while shutting down.
		// While storage is unavailable (a database restart), keep trying for
		// a while: the leases are still ours, and giving up would hold every
		// job in this batch until its lease expires.
		wait := completeRetryMin
		for try := 0; ; try++ {
			err := d.o.Store.CompleteAttempts(context.Background(), batch)
			if err == nil {
				break
			}
			if !errors.Is(err, storage.ErrUnavailable) || try >= completeRetries {
				// The leases expire and the jobs are delivered again: at least once.
				d.log.Error("recording attempt results failed; the jobs will be retried when their leases expire", "results", len(batch), "err", err)
				break
			}
			time.Sleep(wait)
			wait = min(2*wait, completeRetryMax)
		}
		batch = batch[:0]
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case r := <-d.results:
			batch = append(batch, r)
			if len(batch) >= completeBatch {
				flush()
			} else if len(batch) == 1 {
				timer.Reset(completeWait)
			}
		case <-timer.C:
			flush()
		case <-done:
			for {
				select {
				case r := <-d.results:
					batch = append(batch, r)
				default:
					flush()
					return
				}
			}
		}
	}
}

// attempt makes one delivery attempt and decides the job's next state.
func (d *Dispatcher) attempt(ctx context.Context, q storage.Queue, j storage.Job) storage.AttemptResult {
	n := len(j.Attempts) + 1
	start := d.o.Now()
	att := storage.Attempt{N: n, StartedAt: start}
	var status int
	var code string
	var hdr http.Header
	// A job acts for the key that enqueued it (the proxy resolves and signs
	// on its behalf): once that key is revoked, its jobs send nothing more,
	// retries included. Jobs with no enqueuer are the system's own.
	if err := d.enqueuerActive(ctx, j); err == nil {
		status, code, hdr = d.deliver(ctx, q, j, n, start, &att)
	} else if !errors.Is(err, vault.ErrActorRevoked) {
		return d.postpone(j, start, "dispatch attempt postponed: the enqueuing key could not be checked", err)
	} else if err := d.refused(ctx, q, j, n); err != nil {
		return d.postpone(j, start, "dispatch attempt postponed: its refusal could not be audited", err)
	} else {
		code, att.Error = ErrCodeActorRevoked, "not sent: the API key that enqueued the job was revoked"
	}
	end := d.o.Now()
	att.Duration, att.StatusCode, att.ErrorCode = end.Sub(start), status, code
	res := storage.AttemptResult{WorkspaceID: j.WorkspaceID, JobID: j.ID, LeaseToken: j.LeaseToken, At: end, Attempt: att}
	used := n - j.RetryFrom
	outcome := OutcomeRetry
	switch {
	case code == ErrCodeActorRevoked:
		res.Status, outcome = storage.JobDead, OutcomeDead
	case code == "" && status >= 200 && status < 300:
		res.Status, outcome = storage.JobDelivered, OutcomeDelivered
		d.m.latency.Observe(end.Sub(j.CreatedAt).Seconds())
	case status == http.StatusGone:
		res.Status, outcome = storage.JobDead, OutcomeDead
		res.Attempt.ErrorCode = ErrCodeGone
	case used >= q.MaxAttempts:
		res.Status, outcome = storage.JobDead, OutcomeDead
	default:
		res.Status = storage.JobQueued
		delay := Backoff(used, q.BackoffBase, q.BackoffCap, d.o.Rand)
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			if ra, ok := RetryAfter(hdr, end); ok {
				delay = ra
			}
		}
		res.RunAt = end.Add(delay)
	}
	d.m.attempts.WithLabelValues(outcome).Inc()
	attrs := []slog.Attr{
		slog.String(LogFieldJobID, j.ID), slog.String(LogFieldQueue, j.Queue), slog.String(LogFieldWorkspace, j.WorkspaceID),
		slog.Int(LogFieldAttempt, n), slog.Int(LogFieldStatus, status),
		slog.Float64(LogFieldDurationMS, float64(res.Attempt.Duration.Microseconds())/1000), slog.String(LogFieldOutcome, outcome),
	}
	if res.Attempt.ErrorCode != "" {
		attrs = append(attrs, slog.String(LogFieldErrorCode, res.Attempt.ErrorCode))
	}
	if res.Status == storage.JobQueued {
		attrs = append(attrs, slog.Time(LogFieldNextRunAt, res.RunAt))
	}
	d.log.LogAttrs(context.Background(), slog.LevelInfo, LogMsgAttempt, attrs...)
	return res
}

func (d *Dispatcher) enqueuerActive(ctx context.Context, j storage.Job) error {
	if j.EnqueuedBy == "" {
		return nil
	}
	return d.o.Actors.ActorActive(ctx, j.WorkspaceID, j.EnqueuedBy)
}

// refused audits a job not sent because its enqueuing key was revoked.
func (d *Dispatcher) refused(ctx context.Context, q storage.Queue, j storage.Job, n int) error {
	host := ""
	if u, err := url.Parse(q.CallbackURL); err == nil {
		host = u.Host
	}
	return d.o.Actors.RecordRefusal(ctx, vault.Refusal{WorkspaceID: j.WorkspaceID, ActorID: j.EnqueuedBy,
		EventType: EventJobRefused, ResourceType: ResourceJob, ResourceID: j.ID, Host: host, Reason: ErrCodeActorRevoked,
		Extra: map[string]string{"queue": j.Queue, "attempt": strconv.Itoa(n)}})
}

// postpone gives the lease back, the job due again after actorCheckRetry,
// with no attempt counted: nothing was sent, and the job is not sent
// unchecked.
func (d *Dispatcher) postpone(j storage.Job, now time.Time, msg string, err error) storage.AttemptResult {
	d.log.Warn(msg, LogFieldJobID, j.ID, LogFieldWorkspace, j.WorkspaceID, "err", err)
	d.m.released.Inc()
	return released(j, now, now.Add(actorCheckRetry))
}

// released is the result that gives j's lease back with no attempt
// counted, the job due at runAt (zero: as it was).
func released(j storage.Job, now, runAt time.Time) storage.AttemptResult {
	return storage.AttemptResult{WorkspaceID: j.WorkspaceID, JobID: j.ID, LeaseToken: j.LeaseToken, Release: true, RunAt: runAt, At: now}
}

// deliver sends the request through the proxy and returns the status (0 if
// none), an error code, and the response headers; att gets the exchange's
// detail for people (attemptdetail.go).
func (d *Dispatcher) deliver(ctx context.Context, q storage.Queue, j storage.Job, n int, now time.Time, att *storage.Attempt) (int, string, http.Header) {
	target, scheme := ProxyTarget(q.CallbackURL)
	rctx, cancel := context.WithTimeout(ctx, q.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, target, bytes.NewReader(j.Payload))
	if err != nil {
		return 0, ErrCodeConnectionFailed, nil
	}
	h := req.Header
	for k, v := range q.CallbackHeaders {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", userAgent)
	h.Set("Rotor-Queue", q.Name)
	ProxyHeaders{Token: d.o.InternalToken, Workspace: j.WorkspaceID, Actor: j.EnqueuedBy, Job: j.ID,
		WebhookID: j.ID, Attempt: n, Scheme: scheme, Now: now}.Set(h)
	att.RequestURL, att.RequestHeaders = clip(q.CallbackURL, 2048), requestTemplate(h)
	resp, err := d.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			att.Error = "timed out after " + q.Timeout.String() + " (the queue's timeout)"
			return 0, ErrCodeTimeout, nil
		}
		att.Error = clientErrorWords(err)
		return 0, ErrCodeConnectionFailed, nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxExcerptBytes))
	rest, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if code := resp.Header.Get(proxy.HeaderError); code != "" {
		att.Error = proxyErrorWords(code, head)
		// The proxy refused or failed the request itself.
		return 0, ProxyErrorCode(code), resp.Header
	}
	att.ResponseHeaders, att.ResponseExcerpt = responseHeaders(resp.Header), excerpt(head, rest > 0)
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		att.Error = "the callback answered " + resp.Status
		return resp.StatusCode, ErrCodeHTTPStatus, resp.Header
	}
	return resp.StatusCode, "", resp.Header
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
