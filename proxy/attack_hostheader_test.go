package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/proxy"
)

// TestAttackDestinationConfusion: a worker names the secret's allowed host
// in every place but the one the proxy dials (the Host header, URL
// userinfo, an absolute URL in the path, a second Host header) and sends
// the request to its own upstream. allowed_hosts must be checked against
// the address the request is sent to: the attacker's upstream receives
// nothing and the worker gets 403 host_not_allowed.
func TestAttackDestinationConfusion(t *testing.T) {
	e := newEnv(t)
	good := newUpstream(t, false)
	evil := newUpstream(t, false)
	goodHost := good.Listener.Addr().String()
	evilHost := evil.Listener.Addr().String()
	e.secret("BOUND", tokenValue, goodHost)
	paddr := strings.TrimPrefix(e.proxy.URL, "http://")
	auth := "Proxy-Authorization: Bearer " + e.key + "\r\n"
	for _, c := range []struct{ name, raw string }{
		{"host header", "GET http://" + evilHost + "/x HTTP/1.1\r\nHost: " + goodHost + "\r\n"},
		{"userinfo", "GET http://" + goodHost + "@" + evilHost + "/x HTTP/1.1\r\nHost: " + evilHost + "\r\n"},
		{"userinfo with scheme", "GET http://" + strings.Replace(goodHost, ":", "%3A", 1) + "@" + evilHost + "/x HTTP/1.1\r\nHost: " + evilHost + "\r\n"},
		{"absolute path", "GET http://" + evilHost + "/http://" + goodHost + "/x HTTP/1.1\r\nHost: " + evilHost + "\r\n"},
		{"two host headers", "GET http://" + evilHost + "/x HTTP/1.1\r\nHost: " + goodHost + "\r\nHost: " + goodHost + "\r\n"},
		{"fragment", "GET http://" + evilHost + "/x#@" + goodHost + " HTTP/1.1\r\nHost: " + evilHost + "\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := evil.count()
			req := c.raw + auth + "X-Key: ${{ secrets.BOUND }}\r\nConnection: close\r\n\r\n"
			status, code := rawProxy(t, paddr, req)
			if evil.count() != before {
				got := evil.last(t)
				t.Fatalf("the attacker's upstream got the request (X-Key %q)", got.Header.Get("X-Key"))
			}
			if status < 400 || status == 403 && code != proxy.CodeHostNotAllowed {
				t.Fatalf("status %d %q", status, code)
			}
		})
	}
	// The allowed destination itself still works (the test can pass).
	before := good.count()
	status, _ := rawProxy(t, paddr, "GET http://"+goodHost+"/x HTTP/1.1\r\nHost: "+goodHost+"\r\n"+auth+"X-Key: ${{ secrets.BOUND }}\r\nConnection: close\r\n\r\n")
	if status != 200 || good.count() != before+1 || good.last(t).Header.Get("X-Key") != tokenValue {
		t.Fatalf("allowed destination: %d", status)
	}
}

// rawProxy writes one request to the proxy as given and returns the
// response's status and X-Rotor-Error.
func rawProxy(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(fmt.Errorf("reading the proxy's answer: %w", err))
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	return res.StatusCode, res.Header.Get(proxy.HeaderError)
}
