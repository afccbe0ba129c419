package storagetest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rotor.sh/rotor/storage/storagetest"
)

// TestConformancePlugin certifies any storage plugin binary: it runs only
// when ROTOR_CONFORMANCE_PLUGIN names one (`make conformance PLUGIN=...`;
// make test covers the example plugin and rotor's own elsewhere).
func TestConformancePlugin(t *testing.T) {
	path := os.Getenv("ROTOR_CONFORMANCE_PLUGIN")
	if path == "" {
		t.Skip("set ROTOR_CONFORMANCE_PLUGIN to a plugin binary (make conformance PLUGIN=path/to/binary)")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("plugin binary: %v", err)
	}
	storagetest.RunPlugin(t, storagetest.PluginConfig{
		Path:     abs,
		Args:     strings.Fields(os.Getenv("ROTOR_CONFORMANCE_ARGS")),
		Backend:  os.Getenv("ROTOR_CONFORMANCE_BACKEND"),
		Postgres: os.Getenv("ROTOR_CONFORMANCE_POSTGRES") == "1",
	})
}
