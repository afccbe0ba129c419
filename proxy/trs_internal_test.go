package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// pastSweep makes the next new pool find the last sweep d ago.
func pastSweep(p *Proxy, d time.Duration) { p.trsSwept.Store(time.Now().Add(-d).UnixNano()) }

// TestPoolTransportsIdleDropped: a pool transport unused for a whole sweep
// period goes at the next sweep, its idle connections closed; one used
// meanwhile stays (the same transport, its connections kept).
func TestPoolTransportsIdleDropped(t *testing.T) {
	var closed atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	up.Start()
	defer up.Close()
	p := &Proxy{tr: &http.Transport{}}
	get := func(ws string) {
		t.Helper()
		req, _ := http.NewRequest("GET", up.URL, nil)
		res, err := p.trFor(upstreamPool{workspace: ws}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	pastSweep(p, 0)
	for i := range 10 {
		get(fmt.Sprint("ws_", i)) // each leaves one idle connection
	}
	kept := p.trFor(upstreamPool{workspace: "ws_0"})
	// The first sweep only clears the used flags: every pool was used.
	pastSweep(p, poolSweepEvery)
	p.trFor(upstreamPool{workspace: "ws_x"})
	if n := p.nTrs.Load(); n != 11 {
		t.Fatalf("%d pool transports after a sweep of used ones, want 11", n)
	}
	get("ws_0")
	pastSweep(p, poolSweepEvery)
	p.trFor(upstreamPool{workspace: "ws_y"})
	if n := p.nTrs.Load(); n != 3 {
		t.Fatalf("%d pool transports after ws_1..9 idled a sweep period, want 3 (ws_0 used, ws_x made since the first sweep, ws_y)", n)
	}
	if p.trFor(upstreamPool{workspace: "ws_0"}) != kept {
		t.Fatal("the pool used between sweeps lost its transport")
	}
	for i := 0; i < 500 && closed.Load() < 9; i++ {
		time.Sleep(2 * time.Millisecond)
	}
	if c := closed.Load(); c != 9 {
		t.Fatalf("%d upstream connections closed, want the 9 idle ones of the dropped pools", c)
	}
	if p.trFor(upstreamPool{workspace: "ws_1"}) == nil || p.nTrs.Load() != 4 {
		t.Fatalf("a dropped pool is not made again on its next request (%d transports)", p.nTrs.Load())
	}
}

// TestPoolTransportsCapped: past maxPoolTransports, sweeps run once a
// second instead of every poolSweepEvery, so a burst of new workspaces
// does not keep its clones for the whole period.
func TestPoolTransportsCapped(t *testing.T) {
	p := &Proxy{tr: &http.Transport{}}
	pastSweep(p, 0)
	for i := range maxPoolTransports + 1 {
		p.trFor(upstreamPool{workspace: fmt.Sprint("ws_", i)})
	}
	for i := range 2 { // clear the flags, then drop
		pastSweep(p, 2*time.Second)
		p.trFor(upstreamPool{workspace: fmt.Sprint("ws_new", i)})
	}
	if n := p.nTrs.Load(); n != 2 {
		t.Fatalf("%d pool transports after two sweeps over the cap, want 2 (ws_new0, ws_new1)", n)
	}
}

// BenchmarkTrForHit: the hot path of a known pool (no lock, no write).
func BenchmarkTrForHit(b *testing.B) {
	p := &Proxy{tr: &http.Transport{}}
	pool := upstreamPool{workspace: "ws_a"}
	p.trFor(pool)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.trFor(pool)
		}
	})
}
