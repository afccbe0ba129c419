// Package vaulttest sets up a real vault for tests of the packages built on
// it (api, proxy): a bbolt file in a temp dir, a fresh master key, the
// default workspace with its operator key, and captured debug logs and
// metrics for leak scans.
package vaulttest

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/vault"
)

// Env is a bootstrapped vault on a real bbolt file.
type Env struct {
	Vault    *vault.Vault
	Store    *bolt.Store
	DBPath   string
	Operator vault.Actor
	// Key is the operator's API key.
	Key      string
	Logs     *leakcheck.Buffer
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// MasterKey opens a second Vault on Store (another node).
	MasterKey []byte
}

// New opens and bootstraps a vault; everything is closed at cleanup.
func New(t testing.TB) *Env {
	t.Helper()
	e := &Env{DBPath: filepath.Join(t.TempDir(), "rotor.db"), Logs: &leakcheck.Buffer{}, Registry: prometheus.NewRegistry()}
	var err error
	if e.Store, err = bolt.Open(e.DBPath, bolt.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Store.Close() })
	e.Logger = slog.New(slog.NewJSONHandler(e.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	e.MasterKey = vault.GenerateMasterKey()
	if e.Vault, err = vault.Open(ctx, vault.Options{Store: e.Store, MasterKey: e.MasterKey, Logger: e.Logger, Registerer: e.Registry}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Vault.Close(context.Background()) })
	boot, err := e.Vault.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	e.Key = boot.Key
	if e.Operator, err = e.Vault.Authenticate(ctx, boot.Key); err != nil {
		t.Fatal(err)
	}
	return e
}

// Secret creates a secret in the operator's workspace.
func (e *Env) Secret(t testing.TB, name, value string, allowedHosts ...string) {
	t.Helper()
	req := vault.CreateSecretRequest{Name: name, Value: vault.PlaintextString(value), AllowedHosts: allowedHosts}
	if _, err := e.Vault.CreateSecret(context.Background(), e.Operator, req); err != nil {
		t.Fatal(err)
	}
}
