package proxy

import (
	"net"
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
	if n != 1 || lc.popIdle("http://h:80") == nil {
		t.Fatalf("%d idle after the sweep", n)
	}
	lc.closeIdle()
}
