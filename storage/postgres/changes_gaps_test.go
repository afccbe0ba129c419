package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/postgres"
)

var gapT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func openGap(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func gapSecret(t *testing.T, s storage.Store, ws, kek, name string) {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: ws, Name: "name-" + ws, CreatedAt: gapT0}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddKEK(ctx, storage.AddKEKArgs{KEK: storage.KEK{ID: kek, Wrapped: []byte("w"), CreatedAt: gapT0}}); err != nil {
		t.Fatal(err)
	}
	rec := storage.SecretRecord{
		SecretMeta: storage.SecretMeta{WorkspaceID: ws, Name: name, Version: 1, Hint: "ab...", KEKID: kek, CreatedAt: gapT0, UpdatedAt: gapT0},
		Sealed:     []byte("sealed"),
	}
	if err := s.CreateSecret(ctx, storage.CreateSecretArgs{Secret: rec}); err != nil {
		t.Fatal(err)
	}
}

// Two deployments sharing one database in different schemas must not see
// each other's changes (a foreign change would evict or reload the wrong
// cache entries, and made parallel test packages flaky).
func TestChangesScopedToSchema(t *testing.T) {
	mine := openGap(t, freshSchema(t))
	other := openGap(t, freshSchema(t))

	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan storage.Change, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		mine.Changes(ctx, func(c storage.Change) {
			select {
			case got <- c:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })

	// Probe until the listener is live, instead of sleeping: each probe
	// is a keyring change in mine's own schema.
	live := false
	for i := 0; i < 100 && !live; i++ {
		if err := mine.AddKEK(context.Background(), storage.AddKEKArgs{KEK: storage.KEK{ID: fmt.Sprintf("probe_%d", i), Wrapped: []byte("w"), CreatedAt: gapT0}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			live = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !live {
		t.Fatal("listener never saw its own schema's change")
	}

	gapSecret(t, other, "ws_other", "kek_other", "FOREIGN")
	// Notifications from one session arrive in commit order; mine's own
	// marker, written after the foreign change committed, ends the window.
	gapSecret(t, mine, "ws_mine", "kek_mine", "MARK")
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c := <-got:
			if c.Name == "FOREIGN" || c.WorkspaceID == "ws_other" {
				t.Fatalf("received another schema's change: %+v", c)
			}
			if c.Kind == storage.ChangeSecret && c.Name == "MARK" {
				return
			}
		case <-deadline:
			t.Fatal("no notification for this schema's own change")
		}
	}
}
