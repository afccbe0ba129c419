package vault

import (
	"context"
	"path/filepath"
	"testing"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

// testStore opens a real bbolt file in a temp dir, closed at cleanup.
func testStore(t testing.TB) *bolt.Store {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "rotor.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// openVault opens a vault with a fresh master key on s, closed at cleanup
// (before the store, since cleanups run last-in first-out).
func openVault(t testing.TB, s storage.Store) *Vault {
	t.Helper()
	v, err := Open(context.Background(), Options{Store: s, MasterKey: GenerateMasterKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	return v
}

// testVault opens a vault on a real bbolt file in a temp dir.
func testVault(t testing.TB) (*Vault, *bolt.Store) {
	t.Helper()
	store := testStore(t)
	return openVault(t, store), store
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
