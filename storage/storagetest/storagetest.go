// Package storagetest is the conformance suite every storage.Store backend
// must pass, in-process and through the plugin boundary alike.
package storagetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// Factory returns a fresh, empty store; the suite closes it.
type Factory func(t *testing.T) storage.Store

// Run runs the whole suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"Workspaces", testWorkspaces},
		{"APIKeys", testAPIKeys},
		{"Keyring", testKeyring},
		{"SecretsCRUD", testSecretsCRUD},
		{"SecretsCAS", testSecretsCAS},
		{"SecretsUnknownKEK", testSecretsUnknownKEK},
		{"SecretsIsolation", testSecretsIsolation},
		{"SecretsByKEK", testSecretsByKEK},
		{"AuditAtomicWithChange", testAuditAtomic},
		{"AuditQuery", testAuditQuery},
		{"AuditLargeBatches", testAuditLargeBatches},
		{"AuditChain", testAuditChain},
		{"AuditCheckpoint", testAuditCheckpoint},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"CanceledContext", testCanceled},
		{"AuditRowMAC", testAuditRowMAC},
		{"AuditRetry", testAuditRetry},
	}
	tests = append(tests, jobTests()...)
	tests = append(tests, workflowTests()...)
	tests = append(tests, struct { // issue 11: retention.go
		name string
		fn   func(t *testing.T, s storage.Store)
	}{"PruneJobs", testPruneJobs}, struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{"PruneAudit", testPruneAudit})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s)
		})
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ctx() context.Context { return context.Background() }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

func mkWorkspace(t *testing.T, s storage.Store, id string) storage.Workspace {
	t.Helper()
	ws := storage.Workspace{ID: id, Name: "name-" + id, CreatedAt: t0}
	must(t, s.CreateWorkspace(ctx(), storage.CreateWorkspaceArgs{Workspace: ws}))
	return ws
}

func mkKEK(t *testing.T, s storage.Store, id string) {
	t.Helper()
	must(t, s.AddKEK(ctx(), storage.AddKEKArgs{KEK: storage.KEK{ID: id, Wrapped: []byte("wrapped-" + id), CreatedAt: t0}}))
}

func secret(ws, name, kek string, sealed string) storage.SecretRecord {
	return storage.SecretRecord{
		SecretMeta: storage.SecretMeta{WorkspaceID: ws, Name: name, Version: 1, Hint: "ab...", KEKID: kek, CreatedAt: t0, UpdatedAt: t0},
		Sealed:     []byte(sealed),
	}
}

func ev(ws, typ, res string) storage.AuditEvent {
	return storage.AuditEvent{OccurredAt: t0, WorkspaceID: ws, ActorID: "key_1", EventType: typ, ResourceType: "secret", ResourceID: res, Input: json.RawMessage(`{"name":"` + res + `"}`)}
}

func testWorkspaces(t *testing.T, s storage.Store) {
	ws := mkWorkspace(t, s, "ws_a")
	got, err := s.GetWorkspace(ctx(), "ws_a")
	must(t, err)
	if got.Name != ws.Name || !got.CreatedAt.Equal(ws.CreatedAt) {
		t.Fatalf("GetWorkspace = %+v, want %+v", got, ws)
	}
	got, err = s.GetWorkspaceByName(ctx(), ws.Name)
	must(t, err)
	if got.ID != "ws_a" {
		t.Fatalf("GetWorkspaceByName id = %q", got.ID)
	}
	_, err = s.GetWorkspace(ctx(), "ws_missing")
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.GetWorkspaceByName(ctx(), "missing")
	wantErr(t, err, storage.ErrNotFound)
	err = s.CreateWorkspace(ctx(), storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws_b", Name: ws.Name, CreatedAt: t0}})
	wantErr(t, err, storage.ErrExists)

	// A workspace created with its admin key: both or neither.
	key := storage.APIKey{ID: "key_admin", WorkspaceID: "ws_c", Name: "admin", Role: "admin", Hash: []byte{1, 2, 3}, CreatedAt: t0}
	must(t, s.CreateWorkspace(ctx(), storage.CreateWorkspaceArgs{
		Workspace: storage.Workspace{ID: "ws_c", Name: "c", CreatedAt: t0.Add(time.Second)},
		AdminKey:  &key,
		Audit:     []storage.AuditEvent{ev("ws_c", "workspace.created", "ws_c")},
	}))
	k, err := s.GetAPIKey(ctx(), "key_admin")
	must(t, err)
	if k.WorkspaceID != "ws_c" || string(k.Hash) != "\x01\x02\x03" {
		t.Fatalf("admin key = %+v", k)
	}
	dupKey := key
	err = s.CreateWorkspace(ctx(), storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws_d", Name: "d", CreatedAt: t0}, AdminKey: &dupKey})
	wantErr(t, err, storage.ErrExists)
	if _, err := s.GetWorkspace(ctx(), "ws_d"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("failed CreateWorkspace left the workspace behind: %v", err)
	}
	all, err := s.ListWorkspaces(ctx())
	must(t, err)
	if len(all) != 2 || all[0].ID != "ws_a" || all[1].ID != "ws_c" {
		t.Fatalf("ListWorkspaces = %+v", all)
	}
}

func testAPIKeys(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	for i, ws := range []string{"ws_a", "ws_a", "ws_b"} {
		must(t, s.CreateAPIKey(ctx(), storage.CreateAPIKeyArgs{
			Key:   storage.APIKey{ID: fmt.Sprintf("key_%d", i), WorkspaceID: ws, Name: "k", Role: "member", Hash: []byte{byte(i)}, CreatedAt: t0.Add(time.Duration(i) * time.Second)},
			Audit: []storage.AuditEvent{ev(ws, "api_key.created", fmt.Sprintf("key_%d", i))},
		}))
	}
	err := s.CreateAPIKey(ctx(), storage.CreateAPIKeyArgs{Key: storage.APIKey{ID: "key_0", WorkspaceID: "ws_a"}})
	wantErr(t, err, storage.ErrExists)
	err = s.CreateAPIKey(ctx(), storage.CreateAPIKeyArgs{Key: storage.APIKey{ID: "key_x", WorkspaceID: "ws_missing"}})
	wantErr(t, err, storage.ErrNotFound)

	keys, err := s.ListAPIKeys(ctx(), "ws_a")
	must(t, err)
	if len(keys) != 2 || keys[0].ID != "key_0" || keys[1].ID != "key_1" {
		t.Fatalf("ListAPIKeys(ws_a) = %+v", keys)
	}
	// Revoke is workspace-scoped: ws_b cannot revoke ws_a's key.
	err = s.RevokeAPIKey(ctx(), storage.RevokeAPIKeyArgs{WorkspaceID: "ws_b", ID: "key_0", At: t0})
	wantErr(t, err, storage.ErrNotFound)
	must(t, s.RevokeAPIKey(ctx(), storage.RevokeAPIKeyArgs{WorkspaceID: "ws_a", ID: "key_0", At: t0.Add(time.Hour)}))
	k, err := s.GetAPIKey(ctx(), "key_0")
	must(t, err)
	if k.RevokedAt == nil || !k.RevokedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("revoked key = %+v", k)
	}
	err = s.RevokeAPIKey(ctx(), storage.RevokeAPIKeyArgs{WorkspaceID: "ws_a", ID: "key_0", At: t0})
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.GetAPIKey(ctx(), "key_missing")
	wantErr(t, err, storage.ErrNotFound)
}

func testKeyring(t *testing.T, s storage.Store) {
	keks, err := s.ListKEKs(ctx())
	must(t, err)
	if len(keks) != 0 {
		t.Fatalf("new store has keyring %+v", keks)
	}
	mkKEK(t, s, "kek_1")
	must(t, s.AddKEK(ctx(), storage.AddKEKArgs{KEK: storage.KEK{ID: "kek_2", Wrapped: []byte("w2"), CreatedAt: t0.Add(time.Second)}}))
	wantErr(t, s.AddKEK(ctx(), storage.AddKEKArgs{KEK: storage.KEK{ID: "kek_2"}}), storage.ErrExists)
	keks, err = s.ListKEKs(ctx())
	must(t, err)
	if len(keks) != 2 || keks[0].ID != "kek_1" || keks[0].Active || !keks[1].Active || string(keks[1].Wrapped) != "w2" {
		t.Fatalf("keyring = %+v", keks)
	}
	mkWorkspace(t, s, "ws_a")
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "A", "kek_1", "x")}))
	wantErr(t, s.DeleteKEK(ctx(), "kek_1"), storage.ErrInUse)
	wantErr(t, s.DeleteKEK(ctx(), "kek_2"), storage.ErrInUse) // active
	wantErr(t, s.DeleteKEK(ctx(), "kek_9"), storage.ErrNotFound)
	must(t, s.DeleteSecret(ctx(), storage.DeleteSecretArgs{WorkspaceID: "ws_a", Name: "A"}))
	must(t, s.DeleteKEK(ctx(), "kek_1"))
	keks, err = s.ListKEKs(ctx())
	must(t, err)
	if len(keks) != 1 || keks[0].ID != "kek_2" {
		t.Fatalf("keyring after delete = %+v", keks)
	}
}

func testSecretsCRUD(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkKEK(t, s, "kek_1")
	rec := secret("ws_a", "API_TOKEN", "kek_1", "sealed-1")
	rec.AllowedHosts = []string{"api.example.com", "*.example.org"}
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: rec}))
	wantErr(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: rec}), storage.ErrExists)
	wantErr(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_missing", "A", "kek_1", "x")}), storage.ErrNotFound)

	got, err := s.GetSecret(ctx(), "ws_a", "API_TOKEN")
	must(t, err)
	if got.Revision != 1 || got.Version != 1 || string(got.Sealed) != "sealed-1" || len(got.AllowedHosts) != 2 || got.AllowedHosts[1] != "*.example.org" || got.KEKID != "kek_1" {
		t.Fatalf("GetSecret = %+v", got)
	}
	_, err = s.GetSecret(ctx(), "ws_a", "MISSING")
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.GetSecret(ctx(), "ws_missing", "API_TOKEN")
	wantErr(t, err, storage.ErrNotFound)

	next := got
	next.Version, next.Sealed, next.Hint = 2, []byte("sealed-2"), "cd..."
	must(t, s.UpdateSecret(ctx(), storage.UpdateSecretArgs{Secret: next, ExpectedRevision: 1}))
	got, err = s.GetSecret(ctx(), "ws_a", "API_TOKEN")
	must(t, err)
	if got.Revision != 2 || got.Version != 2 || string(got.Sealed) != "sealed-2" || got.Hint != "cd..." {
		t.Fatalf("after update = %+v", got)
	}
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "B", "kek_1", "b")}))
	list, err := s.ListSecrets(ctx(), storage.ListSecretsArgs{WorkspaceID: "ws_a"})
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListSecrets = %+v", list)
	}
	must(t, s.DeleteSecret(ctx(), storage.DeleteSecretArgs{WorkspaceID: "ws_a", Name: "API_TOKEN"}))
	wantErr(t, s.DeleteSecret(ctx(), storage.DeleteSecretArgs{WorkspaceID: "ws_a", Name: "API_TOKEN"}), storage.ErrNotFound)
	_, err = s.GetSecret(ctx(), "ws_a", "API_TOKEN")
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.UpdateSecret(ctx(), storage.UpdateSecretArgs{Secret: next, ExpectedRevision: 2}), storage.ErrNotFound)
	// Re-creating a deleted name starts over at revision 1.
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "API_TOKEN", "kek_1", "again")}))
	got, err = s.GetSecret(ctx(), "ws_a", "API_TOKEN")
	must(t, err)
	if got.Revision != 1 || string(got.Sealed) != "again" {
		t.Fatalf("recreated = %+v", got)
	}
}

func testSecretsCAS(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkKEK(t, s, "kek_1")
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "A", "kek_1", "v1")}))
	cur, err := s.GetSecret(ctx(), "ws_a", "A")
	must(t, err)
	first := cur
	first.Sealed = []byte("first")
	must(t, s.UpdateSecret(ctx(), storage.UpdateSecretArgs{Secret: first, ExpectedRevision: cur.Revision, Audit: []storage.AuditEvent{ev("ws_a", "secret.rotated", "A")}}))
	second := cur
	second.Sealed = []byte("second")
	err = s.UpdateSecret(ctx(), storage.UpdateSecretArgs{Secret: second, ExpectedRevision: cur.Revision, Audit: []storage.AuditEvent{ev("ws_a", "secret.rotated", "A")}})
	wantErr(t, err, storage.ErrConflict)
	got, err := s.GetSecret(ctx(), "ws_a", "A")
	must(t, err)
	if string(got.Sealed) != "first" {
		t.Fatalf("losing CAS write landed: %q", got.Sealed)
	}
	page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_a"})
	must(t, err)
	if len(page.Events) != 1 {
		t.Fatalf("a failed write left audit rows: %d events", len(page.Events))
	}
}

func testSecretsUnknownKEK(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkKEK(t, s, "kek_1")
	err := s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "A", "kek_gone", "x")})
	wantErr(t, err, storage.ErrConflict)
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "A", "kek_1", "x")}))
	cur, err := s.GetSecret(ctx(), "ws_a", "A")
	must(t, err)
	cur.KEKID = "kek_gone"
	wantErr(t, s.UpdateSecret(ctx(), storage.UpdateSecretArgs{Secret: cur, ExpectedRevision: cur.Revision}), storage.ErrConflict)
}

func testSecretsIsolation(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	mkKEK(t, s, "kek_1")
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "SHARED_NAME", "kek_1", "a")}))
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_b", "SHARED_NAME", "kek_1", "b")}))
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "ONLY_A", "kek_1", "a2")}))
	b, err := s.GetSecret(ctx(), "ws_b", "SHARED_NAME")
	must(t, err)
	if string(b.Sealed) != "b" {
		t.Fatalf("ws_b read %q", b.Sealed)
	}
	_, err = s.GetSecret(ctx(), "ws_b", "ONLY_A")
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.DeleteSecret(ctx(), storage.DeleteSecretArgs{WorkspaceID: "ws_b", Name: "ONLY_A"}), storage.ErrNotFound)
	list, err := s.ListSecrets(ctx(), storage.ListSecretsArgs{WorkspaceID: "ws_b"})
	must(t, err)
	if len(list) != 1 || list[0].WorkspaceID != "ws_b" {
		t.Fatalf("ws_b list = %+v", list)
	}
	appendAudit(t, s, []storage.AuditEvent{ev("ws_a", "secret.accessed", "ONLY_A")})
	page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_b"})
	must(t, err)
	if len(page.Events) != 0 {
		t.Fatalf("ws_b sees ws_a audit rows: %+v", page.Events)
	}
}

func testSecretsByKEK(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	mkKEK(t, s, "kek_1")
	mkKEK(t, s, "kek_2")
	for i := range 5 {
		must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", fmt.Sprintf("A%d", i), "kek_1", "x")}))
	}
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_b", "B", "kek_1", "x")}))
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_b", "C", "kek_2", "x")}))
	all, err := s.ListSecretsByKEK(ctx(), "kek_1", 0)
	must(t, err)
	if len(all) != 6 {
		t.Fatalf("ListSecretsByKEK(kek_1) = %d records, want 6", len(all))
	}
	some, err := s.ListSecretsByKEK(ctx(), "kek_1", 4)
	must(t, err)
	if len(some) != 4 {
		t.Fatalf("limit 4 gave %d", len(some))
	}
	two, err := s.ListSecretsByKEK(ctx(), "kek_2", 0)
	must(t, err)
	if len(two) != 1 || two[0].Name != "C" || string(two[0].Sealed) != "x" {
		t.Fatalf("ListSecretsByKEK(kek_2) = %+v", two)
	}
}

func testAuditAtomic(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkKEK(t, s, "kek_1")
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "A", "kek_1", "x"), Audit: []storage.AuditEvent{ev("ws_a", "secret.created", "A")}}))
	// A failing write (duplicate) must not leave its audit row.
	_ = s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "A", "kek_1", "x"), Audit: []storage.AuditEvent{ev("ws_a", "secret.created", "A")}})
	must(t, s.DeleteSecret(ctx(), storage.DeleteSecretArgs{WorkspaceID: "ws_a", Name: "A", Audit: []storage.AuditEvent{ev("ws_a", "secret.deleted", "A")}}))
	_ = s.DeleteSecret(ctx(), storage.DeleteSecretArgs{WorkspaceID: "ws_a", Name: "A", Audit: []storage.AuditEvent{ev("ws_a", "secret.deleted", "A")}})
	page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_a"})
	must(t, err)
	if len(page.Events) != 2 || page.Events[0].EventType != "secret.deleted" || page.Events[1].EventType != "secret.created" {
		t.Fatalf("audit = %+v", page.Events)
	}
	e := page.Events[1]
	// Input is compared as JSON: a backend may normalise it (jsonb).
	var in map[string]string
	if e.ID <= 0 || e.ActorID != "key_1" || e.ResourceType != "secret" || e.ResourceID != "A" || !e.OccurredAt.Equal(t0) ||
		json.Unmarshal(e.Input, &in) != nil || in["name"] != "A" || len(in) != 1 {
		t.Fatalf("audit row fields = %+v", e)
	}
	if page.Events[0].ID <= e.ID {
		t.Fatalf("ids not increasing: %d then %d", e.ID, page.Events[0].ID)
	}
}

func testAuditQuery(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	var evs []storage.AuditEvent
	for i := range 25 {
		e := ev("ws_a", []string{"secret.created", "secret.accessed", "secret.rotated"}[i%3], fmt.Sprintf("S%d", i%4))
		e.OccurredAt = t0.Add(time.Duration(i) * time.Minute)
		if i%5 == 0 {
			e.ResourceType = "api_key"
		}
		evs = append(evs, e)
	}
	appendAudit(t, s, evs[:10])
	appendAudit(t, s, evs[10:])

	// Pages of 7, newest first, no duplicates or gaps.
	var seen []storage.AuditEvent
	var cursor int64
	for range 10 {
		page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_a", Limit: 7, Before: cursor})
		must(t, err)
		seen = append(seen, page.Events...)
		if page.Next == 0 {
			break
		}
		cursor = page.Next
	}
	if len(seen) != 25 {
		t.Fatalf("paged %d events, want 25", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].ID >= seen[i-1].ID {
			t.Fatalf("not newest first at %d: %d then %d", i, seen[i-1].ID, seen[i].ID)
		}
	}
	if seen[0].ResourceID != "S0" || !seen[0].OccurredAt.Equal(t0.Add(24*time.Minute)) {
		t.Fatalf("newest = %+v", seen[0])
	}

	count := func(q storage.AuditQuery, want int, check func(storage.AuditEvent) bool) {
		t.Helper()
		q.WorkspaceID, q.Limit = "ws_a", 100
		page, err := s.ListAudit(ctx(), q)
		must(t, err)
		if len(page.Events) != want {
			t.Fatalf("%+v: %d events, want %d", q, len(page.Events), want)
		}
		for _, e := range page.Events {
			if !check(e) {
				t.Fatalf("%+v: event does not match: %+v", q, e)
			}
		}
	}
	count(storage.AuditQuery{EventType: "secret.accessed"}, 8, func(e storage.AuditEvent) bool { return e.EventType == "secret.accessed" })
	count(storage.AuditQuery{ResourceType: "api_key"}, 5, func(e storage.AuditEvent) bool { return e.ResourceType == "api_key" })
	count(storage.AuditQuery{ResourceID: "S1"}, 6, func(e storage.AuditEvent) bool { return e.ResourceID == "S1" })
	count(storage.AuditQuery{ResourceType: "secret", EventType: "secret.rotated", ResourceID: "S1"}, 1, func(e storage.AuditEvent) bool { // i=17 (i=5 is an api_key row)
		return e.ResourceType == "secret" && e.EventType == "secret.rotated" && e.ResourceID == "S1"
	})
	since := t0.Add(20 * time.Minute)
	count(storage.AuditQuery{Since: since}, 5, func(e storage.AuditEvent) bool { return !e.OccurredAt.Before(since) })
	page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_missing"})
	must(t, err)
	if len(page.Events) != 0 || page.Next != 0 {
		t.Fatalf("unknown workspace page = %+v", page)
	}
}

func testConcurrentUpdates(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkKEK(t, s, "kek_1")
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "A", "kek_1", "0")}))
	const workers, each = 4, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range workers {
		wg.Go(func() {
			for range each {
				for attempt := 0; attempt < 1000; attempt++ {
					cur, err := s.GetSecret(ctx(), "ws_a", "A")
					if err != nil {
						t.Error(err)
						return
					}
					cur.Version++
					err = s.UpdateSecret(ctx(), storage.UpdateSecretArgs{Secret: cur, ExpectedRevision: cur.Revision})
					if errors.Is(err, storage.ErrConflict) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					wins++
					mu.Unlock()
					break
				}
			}
		})
	}
	wg.Wait()
	got, err := s.GetSecret(ctx(), "ws_a", "A")
	must(t, err)
	if wins != workers*each || got.Version != int64(1+wins) || got.Revision != int64(1+wins) {
		t.Fatalf("wins=%d version=%d revision=%d: an update was lost", wins, got.Version, got.Revision)
	}
}

func testCanceled(t *testing.T, s storage.Store) {
	c, cancel := context.WithCancel(ctx())
	cancel()
	err := s.CreateWorkspace(c, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws_x", Name: "x"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled CreateWorkspace: %v", err)
	}
	if _, err := s.GetWorkspace(ctx(), "ws_x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("canceled write landed: %v", err)
	}
}

// testAuditLargeBatches: group-committed batches of hundreds of events, in
// two workspaces, page back exactly, newest first, across any internal
// grouping a backend uses.
func testAuditLargeBatches(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	for round := range 3 {
		var batch []storage.AuditEvent
		for i := range 150 {
			ws := "ws_a"
			if i%3 == 0 {
				ws = "ws_b"
			}
			e := ev(ws, "secret.accessed", fmt.Sprintf("R%d_%d", round, i))
			batch = append(batch, e)
		}
		appendAudit(t, s, batch)
	}
	for _, tc := range []struct {
		ws    string
		want  int
		limit int
	}{{"ws_a", 300, 37}, {"ws_b", 150, 64}, {"ws_a", 300, 1000}} {
		var got []storage.AuditEvent
		var cursor int64
		for range 100 {
			page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: tc.ws, Limit: tc.limit, Before: cursor})
			must(t, err)
			got = append(got, page.Events...)
			if page.Next == 0 {
				break
			}
			cursor = page.Next
		}
		if len(got) != tc.want {
			t.Fatalf("%s limit %d: paged %d events, want %d", tc.ws, tc.limit, len(got), tc.want)
		}
		seen := map[string]bool{}
		for i, e := range got {
			if e.WorkspaceID != tc.ws || seen[e.ResourceID] || i > 0 && e.ID >= got[i-1].ID {
				t.Fatalf("%s: bad event at %d: %+v", tc.ws, i, e)
			}
			seen[e.ResourceID] = true
		}
		if got[0].ResourceID != "R2_149" && got[0].ResourceID != "R2_147" {
			t.Fatalf("%s: newest is %s", tc.ws, got[0].ResourceID)
		}
	}
}

// testAuditChain checks that every row's chain value is NextChain of the
// previous row's in the same workspace, over the row as read back, also
// when appends race (a backend shared by many nodes must serialize them).
func testAuditChain(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	mkKEK(t, s, "kek_1")
	odd := ev("ws_a", "secret.accessed", "ODD")
	odd.Input = json.RawMessage(`{ "z" : 1,  "a":[1, 2] }`)              // a jsonb column rewrites this
	odd.Output = json.RawMessage(`{"note":"a<b & c>d \u2028 line sep"}`) // escaped by the plugin wire
	odd.OccurredAt = t0.Add(123456789 * time.Nanosecond)
	sep := ev("ws_a", "secret.accessed", "SEP")
	sep.Input = json.RawMessage("{\"only\":\"para\u2029graph\"}") // a raw U+2029 and nothing else to escape
	appendAudit(t, s, []storage.AuditEvent{odd, sep, ev("ws_b", "secret.accessed", "B0")})
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "A", "kek_1", "x"), Audit: []storage.AuditEvent{ev("ws_a", "secret.created", "A")}}))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				batch := []storage.AuditEvent{ev("ws_a", "secret.accessed", fmt.Sprintf("G%d_%d", g, i)), ev("ws_b", "secret.accessed", fmt.Sprintf("G%d_%d", g, i))}
				if _, err := s.AppendAudit(ctx(), batch); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for ws, want := range map[string]int{"ws_a": 83, "ws_b": 81} {
		var prev []byte
		var after int64
		n := 0
		for range 100 {
			evs, err := s.ListAuditAsc(ctx(), storage.AuditRange{WorkspaceID: ws, AfterID: after, Limit: 7})
			must(t, err)
			if len(evs) == 0 {
				break
			}
			for _, e := range evs {
				if e.ID <= after || e.WorkspaceID != ws {
					t.Fatalf("%s: row %d after %d: %+v", ws, e.ID, after, e)
				}
				if want := storage.NextChain(prev, e); !bytes.Equal(e.Chain, want) {
					t.Fatalf("%s: row %d (%s) chain %x, want %x", ws, e.ID, e.ResourceID, e.Chain, want)
				}
				prev, after = e.Chain, e.ID
				n++
			}
		}
		if n != want {
			t.Fatalf("%s: walked %d rows, want %d", ws, n, want)
		}
		head, err := s.GetAuditHead(ctx(), ws)
		must(t, err)
		if head.LastID != after || !bytes.Equal(head.Chain, prev) {
			t.Fatalf("%s: head %d %x, want %d %x", ws, head.LastID, head.Chain, after, prev)
		}
	}
	head, err := s.GetAuditHead(ctx(), "ws_missing")
	must(t, err)
	if head.LastID != 0 || len(head.Chain) != 0 {
		t.Fatalf("empty head = %+v", head)
	}
	// The ListAudit view carries the same chain values.
	page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_a", Limit: 1})
	must(t, err)
	if h, _ := s.GetAuditHead(ctx(), "ws_a"); len(page.Events) != 1 || !bytes.Equal(page.Events[0].Chain, h.Chain) {
		t.Fatalf("ListAudit chain = %+v", page.Events)
	}
}

func testAuditCheckpoint(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	_, err := s.GetAuditCheckpoint(ctx(), "ws_a")
	wantErr(t, err, storage.ErrNotFound)
	for i := range 2 {
		c := storage.AuditCheckpoint{WorkspaceID: "ws_a", LastID: int64(10 + i), Chain: []byte{1, 2, byte(i)}, MAC: []byte{9, 9, byte(i)}, SealedAt: t0.Add(time.Duration(i) * time.Second), RowMACFrom: int64(3 * i)}
		must(t, s.PutAuditCheckpoint(ctx(), c))
		got, err := s.GetAuditCheckpoint(ctx(), "ws_a")
		must(t, err)
		if got.WorkspaceID != c.WorkspaceID || got.LastID != c.LastID || !bytes.Equal(got.Chain, c.Chain) || !bytes.Equal(got.MAC, c.MAC) || !got.SealedAt.Equal(c.SealedAt) || got.RowMACFrom != c.RowMACFrom {
			t.Fatalf("checkpoint = %+v, want %+v", got, c)
		}
	}
	// An older seal (another node's, late) never replaces a newer one.
	must(t, s.PutAuditCheckpoint(ctx(), storage.AuditCheckpoint{WorkspaceID: "ws_a", LastID: 5, Chain: []byte{5}, MAC: []byte{5}, SealedAt: t0}))
	if got, err := s.GetAuditCheckpoint(ctx(), "ws_a"); err != nil || got.LastID != 11 {
		t.Fatalf("after an older put: %+v, %v", got, err)
	}
	_, err = s.GetAuditCheckpoint(ctx(), "ws_other")
	wantErr(t, err, storage.ErrNotFound)
}

// testAuditRowMAC: a row's nonce and MAC (made by the vault) come back as
// given from every read, through both write paths; a row without them
// comes back without.
func testAuditRowMAC(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkKEK(t, s, "kek_1")
	signed := func(e storage.AuditEvent, n byte) storage.AuditEvent {
		e.Nonce = bytes.Repeat([]byte{n}, 16)
		e.MAC = bytes.Repeat([]byte{n ^ 0xff}, 32)
		return e
	}
	appendAudit(t, s, []storage.AuditEvent{signed(ev("ws_a", "secret.accessed", "A1"), 1), ev("ws_a", "secret.accessed", "PLAIN")})
	must(t, s.CreateSecret(ctx(), storage.CreateSecretArgs{Secret: secret("ws_a", "A", "kek_1", "x"), Audit: []storage.AuditEvent{signed(ev("ws_a", "secret.created", "A"), 2)}}))
	check := func(from string, evs []storage.AuditEvent) {
		t.Helper()
		if len(evs) != 3 {
			t.Fatalf("%s: %d rows, want 3", from, len(evs))
		}
		for _, e := range evs {
			var n byte
			switch e.ResourceID {
			case "A1":
				n = 1
			case "A":
				n = 2
			}
			if n == 0 {
				if len(e.Nonce) != 0 || len(e.MAC) != 0 {
					t.Fatalf("%s: row %s without a MAC came back with nonce %x mac %x", from, e.ResourceID, e.Nonce, e.MAC)
				}
				continue
			}
			if want := signed(e, n); !bytes.Equal(e.Nonce, want.Nonce) || !bytes.Equal(e.MAC, want.MAC) {
				t.Fatalf("%s: row %s nonce %x mac %x, want %x %x", from, e.ResourceID, e.Nonce, e.MAC, want.Nonce, want.MAC)
			}
		}
	}
	asc, err := s.ListAuditAsc(ctx(), storage.AuditRange{WorkspaceID: "ws_a", Limit: 10})
	must(t, err)
	check("ListAuditAsc", asc)
	page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_a", Limit: 10})
	must(t, err)
	check("ListAudit", page.Events)
}

// RunChanges checks that a backend shared by many nodes reports secret and
// keyring changes made through another handle on the same data.
func RunChanges(t *testing.T, a, b storage.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan storage.Change, 16)
	go b.Changes(ctx, func(c storage.Change) { got <- c })
	time.Sleep(200 * time.Millisecond) // let the listener start
	mkWorkspace(t, a, "ws_a")
	mkKEK(t, a, "kek_1")
	must(t, a.CreateSecret(ctx, storage.CreateSecretArgs{Secret: secret("ws_a", "A", "kek_1", "x")}))
	want := []storage.Change{{Kind: storage.ChangeKeyring}, {Kind: storage.ChangeSecret, WorkspaceID: "ws_a", Name: "A"}}
	for _, w := range want {
		select {
		case c := <-got:
			if c != w {
				t.Fatalf("change %+v, want %+v", c, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no change notification for %+v", w)
		}
	}
}

// appendAudit appends events and checks what AppendAudit reports: per
// workspace, in the order of first appearance or any order, the head before
// (Prev), the head after (Head, equal to GetAuditHead and to the newest
// row's id and chain) and the row count. The vault seals from these, so a
// wrong Prev or Head would seal rows it never checked.
func appendAudit(t *testing.T, s storage.Store, evs []storage.AuditEvent) []storage.AuditAppended {
	t.Helper()
	rows := map[string]int{}
	before := map[string]storage.AuditHead{}
	for _, e := range evs {
		if _, ok := before[e.WorkspaceID]; !ok {
			h, err := s.GetAuditHead(ctx(), e.WorkspaceID)
			must(t, err)
			before[e.WorkspaceID] = h
		}
		rows[e.WorkspaceID]++
	}
	got, err := s.AppendAudit(ctx(), evs)
	must(t, err)
	if len(got) != len(rows) {
		t.Fatalf("AppendAudit reported %d workspaces, want %d: %+v", len(got), len(rows), got)
	}
	for _, a := range got {
		if a.Rows != rows[a.WorkspaceID] {
			t.Fatalf("AppendAudit: workspace %q: %d rows reported, %d appended", a.WorkspaceID, a.Rows, rows[a.WorkspaceID])
		}
		if b := before[a.WorkspaceID]; a.Prev.LastID != b.LastID || !bytes.Equal(a.Prev.Chain, b.Chain) {
			t.Fatalf("AppendAudit: workspace %q: prev %d/%x, head before was %d/%x", a.WorkspaceID, a.Prev.LastID, a.Prev.Chain, b.LastID, b.Chain)
		}
		h, err := s.GetAuditHead(ctx(), a.WorkspaceID)
		must(t, err)
		if a.Head.LastID != h.LastID || !bytes.Equal(a.Head.Chain, h.Chain) {
			t.Fatalf("AppendAudit: workspace %q: head %d/%x, stored head %d/%x", a.WorkspaceID, a.Head.LastID, a.Head.Chain, h.LastID, h.Chain)
		}
		tail, err := s.ListAuditAsc(ctx(), storage.AuditRange{WorkspaceID: a.WorkspaceID, AfterID: a.Prev.LastID, Limit: a.Rows + 1})
		must(t, err)
		if len(tail) != a.Rows {
			t.Fatalf("AppendAudit: workspace %q: %d rows after prev %d, %d reported", a.WorkspaceID, len(tail), a.Prev.LastID, a.Rows)
		}
		if last := tail[len(tail)-1]; last.ID != a.Head.LastID || !bytes.Equal(last.Chain, a.Head.Chain) || !bytes.Equal(storage.NextChain(a.Prev.Chain, tail[0]), tail[0].Chain) {
			t.Fatalf("AppendAudit: workspace %q: reported heads do not match the rows", a.WorkspaceID)
		}
	}
	return got
}
