package vault

import (
	"context"
	"path/filepath"
	"testing"

	"rotor.sh/rotor/storage/bolt"
)

// testVault opens a vault on a real bbolt file in a temp dir.
func testVault(t testing.TB) (*Vault, *bolt.Store) {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "rotor.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := Open(context.Background(), Options{Store: store, MasterKey: GenerateMasterKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.Close(context.Background())
		store.Close()
	})
	return v, store
}

// bootstrap returns the operator actor of a fresh vault.
func bootstrap(t testing.TB, v *Vault) Actor {
	t.Helper()
	res, err := v.Bootstrap(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	a, err := v.Authenticate(context.Background(), res.Key)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
