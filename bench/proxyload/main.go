// Command proxyload is Rotor's proxy load harness (make bench). It runs,
// side by side in one run on this machine: plain goproxy passthrough with
// Go's default connection pool, plain goproxy with a tuned pool, Rotor
// passing requests without references (rotor-noref), and Rotor resolving
// references in the URL, a header and the body; for GET, 1 KiB POST and
// 64 KiB POST. Each proxy runs in its own child process so its CPU
// time can be read from /proc. It prints requests/s, p99 latency and proxy
// CPU µs per request, and ratios against the tuned passthrough. Then it
// streams a 1 GiB body with references through Rotor and reports the
// proxy's peak RSS.
//
// Everything is on loopback and every loop is bounded by time and count.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	child := flag.String("child", "", "internal: run one proxy variant (goproxy-default, goproxy-tuned, rotor)")
	dur := flag.Duration("duration", 5*time.Second, "measured time per variant and workload")
	warm := flag.Duration("warmup", time.Second, "warm-up per variant and workload")
	conc := flag.Int("concurrency", 32, "concurrent clients")
	streamGiB := flag.Int("stream-gib", 1, "size of the streamed body, GiB (0 to skip)")
	only := flag.String("only", "", "run only workloads whose name contains this (GET, 1KiB, 64KiB)")
	flag.Parse()
	if *child != "" {
		if err := runChild(*child); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		return
	}
	if err := runParent(*dur, *warm, *conc, *streamGiB, *only); err != nil {
		fmt.Fprintln(os.Stderr, "proxyload:", err)
		os.Exit(1)
	}
}

// ---- child: one proxy variant ----

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
	case "goproxy-tuned":
		gp := goproxy.NewProxyHttpServer()
		gp.Tr = &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 512, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}
		h = gp
	case "rotor", "rotor-noref":
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
		p, err := proxy.New(proxy.Options{Vault: v, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		h, key = p, boot.Key
	default:
		return fmt.Errorf("unknown variant %q", variant)
	}
	if path := os.Getenv("PROXYLOAD_CPUPROFILE"); path != "" && strings.HasPrefix(variant, "rotor") {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
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

type childProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	key   string
}

func startChild(variant string) (*childProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-child", variant)
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
	return &childProc{cmd: cmd, stdin: stdin, addr: f[0], key: f[1]}, nil
}

func (c *childProc) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// cpuTime is the child's user+system CPU time, from /proc/<pid>/stat.
func (c *childProc) cpuTime() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// peakRSS is the child's VmHWM, in bytes.
func (c *childProc) peakRSS() (int64, error) {
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
	name string
	body int
}

type result struct {
	variant, workload string
	reqs, errs        int64
	rps               float64
	p50, p99          time.Duration
	cpuPerReq         time.Duration
}

func runParent(dur, warm time.Duration, conc, streamGiB int, only string) error {
	var streamed atomic.Int64
	up := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/stream" {
			streamed.Add(n)
		}
		io.WriteString(w, "ok")
	})}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go up.Serve(upLn)
	defer up.Close()
	upURL := "http://" + upLn.Addr().String()

	workloads := []workload{{"GET", 0}, {"POST 1KiB", 1 << 10}, {"POST 64KiB", 64 << 10}}
	workloads = slices.DeleteFunc(workloads, func(w workload) bool { return !strings.Contains(w.name, only) })
	variants := []string{"goproxy-default", "goproxy-tuned", "rotor-noref", "rotor"}
	if v := os.Getenv("PROXYLOAD_VARIANTS"); v != "" {
		variants = strings.Split(v, ",")
	}
	fmt.Printf("proxy load: %d clients, %s per run after %s warm-up, %d cores, upstream and clients in this process, each proxy in its own\n\n",
		conc, dur, warm, numCPU())
	var results []result
	for _, wl := range workloads {
		for _, v := range variants {
			r, err := runLoad(v, wl, upURL, dur, warm, conc)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	fmt.Printf("%-16s %-11s %10s %10s %10s %14s %8s\n", "variant", "workload", "req/s", "p50", "p99", "proxy CPU/req", "errors")
	for _, r := range results {
		fmt.Printf("%-16s %-11s %10.0f %10s %10s %12.1fµs %8d\n", r.variant, r.workload, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), float64(r.cpuPerReq.Nanoseconds())/1000, r.errs)
	}
	fmt.Printf("\nratios against goproxy-tuned (req/s; CPU per request):\n")
	for _, wl := range workloads {
		var tuned result
		for _, r := range results {
			if r.workload == wl.name && r.variant == "goproxy-tuned" {
				tuned = r
			}
		}
		for _, r := range results {
			if r.workload == wl.name && r.variant != "goproxy-tuned" {
				fmt.Printf("  %-11s %-16s %5.2fx throughput  %5.2fx CPU/req\n", wl.name, r.variant, r.rps/tuned.rps, float64(r.cpuPerReq)/float64(tuned.cpuPerReq))
			}
		}
	}
	if streamGiB > 0 {
		if err := runStream(upURL, int64(streamGiB)<<30, &streamed); err != nil {
			return err
		}
	}
	return nil
}

func numCPU() int {
	data, _ := os.ReadFile("/proc/cpuinfo")
	return max(1, strings.Count(string(data), "processor\t:"))
}

// request builds one request: references for Rotor, the same values already
// in place for passthrough, so the upstream sees equal work.
func request(variant string, wl workload, upURL string) (*http.Request, error) {
	tok, user := tokenValue, userValue
	if variant == "rotor" {
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

func runLoad(variant string, wl workload, upURL string, dur, warm time.Duration, conc int) (result, error) {
	c, err := startChild(variant)
	if err != nil {
		return result{}, err
	}
	defer c.stop()
	pu, _ := url.Parse("http://" + c.addr)
	if c.key != "-" {
		pu.User = url.UserPassword("bench", c.key)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConns: 1024, MaxIdleConnsPerHost: conc * 2, DisableCompression: true}
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
	cpu0, err := c.cpuTime()
	if err != nil {
		return result{}, err
	}
	t0 := time.Now()
	n, errs, lat := phase(dur, true)
	elapsed := time.Since(t0)
	cpu1, _ := c.cpuTime()
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
	}
	return r, nil
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

func runStream(upURL string, size int64, streamed *atomic.Int64) error {
	c, err := startChild("rotor")
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
