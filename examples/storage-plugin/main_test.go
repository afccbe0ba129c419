package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"rotor.sh/rotor/plugins"
	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage/storagetest"
)

// build builds the example plugin as an operator would.
func build(t *testing.T) string {
	t.Helper()
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
	return bin
}

// TestConformance runs the whole storage conformance suite against the
// built binary, through the host client rotor uses (what `make conformance
// PLUGIN=...` does).
func TestConformance(t *testing.T) {
	bin := build(t)
	storagetest.RunPlugin(t, storagetest.PluginConfig{Path: bin})
	t.Run("WrongBackend", func(t *testing.T) {
		_, err := plugins.Launch(context.Background(), plugins.LaunchOptions{Path: bin,
			Config: &pb.ConfigureRequest{Backend: "postgres", Dsn: "postgres://127.0.0.1/x"}})
		if err == nil || !strings.Contains(err.Error(), `serves backend "bbolt", not "postgres"`) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("a backend the plugin does not serve: got %v, want a one-line refusal", err)
		}
		t.Log(err)
	})
}
