package cli

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// Opt-in profiling (issue 15): ROTOR_PPROF=1 mounts net/http/pprof on the
// ops listener, and ROTOR_PPROF_PLUGIN_ADDR=127.0.0.1:PORT has the storage
// plugin serve it there. Both are off by default and loopback only: a
// profile shows code paths and timings, and a heap dump could hold
// plaintext, so it must never be reachable from the network.
const (
	envPprof           = "ROTOR_PPROF"
	envPprofPluginAddr = "ROTOR_PPROF_PLUGIN_ADDR"
	// envPluginPprofAddr is how the address reaches the plugin, whose
	// environment is otherwise empty.
	envPluginPprofAddr = "ROTOR_PLUGIN_PPROF_ADDR"
)

var errPprofNotLoopback = errors.New("ROTOR_PPROF needs a loopback ops address (and ROTOR_PPROF_PLUGIN_ADDR a loopback address)")

func pprofMux(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if next != nil {
		mux.Handle("/", next)
	}
	return mux
}

// withPprof wraps the ops handler when ROTOR_PPROF=1.
func withPprof(log *slog.Logger, opsAddr string, ops http.Handler) (http.Handler, error) {
	if os.Getenv(envPprof) != "1" {
		return ops, nil
	}
	if !isLoopbackAddr(opsAddr) {
		return nil, errPprofNotLoopback
	}
	log.Warn("profiling enabled on the ops listener (/debug/pprof/)", "addr", opsAddr)
	return pprofMux(ops), nil
}

// pluginPprofEnv is the plugin's environment entry for profiling, if asked.
func pluginPprofEnv() ([]string, error) {
	addr := os.Getenv(envPprofPluginAddr)
	if addr == "" {
		return nil, nil
	}
	if !isLoopbackAddr(addr) {
		return nil, errPprofNotLoopback
	}
	return []string{envPluginPprofAddr + "=" + addr}, nil
}

// servePluginPprof runs in the plugin process for its whole life (the
// process exits with its parent), so the listener has no other owner.
func servePluginPprof() {
	addr := os.Getenv(envPluginPprofAddr)
	if addr == "" || !isLoopbackAddr(addr) {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return
	}
	srv := &http.Server{Handler: pprofMux(nil), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
}
