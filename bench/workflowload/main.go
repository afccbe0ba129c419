// Command workflowload is Rotor's workflow benchmark: in one process, as
// `rotor serve` runs them, the control API, the resolving proxy, the job
// dispatcher and the workflow engine, on bbolt or PostgreSQL through the
// storage plugin, with a loopback upstream.
//
// The throughput run starts N runs of a three-step workflow (each step a
// request with secret references, step 2's body built from step 1's
// output) through the API and times until every run's last step reached
// the upstream: runs/s and start-to-finish p50/p99. The baseline, measured
// in the same process just before, is 3N jobs with the same references
// through the dispatcher: a run is three proxied requests and two durable
// checkpoints more than a job.
//
// The waiting run starts W runs that wait for a signal and reports the
// node's heap and goroutines per waiting run (after a GC), against the
// same node before the runs.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/plugins"
	pluginproto "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/storage/postgres"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/workflow"
)

func main() {
	if os.Getenv("ROTOR_BENCH_AS_PLUGIN") == "1" {
		plugins.Serve(plugins.OpenBackend)
		return
	}
	n := flag.Int("runs", 1000, "workflow runs in the throughput run (and 3x as many jobs in its baseline)")
	conc := flag.Int("concurrency", 32, "concurrent API clients")
	waiting := flag.Int("waiting", 10000, "runs left waiting for a signal in the memory run (0: skip)")
	pg := flag.String("postgres-dsn", "", "run on PostgreSQL (a fresh schema is made and dropped) instead of bbolt")
	inproc := flag.Bool("in-process", false, "open the backend inside this process instead of through the storage plugin")
	flag.Parse()
	if err := run(*n, *conc, *waiting, *pg, !*inproc); err != nil {
		fmt.Fprintln(os.Stderr, "workflowload:", err)
		os.Exit(1)
	}
}

// node is one in-process Rotor node.
type node struct {
	store   storage.Store
	apiURL  string
	bootKey string
	upURL   string
	hits    func(prefix string) int64
	arrived func(key string) (time.Time, bool)
	client  *http.Client
	stop    func()
}

func startNode(ctx context.Context, pgDSN string, viaPlugin bool, conc int) (*node, error) {
	store, closeStore, err := openStore(ctx, pgDSN, viaPlugin)
	if err != nil {
		return nil, err
	}
	var stops []func()
	stops = append(stops, closeStore)
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	log := slog.New(slog.DiscardHandler)
	v, op, bootKey, err := openVault(ctx, store, log)
	if err != nil {
		stop()
		return nil, err
	}
	stops = append(stops, func() { v.Close(context.Background()) })
	for _, name := range []string{"CRM_TOKEN", "NOTIFY_TOKEN"} {
		if _, err := v.CreateSecret(ctx, op, vault.CreateSecretRequest{Name: name, Value: vault.PlaintextString("tok_live_" + strings.ToLower(name) + "_5f3a9c2e")}); err != nil {
			stop()
			return nil, err
		}
	}
	// The upstream: /users/* answers JSON (step 1); every request is
	// counted by path prefix and, for the last step and for jobs, timed by
	// its idempotency key or webhook id.
	var mu sync.Mutex
	counts := map[string]int64{}
	arrived := map[string]time.Time{}
	upURL, stopUp, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		now := time.Now()
		prefix := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[0]
		mu.Lock()
		counts[prefix]++
		if k := r.Header.Get("webhook-id"); k != "" {
			if _, dup := arrived[k]; !dup {
				arrived[k] = now
			}
		}
		mu.Unlock()
		if prefix == "users" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"email":"ann@example.com","plan":{"seats":3}}`)
			return
		}
		io.WriteString(w, "ok")
	}))
	if err != nil {
		stop()
		return nil, err
	}
	stops = append(stops, stopUp)
	tok := make([]byte, 16)
	rand.Read(tok)
	internal := hex.EncodeToString(tok)
	p, err := proxy.New(proxy.Options{Vault: v, Logger: log, InternalToken: internal})
	if err != nil {
		stop()
		return nil, err
	}
	stops = append(stops, p.CloseIdleConnections)
	// In-process delivery, as rotor serve does (issue 16).
	disp, err := dispatch.New(dispatch.Options{Store: store, Actors: v, Transport: p.InternalTransport(), InternalToken: internal, Logger: log})
	if err != nil {
		stop()
		return nil, err
	}
	eng, err := workflow.NewEngine(workflow.Options{Store: store, Actors: v, Transport: p.InternalTransport(), InternalToken: internal, Logger: log, Workers: 256, SignAudit: v.SignAudit})
	if err != nil {
		stop()
		return nil, err
	}
	queues := dispatch.NewService(store, v, nil, disp.Notify)
	wfs := workflow.NewService(store, v, nil, nil, eng.Notify)
	apiURL, stopAPI, err := serve(api.New(api.Options{Vault: v, Queues: queues, Workflows: wfs, Logger: log}))
	if err != nil {
		stop()
		return nil, err
	}
	stops = append(stops, stopAPI)
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { disp.Run(rctx) })
	wg.Go(func() { eng.Run(rctx) })
	stops = append(stops, func() { cancel(); wg.Wait() })
	return &node{store: store, apiURL: apiURL, bootKey: bootKey, upURL: upURL,
		hits:    func(prefix string) int64 { mu.Lock(); defer mu.Unlock(); return counts[prefix] },
		arrived: func(k string) (time.Time, bool) { mu.Lock(); defer mu.Unlock(); t, ok := arrived[k]; return t, ok },
		client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}, Timeout: time.Minute},
		stop:    stop}, nil
}

func (nd *node) do(method, path, body string, want int) (string, error) {
	req, _ := http.NewRequest(method, nd.apiURL+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+nd.bootKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := nd.client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		return "", fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	return string(b), nil
}

// parallel calls fn(i) for i in [0, n) from conc goroutines and returns
// each call's start time by the id fn returns.
func parallel(n, conc int, fn func(i int) (string, error)) (map[string]time.Time, error) {
	started := make(map[string]time.Time, n)
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				id, err := fn(i)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				started[id] = t0
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return started, nil
}

// waitFor polls until cond holds, for at most five minutes.
func waitFor(what string, cond func() bool) error {
	deadline := time.Now().Add(5 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done after 5 minutes", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func percentiles(started map[string]time.Time, arrived func(string) (time.Time, bool), key func(id string) string) (time.Duration, time.Duration) {
	var lat []time.Duration
	for id, t0 := range started {
		if t, ok := arrived(key(id)); ok {
			lat = append(lat, t.Sub(t0))
		}
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		return 0, 0
	}
	pct := func(p float64) time.Duration {
		return lat[min(len(lat)-1, int(float64(len(lat))*p))].Round(time.Microsecond)
	}
	return pct(0.5), pct(0.99)
}

func idOf(body string) string {
	var v struct{ ID string }
	json.Unmarshal([]byte(body), &v)
	return v.ID
}

func run(n, conc, waiting int, pgDSN string, viaPlugin bool) error {
	ctx := context.Background()
	nd, err := startNode(ctx, pgDSN, viaPlugin, conc)
	if err != nil {
		return err
	}
	defer nd.stop()
	label := "bbolt"
	if pgDSN != "" {
		label = "postgres"
	}
	if viaPlugin {
		label += " (plugin)"
	} else {
		label += " (in-process)"
	}

	// Baseline: 3n jobs with the same references, through the dispatcher.
	q, _ := json.Marshal(map[string]any{"name": "bench", "callback_url": nd.upURL + "/job?token=${{ secrets.NOTIFY_TOKEN }}",
		"callback_headers": map[string]string{"Authorization": "Bearer ${{ secrets.CRM_TOKEN }}"}, "concurrency": 256})
	if _, err := nd.do("POST", "/v1/queues", string(q), 201); err != nil {
		return err
	}
	start := time.Now()
	jobs, err := parallel(3*n, conc, func(int) (string, error) {
		b, err := nd.do("POST", "/v1/queues/bench/jobs", `{"payload":{"email":"ann@example.com","token":"${{ secrets.NOTIFY_TOKEN }}"}}`, 201)
		return idOf(b), err
	})
	if err != nil {
		return err
	}
	if err := waitFor("jobs", func() bool { return nd.hits("job") >= int64(3*n) }); err != nil {
		return err
	}
	jobSecs := time.Since(start).Seconds()
	jp50, jp99 := percentiles(jobs, nd.arrived, func(id string) string { return id })
	fmt.Printf("%-22s baseline: %d jobs (references in URL, header, payload): %.0f jobs/s, enqueue-to-delivery p50 %v p99 %v\n",
		label, 3*n, float64(3*n)/jobSecs, jp50, jp99)

	// Three steps, each with secret references; step 2 uses step 1's output.
	def := `{"steps":[
		{"id":"fetch","request":{"method":"GET","url":"` + nd.upURL + `/users/${{ input.user_id }}","headers":{"Authorization":"Bearer ${{ secrets.CRM_TOKEN }}"}}},
		{"id":"notify","request":{"method":"POST","url":"` + nd.upURL + `/notify?token=${{ secrets.NOTIFY_TOKEN }}","body":{"email":"${{ steps.fetch.output.email }}","seats":"${{ steps.fetch.output.plan.seats }}"}}},
		{"id":"report","request":{"method":"POST","url":"` + nd.upURL + `/report","headers":{"X-Key":"${{ secrets.CRM_TOKEN }}"},"body":{"notify":"${{ steps.notify.status }}"}}}]}`
	if _, err := nd.do("PUT", "/v1/workflows/onboard", def, 201); err != nil {
		return err
	}
	start = time.Now()
	runs, err := parallel(n, conc, func(i int) (string, error) {
		b, err := nd.do("POST", "/v1/workflows/onboard/runs", fmt.Sprintf(`{"input":{"user_id":"u_%d"}}`, i), 201)
		return idOf(b), err
	})
	if err != nil {
		return err
	}
	if err := waitFor("runs", func() bool { return nd.hits("report") >= int64(n) }); err != nil {
		return err
	}
	runSecs := time.Since(start).Seconds()
	rp50, rp99 := percentiles(runs, nd.arrived, func(id string) string { return id + "/report" })
	runsPerSec := float64(n) / runSecs
	fmt.Printf("%-22s workflows: %d runs x 3 steps: %.0f runs/s (%.0f step requests/s, %.2fx the baseline's jobs/s), start-to-last-step p50 %v p99 %v\n",
		label, n, runsPerSec, 3*runsPerSec, 3*runsPerSec/(float64(3*n)/jobSecs), rp50, rp99)
	if nd.hits("users") != int64(n) || nd.hits("notify") != int64(n) {
		return fmt.Errorf("steps sent: fetch %d, notify %d, want %d each", nd.hits("users"), nd.hits("notify"), n)
	}

	if waiting <= 0 {
		return nil
	}
	// Memory per waiting run: the node's heap and goroutines before and
	// after waiting runs it holds.
	if _, err := nd.do("PUT", "/v1/workflows/waits", `{"steps":[{"id":"approve","wait_for_signal":"approved","timeout":"72h"},{"id":"after","sleep":"1s"}]}`, 201); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // the previous run's connections settle
	heap0, gor0 := settled()
	file0 := fileSize(boltPath)
	if _, err := parallel(waiting, conc, func(i int) (string, error) {
		b, err := nd.do("POST", "/v1/workflows/waits/runs", `{"input":{"n":1}}`, 201)
		return idOf(b), err
	}); err != nil {
		return err
	}
	if err := waitFor("waiting runs", func() bool {
		c, err := nd.store.CountRuns(ctx)
		return err == nil && c[storage.RunWaiting] >= waiting
	}); err != nil {
		return err
	}
	heap1, gor1 := settled()
	stored := ""
	if boltPath != "" {
		stored = fmt.Sprintf("; bbolt file %+.1f MiB (%.0f bytes per run)", float64(fileSize(boltPath)-file0)/(1<<20), float64(fileSize(boltPath)-file0)/float64(waiting))
	}
	fmt.Printf("%-22s waiting: %d runs waiting for a signal: node heap %+.1f MiB (%+.0f bytes per waiting run), goroutines %d -> %d%s\n",
		label, waiting, float64(int64(heap1)-int64(heap0))/(1<<20), float64(int64(heap1)-int64(heap0))/float64(waiting), gor0, gor1, stored)
	return nil
}

// boltPath is the bbolt file of a bbolt run (for its size).
var boltPath string

func fileSize(path string) int64 {
	if path == "" {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// settled is the heap in use and the goroutines after two GCs.
func settled() (uint64, int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, runtime.NumGoroutine()
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

func openStore(ctx context.Context, pgDSN string, viaPlugin bool) (storage.Store, func(), error) {
	if viaPlugin {
		cfg := &pluginproto.ConfigureRequest{Backend: "bbolt"}
		cleanup := func() {}
		if pgDSN == "" {
			dir, err := os.MkdirTemp("", "workflowload-")
			if err != nil {
				return nil, nil, err
			}
			cfg.Path = filepath.Join(dir, "rotor.db")
			boltPath = cfg.Path
			cleanup = func() { os.RemoveAll(dir) }
		} else {
			dsn, drop, err := freshSchema(ctx, pgDSN)
			if err != nil {
				return nil, nil, err
			}
			cfg.Backend, cfg.Dsn, cleanup = "postgres", dsn, drop
		}
		self, err := os.Executable()
		if err != nil {
			return nil, nil, err
		}
		s, err := plugins.Launch(ctx, plugins.LaunchOptions{Path: self, Env: []string{"ROTOR_BENCH_AS_PLUGIN=1"}, Config: cfg})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close(); cleanup() }, nil
	}
	if pgDSN == "" {
		dir, err := os.MkdirTemp("", "workflowload-")
		if err != nil {
			return nil, nil, err
		}
		boltPath = filepath.Join(dir, "rotor.db")
		s, err := bolt.Open(boltPath, bolt.Options{})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close(); os.RemoveAll(dir) }, nil
	}
	dsn, drop, err := freshSchema(ctx, pgDSN)
	if err != nil {
		return nil, nil, err
	}
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	return s, func() { s.Close(); drop() }, nil
}

// freshSchema makes a schema for one run and returns its DSN and a drop.
func freshSchema(ctx context.Context, pgDSN string) (string, func(), error) {
	b := make([]byte, 6)
	rand.Read(b)
	schema := "rotor_bench_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, pgDSN)
	if err != nil {
		return "", nil, err
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, err
	}
	return pgDSN + "&search_path=" + schema, func() {
		conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	}, nil
}

// openVault opens a vault on store under a fresh master key and returns it
// with the bootstrap operator (its actor and API key).
func openVault(ctx context.Context, store storage.Store, log *slog.Logger) (*vault.Vault, vault.Actor, string, error) {
	v, err := vault.Open(ctx, vault.Options{Store: store, MasterKey: vault.GenerateMasterKey(), Logger: log})
	if err != nil {
		return nil, vault.Actor{}, "", err
	}
	boot, err := v.Bootstrap(ctx, "")
	if err == nil {
		var op vault.Actor
		if op, err = v.Authenticate(ctx, boot.Key); err == nil {
			return v, op, boot.Key, nil
		}
	}
	v.Close(ctx)
	return nil, vault.Actor{}, "", err
}
