package cli

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestPprofOptIn: profiling is off unless ROTOR_PPROF=1, and then only on
// a loopback ops address (a heap profile can hold plaintext).
func TestPprofOptIn(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ops := http.NotFoundHandler()
	get := func(h http.Handler) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/cmdline", nil))
		return rec.Code
	}
	t.Setenv(envPprof, "")
	h, err := withPprof(log, "127.0.0.1:8082", ops)
	if err != nil || get(h) != http.StatusNotFound {
		t.Fatalf("off by default: err %v, status %d", err, get(h))
	}
	t.Setenv(envPprof, "1")
	if h, err = withPprof(log, "127.0.0.1:8082", ops); err != nil || get(h) != http.StatusOK {
		t.Fatalf("ROTOR_PPROF=1 on loopback: err %v", err)
	}
	if _, err := withPprof(log, "0.0.0.0:8082", ops); !errors.Is(err, errPprofNotLoopback) {
		t.Fatalf("non-loopback ops address: %v", err)
	}
	t.Setenv(envPprofPluginAddr, "10.0.0.1:6061")
	if _, err := pluginPprofEnv(); !errors.Is(err, errPprofNotLoopback) {
		t.Fatalf("non-loopback plugin address: %v", err)
	}
	t.Setenv(envPprofPluginAddr, "127.0.0.1:6061")
	if env, err := pluginPprofEnv(); err != nil || len(env) != 1 || env[0] != envPluginPprofAddr+"=127.0.0.1:6061" {
		t.Fatalf("plugin env %v, %v", env, err)
	}
}
