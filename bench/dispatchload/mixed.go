package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
)

const normalWorkspaces = 10

// runMixed is the fairness run (issue #12): a hostile workspace whose
// stuck queue (concurrency 1, a callback that does not answer until the
// run ends) holds hostileJobs due jobs, and whose rate-limited queue
// (0.0001/s, concurrency 1000) holds 1,000, beside ten normal workspaces
// enqueueing n jobs between them through the API. It reports each normal
// workspace's enqueue-to-delivery p50 and p99.
func runMixed(n, conc, hostileJobs int, pgDSN string, viaPlugin bool) error {
	ctx := context.Background()
	store, closeStore, err := openStore(ctx, pgDSN, viaPlugin)
	if err != nil {
		return err
	}
	defer closeStore()
	log := serverLogs
	v, op, _, err := openVault(ctx, store, log)
	if err != nil {
		return err
	}
	defer v.Close(ctx)

	var mu sync.Mutex
	arrived := make(map[string]time.Time, n)
	var got atomic.Int64
	all := make(chan struct{})
	release := make(chan struct{})
	upURL, stopUp, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		now := time.Now()
		mu.Lock()
		if _, dup := arrived[r.Header.Get("webhook-id")]; !dup && r.URL.Path == "/hook" {
			arrived[r.Header.Get("webhook-id")] = now
			if got.Add(1) == int64(n) {
				close(all)
			}
		}
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	if err != nil {
		return err
	}
	defer stopUp()
	defer close(release)

	tok := make([]byte, 16)
	rand.Read(tok)
	internal := hex.EncodeToString(tok)
	p, err := proxy.New(proxy.Options{Vault: v, Logger: log, InternalToken: internal})
	if err != nil {
		return err
	}
	proxyURL, stopProxy, err := serve(p)
	if err != nil {
		return err
	}
	defer stopProxy()
	reg := prometheus.NewRegistry()
	disp, err := dispatch.New(deliveryOptions(dispatch.Options{Store: store, Actors: v, InternalToken: internal, Logger: log, Registerer: reg}, p, proxyURL))
	if err != nil {
		return err
	}
	queues := dispatch.NewService(store, v, nil, disp.Notify)
	apiURL, stopAPI, err := serve(api.New(api.Options{Vault: v, Queues: queues, Logger: log, Quotas: api.Quotas{MaxOpenJobs: -1, MaxOpenBytes: -1}, Usage: store}))
	if err != nil {
		return err
	}
	defer stopAPI()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}, Timeout: time.Minute}
	do := func(key, method, path, body string) (string, error) {
		req, _ := http.NewRequest(method, apiURL+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 201 && res.StatusCode != 200 {
			return "", fmt.Errorf("%s: %d %s", path, res.StatusCode, b)
		}
		return string(b), nil
	}
	mkQueue := func(key, name string, spec map[string]any) error {
		b, _ := json.Marshal(spec)
		_, err := do(key, "PATCH", "/v1/queues/"+name, string(b))
		return err
	}

	// The hostile workspace: its jobs go straight to the store (faster to
	// set up than through the API; the dispatcher cannot tell).
	hw, err := v.CreateWorkspace(ctx, op, "hostile")
	if err != nil {
		return err
	}
	if err := mkQueue(hw.Key, "stuck", map[string]any{"callback_url": upURL + "/slow", "concurrency": 1, "timeout_seconds": 90}); err != nil {
		return err
	}
	if err := mkQueue(hw.Key, "trickle", map[string]any{"callback_url": upURL + "/slow", "concurrency": 1000, "rate_per_second": 0.0001}); err != nil {
		return err
	}
	setup := time.Now()
	for q, count := range map[string]int{"stuck": hostileJobs, "trickle": 1000} {
		for start := 0; start < count; start += 5000 {
			var jobs []storage.Job
			now := time.Now()
			for range min(count, start+5000) - start {
				jobs = append(jobs, storage.Job{ID: dispatch.NewJobID(now), WorkspaceID: hw.Workspace.ID, Queue: q, Payload: json.RawMessage(`{}`),
					Status: storage.JobQueued, RunAt: now, EnqueuedBy: hw.AdminKey.ID, CreatedAt: now, UpdatedAt: now})
			}
			if _, err := store.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: jobs, Now: now}); err != nil {
				return err
			}
		}
	}
	setupTook := time.Since(setup)

	var keys []string
	for i := range normalWorkspaces {
		nw, err := v.CreateWorkspace(ctx, op, fmt.Sprintf("normal-%d", i))
		if err != nil {
			return err
		}
		if err := mkQueue(nw.Key, "orders", map[string]any{"callback_url": upURL + "/hook", "concurrency": 64}); err != nil {
			return err
		}
		keys = append(keys, nw.Key)
	}

	dctx, stopDisp := context.WithCancel(ctx)
	dispDone := make(chan struct{})
	go func() { disp.Run(dctx); close(dispDone) }()
	defer func() { stopDisp(); <-dispDone }()
	// Let the hostile backlog take what it can before the others arrive.
	time.Sleep(time.Second)

	enqueued := make(map[string]time.Time, n)
	owner := make(map[string]int, n)
	var emu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				k := next.Add(1)
				if k > int64(n) {
					return
				}
				w := int(k) % normalWorkspaces
				t0 := time.Now()
				body, err := do(keys[w], "POST", "/v1/queues/orders/jobs", `{"payload":{"event":"signup"}}`)
				if err != nil {
					errs <- err
					return
				}
				var j struct{ ID string }
				json.Unmarshal([]byte(body), &j)
				emu.Lock()
				enqueued[j.ID], owner[j.ID] = t0, w
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("only %d of %d normal jobs delivered after 5 minutes", got.Load(), n)
	}
	total := time.Since(start)
	lat := make([][]time.Duration, normalWorkspaces)
	var every []time.Duration
	mu.Lock()
	for id, t := range arrived {
		if e, ok := enqueued[id]; ok {
			lat[owner[id]] = append(lat[owner[id]], t.Sub(e))
			every = append(every, t.Sub(e))
		}
	}
	mu.Unlock()
	pct := func(l []time.Duration, p float64) time.Duration {
		slices.Sort(l)
		return l[min(len(l)-1, int(float64(len(l))*p))].Round(time.Microsecond)
	}
	counts, _ := store.CountJobs(ctx)
	backend := "bbolt"
	if pgDSN != "" {
		backend = "postgres"
	}
	if !viaPlugin {
		backend = "in-process " + backend
	}
	fmt.Printf("mixed, %s: hostile workspace %d stuck + 1000 rate-limited jobs (set up in %.1fs); %d normal jobs over %d workspaces, %d enqueuers, all delivered in %.2fs (%.0f jobs/s); all normal p50 %v p99 %v; jobs now %v\n",
		backend, hostileJobs, setupTook.Seconds(), n, normalWorkspaces, conc, total.Seconds(), float64(n)/total.Seconds(), pct(every, 0.5), pct(every, 0.99), counts)
	if mfs, err := reg.Gather(); err == nil {
		for _, mf := range mfs {
			switch mf.GetName() {
			case "rotor_dispatch_leases_released_total", "rotor_dispatch_leases_expired_total", "rotor_dispatch_inflight":
				for _, m := range mf.GetMetric() {
					fmt.Printf("  %s %v\n", mf.GetName(), m.GetCounter().GetValue()+m.GetGauge().GetValue())
				}
			}
		}
	}
	for w := range normalWorkspaces {
		fmt.Printf("  normal-%d: %d jobs, enqueue-to-delivery p50 %v p99 %v\n", w, len(lat[w]), pct(lat[w], 0.5), pct(lat[w], 0.99))
	}
	return nil
}
