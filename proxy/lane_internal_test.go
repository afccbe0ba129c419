package proxy

import (
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestLaneSweepIdle: connections idle past the timeout are closed by the
// pool's one timer, fresh ones kept.
func TestLaneSweepIdle(t *testing.T) {
	lc := &laneClient{}
	k := laneKey{dest: "http://h:80"}
	oldA, oldB := net.Pipe()
	newA, newB := net.Pipe()
	defer oldB.Close()
	defer newB.Close()
	lc.put(&upConn{c: oldA, key: k})
	lc.put(&upConn{c: newA, key: k})
	lc.mu.Lock()
	lc.idle[k][0].idleAt = time.Now().Add(-2 * laneIdleTimeout)
	lc.mu.Unlock()
	lc.sweepIdle()
	if _, err := oldA.Write([]byte("x")); err == nil {
		t.Fatal("the stale connection is still open")
	}
	lc.mu.Lock()
	n := lc.nIdle
	lc.mu.Unlock()
	if n != 1 || lc.popIdle(k.pool, []byte(k.dest)) == nil {
		t.Fatalf("%d idle after the sweep", n)
	}
	lc.closeIdle()
}

// TestLaneConnKey: the pool key's destination is scheme://host:port, the
// dial address after "://" as net.JoinHostPort writes it.
func TestLaneConnKey(t *testing.T) {
	for raw, want := range map[string]string{
		"http://example.com/x":      "http://example.com:80",
		"https://example.com/x":     "https://example.com:443",
		"http://example.com:8080/x": "http://example.com:8080",
		"https://[::1]:8443/x":      "https://[::1]:8443",
		"http://[fe80::1%25eth0]/x": "http://[fe80::1%eth0]:80",
		"https://10.0.0.1/":         "https://10.0.0.1:443",
	} {
		r, err := http.NewRequest(http.MethodGet, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := laneConnKey(nil, r)
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", raw, got, err, want)
		}
		addr := string(got[len(r.URL.Scheme)+3:])
		if ja := net.JoinHostPort(r.URL.Hostname(), want[strings.LastIndexByte(want, ':')+1:]); addr != ja {
			t.Errorf("%s: address %q, net.JoinHostPort %q", raw, addr, ja)
		}
	}
}

// TestLanePoolKeyedByPool: a connection pooled for one pool is never
// popped for another pool with the same destination.
func TestLanePoolKeyedByPool(t *testing.T) {
	lc := &laneClient{}
	a, b := net.Pipe()
	defer b.Close()
	dest := []byte("http://h:80")
	lc.put(&upConn{c: a, key: laneKey{upstreamPool{workspace: "ws_a"}, string(dest)}})
	for _, other := range []upstreamPool{{workspace: "ws_b"}, {workspace: "ws_a", dispatch: true}, {}} {
		if lc.popIdle(other, dest) != nil {
			t.Fatalf("pool %+v got ws_a's connection", other)
		}
	}
	if lc.popIdle(upstreamPool{workspace: "ws_a"}, dest) == nil {
		t.Fatal("ws_a lost its connection")
	}
	lc.closeIdle()
}

// TestLaneCtxHold: the connection context's end expires the upstream
// connection held then, and that connection is not pooled after (release
// reports false); a second exchange at once falls back to AfterFunc.
func TestLaneCtxHold(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	defer a.Close()
	uc, other := &upConn{c: a}, &upConn{c: a}
	c := newLaneCtx()
	if got := c.hold(uc); got != laneHeld {
		t.Fatalf("hold: %d", got)
	}
	if got := c.hold(other); got != laneInUse {
		t.Fatalf("second hold: %d", got)
	}
	c.cancel()
	if _, err := a.Read(make([]byte, 1)); err == nil || !os.IsTimeout(err) {
		t.Fatalf("read after cancel: %v, want a timeout", err)
	}
	if c.release(uc) {
		t.Fatal("release after cancel reports the connection poolable")
	}
	if got := c.hold(other); got != laneEnded || c.Err() == nil {
		t.Fatalf("hold after cancel: %d, context error %v", got, c.Err())
	}
	c2 := newLaneCtx()
	if c2.hold(uc) != laneHeld || !c2.release(uc) {
		t.Fatal("a released connection is not poolable")
	}
	c2.cancel() // holds nothing now: must not touch uc
	if c2.up != nil {
		t.Fatal("cancel kept a connection")
	}
}
