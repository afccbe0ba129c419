package plugins_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

// BenchmarkStoreCall: the cost of the plugin boundary per Store call, the
// same GetSecret on bbolt in-process and through the plugin.
func BenchmarkStoreCall(b *testing.B) {
	seed := func(s storage.Store) {
		ctx := context.Background()
		s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws", Name: "ws", CreatedAt: time.Now()}})
		s.AddKEK(ctx, storage.AddKEKArgs{KEK: storage.KEK{ID: "kek", Wrapped: []byte("w"), CreatedAt: time.Now()}})
		s.CreateSecret(ctx, storage.CreateSecretArgs{Secret: storage.SecretRecord{
			SecretMeta: storage.SecretMeta{WorkspaceID: "ws", Name: "TOKEN", Version: 1, KEKID: "kek"}, Sealed: make([]byte, 120)}})
	}
	run := func(b *testing.B, s storage.Store) {
		seed(s)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.GetSecret(ctx, "ws", "TOKEN"); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("in-process", func(b *testing.B) {
		s, err := bolt.Open(filepath.Join(b.TempDir(), "rotor.db"), bolt.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, s)
	})
	b.Run("plugin", func(b *testing.B) {
		s, err := launchB(b, &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(b.TempDir(), "rotor.db")})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, s)
	})
}
