package plugins_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/vault"
)

// callsPerJobBudget is the most plugin round trips per job each method may
// take when jobs with references are enqueued through the API by
// concurrent clients and delivered through the in-process proxy, as rotor
// serve runs them (issue 16). Enqueues, leases, results and audit rows are
// grouped, and queue settings, API keys and secret values are cached, so
// each is well under one call per job; a change that makes any of them
// per-job again (or adds a new per-job call) fails here. Methods not
// listed may not be called at all while jobs flow. Measured on 2 cores
// (issue 16, session 4): about 0.35 calls per job in all.
var callsPerJobBudget = map[string]struct{ perJob, fixed, perSecond float64 }{
	"EnqueueJobs":      {0.35, 0, 0}, // grouped: ~5 concurrent enqueues share a call (0.2/job measured)
	"LeaseJobs":        {0.2, 0, 0},  // up to 128 jobs a call; idle polls included (0.06)
	"CompleteAttempts": {0.15, 0, 0}, // up to 256 results a call (0.03)
	"AppendAudit":      {0.1, 0, 0},  // secret.accessed rows, group-committed (0.01)
	"GetQueue":         {0, 4, 2},    // cached a second by the dispatcher (a slow run refreshes it)
	// Cold caches: the first resolves of a batch of leased jobs share one
	// read of the secret (the vault's single flight); then nothing.
	"GetSecret": {0, 6, 0},
	"JobUsage":  {0, 2, 2}, // one read per workspace at a time, each second (api usageTTL)
	// The enqueuing key's check before each attempt: one read per key at a
	// time, each 10 s (vault actorCacheTTL).
	"GetAPIKey": {0, 1, 0.2},
	// The audit sealer's checkpoint, on a clock (vault/auditseal.go).
	"ListWorkspaces":     {0, 0, 4},
	"GetAuditHead":       {0, 0, 4},
	"GetAuditCheckpoint": {0, 0, 4},
	"ListAuditAsc":       {0, 0, 4},
	"PutAuditCheckpoint": {0, 0, 4},
}

func TestPluginCallsPerJob(t *testing.T) {
	const jobs, clients = 800, 32
	ctx := context.Background()
	store := launch(t, &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")})
	log := slog.New(slog.DiscardHandler)
	v, err := vault.Open(ctx, vault.Options{Store: store, MasterKey: vault.GenerateMasterKey(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(ctx) })
	boot, err := v.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	op, err := v.Authenticate(ctx, boot.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.CreateSecret(ctx, op, vault.CreateSecretRequest{Name: "NOTIFY_TOKEN", Value: vault.PlaintextString("tok_live_calls_per_job_1")}); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-API-Key") == "tok_live_calls_per_job_1" {
			got.Add(1)
		}
	}))
	t.Cleanup(up.Close)
	reg := prometheus.NewRegistry()
	p, err := proxy.New(proxy.Options{Vault: v, Logger: log, Registerer: reg, InternalToken: "calls-per-job-token"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.CloseIdleConnections)
	disp, err := dispatch.New(dispatch.Options{Store: store, Actors: v, Transport: p.InternalTransport(), InternalToken: "calls-per-job-token", Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	queues := dispatch.NewService(store, v, nil, disp.Notify)
	apiSrv := httptest.NewServer(api.New(api.Options{Vault: v, Queues: queues, Logger: log, Registerer: reg, Usage: store}))
	t.Cleanup(apiSrv.Close)
	post := func(c *http.Client, path, body string) error {
		req, _ := http.NewRequest("POST", apiSrv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+boot.Key)
		req.Header.Set("Content-Type", "application/json")
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 201 {
			return fmt.Errorf("%s: %d %s", path, res.StatusCode, b)
		}
		return nil
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if err := post(client, "/v1/queues", `{"name":"q","callback_url":"`+up.URL+`/hook?t=${{ secrets.NOTIFY_TOKEN }}","callback_headers":{"X-API-Key":"${{ secrets.NOTIFY_TOKEN }}"},"concurrency":64}`); err != nil {
		t.Fatal(err)
	}
	dctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { disp.Run(dctx); close(done) }()
	stopped := false
	stopDisp := func() {
		if !stopped {
			stopped = true
			stop()
			<-done
		}
	}
	t.Cleanup(stopDisp)

	before, began := store.CallCounts(), time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			for next.Add(1) <= jobs {
				if err := post(client, "/v1/queues/q/jobs", `{"payload":{"token":"${{ secrets.NOTIFY_TOKEN }}"}}`); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() < jobs && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got.Load() < jobs {
		t.Fatalf("%d of %d jobs delivered", got.Load(), jobs)
	}
	stopDisp()
	if err := v.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	after, secs := store.CallCounts(), time.Since(began).Seconds()+1
	var report []string
	for m, n := range after {
		d := n - before[m]
		if d == 0 {
			continue
		}
		per := float64(d) / jobs
		report = append(report, fmt.Sprintf("%s %d (%.3f/job)", m, d, per))
		budget, ok := callsPerJobBudget[m]
		if !ok {
			t.Errorf("%s: %d calls while jobs flowed; it has no budget (a new per-job call?)", m, d)
		} else if float64(d) > budget.perJob*jobs+budget.fixed+budget.perSecond*secs {
			t.Errorf("%s: %d calls for %d jobs in %.1f s, budget %.2f per job + %.0f + %.0f/s", m, d, jobs, secs, budget.perJob, budget.fixed, budget.perSecond)
		}
	}
	sort.Strings(report)
	t.Logf("plugin calls for %d jobs: %s", jobs, strings.Join(report, ", "))
}
