package proxy

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLaneSweepIdle: connections idle past the timeout are closed by the
// pool's one timer, fresh ones kept.
func TestLaneSweepIdle(t *testing.T) {
	lc := &laneClient{}
	oldA, oldB := net.Pipe()
	newA, newB := net.Pipe()
	defer oldB.Close()
	defer newB.Close()
	lc.put(&upConn{c: oldA, key: "http://h:80"})
	lc.put(&upConn{c: newA, key: "http://h:80"})
	lc.mu.Lock()
	lc.idle["http://h:80"][0].idleAt = time.Now().Add(-2 * laneIdleTimeout)
	lc.mu.Unlock()
	lc.sweepIdle()
	if _, err := oldA.Write([]byte("x")); err == nil {
		t.Fatal("the stale connection is still open")
	}
	lc.mu.Lock()
	n := lc.nIdle
	lc.mu.Unlock()
	if n != 1 || lc.popIdle([]byte("http://h:80")) == nil {
		t.Fatalf("%d idle after the sweep", n)
	}
	lc.closeIdle()
}

// TestLaneConnKey: the pool key is scheme://host:port, the dial address
// after "://" as net.JoinHostPort writes it.
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
		if ja := net.JoinHostPort(r.URL.Hostname(), strings.TrimPrefix(want[strings.LastIndexByte(want, ':'):], ":")); addr != ja {
			t.Errorf("%s: address %q, net.JoinHostPort %q", raw, addr, ja)
		}
	}
}
