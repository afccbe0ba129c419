package plugins_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"rotor.sh/rotor/plugins"
	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/postgres/pgtest"
	"rotor.sh/rotor/storage/storagetest"
)

// The test binary doubles as the plugin: run with ROTOR_TEST_AS_PLUGIN=1 it
// serves, like `rotor plugin storage` does.
func TestMain(m *testing.M) {
	switch os.Getenv("ROTOR_TEST_AS_PLUGIN") {
	case "v1":
		serveOldProtocol()
		os.Exit(0)
	case "nojobs":
		serveDescribing(proto.Capability_WORKSPACES, proto.Capability_SECRETS, proto.Capability_AUDIT, proto.Capability_CHANGES, proto.Capability_WORKFLOWS)
		os.Exit(0)
	case "pipe":
		servePipe()
		os.Exit(0)
	case "noretention":
		serveDescribing(baseCaps...)
		os.Exit(0)
	}
	if os.Getenv("ROTOR_TEST_AS_PLUGIN") == "hang" {
		// GetWorkspace never answers (until its deadline): a plugin to
		// kill while the host waits on it.
		plugins.Serve(func(ctx context.Context, cfg *proto.ConfigureRequest) (storage.Store, error) {
			st, err := plugins.OpenBackend(ctx, cfg)
			if err != nil {
				return nil, err
			}
			return hangStore{st}, nil
		})
		os.Exit(0)
	}
	if os.Getenv("ROTOR_TEST_AS_PLUGIN") == "1" {
		// To profile the plugin side of a benchmark:
		// ROTOR_BENCH_PLUGIN_ENV=ROTOR_TEST_PLUGIN_CPUPROFILE=/tmp/p.prof
		if path := os.Getenv("ROTOR_TEST_PLUGIN_CPUPROFILE"); path != "" {
			if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
		}
		plugins.Serve(plugins.OpenBackend)
		return // not os.Exit: the profile is written first
	}
	os.Exit(m.Run())
}

func launch(t *testing.T, cfg *proto.ConfigureRequest) *plugins.Supervised {
	t.Helper()
	s, err := launchB(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func launchB(_ testing.TB, cfg *proto.ConfigureRequest) (*plugins.Supervised, error) {
	return plugins.Launch(context.Background(), plugins.LaunchOptions{
		Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, Config: cfg,
	})
}

func TestConformanceBoltPlugin(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return launch(t, &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")})
	})
}

// TestConformanceBoltPluginGRPC: the same suite with every call on gRPC,
// the path a plugin without FAST_CALLS gets.
func TestConformanceBoltPluginGRPC(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := plugins.Launch(context.Background(), plugins.LaunchOptions{
			Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, NoFastCalls: true,
			Config: &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")},
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func pgDSN(t *testing.T) string {
	dsn, _ := pgtest.Schema(t)
	return dsn
}

func TestConformancePostgresPlugin(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return launch(t, &proto.ConfigureRequest{Backend: "postgres", Dsn: pgDSN(t)})
	})
}

func TestChangesThroughPlugin(t *testing.T) {
	dsn := pgDSN(t)
	a := launch(t, &proto.ConfigureRequest{Backend: "postgres", Dsn: dsn})
	defer a.Close()
	b := launch(t, &proto.ConfigureRequest{Backend: "postgres", Dsn: dsn})
	defer b.Close()
	storagetest.RunChanges(t, a, b)
}

// TestPluginCrashRestart: kill -9 the plugin; calls fail with
// ErrUnavailable until the supervisor has restarted it, then work again
// with nothing committed lost.
func TestPluginCrashRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rotor.db")
	s := launch(t, &proto.ConfigureRequest{Backend: "bbolt", Path: path})
	defer s.Close()
	ctx := context.Background()
	ws := storage.Workspace{ID: "ws_1", Name: "one", CreatedAt: time.Now().UTC()}
	if err := s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: ws}); err != nil {
		t.Fatal(err)
	}
	pid := s.Pid()
	if pid == 0 {
		t.Fatal("no plugin pid")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	sawDown := false
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := s.GetWorkspace(ctx, "ws_1")
		if err == nil && s.Pid() != pid {
			break
		}
		if errors.Is(err, storage.ErrUnavailable) {
			sawDown = true
		} else if err != nil {
			t.Fatalf("unexpected error while the plugin restarts: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("plugin not restarted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !sawDown {
		t.Log("the restart was faster than the polling (no unavailable window observed)")
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPluginGetsNoHostEnvironment: the plugin process starts with only what
// the host passes, so the master key in the host's environment never
// reaches it.
func TestPluginGetsNoHostEnvironment(t *testing.T) {
	t.Setenv("ROTOR_MASTER_KEY", "c2VjcmV0LW1hc3Rlci1rZXktdGhhdC1tdXN0LW5vdC1sZWFr")
	s := launch(t, &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")})
	defer s.Close()
	env, err := os.ReadFile("/proc/" + itoa(s.Pid()) + "/environ")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if contains(env, "ROTOR_MASTER_KEY") {
		t.Fatal("the plugin inherited ROTOR_MASTER_KEY")
	}
}

// TestPluginChecksumPin: a pinned plugin starts only if its binary matches.
func TestPluginChecksumPin(t *testing.T) {
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	cfg := &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}
	s, err := plugins.Launch(context.Background(), plugins.LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, Config: cfg, SHA256: sum[:]})
	if err != nil {
		t.Fatalf("matching checksum refused: %v", err)
	}
	s.Close()
	wrong := sha256.Sum256([]byte("another binary"))
	if _, err := plugins.Launch(context.Background(), plugins.LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, Config: cfg, SHA256: wrong[:]}); err == nil {
		t.Fatal("a plugin with the wrong checksum started")
	}
}

// hangStore's GetWorkspace waits for its context to end.
type hangStore struct{ storage.Store }

func (h hangStore) GetWorkspace(ctx context.Context, _ string) (storage.Workspace, error) {
	<-ctx.Done()
	return storage.Workspace{}, ctx.Err()
}
