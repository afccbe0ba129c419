package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/plugins"
	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/storage/postgres"
	"rotor.sh/rotor/storage/postgres/pgtest"
	"rotor.sh/rotor/vault"
)

// The test binary doubles as the storage plugin (like `rotor plugin
// storage`), so the fairness tests also run through the plugin boundary.
func TestMain(m *testing.M) {
	if os.Getenv("ROTOR_TEST_AS_PLUGIN") == "1" {
		plugins.Serve(plugins.OpenBackend)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type fairBackend struct {
	name string
	open func(t *testing.T) storage.Store
}

func launchPlugin(t *testing.T, cfg *proto.ConfigureRequest) storage.Store {
	t.Helper()
	s, err := plugins.Launch(context.Background(), plugins.LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fairBackends: both backends, in-process and through the plugin.
func fairBackends() []fairBackend {
	return []fairBackend{
		{"bolt", func(t *testing.T) storage.Store {
			s, err := bolt.Open(filepath.Join(t.TempDir(), "rotor.db"), bolt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"bolt-plugin", func(t *testing.T) storage.Store {
			return launchPlugin(t, &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")})
		}},
		{"postgres", func(t *testing.T) storage.Store {
			dsn, _ := pgtest.Schema(t)
			s, err := postgres.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"postgres-plugin", func(t *testing.T) storage.Store {
			dsn, _ := pgtest.Schema(t)
			return launchPlugin(t, &proto.ConfigureRequest{Backend: "postgres", Dsn: dsn})
		}},
	}
}

// fairEnv is a dispatcher on a bare store, delivering through a plain
// loopback forward proxy (secret resolution is not what these tests are
// about), to loopback callbacks: /fast answers at once, /slow blocks until
// the test ends (bounded).
type fairEnv struct {
	t         *testing.T
	s         storage.Store
	cb        *httptest.Server
	done      chan struct{}
	delivered atomic.Int64
	arrived   sync.Map // webhook-id (job id) -> struct{}: the callback got it
}

const fairWorkers = 16

func newFairEnv(t *testing.T, s storage.Store) *fairEnv {
	e := &fairEnv{t: t, s: s, done: make(chan struct{})}
	e.cb = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slow" {
			select {
			case <-e.done:
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		}
		e.arrived.Store(r.Header.Get("webhook-id"), struct{}{})
		e.delivered.Add(1)
	}))
	fwd := &http.Transport{}
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = r.Header.Clone()
		out.Header.Del("Proxy-Authorization")
		resp, err := fwd.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	d, err := dispatch.New(dispatch.Options{Store: s, Actors: systemJobs{}, ProxyURL: px.URL, InternalToken: "internal-test-token",
		PollInterval: 5 * time.Millisecond, Visibility: time.Minute, Workers: fairWorkers})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		d.Run(ctx)
		close(stopped)
	}()
	// Cleanups run last-in first-out: unblock the slow callbacks, stop the
	// dispatcher, then close the servers.
	t.Cleanup(func() { px.Close(); e.cb.Close(); fwd.CloseIdleConnections() })
	t.Cleanup(func() { cancel(); <-stopped })
	t.Cleanup(func() { close(e.done) })
	return e
}

func (e *fairEnv) workspace(id string) {
	e.t.Helper()
	if err := e.s.CreateWorkspace(context.Background(), storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: id, Name: "name-" + id, CreatedAt: time.Now()}}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *fairEnv) queue(ws, name, path string, concurrency int, rate float64) {
	e.t.Helper()
	q := storage.Queue{WorkspaceID: ws, Name: name, CallbackURL: e.cb.URL + path, MaxAttempts: 3, BackoffBase: time.Second, BackoffCap: time.Minute,
		Timeout: time.Minute, Concurrency: concurrency, RatePerSecond: rate, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := e.s.CreateQueue(context.Background(), storage.CreateQueueArgs{Queue: q}); err != nil {
		e.t.Fatal(err)
	}
}

// systemJobs is the enqueuer check of a store with no keys: these tests'
// jobs name no enqueuer (system jobs), so it is never asked.
type systemJobs struct{}

func (systemJobs) ActorActive(context.Context, string, string) error {
	return errors.New("fair tests enqueue system jobs only")
}
func (systemJobs) RecordRefusal(context.Context, vault.Refusal) error { return nil }

func (e *fairEnv) enqueue(ws, queue string, n int, runAt time.Time) []string {
	e.t.Helper()
	var ids []string
	for start := 0; start < n; start += 500 {
		var jobs []storage.Job
		for i := start; i < min(n, start+500); i++ {
			id := fmt.Sprintf("job_%s_%s_%06d", ws, queue, i)
			ids = append(ids, id)
			jobs = append(jobs, storage.Job{ID: id, WorkspaceID: ws, Queue: queue, Payload: json.RawMessage(`{}`), RunAt: runAt, CreatedAt: runAt, UpdatedAt: runAt})
		}
		if _, err := e.s.EnqueueJobs(context.Background(), storage.EnqueueJobsArgs{Jobs: jobs, Now: time.Now()}); err != nil {
			e.t.Fatal(err)
		}
	}
	return ids
}

// victim enqueues one job in workspace B and requires it delivered within
// a second (the bar).
func (e *fairEnv) victim() {
	e.t.Helper()
	e.workspace("ws_b")
	e.queue("ws_b", "orders", "/fast", 4, 0)
	id := e.enqueue("ws_b", "orders", 1, time.Now())[0]
	start := time.Now()
	// Delivered means the callback received it; recording the result can
	// lag on a loaded machine, and is waited for (bounded) after.
	for {
		if _, ok := e.arrived.Load(id); ok {
			break
		}
		if time.Since(start) > time.Second {
			j, _ := e.s.GetJob(context.Background(), "ws_b", id)
			counts, _ := e.s.CountJobs(context.Background())
			e.t.Fatalf("workspace B's job not delivered within 1s: status %s, %d attempts; jobs by status %v", j.Status, len(j.Attempts), counts)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for {
		j, err := e.s.GetJob(context.Background(), "ws_b", id)
		if err != nil {
			e.t.Fatal(err)
		}
		if j.Status == storage.JobDelivered {
			return
		}
		if time.Since(start) > 10*time.Second {
			e.t.Fatalf("workspace B's delivery never recorded: %+v", j)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle lets the dispatcher work on the hostile workload for a moment.
func (e *fairEnv) settle() { time.Sleep(300 * time.Millisecond) }

func forEachFairBackend(t *testing.T, fn func(t *testing.T, e *fairEnv)) {
	for _, b := range fairBackends() {
		t.Run(b.name, func(t *testing.T) { fn(t, newFairEnv(t, b.open(t))) })
	}
}

// TestFairLeasedButWaiting: a rate-limited queue with more jobs than the
// node has workers must not hold them leased (issue #12, first attack).
func TestFairLeasedButWaiting(t *testing.T) {
	forEachFairBackend(t, func(t *testing.T, e *fairEnv) {
		e.workspace("ws_a")
		e.queue("ws_a", "trickle", "/fast", 1000, 0.0001)
		e.enqueue("ws_a", "trickle", fairWorkers+4, time.Now())
		e.settle()
		e.victim()
		counts, err := e.s.CountJobs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// One job may have spent the queue's first token; the rest wait
		// queued, holding nothing.
		if counts[storage.JobLeased] > 1 {
			t.Fatalf("%d jobs held leased by a queue that may start at most one", counts[storage.JobLeased])
		}
	})
}

// TestFairDeepBacklog: a concurrency-1 queue behind a callback that never
// answers, with more due jobs than any scan window, must not hide another
// workspace's job (issue #12, second attack).
func TestFairDeepBacklog(t *testing.T) {
	forEachFairBackend(t, func(t *testing.T, e *fairEnv) {
		e.workspace("ws_a")
		e.queue("ws_a", "stuck", "/slow", 1, 0)
		e.enqueue("ws_a", "stuck", 40*fairWorkers, time.Now().Add(-time.Hour))
		e.settle()
		e.victim()
	})
}

// TestFairManyQueues: one workspace with more slow queues than the node
// has workers, all due together, must leave workers to the others (a
// third hostile pattern).
func TestFairManyQueues(t *testing.T) {
	forEachFairBackend(t, func(t *testing.T, e *fairEnv) {
		e.workspace("ws_a")
		for i := range 3 * fairWorkers {
			q := fmt.Sprintf("q%03d", i)
			e.queue("ws_a", q, "/slow", 1, 0)
			e.enqueue("ws_a", q, 3, time.Now().Add(-time.Minute))
		}
		e.settle()
		e.victim()
	})
}

// TestQueueMetrics: per-queue ready jobs, lag and running jobs at scrape.
func TestQueueMetrics(t *testing.T) {
	h := newHarness(t)
	h.queue("q", dispatch.QueueSpec{})
	h.enqueue("q", `{}`)
	h.enqueue("q", `{}`)
	h.clock.Advance(time.Minute) // the scrape reads real time; jobs were due at the fake clock's time
	mfs, err := h.ve.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "queue" && l.GetValue() == "q" {
					found[mf.GetName()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	if found["rotor_queue_ready_jobs"] != 2 || found["rotor_queue_running_jobs"] != 0 || found["rotor_queue_lag_seconds"] <= 0 {
		t.Fatalf("queue metrics = %v", found)
	}
}
