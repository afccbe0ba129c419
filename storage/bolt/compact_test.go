package bolt_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

// TestCompactDropsDeletedBytes: after a delete, the freed page still holds
// the deleted record's bytes; after Compact it does not, and live records
// survive.
func TestCompactDropsDeletedBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rotor.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws", Name: "ws", CreatedAt: time.Now()}}))
	must(s.AddKEK(ctx, storage.AddKEKArgs{KEK: storage.KEK{ID: "kek", Wrapped: []byte("w"), CreatedAt: time.Now()}}))
	gone := bytes.Repeat([]byte("DELETED-ENVELOPE-"), 40)
	kept := bytes.Repeat([]byte("LIVE-ENVELOPE-"), 40)
	rec := func(name string, sealed []byte) storage.SecretRecord {
		return storage.SecretRecord{SecretMeta: storage.SecretMeta{WorkspaceID: "ws", Name: name, Version: 1, KEKID: "kek"}, Sealed: sealed}
	}
	must(s.CreateSecret(ctx, storage.CreateSecretArgs{Secret: rec("GONE", gone)}))
	must(s.CreateSecret(ctx, storage.CreateSecretArgs{Secret: rec("KEPT", kept)}))
	must(s.DeleteSecret(ctx, storage.DeleteSecretArgs{WorkspaceID: "ws", Name: "GONE"}))
	// While open, the file is locked against compaction.
	if _, _, err := bolt.Compact(path, bolt.Options{Timeout: 100 * time.Millisecond}); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("compact while open: %v", err)
	}
	must(s.Close())
	// Records store []byte as base64 (JSON); these are the starts of both.
	encGone := []byte("REVMRVRFRC1FTlZFTE9QRS1ERUxFVE")
	encKept := []byte("TElWRS1FTlZFTE9QRS1MSVZFLUVOVk")
	raw, _ := os.ReadFile(path)
	// Whether the freed page still holds the bytes depends on page reuse;
	// it usually does, which is why compaction exists.
	t.Logf("before compaction, deleted envelope still in the file: %v", bytes.Contains(raw, encGone))
	if _, _, err := bolt.Compact(path, bolt.Options{}); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(path)
	if bytes.Contains(raw, encGone) {
		t.Fatal("deleted envelope still in the compacted file")
	}
	if !bytes.Contains(raw, encKept) {
		t.Fatal("live envelope missing from the compacted file")
	}
	s, err = bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetSecret(ctx, "ws", "KEPT")
	if err != nil || !bytes.Equal(got.Sealed, kept) {
		t.Fatalf("after compact: %v", err)
	}
	if _, err := s.GetSecret(ctx, "ws", "GONE"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted record back: %v", err)
	}
}
