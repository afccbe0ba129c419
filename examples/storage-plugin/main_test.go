package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"rotor.sh/rotor/storage/storagetest"
)

// TestConformance builds the example plugin as an operator would and runs
// the whole storage conformance suite against the binary, through the host
// client rotor uses (what `make conformance PLUGIN=...` does).
func TestConformance(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "storage-plugin")
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the example: %v", err)
	}
	cmd := exec.Command(gobin, "build", "-o", bin, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build the example plugin: %v", err)
	}
	storagetest.RunPlugin(t, storagetest.PluginConfig{Path: bin, Backend: "example-bbolt"})
}
