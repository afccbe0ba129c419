package integration

import (
	"strings"
	"testing"
)

// TestAttackPprofExposure: profiling (ROTOR_PPROF=1) is served on the ops
// listener only, never on the API or proxy listeners, and a node whose ops
// listener (or the plugin's profiling address) is not on loopback refuses
// to start rather than serve profiles to the network. Off by default.
func TestAttackPprofExposure(t *testing.T) {
	for _, env := range [][]string{
		{"ROTOR_PPROF=1", "ROTOR_OPS_ADDR=0.0.0.0:0"},
		{"ROTOR_PPROF=1", "ROTOR_OPS_ADDR=:0"},
		{"ROTOR_PPROF=1", "ROTOR_PPROF_PLUGIN_ADDR=0.0.0.0:0"},
	} {
		s := tryStart(t, t.TempDir(), env...)
		if s.apiURL != "" {
			t.Fatalf("%v: started", env)
		}
		if !strings.Contains(s.out.String(), "loopback") {
			t.Errorf("%v: the refusal does not say why:\n%s", env, tail(s.out.String(), 2000))
		}
	}

	off := startServer(t, t.TempDir())
	if code, _ := call(t, "GET", off.opsURL+"/debug/pprof/cmdline", "", ""); code != 404 {
		t.Errorf("without ROTOR_PPROF, ops /debug/pprof/cmdline: %d, want 404", code)
	}
	off.stop()

	s := startServer(t, t.TempDir(), "ROTOR_PPROF=1")
	defer s.stop()
	if code, _ := call(t, "GET", s.opsURL+"/debug/pprof/cmdline", "", ""); code != 200 {
		t.Errorf("ROTOR_PPROF=1, ops /debug/pprof/cmdline: %d, want 200", code)
	}
	key := s.adminKey()
	for _, base := range []string{s.apiURL, s.proxyURL} {
		for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
			if code, body := call(t, "GET", base+p, key, ""); code == 200 {
				t.Errorf("%s%s answers 200 (%.80s): profiling outside the ops listener", base, p, body)
			}
		}
	}
}
