package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"rotor.sh/rotor/proxy"
)

// testEngine is the engine the proxy suites run on: the lane unless
// ROTOR_TEST_PROXY_ENGINE=std (make test runs both).
func testEngine() string {
	if e := os.Getenv("ROTOR_TEST_PROXY_ENGINE"); e != "" {
		return e
	}
	return proxy.DefaultEngine
}

// serveProxy serves p on a loopback listener with the engine under test.
// The *httptest.Server is the listener and URL; with the lane it is never
// started (the lane serves its listener; Config.Handler is still p).
func serveProxy(t testing.TB, p *proxy.Proxy) *httptest.Server {
	t.Helper()
	if testEngine() == proxy.EngineStd {
		return httptest.NewServer(p)
	}
	srv := httptest.NewUnstartedServer(p)
	srv.URL = "http://" + srv.Listener.Addr().String()
	ls := p.NewLaneServer(&http.Server{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ls.Serve(srv.Listener)
	}()
	t.Cleanup(func() {
		ls.Close()
		<-done
	})
	return srv
}
