package storagetest

import (
	"context"
	"path/filepath"
	"testing"

	"rotor.sh/rotor/plugins"
	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/postgres/pgtest"
)

// PluginConfig says how to run the suite against a storage plugin binary
// (certification: `make conformance PLUGIN=path/to/binary`).
type PluginConfig struct {
	// Path and Args start the plugin (for rotor itself: "plugin storage").
	Path string
	Args []string
	// Env is the plugin's whole environment (empty, as rotor runs it).
	Env []string
	// Backend is ConfigureRequest.backend ("bbolt" when empty). Every store
	// gets a fresh file in the test's temporary directory as
	// ConfigureRequest.path.
	Backend string
	// Postgres gives every store a fresh PostgreSQL schema (package pgtest)
	// and sends its DSN as ConfigureRequest.dsn.
	Postgres bool
	// Settings are sent as ConfigureRequest.settings.
	Settings map[string]string
}

// PluginFactory starts one plugin process per store through plugins.Launch,
// the host client rotor itself uses (handshake, version and capability
// checks, limits, typed errors), so a plugin that passes is one rotor runs.
func PluginFactory(c PluginConfig) Factory {
	return func(t *testing.T) storage.Store {
		t.Helper()
		cfg := &pb.ConfigureRequest{Backend: c.Backend, Path: filepath.Join(t.TempDir(), "store.db"), Settings: c.Settings}
		if cfg.Backend == "" {
			cfg.Backend = "bbolt"
		}
		if c.Postgres {
			cfg.Dsn, _ = pgtest.Schema(t)
		}
		env := c.Env
		if env == nil {
			env = []string{}
		}
		s, err := plugins.Launch(context.Background(), plugins.LaunchOptions{Path: c.Path, Args: c.Args, Env: env, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// RunPlugin runs the whole suite against a plugin binary; on PostgreSQL
// also RunChanges, with two plugin processes sharing one schema (two nodes).
func RunPlugin(t *testing.T, c PluginConfig) {
	if c.Backend == "" {
		c.Backend = "bbolt"
	}
	Run(t, PluginFactory(c))
	if !c.Postgres {
		return
	}
	t.Run("Changes", func(t *testing.T) {
		dsn, _ := pgtest.Schema(t)
		var stores []storage.Store
		for range 2 {
			s, err := plugins.Launch(context.Background(), plugins.LaunchOptions{Path: c.Path, Args: c.Args, Env: append([]string{}, c.Env...),
				Config: &pb.ConfigureRequest{Backend: c.Backend, Dsn: dsn, Settings: c.Settings}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			stores = append(stores, s)
		}
		RunChanges(t, stores[0], stores[1])
	})
}
