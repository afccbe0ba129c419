// Command dispatchload is Rotor's end-to-end dispatch benchmark (make
// bench): in one process, as `rotor serve` runs it, the control API, the
// resolving proxy and the dispatcher on a bbolt file, with a loopback
// upstream. It enqueues N jobs through the API from concurrent clients and
// times until the upstream has received them all, with and without secret
// references, and reports jobs/s and enqueue-to-delivery p50/p99.
//
// As rotor serve runs it: storage through the plugin subprocess (unless
// -in-process), audit on (every resolved reference is a secret.accessed
// row), quotas checked, and every log line, the one per attempt included,
// written as JSON to a file (-log, a temporary file by default). The
// dispatcher hands deliveries to the proxy in-process, as rotor serve does
// (-loopback-delivery: over a loopback socket, as before issue 16's
// session 4). The harness's own clients and upstream speak lean HTTP/1.1
// over keep-alive loopback connections (wire.go).
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
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/plugins"
	pluginproto "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/storage/postgres"
	"rotor.sh/rotor/vault"
)

func main() {
	if os.Getenv("ROTOR_BENCH_AS_PLUGIN") == "1" {
		if path := os.Getenv("ROTOR_BENCH_PLUGIN_CPUPROFILE"); path != "" {
			if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
		}
		plugins.Serve(plugins.OpenBackend)
		return
	}
	n := flag.Int("jobs", 20000, "jobs per run")
	conc := flag.Int("concurrency", 32, "concurrent enqueue clients")
	pg := flag.String("postgres-dsn", "", "run on PostgreSQL (a fresh schema is made and dropped) instead of bbolt")
	inproc := flag.Bool("in-process", false, "open the backend inside this process instead of through the storage plugin (as rotor serve does by default)")
	mixed := flag.Bool("mixed", false, "the fairness run: one hostile workspace (a stuck concurrency-1 queue with -hostile-jobs jobs, and a rate-limited queue) beside ten normal workspaces sharing -jobs; reports each normal workspace's enqueue-to-delivery p99")
	hostile := flag.Int("hostile-jobs", 100000, "jobs in the hostile workspace's stuck queue (-mixed)")
	cpuProfile := flag.String("cpuprofile", "", "write this process's CPU profile (API, proxy, dispatcher) to this file, and the storage plugin's to this file + \".plugin\" (its last run)")
	flag.BoolVar(&loopbackDelivery, "loopback-delivery", false, "deliver through the proxy's HTTP listener on loopback (before issue 16's session 4) instead of in-process, as rotor serve now does")
	flag.BoolVar(&netHTTPHarness, "nethttp-harness", false, "the bench's clients and upstream on net/http (as before issue 16's session 4) instead of its lean HTTP/1.1 ends (wire.go)")
	flag.StringVar(&pluginGOGC, "plugin-gogc", "", "the storage plugin's GOGC (default: the plugin's own, 400 since issue 16; rotor serve gives it none)")
	flag.DurationVar(&fastSpin, "fast-spin", 0, "how long each side of the plugin's fast-call socket polls before parking (0: the default; negative: never)")
	logPath := flag.String("log", "", "write the server's JSON log lines here (default: a temporary file, removed at the end)")
	flag.Parse()
	if err := openLog(*logPath); err != nil {
		fmt.Fprintln(os.Stderr, "dispatchload:", err)
		os.Exit(1)
	}
	defer closeLog()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "dispatchload:", err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
		pluginProfile = *cpuProfile + ".plugin"
	}
	if *mixed {
		if err := runMixed(*n, *conc, *hostile, *pg, !*inproc); err != nil {
			fail(err)
		}
		return
	}
	for _, refs := range []bool{false, true} {
		before := cpuTime()
		if err := run(*n, *conc, refs, *pg, !*inproc); err != nil {
			fail(err)
		}
		// The plugin has exited (run closed the store): its CPU is counted.
		self, children := cpuTime().sub(before)
		fmt.Printf("  CPU per job: %.0f µs (this process, with the bench's own clients and upstream: %.0f µs; storage plugin: %.0f µs)\n",
			float64((self+children).Microseconds())/float64(*n), float64(self.Microseconds())/float64(*n), float64(children.Microseconds())/float64(*n))
	}
}

// cpuTimes is user+system CPU of this process and of its exited children.
type cpuTimes struct{ self, children time.Duration }

func cpuTime() cpuTimes {
	get := func(who int) time.Duration {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return cpuTimes{get(syscall.RUSAGE_SELF), get(syscall.RUSAGE_CHILDREN)}
}

func (t cpuTimes) sub(u cpuTimes) (time.Duration, time.Duration) {
	return t.self - u.self, t.children - u.children
}

// netHTTPHarness runs the bench's own clients and upstream on net/http.
var netHTTPHarness bool

// pluginGOGC, when set, is the plugin's GOGC.
var pluginGOGC string

// loopbackDelivery sends deliveries to the proxy over a loopback socket
// instead of its InternalTransport.
var loopbackDelivery bool

// deliveryOptions points o at the proxy as -loopback-delivery says.
func deliveryOptions(o dispatch.Options, p *proxy.Proxy, proxyURL string) dispatch.Options {
	if loopbackDelivery {
		o.ProxyURL = proxyURL
	} else {
		o.Transport = p.InternalTransport()
	}
	return o
}

// pluginProfile, when set, is where the storage plugin writes its CPU
// profile.
var pluginProfile string

// logFile receives the server's log lines, as rotor serve's stderr would.
var (
	logFile    *os.File
	logRemove  bool
	serverLogs *slog.Logger
)

func openLog(path string) error {
	var err error
	if path == "" {
		logFile, err = os.CreateTemp("", "dispatchload-*.log")
		logRemove = true
	} else {
		logFile, err = os.Create(path)
	}
	if err != nil {
		return err
	}
	serverLogs = slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return nil
}

func closeLog() {
	logFile.Close()
	if logRemove {
		os.Remove(logFile.Name())
	}
}

func fail(err error) {
	pprof.StopCPUProfile()
	closeLog()
	fmt.Fprintln(os.Stderr, "dispatchload:", err)
	os.Exit(1)
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

// fastSpin is LaunchOptions.FastSpin (-fast-spin).
var fastSpin time.Duration

func openStore(ctx context.Context, pgDSN string, viaPlugin bool) (storage.Store, func(), error) {
	if viaPlugin {
		cfg := &pluginproto.ConfigureRequest{Backend: "bbolt"}
		cleanup := func() {}
		if pgDSN == "" {
			dir, err := os.MkdirTemp("", "dispatchload-")
			if err != nil {
				return nil, nil, err
			}
			cfg.Path = filepath.Join(dir, "rotor.db")
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
		env := []string{"ROTOR_BENCH_AS_PLUGIN=1"}
		if pluginGOGC != "" {
			env = append(env, "GOGC="+pluginGOGC)
		}
		if pluginProfile != "" {
			env = append(env, "ROTOR_BENCH_PLUGIN_CPUPROFILE="+pluginProfile)
		}
		s, err := plugins.Launch(ctx, plugins.LaunchOptions{Path: self, Env: env, Config: cfg, FastSpin: fastSpin})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close(); cleanup() }, nil
	}
	if pgDSN == "" {
		dir, err := os.MkdirTemp("", "dispatchload-")
		if err != nil {
			return nil, nil, err
		}
		s, err := bolt.Open(filepath.Join(dir, "rotor.db"), bolt.Options{})
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

func run(n, conc int, refs bool, pgDSN string, viaPlugin bool) error {
	ctx := context.Background()
	store, closeStore, err := openStore(ctx, pgDSN, viaPlugin)
	if err != nil {
		return err
	}
	defer closeStore()
	log := serverLogs
	v, op, bootKey, err := openVault(ctx, store, log)
	if err != nil {
		return err
	}
	defer v.Close(ctx)
	if _, err := v.CreateSecret(ctx, op, vault.CreateSecretRequest{Name: "NOTIFY_TOKEN", Value: vault.PlaintextString("tok_live_5f3a9c2e7d1b4a60")}); err != nil {
		return err
	}

	// The upstream records when each job arrived.
	var mu sync.Mutex
	arrived := make(map[string]time.Time, n)
	var got atomic.Int64
	all := make(chan struct{})
	arrive := func(id string) {
		now := time.Now()
		mu.Lock()
		if _, dup := arrived[id]; !dup {
			arrived[id] = now
			if got.Add(1) == int64(n) {
				close(all)
			}
		}
		mu.Unlock()
	}
	upURL, stopUp, err := "", func() {}, error(nil)
	if netHTTPHarness {
		upURL, stopUp, err = serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			arrive(r.Header.Get("webhook-id"))
			io.WriteString(w, "ok")
		}))
	} else {
		upURL, stopUp, err = serveUpstream(arrive)
	}
	if err != nil {
		return err
	}
	defer stopUp()

	tok := make([]byte, 16)
	rand.Read(tok)
	internal := hex.EncodeToString(tok)
	reg := prometheus.NewRegistry()
	p, err := proxy.New(proxy.Options{Vault: v, Logger: log, Registerer: reg, InternalToken: internal})
	if err != nil {
		return err
	}
	proxyURL, stopProxy, err := serve(p)
	if err != nil {
		return err
	}
	defer stopProxy()
	disp, err := dispatch.New(deliveryOptions(dispatch.Options{Store: store, Actors: v, InternalToken: internal, Logger: log, Registerer: reg}, p, proxyURL))
	if err != nil {
		return err
	}
	queues := dispatch.NewService(store, v, nil, disp.Notify)
	// Default quotas, read from storage as rotor serve does.
	apiURL, stopAPI, err := serve(api.New(api.Options{Vault: v, Queues: queues, Logger: log, Registerer: reg, Usage: store}))
	if err != nil {
		return err
	}
	defer stopAPI()
	dctx, stopDisp := context.WithCancel(ctx)
	dispDone := make(chan struct{})
	go func() { disp.Run(dctx); close(dispDone) }()
	defer func() { stopDisp(); <-dispDone }()

	cb, hdrs, payload := upURL+"/hook", map[string]string{}, `{"payload":{"event":"signup","n":1}}`
	if refs {
		cb = upURL + "/hook?token=${{ secrets.NOTIFY_TOKEN }}"
		hdrs["X-API-Key"] = "${{ secrets.NOTIFY_TOKEN }}"
		payload = `{"payload":{"event":"signup","token":"${{ secrets.NOTIFY_TOKEN }}"}}`
	}
	qspec, _ := json.Marshal(map[string]any{"name": "bench", "callback_url": cb, "callback_headers": hdrs, "concurrency": 256})
	// Keep-alive connections, one per client; a header timeout rather than
	// a per-request timer (the run's own bound is below).
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2, ResponseHeaderTimeout: time.Minute}}
	do := func(path, body string) (string, error) {
		req, _ := http.NewRequest("POST", apiURL+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+bootKey)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 201 {
			return "", fmt.Errorf("%s: %d %s", path, res.StatusCode, b)
		}
		return string(b), nil
	}
	if _, err := do("/v1/queues", string(qspec)); err != nil {
		return err
	}

	enqueued := make(map[string]time.Time, n)
	var emu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	start := time.Now()
	for range conc {
		wg.Go(func() {
			wc := &wireClient{addr: strings.TrimPrefix(apiURL, "http://")}
			defer wc.close()
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				var body string
				var err error
				if netHTTPHarness {
					body, err = do("/v1/queues/bench/jobs", payload)
				} else {
					var status int
					var resp []byte
					status, resp, err = wc.post("/v1/queues/bench/jobs", bootKey, payload)
					if err == nil && status != 201 {
						err = fmt.Errorf("enqueue: %d %.200s", status, resp)
					}
					body = string(resp)
				}
				if err != nil {
					errs <- err
					return
				}
				id := jobID(body)
				if id == "" {
					errs <- fmt.Errorf("enqueue answered without an id: %.200s", body)
					return
				}
				emu.Lock()
				enqueued[id] = t0
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	enqDone := time.Since(start)
	select {
	case err := <-errs:
		return err
	default:
	}
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("only %d of %d jobs delivered after 5 minutes", got.Load(), n)
	}
	total := time.Since(start)
	var lat []time.Duration
	mu.Lock()
	for id, t := range arrived {
		if e, ok := enqueued[id]; ok {
			lat = append(lat, t.Sub(e))
		}
	}
	mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		return lat[min(len(lat)-1, int(float64(len(lat))*p))].Round(time.Microsecond)
	}
	label := "without references"
	if refs {
		label = "with references (URL, header, payload)"
	}
	if pgDSN != "" {
		label = "postgres, " + label
	} else {
		label = "bbolt, " + label
	}
	if !viaPlugin {
		label = "in-process " + label
	}
	fmt.Printf("%-40s %d jobs, %d enqueuers: enqueued in %.2fs (%.0f/s), all delivered in %.2fs: %.0f jobs/s; enqueue-to-delivery p50 %v p99 %v\n",
		label, n, conc, enqDone.Seconds(), float64(n)/enqDone.Seconds(), total.Seconds(), float64(n)/total.Seconds(), pct(0.5), pct(0.99))
	return nil
}

// jobID is the "id" of an enqueue's answer, the one field the clients
// need: found directly rather than by decoding the whole job. The API
// writes it first.
func jobID(body string) string {
	const key = `"id":"`
	i := strings.Index(body, key)
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return ""
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
