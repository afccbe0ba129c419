package dispatch_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// received is one request the callback got.
type received struct {
	Path, Query string
	Header      http.Header
	Body        []byte
}

type harness struct {
	t     *testing.T
	ve    *vaulttest.Env
	svc   *dispatch.Service
	disp  *dispatch.Dispatcher
	clock *fakeClock
	up    *httptest.Server
	mu    sync.Mutex
	got   []received
	// respond writes the callback's answer; 200 when nil.
	respond func(w http.ResponseWriter, r *http.Request)
	stop    func()
	creds   vault.CallbackCredentials
}

const token = "tok_live_9f8e7d6c5b4a"

func newHarness(t *testing.T) *harness { t.Helper(); return newHarnessWith(t, nil) }

// newHarnessWith lets a test change the proxy's options (opt may be nil).
// Deliveries go to the proxy in-process, as rotor serve sends them.
func newHarnessWith(t *testing.T, opt func(*proxy.Options)) *harness {
	t.Helper()
	return newHarnessVia(t, false, opt)
}

// newHarnessVia delivers through the proxy's loopback listener when
// loopback is set (a dispatcher with a remote proxy), else in-process.
func newHarnessVia(t *testing.T, loopback bool, opt func(*proxy.Options)) *harness {
	t.Helper()
	return newHarnessActors(t, loopback, opt, nil)
}

// newHarnessActors also lets a test wrap the dispatcher's enqueuer check
// (actors may be nil).
func newHarnessActors(t *testing.T, loopback bool, opt func(*proxy.Options), actors func(dispatch.Actors) dispatch.Actors) *harness {
	t.Helper()
	h := &harness{t: t, ve: vaulttest.New(t), clock: &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	h.up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got = append(h.got, received{Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
		respond := h.respond
		h.mu.Unlock()
		if respond != nil {
			respond(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(h.up.Close)
	popts := proxy.Options{Vault: h.ve.Vault, Logger: h.ve.Logger, InternalToken: "internal-test-token"}
	if opt != nil {
		opt(&popts)
	}
	p, err := proxy.New(popts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.CloseIdleConnections)
	var store storage.Store = h.ve.Store
	if harnessStore != nil {
		store = harnessStore(store)
	}
	do := dispatch.Options{Store: store, Actors: h.ve.Vault, InternalToken: "internal-test-token",
		Logger: h.ve.Logger, Registerer: h.ve.Registry, Now: h.clock.Now, Rand: func() float64 { return 0.5 },
		PollInterval: 2 * time.Millisecond, Visibility: time.Minute, Workers: 16}
	if actors != nil {
		do.Actors = actors(do.Actors)
	}
	if loopback {
		psrv := httptest.NewServer(p)
		t.Cleanup(psrv.Close)
		do.ProxyURL = psrv.URL
	} else {
		do.Transport = p.InternalTransport()
	}
	h.disp, err = dispatch.New(do)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = dispatch.NewService(h.ve.Store, h.ve.Vault, h.clock.Now, h.disp.Notify)
	if h.creds, err = h.ve.Vault.RotateCallbackCredentials(context.Background(), h.ve.Operator); err != nil {
		t.Fatal(err)
	}
	h.ve.Secret(t, "NOTIFY_TOKEN", token)
	return h
}

// start runs the dispatcher until the test ends.
func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		h.disp.Run(ctx)
		close(done)
	}()
	h.stop = func() { cancel(); <-done }
	h.t.Cleanup(h.stop)
}

func (h *harness) queue(name string, spec dispatch.QueueSpec) {
	h.t.Helper()
	if spec.CallbackURL == nil {
		u := h.up.URL + "/notify?token=${{ secrets.NOTIFY_TOKEN }}"
		spec.CallbackURL = &u
	}
	if _, err := h.svc.CreateQueue(context.Background(), h.ve.Operator, name, spec); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) enqueue(queue, payload string) storage.Job {
	h.t.Helper()
	j, _, err := h.svc.Enqueue(context.Background(), h.ve.Operator, queue, dispatch.EnqueueRequest{Payload: json.RawMessage(payload)})
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

func (h *harness) job(id string) storage.Job {
	h.t.Helper()
	j, err := h.svc.GetJob(context.Background(), h.ve.Operator, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

func (h *harness) calls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got)
}

func (h *harness) last() received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.got[len(h.got)-1]
}

// waitJob waits (real time, bounded) until the job satisfies cond.
func (h *harness) waitJob(id string, what string, cond func(storage.Job) bool) storage.Job {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j := h.job(id)
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("job %s never %s: %+v", id, what, j)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func attempts(n int) func(storage.Job) bool {
	return func(j storage.Job) bool { return len(j.Attempts) >= n && j.Status != storage.JobLeased }
}

func ptr[T any](v T) *T { return &v }

// verifyStandardWebhook checks a signature the way a stock Standard
// Webhooks verifier does, written here from the spec.
func verifyStandardWebhook(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "." + string(body)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if v, s, ok := strings.Cut(sig, ","); ok && v == "v1" && hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}

func TestDeliveryResolvesAndSigns(t *testing.T) {
	h := newHarness(t)
	h.queue("notifications", dispatch.QueueSpec{CallbackHeaders: &map[string]string{"X-API-Key": "${{ secrets.NOTIFY_TOKEN }}"}})
	h.start()
	j := h.enqueue("notifications", `{"user":"u1","token":"${{ secrets.NOTIFY_TOKEN }}"}`)
	j = h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	got := h.last()
	if got.Query != "token="+token || got.Header.Get("X-API-Key") != token {
		t.Fatalf("callback saw query %q, header %q", got.Query, got.Header.Get("X-API-Key"))
	}
	var body map[string]string
	if json.Unmarshal(got.Body, &body) != nil || body["token"] != token || body["user"] != "u1" {
		t.Fatalf("body %s", got.Body)
	}
	if got.Header.Get("Authorization") != "Bearer "+string(h.creds.CallbackSecret.Bytes()) {
		t.Fatalf("Authorization %q", got.Header.Get("Authorization"))
	}
	if !verifyStandardWebhook(string(h.creds.SigningSecret.Bytes()), got.Header, got.Body) {
		t.Fatalf("signature does not verify: %v", got.Header)
	}
	if got.Header.Get("webhook-id") != j.ID || got.Header.Get("Rotor-Queue") != "notifications" || got.Header.Get("Rotor-Attempt") != "1" {
		t.Fatalf("headers %v", got.Header)
	}
	for k := range got.Header {
		if strings.HasPrefix(k, "Rotor-Internal") || strings.HasPrefix(k, "Proxy-") {
			t.Fatalf("callback got %s", k)
		}
	}
	if len(j.Attempts) != 1 || j.Attempts[0].StatusCode != 200 {
		t.Fatalf("attempts %+v", j.Attempts)
	}
	// The proxy's audit rows carry the job and attempt.
	h.ve.Vault.FlushAudit(context.Background())
	page, _ := h.ve.Store.ListAudit(context.Background(), storage.AuditQuery{WorkspaceID: h.ve.Operator.WorkspaceID, EventType: vault.EventSecretAccessed})
	if len(page.Events) == 0 || !strings.Contains(string(page.Events[0].Input), `"job_id":"`+j.ID+`"`) || !strings.Contains(string(page.Events[0].Input), `"attempt":"1"`) {
		t.Fatalf("audit rows %+v", page.Events)
	}
	// Canary: no plaintext in the bbolt file, the job and attempt records,
	// or the logs.
	h.stop()
	rec, _ := json.Marshal(h.job(j.ID))
	db, _ := os.ReadFile(h.ve.DBPath)
	leakcheck.Scan(t, token, map[string][]byte{"bbolt file": db, "job record": rec, "logs": []byte(h.ve.Logs.String())})
	if !strings.Contains(string(rec), "${{ secrets.NOTIFY_TOKEN }}") {
		t.Fatal("the job record does not hold the template")
	}
}

func TestBackoffDeadLetterAndRetry(t *testing.T) {
	h := newHarness(t)
	h.respond = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }
	h.queue("q", dispatch.QueueSpec{MaxAttempts: ptr(3), BackoffBase: ptr(10 * time.Second), BackoffCap: ptr(time.Minute)})
	h.start()
	t0 := h.clock.Now()
	j := h.enqueue("q", `{}`)
	j = h.waitJob(j.ID, "attempted once", attempts(1))
	// Full jitter with rand pinned at 0.5: half of base * 2^(n-1).
	if j.Status != storage.JobQueued || !j.RunAt.Equal(t0.Add(5*time.Second)) || j.Attempts[0].ErrorCode != dispatch.ErrCodeHTTPStatus {
		t.Fatalf("after attempt 1: %+v", j)
	}
	time.Sleep(30 * time.Millisecond) // many polls: the clock has not moved, nothing happens
	if n := len(h.job(j.ID).Attempts); n != 1 {
		t.Fatalf("%d attempts before the retry was due", n)
	}
	h.clock.Advance(5 * time.Second)
	j = h.waitJob(j.ID, "attempted twice", attempts(2))
	if !j.RunAt.Equal(h.clock.Now().Add(10 * time.Second)) {
		t.Fatalf("retry 2 at %v, want now+10s", j.RunAt.Sub(h.clock.Now()))
	}
	h.clock.Advance(10 * time.Second)
	j = h.waitJob(j.ID, "dead", func(j storage.Job) bool { return j.Status == storage.JobDead })
	if len(j.Attempts) != 3 {
		t.Fatalf("dead after %d attempts", len(j.Attempts))
	}
	dead, _ := h.svc.ListJobs(context.Background(), h.ve.Operator, storage.JobQuery{Queue: "q", Status: storage.JobDead})
	if len(dead.Jobs) != 1 {
		t.Fatal("dead job not listed")
	}
	// Retried by hand, with a fresh budget, it is delivered.
	h.mu.Lock()
	h.respond = nil
	h.mu.Unlock()
	if _, err := h.svc.RetryJob(context.Background(), h.ve.Operator, j.ID); err != nil {
		t.Fatal(err)
	}
	j = h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	if len(j.Attempts) != 4 {
		t.Fatalf("attempts %d", len(j.Attempts))
	}
	if v := testutil.ToFloat64(testutilCounter(t, h, "dead")); v != 1 {
		t.Fatalf("dead attempts metric %v", v)
	}
}

func TestRetryAfterAndGone(t *testing.T) {
	h := newHarness(t)
	var n atomic.Int32
	h.respond = func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
		case 2:
			w.Header().Set("Retry-After", h.clock.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
			w.WriteHeader(503)
		default:
			w.WriteHeader(410)
		}
	}
	h.queue("q", dispatch.QueueSpec{})
	h.start()
	j := h.enqueue("q", `{}`)
	j = h.waitJob(j.ID, "attempted", attempts(1))
	if d := j.RunAt.Sub(h.clock.Now()); d != 120*time.Second {
		t.Fatalf("429 Retry-After: retry in %v", d)
	}
	h.clock.Advance(120 * time.Second)
	j = h.waitJob(j.ID, "attempted twice", attempts(2))
	if d := j.RunAt.Sub(h.clock.Now()); d != time.Hour {
		t.Fatalf("503 Retry-After date: retry in %v", d)
	}
	h.clock.Advance(time.Hour)
	j = h.waitJob(j.ID, "dead", func(j storage.Job) bool { return j.Status == storage.JobDead })
	if len(j.Attempts) != 3 || j.Attempts[2].ErrorCode != dispatch.ErrCodeGone {
		t.Fatalf("410: %+v", j.Attempts)
	}
}

func TestIdempotentEnqueue(t *testing.T) {
	h := newHarness(t)
	h.queue("q", dispatch.QueueSpec{})
	ctx := context.Background()
	a, existing, err := h.svc.Enqueue(ctx, h.ve.Operator, "q", dispatch.EnqueueRequest{Payload: json.RawMessage(`{"n":1}`), IdempotencyKey: "order-1"})
	if err != nil || existing {
		t.Fatal(err, existing)
	}
	b, existing, err := h.svc.Enqueue(ctx, h.ve.Operator, "q", dispatch.EnqueueRequest{Payload: json.RawMessage(`{"n":2}`), IdempotencyKey: "order-1"})
	if err != nil || !existing || b.ID != a.ID || string(b.Payload) != `{"n":1}` {
		t.Fatalf("replay: %+v %v %v", b, existing, err)
	}
	h.start()
	h.waitJob(a.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	time.Sleep(20 * time.Millisecond)
	if h.calls() != 1 {
		t.Fatalf("%d deliveries", h.calls())
	}
}

func TestConcurrencyLimitHeld(t *testing.T) {
	h := newHarness(t)
	var cur, peak atomic.Int32
	release := make(chan struct{})
	h.respond = func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		cur.Add(-1)
	}
	h.queue("q", dispatch.QueueSpec{Concurrency: ptr(2)})
	h.start()
	var ids []string
	for range 8 {
		ids = append(ids, h.enqueue("q", `{}`).ID)
	}
	go func() {
		for range 8 {
			time.Sleep(20 * time.Millisecond)
			release <- struct{}{}
		}
	}()
	for _, id := range ids {
		h.waitJob(id, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	}
	if peak.Load() != 2 {
		t.Fatalf("peak concurrency %d, limit 2", peak.Load())
	}
}

// TestLeaseExpiryRedelivery: a job leased by a dispatcher that then died is
// delivered by another once the lease expires, and not before.
func TestLeaseExpiryRedelivery(t *testing.T) {
	h := newHarness(t)
	h.queue("q", dispatch.QueueSpec{})
	j := h.enqueue("q", `{}`)
	crashed, err := h.ve.Store.LeaseJobs(context.Background(), storage.LeaseJobsArgs{Now: h.clock.Now(), Limit: 1, Visibility: 30 * time.Second})
	if err != nil || len(crashed) != 1 {
		t.Fatal(err)
	}
	h.start()
	time.Sleep(30 * time.Millisecond)
	if h.calls() != 0 {
		t.Fatal("delivered while another dispatcher held the lease")
	}
	h.clock.Advance(31 * time.Second)
	j = h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	if h.calls() != 1 || j.Leases != 2 {
		t.Fatalf("calls %d leases %d", h.calls(), j.Leases)
	}
	// The crashed holder's late result changes nothing.
	h.ve.Store.CompleteAttempts(context.Background(), []storage.AttemptResult{{WorkspaceID: j.WorkspaceID, JobID: j.ID, LeaseToken: crashed[0].LeaseToken,
		Attempt: storage.Attempt{N: 1, StatusCode: 500}, Status: storage.JobDead, At: h.clock.Now()}})
	if h.job(j.ID).Status != storage.JobDelivered {
		t.Fatal("stale result applied")
	}
}

func TestRotationBetweenEnqueueAndDispatch(t *testing.T) {
	h := newHarness(t)
	h.queue("q", dispatch.QueueSpec{CallbackHeaders: &map[string]string{"X-API-Key": "${{ secrets.NOTIFY_TOKEN }}"}})
	h.start()
	j, _, err := h.svc.Enqueue(context.Background(), h.ve.Operator, "q", dispatch.EnqueueRequest{Payload: json.RawMessage(`{}`), Delay: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	nv := vault.PlaintextString("rotated-after-enqueue")
	if _, err := h.ve.Vault.UpdateSecret(context.Background(), h.ve.Operator, vault.UpdateSecretRequest{Name: "NOTIFY_TOKEN", Value: &nv}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Minute)
	h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	if got := h.last(); got.Header.Get("X-API-Key") != "rotated-after-enqueue" || got.Query != "token=rotated-after-enqueue" {
		t.Fatalf("callback saw %q %q", got.Header.Get("X-API-Key"), got.Query)
	}
}

func TestSecretMissingAtDispatch(t *testing.T) {
	h := newHarness(t)
	h.queue("q", dispatch.QueueSpec{})
	if err := h.ve.Vault.DeleteSecret(context.Background(), h.ve.Operator, "NOTIFY_TOKEN"); err != nil {
		t.Fatal(err)
	}
	h.start()
	j := h.enqueue("q", `{}`)
	j = h.waitJob(j.ID, "attempted", attempts(1))
	if j.Status != storage.JobQueued || j.Attempts[0].ErrorCode != dispatch.ErrCodeSecretMissing || h.calls() != 0 {
		t.Fatalf("secret missing: %+v, callback calls %d", j, h.calls())
	}
	// An operator adds the secret back; the retry delivers.
	h.ve.Secret(t, "NOTIFY_TOKEN", "restored-token")
	h.clock.Advance(time.Hour)
	h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	if h.last().Query != "token=restored-token" {
		t.Fatal("wrong value after restore")
	}
}

func TestAttemptLogLine(t *testing.T) {
	h := newHarness(t)
	h.queue("q", dispatch.QueueSpec{})
	h.start()
	j := h.enqueue("q", `{}`)
	h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	var line map[string]any
	for _, l := range strings.Split(h.ve.Logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == dispatch.LogMsgAttempt {
			line = m
		}
	}
	for _, f := range []string{dispatch.LogFieldJobID, dispatch.LogFieldQueue, dispatch.LogFieldWorkspace, dispatch.LogFieldAttempt,
		dispatch.LogFieldStatus, dispatch.LogFieldDurationMS, dispatch.LogFieldOutcome} {
		if _, ok := line[f]; !ok {
			t.Errorf("attempt line lacks %q: %v", f, line)
		}
	}
	if line[dispatch.LogFieldOutcome] != dispatch.OutcomeDelivered || line[dispatch.LogFieldJobID] != j.ID {
		t.Fatalf("line %v", line)
	}
}

// TestDeliveryCompressedBodySigned: a queue whose callback_headers set
// Content-Encoding has its payload passed through the proxy unresolved
// (docs/proxy.md), and its signature was computed over an empty body, so
// every stock verifier rejected the delivery. It now covers the bytes the
// callback receives.
func TestDeliveryCompressedBodySigned(t *testing.T) {
	h := newHarness(t)
	h.queue("zipped", dispatch.QueueSpec{CallbackHeaders: &map[string]string{"Content-Encoding": "gzip"}})
	h.start()
	j := h.enqueue("zipped", `{"user":"u1"}`)
	h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	got := h.last()
	if got.Header.Get("Content-Encoding") != "gzip" || len(got.Body) == 0 {
		t.Fatalf("callback got Content-Encoding %q and %d bytes", got.Header.Get("Content-Encoding"), len(got.Body))
	}
	if !verifyStandardWebhook(string(h.creds.SigningSecret.Bytes()), got.Header, got.Body) {
		t.Fatalf("the signature does not verify over the %d bytes the callback received", len(got.Body))
	}
}
