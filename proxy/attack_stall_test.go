package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"rotor.sh/rotor/proxy"
)

// TestAttackLaneStallAfterClientLeft: an upstream that stops sending (after
// part of a body, or before its head) while the client gives up and hangs
// up must not hold the proxy's connection to it, a goroutine and buffers
// until the upstream chooses to close. A worker with a client timeout that
// retries against such a host would otherwise pile up one held upstream
// connection per attempt (file descriptors are shared by every tenant).
// On std the request's context ends when the client hangs up (net/http
// reads the connection in the background); the lane did not read the
// client's connection while it waited, so it held the exchange until the
// upstream closed (here: the harness's 20 s).
func TestAttackLaneStallAfterClientLeft(t *testing.T) {
	e := newEnv(t)
	addrs := engineProxies(t, e)
	for _, engine := range []string{proxy.EngineStd, proxy.EngineLane} {
		for _, stall := range []string{"mid-body", "before-head"} {
			t.Run(engine+"/"+stall, func(t *testing.T) {
				gone := make(chan time.Duration, 1)
				up := hostileUpstream(t, func(_ int, c net.Conn, br *bufio.Reader) {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if stall == "mid-body" {
						// The head and a first part of the body: the proxy
						// relays them, then waits for the rest.
						if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"+string(make([]byte, 8192))); err != nil {
							return
						}
					}
					start := time.Now()
					// Nothing more is sent: wait for the proxy to close its
					// end (the harness's deadline ends this after 20 s).
					_, _ = io.Copy(io.Discard, br)
					gone <- time.Since(start)
				})
				c, err := net.Dial("tcp", addrs[engine])
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "GET http://%s/stall HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer %s\r\n\r\n", up, up, e.key)
				if stall == "mid-body" {
					// The client sees the response start, then gives up.
					if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
						t.Fatalf("no response head: %v", err)
					}
				} else {
					time.Sleep(300 * time.Millisecond)
				}
				c.Close()
				if d := <-gone; d > 8*time.Second {
					t.Fatalf("the proxy held its connection to a stalled upstream for %v after the client left", d.Round(time.Second))
				}
			})
		}
	}
}
