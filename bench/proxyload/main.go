// Command proxyload is Rotor's proxy load harness (make bench). It runs,
// side by side in one run on this machine: goproxy passthrough with a tuned
// connection pool (the baseline), Rotor as `rotor serve` runs it (the built
// binary with default settings: storage in the plugin subprocess, audit on,
// one JSON log line per request written to a file) passing requests without
// references (rotor-noref) and resolving references in the URL, a header and
// the body (rotor); and, as extra rows, the same at log level warn (no
// per-request line: rotor-warn) and Rotor's proxy in-process over bbolt
// with its log discarded (rotor-inproc). Workloads: GET, 1 KiB POST and
// 64 KiB POST in clear, and GET over HTTPS through CONNECT interception
// against goproxy's own MITM with the same pool. Each proxy runs in its own
// process so its CPU time (with the storage plugin's, for rotor serve) can
// be read from /proc. It prints requests/s, p99 latency and proxy CPU µs per
// request, and ratios against the tuned passthrough. Then it streams a 1 GiB
// body with references through rotor serve and reports the proxy's peak RSS.
// -rounds N interleaves N runs of everything and reports medians, each
// ratio followed by the spread [min-max] of its per-round ratios;
// -compare-bin adds another binary's rotor and rotor-noref to the same run.
// PROXYLOAD_VARIANTS=baseline,rotor,rotor-old (comma-separated) runs only
// those variants; "baseline" is each workload's goproxy. Every round's
// figures are printed (stdout) as the round ends.
//
// Everything is on loopback and every loop is bounded by time and count.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"

	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/vault"
)

const (
	tokenValue = "tok_live_5f3a9c2e7d1b4a60"
	userValue  = "acct-0042"
	maxReqs    = 5_000_000 // hard bound per run, whatever the duration
)

func main() {
	child := flag.String("child", "", "internal: run one proxy variant (goproxy-default, goproxy-tuned, goproxy-mitm, rotor-inproc)")
	dur := flag.Duration("duration", 5*time.Second, "measured time per variant and workload")
	warm := flag.Duration("warmup", time.Second, "warm-up per variant and workload")
	conc := flag.Int("concurrency", 32, "concurrent clients")
	streamGiB := flag.Int("stream-gib", 1, "size of the streamed body, GiB (0 to skip)")
	rounds := flag.Int("rounds", 1, "run every variant this many times, interleaved, and report medians")
	only := flag.String("only", "", "run only these workloads: exact names, comma-separated (GET, POST 1KiB, POST 64KiB, HTTPS GET)")
	bin := flag.String("rotor-bin", "", "the rotor binary to measure (default: go build ./cmd/rotor into a temporary directory)")
	flag.StringVar(&profileDir, "profile", "", "write CPU profiles of rotor serve and its storage plugin (ROTOR_PPROF) for each rotor variant's measured phase to this directory")
	old := flag.String("compare-bin", "", "another rotor binary (say, built from main) measured in the same run as rotor-old and rotor-noref-old")
	flag.Parse()
	if *child != "" {
		if err := runChild(*child); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		return
	}
	if err := runParent(*dur, *warm, *conc, *streamGiB, max(1, *rounds), *only, *bin, *old); err != nil {
		fmt.Fprintln(os.Stderr, "proxyload:", err)
		os.Exit(1)
	}
}

// ---- child: one in-process proxy variant ----

func runChild(variant string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var h http.Handler
	key := "-"
	switch variant {
	case "goproxy-default":
		gp := goproxy.NewProxyHttpServer()
		gp.Tr = &http.Transport{} // Go's defaults: 2 idle connections per host
		h = gp
	case "goproxy-tuned", "goproxy-mitm":
		gp := goproxy.NewProxyHttpServer()
		gp.Tr = tunedTransport()
		if variant == "goproxy-mitm" {
			// goproxy's own interception with Rotor's CA and the same pool.
			ca, err := proxy.LoadCA(os.Getenv("PROXYLOAD_CA_CERT"), os.Getenv("PROXYLOAD_CA_KEY"))
			if err != nil {
				return err
			}
			mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(ca)}
			gp.OnRequest().HandleConnect(goproxy.FuncHttpsHandler(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
				return mitm, host
			}))
		}
		h = gp
	case "rotor-inproc":
		dir, err := os.MkdirTemp("", "proxyload-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		store, err := bolt.Open(filepath.Join(dir, "rotor.db"), bolt.Options{})
		if err != nil {
			return err
		}
		defer store.Close()
		ctx := context.Background()
		v, err := vault.Open(ctx, vault.Options{Store: store, MasterKey: vault.GenerateMasterKey()})
		if err != nil {
			return err
		}
		defer v.Close(ctx)
		boot, err := v.Bootstrap(ctx, "")
		if err != nil {
			return err
		}
		op, _ := v.Authenticate(ctx, boot.Key)
		for name, val := range map[string]string{"TOKEN": tokenValue, "USER": userValue} {
			if _, err := v.CreateSecret(ctx, op, vault.CreateSecretRequest{Name: name, Value: vault.PlaintextString(val)}); err != nil {
				return err
			}
		}
		ca, err := proxy.LoadCA(os.Getenv("PROXYLOAD_CA_CERT"), os.Getenv("PROXYLOAD_CA_KEY"))
		if err != nil {
			return err
		}
		p, err := proxy.New(proxy.Options{Vault: v, Logger: slog.New(slog.DiscardHandler), CA: ca, UpstreamRoots: tunedTransport().TLSClientConfig.RootCAs})
		if err != nil {
			return err
		}
		h, key = p, boot.Key
	default:
		return fmt.Errorf("unknown variant %q", variant)
	}
	if path := os.Getenv("PROXYLOAD_CPUPROFILE"); path != "" && variant == "rotor-inproc" {
		// The in-process variant's profile (rotor serve has no profiler).
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("%s %s\n", ln.Addr(), key)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		io.Copy(io.Discard, os.Stdin) // the parent closes stdin to stop us
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// tunedTransport is the baseline's pool: the same sizes as Rotor's.
func tunedTransport() *http.Transport {
	roots, _ := x509.SystemCertPool()
	if roots == nil {
		roots = x509.NewCertPool()
	}
	if pem, err := os.ReadFile(os.Getenv("PROXYLOAD_UPSTREAM_CA")); err == nil {
		roots.AppendCertsFromPEM(pem)
	}
	return &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 512, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
}

// profileDir, when set, collects CPU profiles of rotor serve (its ops
// listener's /debug/pprof) and of its plugin during each measured phase.
var profileDir string

// proc is a proxy under load: a child of this harness, or rotor serve.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	key   string
	dir   string // rotor serve's data directory, removed at stop
	// pprof addresses (rotor serve with -profile): its ops listener and
	// its storage plugin's.
	ops, pluginPprof string
}

// env is what every variant of one run shares: the upstream's CA, Rotor's
// CA (for interception) and the binary.
type env struct {
	bin, old                string
	caCert, caKey, upstream string
}

func startChild(e env, variant string) (*proc, error) {
	switch variant {
	case "rotor", "rotor-noref":
		return startServe(e, e.bin)
	case "rotor-warn":
		return startServe(e, e.bin, "ROTOR_LOG_LEVEL=warn")
	case "rotor-std":
		// The same binary with the lane off (net/http and goproxy only).
		return startServe(e, e.bin, "ROTOR_PROXY_ENGINE=std")
	case "rotor-old", "rotor-noref-old":
		return startServe(e, e.old)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-child", variant)
	cmd.Env = append(os.Environ(), "PROXYLOAD_CA_CERT="+e.caCert, "PROXYLOAD_CA_KEY="+e.caKey, "PROXYLOAD_UPSTREAM_CA="+e.upstream)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not start: %w", variant, err)
	}
	f := strings.Fields(line)
	return &proc{cmd: cmd, stdin: stdin, addr: f[0], key: f[1]}, nil
}

const serveKey = "rtr_proxyload_bootstrap_key_0123456789abcdef"

// startServe runs `rotor serve` as an operator would: default settings, the
// storage plugin, the CA in the data directory, its JSON log in a file.
// Only the addresses, the bootstrap key and the upstream's CA are set.
func startServe(e env, bin string, extraEnv ...string) (*proc, error) {
	dir, err := os.MkdirTemp("", "proxyload-serve-")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	for src, dst := range map[string]string{e.caCert: proxy.CACertFile, e.caKey: proxy.CAKeyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(data, dst), b, 0o600); err != nil {
			return nil, err
		}
	}
	logPath := filepath.Join(dir, "rotor.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// Addresses picked here: at log level warn the server does not log
	// them.
	var addrs [4]string
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	api, ops := addrs[0], addrs[1]
	cmd := exec.Command(bin, "serve")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ROTOR_DATA_DIR="+data, "ROTOR_API_ADDR="+api, "ROTOR_OPS_ADDR="+ops,
		"ROTOR_PROXY_ADDR="+addrs[2], "ROTOR_LOG_FORMAT=json", "ROTOR_BOOTSTRAP_API_KEY="+serveKey,
		"ROTOR_PROXY_UPSTREAM_CA_FILE="+e.upstream)
	cmd.Env = append(cmd.Env, extraEnv...)
	if profileDir != "" {
		cmd.Env = append(cmd.Env, "ROTOR_PPROF=1", "ROTOR_PPROF_PLUGIN_ADDR="+addrs[3])
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, key: serveKey, dir: dir, addr: addrs[2]}
	if profileDir != "" {
		p.ops, p.pluginPprof = ops, addrs[3]
	}
	ready := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !ready; time.Sleep(50 * time.Millisecond) {
		if res, err := http.Get("http://" + ops + "/readyz"); err == nil {
			res.Body.Close()
			ready = res.StatusCode == http.StatusOK
		}
	}
	if !ready {
		p.stop()
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("rotor serve did not start:\n%s", b)
	}
	for name, val := range map[string]string{"TOKEN": tokenValue, "USER": userValue} {
		body, _ := json.Marshal(map[string]string{"name": name, "value": val})
		req, _ := http.NewRequest(http.MethodPost, "http://"+api+"/v1/secrets", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+serveKey)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			p.stop()
			return nil, err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			p.stop()
			return nil, fmt.Errorf("create secret %s: status %d", name, res.StatusCode)
		}
	}
	return p, nil
}

func (c *proc) stop() {
	if c.stdin != nil {
		c.stdin.Close()
	} else {
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// pids are the proxy's process and its children (rotor serve's storage
// plugin), whose CPU is the proxy's too.
func (c *proc) pids() []int {
	pid := c.cmd.Process.Pid
	out := []int{pid}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// cpuTime is the user+system CPU time of the proxy and its children, from
// /proc/<pid>/stat, and the children's part (rotor serve's storage plugin).
func (c *proc) cpuTime() (total, children time.Duration, err error) {
	for i, pid := range c.pids() {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, 0, err
		}
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseInt(fields[11], 10, 64)
		st, _ := strconv.ParseInt(fields[12], 10, 64)
		const clkTck = 100 // USER_HZ on Linux
		d := time.Duration(ut+st) * time.Second / clkTck
		total += d
		if i > 0 {
			children += d
		}
	}
	return total, children, nil
}

// peakRSS is the proxy process's VmHWM, in bytes.
func (c *proc) peakRSS() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmHWM")
}

// ---- parent: upstream, load, report ----

type workload struct {
	name  string
	body  int
	https bool
}

type result struct {
	variant, workload string
	reqs, errs        int64
	rps               float64
	p50, p99          time.Duration
	cpuPerReq         time.Duration
	// pluginPerReq is the storage plugin's part of cpuPerReq (rotor
	// variants; issue 15's audit rows are written there).
	pluginPerReq time.Duration
}

// baseline is the variant each workload's ratios are against.
func (w workload) baseline() string {
	if w.https {
		return "goproxy-mitm"
	}
	return "goproxy-tuned"
}

func (w workload) variants() []string {
	if w.https {
		return []string{"goproxy-mitm", "rotor-noref", "rotor"}
	}
	return []string{"goproxy-tuned", "rotor-noref", "rotor", "rotor-warn", "rotor-inproc"}
}

func runParent(dur, warm time.Duration, conc, streamGiB, rounds int, only, bin, old string) error {
	tmp, err := os.MkdirTemp("", "proxyload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if bin == "" {
		bin = filepath.Join(tmp, "rotor")
		fmt.Println("building ./cmd/rotor")
		out, err := exec.Command("go", "build", "-o", bin, "./cmd/rotor").CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build ./cmd/rotor (run from the repository root, or give -rotor-bin): %v\n%s", err, out)
		}
	}
	e := env{bin: bin, old: old, upstream: filepath.Join(tmp, "upstream.pem")}
	if e.caCert, e.caKey, err = proxy.InitCA(filepath.Join(tmp, "ca")); err != nil {
		return err
	}
	var streamed atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/stream" {
			streamed.Add(n)
		}
		io.WriteString(w, "ok")
	})
	up := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: handler}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go up.Serve(upLn)
	defer up.Close()
	upTLS := httptest.NewUnstartedServer(handler)
	upTLS.StartTLS()
	defer upTLS.Close()
	if err := os.WriteFile(e.upstream, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: upTLS.Certificate().Raw}), 0o644); err != nil {
		return err
	}
	upURL := map[bool]string{false: "http://" + upLn.Addr().String(), true: upTLS.URL}

	workloads := []workload{{"GET", 0, false}, {"POST 1KiB", 1 << 10, false}, {"POST 64KiB", 64 << 10, false}, {"HTTPS GET", 0, true}}
	workloads = slices.DeleteFunc(workloads, func(w workload) bool { return !selected(only, w.name) })
	if len(workloads) == 0 {
		return fmt.Errorf("-only %q names no workload (GET, POST 1KiB, POST 64KiB, HTTPS GET)", only)
	}
	fmt.Printf("proxy load: %d clients, %s per run after %s warm-up, %d round(s) (medians), %d cores, upstream and clients in this process, each proxy in its own\n\n",
		conc, dur, warm, rounds, numCPU())
	// Each round runs every variant of every workload once, so slow
	// phases of a shared machine fall on all variants alike; each cell is
	// the median over the rounds.
	runs := map[string][]result{}
	var order []string
	for round := range rounds {
		for _, wl := range workloads {
			variants := wl.variants()
			if old != "" {
				variants = append(variants, "rotor-noref-old", "rotor-old")
			}
			if v := os.Getenv("PROXYLOAD_VARIANTS"); v != "" {
				// "baseline" is the workload's own (goproxy-tuned, or
				// goproxy-mitm for HTTPS).
				variants = strings.Split(strings.ReplaceAll(v, "baseline", wl.baseline()), ",")
			}
			for _, v := range variants {
				r, err := runLoad(e, v, wl, upURL[wl.https], dur, warm, conc)
				if err != nil {
					return err
				}
				// Every round's figures as it ends: medians hide spread,
				// and a shared machine's reports want all rounds.
				fmt.Printf("round %d: %-16s %-11s %8.0f req/s %10s p99 %8.1fµs CPU/req %8.1fµs plugin\n", round+1, v, wl.name, r.rps, r.p99.Round(time.Microsecond), float64(r.cpuPerReq.Nanoseconds())/1000, float64(r.pluginPerReq.Nanoseconds())/1000)
				k := v + "\x00" + wl.name
				if round == 0 {
					order = append(order, k)
				}
				runs[k] = append(runs[k], r)
			}
		}
	}
	var results []result
	for _, k := range order {
		results = append(results, median(runs[k]))
	}
	fmt.Printf("%-16s %-11s %10s %10s %10s %14s %14s %8s\n", "variant", "workload", "req/s", "p50", "p99", "proxy CPU/req", "of it plugin", "errors")
	for _, r := range results {
		fmt.Printf("%-16s %-11s %10.0f %10s %10s %12.1fµs %12.1fµs %8d\n", r.variant, r.workload, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), float64(r.cpuPerReq.Nanoseconds())/1000, float64(r.pluginPerReq.Nanoseconds())/1000, r.errs)
	}
	fmt.Printf("\nratios against goproxy-tuned (HTTPS: goproxy-mitm) in this run (req/s; CPU per request)")
	if rounds > 1 {
		// A shared machine moves ±15% round to round: the spread of the
		// per-round ratios tells a robust median from a lucky one.
		fmt.Printf(", medians; [min-max] of the %d per-round ratios", rounds)
	}
	fmt.Printf(":\n")
	for _, wl := range workloads {
		var base result
		for _, r := range results {
			if r.workload == wl.name && r.variant == wl.baseline() {
				base = r
			}
		}
		for _, r := range results {
			if r.workload == wl.name && r.variant != wl.baseline() && base.rps > 0 {
				line := fmt.Sprintf("  %-11s %-16s %5.2fx throughput  %5.2fx CPU/req", wl.name, r.variant, r.rps/base.rps, float64(r.cpuPerReq)/float64(base.cpuPerReq))
				if rounds > 1 {
					tp, cpu := roundRatios(runs[r.variant+"\x00"+wl.name], runs[wl.baseline()+"\x00"+wl.name])
					line += fmt.Sprintf("  [%s throughput, %s CPU/req]", tp, cpu)
				}
				fmt.Println(line)
			}
		}
	}
	if streamGiB > 0 {
		if err := runStream(e, upURL[false], int64(streamGiB)<<30, &streamed); err != nil {
			return err
		}
	}
	return nil
}

// roundRatios is the spread (min-max, "0.95-1.08x") of the per-round
// ratios of rs to base (throughput; CPU per request), round i against
// round i: both ran in the same round, so they shared its noise.
func roundRatios(rs, base []result) (throughput, cpu string) {
	var tp, cp []float64
	for i := range min(len(rs), len(base)) {
		if base[i].rps > 0 && base[i].cpuPerReq > 0 {
			tp = append(tp, rs[i].rps/base[i].rps)
			cp = append(cp, float64(rs[i].cpuPerReq)/float64(base[i].cpuPerReq))
		}
	}
	spread := func(v []float64) string {
		if len(v) == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f-%.2fx", slices.Min(v), slices.Max(v))
	}
	return spread(tp), spread(cp)
}

// median is the median of each figure over rounds (taken separately).
func median(rs []result) result {
	m := rs[0]
	mid := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m.rps = mid(func(r result) float64 { return r.rps })
	m.p50 = time.Duration(mid(func(r result) float64 { return float64(r.p50) }))
	m.p99 = time.Duration(mid(func(r result) float64 { return float64(r.p99) }))
	m.cpuPerReq = time.Duration(mid(func(r result) float64 { return float64(r.cpuPerReq) }))
	m.pluginPerReq = time.Duration(mid(func(r result) float64 { return float64(r.pluginPerReq) }))
	for _, r := range rs[1:] {
		m.errs += r.errs
	}
	return m
}

func numCPU() int {
	data, _ := os.ReadFile("/proc/cpuinfo")
	return max(1, strings.Count(string(data), "processor\t:"))
}

// request builds one request: references for Rotor, the same values already
// in place for passthrough, so the upstream sees equal work.
func request(variant string, wl workload, upURL string) (*http.Request, error) {
	tok, user := tokenValue, userValue
	if variant == "rotor" || variant == "rotor-inproc" || variant == "rotor-old" || variant == "rotor-warn" || variant == "rotor-std" {
		tok, user = "${{ secrets.TOKEN }}", "${{ secrets.USER }}"
	}
	method, ctype := http.MethodGet, ""
	var body []byte
	if wl.body > 0 {
		method, ctype = http.MethodPost, "application/json"
		var b bytes.Buffer
		b.WriteString(`{"account":"` + user + `","token":"` + tok + `","pad":"`)
		for b.Len() < wl.body-2 {
			b.WriteByte('x')
		}
		b.WriteString(`"}`)
		body = b.Bytes()
	}
	req, err := http.NewRequest(method, upURL+"/hooks/"+url.PathEscape(user)+"?token="+url.QueryEscape(tok), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	return req, nil
}

func runLoad(e env, variant string, wl workload, upURL string, dur, warm time.Duration, conc int) (result, error) {
	c, err := startChild(e, variant)
	if err != nil {
		return result{}, err
	}
	defer c.stop()
	pu, _ := url.Parse("http://" + c.addr)
	if c.key != "-" {
		pu.User = url.UserPassword("bench", c.key)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConns: 1024, MaxIdleConnsPerHost: conc * 2, DisableCompression: true}
	if wl.https {
		// The client trusts the intercepting CA (Rotor's, which goproxy-mitm
		// uses too); each connection is one CONNECT tunnel, kept alive.
		roots := x509.NewCertPool()
		b, err := os.ReadFile(e.caCert)
		if err != nil {
			return result{}, err
		}
		roots.AppendCertsFromPEM(b)
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
		if c.key != "-" {
			tr.ProxyConnectHeader = http.Header{"Proxy-Authorization": {"Bearer " + c.key}}
		}
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	tmpl, err := request(variant, wl, upURL)
	if err != nil {
		return result{}, err
	}
	var body []byte
	if tmpl.Body != nil {
		body, _ = io.ReadAll(tmpl.Body)
	}
	one := func() error {
		req := tmpl.Clone(context.Background())
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ContentLength = int64(len(body))
		}
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return err
	}
	// A first request must succeed: a broken setup is an error, not a figure.
	if err := one(); err != nil {
		return result{}, fmt.Errorf("%s %s: %w", variant, wl.name, err)
	}
	phase := func(d time.Duration, record bool) (int64, int64, []time.Duration) {
		deadline := time.Now().Add(d)
		var n, errs atomic.Int64
		lat := make([][]time.Duration, conc)
		var wg sync.WaitGroup
		for i := range conc {
			wg.Go(func() {
				for time.Now().Before(deadline) && n.Load() < maxReqs {
					t0 := time.Now()
					if err := one(); err != nil {
						errs.Add(1)
						continue
					}
					n.Add(1)
					if record {
						lat[i] = append(lat[i], time.Since(t0))
					}
				}
			})
		}
		wg.Wait()
		var all []time.Duration
		for _, l := range lat {
			all = append(all, l...)
		}
		return n.Load(), errs.Load(), all
	}
	phase(warm, false)
	cpu0, plug0, err := c.cpuTime()
	if err != nil {
		return result{}, err
	}
	t0 := time.Now()
	prof := c.profile(variant, wl.name, dur)
	n, errs, lat := phase(dur, true)
	elapsed := time.Since(t0)
	if err := prof(); err != nil {
		return result{}, err
	}
	cpu1, plug1, _ := c.cpuTime()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	r := result{variant: variant, workload: wl.name, reqs: n, errs: errs, rps: float64(n) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99)}
	if n > 0 {
		r.cpuPerReq = (cpu1 - cpu0) / time.Duration(n)
		r.pluginPerReq = (plug1 - plug0) / time.Duration(n)
	}
	return r, nil
}

// profile starts CPU profiles of rotor serve and its plugin lasting d;
// the function it returns waits for them and writes them to profileDir.
func (c *proc) profile(variant, workload string, d time.Duration) func() error {
	if c.ops == "" {
		return func() error { return nil }
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	name := strings.ReplaceAll(variant+"-"+workload, " ", "")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, t := range []struct{ addr, file string }{{c.ops, name + ".rotor.pprof"}, {c.pluginPprof, name + ".plugin.pprof"}} {
		wg.Go(func() {
			res, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.addr, secs))
			if err != nil {
				errs[i] = fmt.Errorf("profile %s: %w", t.file, err)
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err == nil && res.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", res.StatusCode)
			}
			if err == nil {
				err = os.WriteFile(filepath.Join(profileDir, t.file), b, 0o644)
			}
			if err != nil {
				errs[i] = fmt.Errorf("profile %s: %w", t.file, err)
			}
		})
	}
	return func() error { wg.Wait(); return errors.Join(errs...) }
}

// refReader yields size bytes of text with a reference every ~1 KiB.
type refReader struct {
	left int64
	buf  []byte
	off  int
}

func (r *refReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if r.off == len(r.buf) {
		r.off = 0
	}
	n := copy(p, r.buf[r.off:])
	n = int(min(int64(n), r.left))
	r.off += n
	r.left -= int64(n)
	return n, nil
}

func runStream(e env, upURL string, size int64, streamed *atomic.Int64) error {
	c, err := startChild(e, "rotor")
	if err != nil {
		return err
	}
	defer c.stop()
	pu, _ := url.Parse("http://" + c.addr)
	pu.User = url.UserPassword("bench", c.key)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 10 * time.Minute}
	line := []byte("data " + strings.Repeat("x", 1000) + " ${{ secrets.TOKEN }}\n")
	body := &refReader{left: size, buf: bytes.Repeat(line, 64)}
	req, _ := http.NewRequest(http.MethodPost, upURL+"/stream", body)
	req.Header.Set("Content-Type", "text/plain")
	req.ContentLength = -1 // chunked: the client streams too
	rss0, _ := c.peakRSS()
	t0 := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	elapsed := time.Since(t0)
	rss, err := c.peakRSS()
	if err != nil {
		return err
	}
	refs := size / int64(len(line))
	want := size + refs*int64(len(tokenValue)-len("${{ secrets.TOKEN }}"))
	fmt.Printf("\nstreaming %d MiB with ~%d references through Rotor: status %d, upstream got %d bytes (expected about %d), %.0f MiB/s\n",
		size>>20, refs, res.StatusCode, streamed.Load(), want, float64(size)/(1<<20)/elapsed.Seconds())
	fmt.Printf("  proxy peak RSS (VmHWM): %.1f MiB (before the stream: %.1f MiB); target < 64 MiB\n", float64(rss)/(1<<20), float64(rss0)/(1<<20))
	if res.StatusCode != 200 {
		return fmt.Errorf("stream: status %d", res.StatusCode)
	}
	return nil
}

// selected reports whether -only picks the workload: every workload when
// only is empty, otherwise exact names from a comma list ("GET" is the
// plain GET, not also "HTTPS GET").
func selected(only, name string) bool {
	if only == "" {
		return true
	}
	for n := range strings.SplitSeq(only, ",") {
		if strings.TrimSpace(n) == name {
			return true
		}
	}
	return false
}
