package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

// countingStore counts storage reads of secrets, to prove the cache works.
type countingStore struct {
	storage.Store
	gets atomic.Int64
}

func (c *countingStore) GetSecret(ctx context.Context, ws, name string) (storage.SecretRecord, error) {
	c.gets.Add(1)
	return c.Store.GetSecret(ctx, ws, name)
}

func auditRows(t *testing.T, v *Vault, a Actor, q storage.AuditQuery) []storage.AuditEvent {
	t.Helper()
	if err := v.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	q.Limit = 1000
	page, err := v.ListAudit(context.Background(), a, q)
	if err != nil {
		t.Fatal(err)
	}
	return page.Events
}

func TestSecretLifecycle(t *testing.T) {
	v, _ := testVault(t)
	a := bootstrap(t, v)
	ctx := context.Background()
	meta, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "NOTIFY_TOKEN", Value: PlaintextString("your-token-here"), AllowedHosts: []string{"API.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if meta.Hint != "your-t..." || meta.Version != 1 || meta.AllowedHosts[0] != "api.example.com" {
		t.Fatalf("created = %+v", meta)
	}
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "NOTIFY_TOKEN", Value: PlaintextString("x")}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	r, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "NOTIFY_TOKEN", ActorID: a.KeyID, Host: "api.example.com", RequestID: "req_1"})
	if err != nil || string(r.Value.Bytes()) != "your-token-here" || r.Version != 1 {
		t.Fatalf("resolve = %+v, %v", r, err)
	}
	nv := PlaintextString("rotated-value-2")
	meta, err = v.UpdateSecret(ctx, a, UpdateSecretRequest{Name: "NOTIFY_TOKEN", Value: &nv})
	if err != nil || meta.Version != 2 || meta.Hint != "rotate..." || meta.AllowedHosts[0] != "api.example.com" {
		t.Fatalf("rotate = %+v, %v", meta, err)
	}
	r, err = v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "NOTIFY_TOKEN", Host: "api.example.com", ActorID: a.KeyID})
	if err != nil || string(r.Value.Bytes()) != "rotated-value-2" || r.Version != 2 {
		t.Fatalf("resolve after rotate = %v, %v", r.Version, err)
	}
	hosts := []string{}
	meta, err = v.UpdateSecret(ctx, a, UpdateSecretRequest{Name: "NOTIFY_TOKEN", AllowedHosts: &hosts})
	if err != nil || meta.Version != 2 || len(meta.AllowedHosts) != 0 {
		t.Fatalf("hosts update = %+v, %v", meta, err)
	}
	if _, err := v.UpdateSecret(ctx, a, UpdateSecretRequest{Name: "NOTIFY_TOKEN"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty update: %v", err)
	}
	if _, err := v.UpdateSecret(ctx, a, UpdateSecretRequest{Name: "MISSING", Value: &nv}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	list, err := v.ListSecrets(ctx, a)
	if err != nil || len(list) != 1 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if err := v.DeleteSecret(ctx, a, "NOTIFY_TOKEN"); err != nil {
		t.Fatal(err)
	}
	if err := v.DeleteSecret(ctx, a, "NOTIFY_TOKEN"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "NOTIFY_TOKEN", ActorID: a.KeyID}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resolve after delete: %v", err)
	}

	evs := auditRows(t, v, a, storage.AuditQuery{ResourceType: ResourceSecret})
	var types []string
	for _, e := range evs {
		types = append(types, e.EventType)
		if e.ActorID == "" || e.OccurredAt.IsZero() || e.OccurredAt.Location() != time.UTC || e.ResourceID != "NOTIFY_TOKEN" {
			t.Fatalf("audit row missing fields: %+v", e)
		}
		for _, blob := range []json.RawMessage{e.Input, e.Output} {
			if strings.Contains(string(blob), "your-token-here") || strings.Contains(string(blob), "rotated-value-2") {
				t.Fatalf("audit row holds a value: %s", blob)
			}
		}
	}
	want := "secret.deleted secret.accessed secret.updated secret.rotated secret.accessed secret.created"
	if got := strings.Join(types, " "); got != want {
		// Access rows are group-committed, so they may land after the change
		// rows of the same moment; compare as multisets.
		if !sameMultiset(types, strings.Fields(want)) {
			t.Fatalf("audit events = %s, want %s", got, want)
		}
	}
}

func sameMultiset(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestValidation(t *testing.T) {
	v, _ := testVault(t)
	a := bootstrap(t, v)
	ctx := context.Background()
	cases := []struct {
		req  CreateSecretRequest
		want error
	}{
		{CreateSecretRequest{Name: "lower", Value: PlaintextString("x")}, ErrInvalidName},
		{CreateSecretRequest{Name: "A", Value: PlaintextString("")}, ErrInvalidValue},
		{CreateSecretRequest{Name: "A", Value: NewPlaintext(make([]byte, MaxValueLen+1))}, ErrInvalidValue},
		{CreateSecretRequest{Name: "A", Value: PlaintextString("x"), AllowedHosts: []string{"ftp://x"}}, ErrInvalidHost},
	}
	for _, c := range cases {
		if _, err := v.CreateSecret(ctx, a, c.req); !errors.Is(err, c.want) {
			t.Errorf("CreateSecret(%q) = %v, want %v", c.req.Name, err, c.want)
		}
	}
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "A", Value: NewPlaintext(make([]byte, MaxValueLen))}); err != nil {
		t.Fatalf("a value of exactly MaxValueLen: %v", err)
	}
}

func TestResolveCache(t *testing.T) {
	cs := &countingStore{Store: testStore(t)}
	v := openVault(t, cs)
	ctx := context.Background()
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "A", Value: PlaintextString("v1")}); err != nil {
		t.Fatal(err)
	}
	req := ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "A", ActorID: a.KeyID}
	cs.gets.Store(0)
	for range 100 {
		if r, err := v.Resolve(ctx, req); err != nil || string(r.Value.Bytes()) != "v1" {
			t.Fatal(err)
		}
	}
	if n := cs.gets.Load(); n != 1 {
		t.Fatalf("100 resolves made %d storage reads, want 1", n)
	}
	nv := PlaintextString("v2")
	if _, err := v.UpdateSecret(ctx, a, UpdateSecretRequest{Name: "A", Value: &nv}); err != nil {
		t.Fatal(err)
	}
	if r, _ := v.Resolve(ctx, req); string(r.Value.Bytes()) != "v2" {
		t.Fatal("rotation not seen by the next resolve")
	}
	// 100 resolves → 100 access rows, written in few transactions.
	evs := auditRows(t, v, a, storage.AuditQuery{EventType: EventSecretAccessed})
	if len(evs) != 101 {
		t.Fatalf("%d access rows, want 101", len(evs))
	}
}

// TestResolveNeverStaleAfterRotate races resolvers against rotations: a
// resolve that starts after a rotation returned must see that version or a
// later one.
func TestResolveNeverStaleAfterRotate(t *testing.T) {
	v, _ := testVault(t)
	a := bootstrap(t, v)
	ctx := context.Background()
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "A", Value: PlaintextString("1")}); err != nil {
		t.Fatal(err)
	}
	var committed atomic.Int64
	committed.Store(1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := committed.Load()
				r, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "A", ActorID: a.KeyID})
				if err != nil {
					t.Error(err)
					return
				}
				if r.Version < floor {
					t.Errorf("resolved version %d after version %d was committed", r.Version, floor)
					return
				}
			}
		})
	}
	for i := 2; i <= 60; i++ {
		nv := PlaintextString(fmt.Sprint(i))
		meta, err := v.UpdateSecret(ctx, a, UpdateSecretRequest{Name: "A", Value: &nv})
		if err != nil {
			t.Fatal(err)
		}
		committed.Store(meta.Version)
	}
	close(stop)
	wg.Wait()
}

func TestHostBinding(t *testing.T) {
	v, _ := testVault(t)
	a := bootstrap(t, v)
	ctx := context.Background()
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "A", Value: PlaintextString("v"), AllowedHosts: []string{"*.example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "A", Host: "api.example.com", ActorID: a.KeyID}); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"evil.com", "example.com", ""} {
		r, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "A", Host: host, RequestID: "req_x", ActorID: a.KeyID})
		if !errors.Is(err, ErrHostNotAllowed) || r.Value.Len() != 0 {
			t.Fatalf("host %q: %v", host, err)
		}
	}
	denied := auditRows(t, v, a, storage.AuditQuery{EventType: EventSecretAccessDenied})
	if len(denied) != 3 || !strings.Contains(string(denied[0].Input), "req_x") {
		t.Fatalf("denied rows = %+v", denied)
	}
}

func TestWorkspaceIsolation(t *testing.T) {
	v, _ := testVault(t)
	op := bootstrap(t, v)
	ctx := context.Background()
	nw, err := v.CreateWorkspace(ctx, op, "team-b")
	if err != nil {
		t.Fatal(err)
	}
	keyB := nw.Key
	b, err := v.Authenticate(ctx, keyB)
	if err != nil || b.Role != RoleAdmin {
		t.Fatalf("team-b admin: %+v, %v", b, err)
	}
	if _, err := v.CreateSecret(ctx, op, CreateSecretRequest{Name: "A_ONLY", Value: PlaintextString("a-value")}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.GetSecret(ctx, b, "A_ONLY"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("B read A's secret: %v", err)
	}
	if err := v.DeleteSecret(ctx, b, "A_ONLY"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("B deleted A's secret: %v", err)
	}
	nv := PlaintextString("x")
	if _, err := v.UpdateSecret(ctx, b, UpdateSecretRequest{Name: "A_ONLY", Value: &nv}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("B rotated A's secret: %v", err)
	}
	if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: b.WorkspaceID, Name: "A_ONLY", ActorID: b.KeyID}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("B resolved A's secret: %v", err)
	}
	if list, _ := v.ListSecrets(ctx, b); len(list) != 0 {
		t.Fatalf("B lists %+v", list)
	}
	// The same name in B is B's own.
	if _, err := v.CreateSecret(ctx, b, CreateSecretRequest{Name: "A_ONLY", Value: PlaintextString("b-value")}); err != nil {
		t.Fatal(err)
	}
	ra, _ := v.Resolve(ctx, ResolveRequest{WorkspaceID: op.WorkspaceID, Name: "A_ONLY", ActorID: op.KeyID})
	rb, _ := v.Resolve(ctx, ResolveRequest{WorkspaceID: b.WorkspaceID, Name: "A_ONLY", ActorID: b.KeyID})
	if string(ra.Value.Bytes()) != "a-value" || string(rb.Value.Bytes()) != "b-value" {
		t.Fatal("same-named secrets crossed workspaces")
	}
	for _, e := range auditRows(t, v, b, storage.AuditQuery{}) {
		if e.WorkspaceID != b.WorkspaceID {
			t.Fatalf("B sees audit row of %s", e.WorkspaceID)
		}
	}
	// Keys: B's admin cannot see or revoke A's keys, nor create workspaces.
	keys, _ := v.ListAPIKeys(ctx, b)
	for _, k := range keys {
		if k.WorkspaceID != b.WorkspaceID {
			t.Fatal("B lists A's keys")
		}
	}
	if err := v.RevokeAPIKey(ctx, b, op.KeyID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("B revoked A's key: %v", err)
	}
	if _, err := v.CreateWorkspace(ctx, b, "team-c"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("admin created a workspace: %v", err)
	}
	if _, err := v.RotateKEK(ctx, b); !errors.Is(err, ErrForbidden) {
		t.Fatalf("admin rotated the keyring: %v", err)
	}
}

func TestAPIKeys(t *testing.T) {
	v, _ := testVault(t)
	op := bootstrap(t, v)
	ctx := context.Background()
	rec, key, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "worker-1"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Role != RoleMember || !strings.HasPrefix(key, "rtr_") || strings.Contains(string(rec.Hash), key) {
		t.Fatalf("key = %+v", rec)
	}
	m, err := v.Authenticate(ctx, key)
	if err != nil || m.KeyID != rec.ID || m.WorkspaceID != op.WorkspaceID {
		t.Fatalf("authenticate: %+v, %v", m, err)
	}
	if _, _, err := v.CreateAPIKey(ctx, m, CreateAPIKeyRequest{Name: "x"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("member created a key: %v", err)
	}
	admin, adminKey, _ := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "adm", Role: RoleAdmin})
	adm, _ := v.Authenticate(ctx, adminKey)
	if _, _, err := v.CreateAPIKey(ctx, adm, CreateAPIKeyRequest{Name: "x", Role: RoleOperator}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("admin escalated to operator: %v", err)
	}
	if _, _, err := v.CreateAPIKey(ctx, adm, CreateAPIKeyRequest{Name: "x", Role: "root"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("unknown role: %v", err)
	}
	if err := v.RevokeAPIKey(ctx, adm, admin.ID); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("self-revoke: %v", err)
	}
	if err := v.RevokeAPIKey(ctx, adm, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Authenticate(ctx, key); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked key still works: %v", err)
	}
	for _, bad := range []string{"", "rtr_", key + "x", strings.Replace(key, "_", "-", 1), "rtr_0000000000000000_" + strings.Repeat("A", 43), strings.Repeat("k", 600)} {
		if _, err := v.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%.20q) = %v", bad, err)
		}
	}
}

func TestBootstrapKey(t *testing.T) {
	v, _ := testVault(t)
	ctx := context.Background()
	const chosen = "ci-bootstrap-key-0123456789"
	res, err := v.Bootstrap(ctx, chosen)
	if err != nil || !res.Created || res.Key != "" {
		t.Fatalf("bootstrap = %+v, %v", res, err)
	}
	a, err := v.Authenticate(ctx, chosen)
	if err != nil || a.Role != RoleOperator || a.KeyID != res.KeyID {
		t.Fatalf("chosen key: %+v, %v", a, err)
	}
	again, err := v.Bootstrap(ctx, "another-key-0123456789")
	if err != nil || again.Created {
		t.Fatalf("second bootstrap = %+v, %v", again, err)
	}
	if _, err := v.Authenticate(ctx, "another-key-0123456789"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatal("a second bootstrap key was installed")
	}
	v2, _ := testVault(t)
	if _, err := v2.Bootstrap(ctx, "short"); err == nil {
		t.Fatal("short bootstrap key accepted")
	}
}

func TestWrongMasterKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rotor.db")
	store, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	key := GenerateMasterKey()
	v, err := Open(ctx, Options{Store: store, MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "A", Value: PlaintextString("v")}); err != nil {
		t.Fatal(err)
	}
	v.Close(ctx)
	if _, err := Open(ctx, Options{Store: store, MasterKey: GenerateMasterKey()}); !errors.Is(err, ErrMasterKey) {
		t.Fatalf("wrong master key: %v", err)
	}
	v, err = Open(ctx, Options{Store: store, MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close(ctx)
	if r, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "A", ActorID: a.KeyID}); err != nil || string(r.Value.Bytes()) != "v" {
		t.Fatalf("reopen with the right key: %v", err)
	}
}

func TestRotateKEK(t *testing.T) {
	v, store := testVault(t)
	op := bootstrap(t, v)
	ctx := context.Background()
	nw, _ := v.CreateWorkspace(ctx, op, "team-b")
	keyB := nw.Key
	b, _ := v.Authenticate(ctx, keyB)
	want := map[string]string{}
	for i := range 300 { // more than one re-wrap batch
		actor := op
		if i%3 == 0 {
			actor = b
		}
		name, val := fmt.Sprintf("S%d", i), fmt.Sprintf("value-%d", i)
		if _, err := v.CreateSecret(ctx, actor, CreateSecretRequest{Name: name, Value: PlaintextString(val)}); err != nil {
			t.Fatal(err)
		}
		want[actor.WorkspaceID+"/"+name] = val
	}
	oldActive, _ := v.keys.ids()
	before, _ := store.GetSecret(ctx, op.WorkspaceID, "S1")

	if _, err := v.RotateKEK(ctx, b); !errors.Is(err, ErrForbidden) {
		t.Fatalf("admin rotated: %v", err)
	}
	res, err := v.RotateKEK(ctx, op)
	if err != nil {
		t.Fatal(err)
	}
	// 300 secrets and each workspace's two dispatch credentials.
	if res.Rewrapped != 304 || len(res.Retired) != 1 || res.Retired[0] != oldActive || res.NewKeyID == oldActive {
		t.Fatalf("rotation = %+v", res)
	}
	keks, _ := store.ListKEKs(ctx)
	if len(keks) != 1 || keks[0].ID != res.NewKeyID || !keks[0].Active {
		t.Fatalf("keyring after rotation = %+v", keks)
	}
	after, _ := store.GetSecret(ctx, op.WorkspaceID, "S1")
	pb, _ := parseSealed(before.Sealed)
	pa, _ := parseSealed(after.Sealed)
	if string(pb.body) != string(pa.body) || after.Version != before.Version || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatal("rotation touched the sealed value or the secret's metadata")
	}
	// Every value still opens, from storage (not the cache).
	v2, err := Open(ctx, Options{Store: store, MasterKey: nil})
	if err == nil {
		v2.Close(ctx)
		t.Fatal("Open without master key succeeded")
	}
	for k, val := range want {
		ws, name, _ := strings.Cut(k, "/")
		v.Invalidate(ws, name)
		r, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: ws, Name: name, ActorID: "key_test"})
		if err != nil || string(r.Value.Bytes()) != val {
			t.Fatalf("%s after rotation: %v", k, err)
		}
	}
	if rows := auditRows(t, v, op, storage.AuditQuery{EventType: EventKeyringRotated}); len(rows) != 1 {
		t.Fatalf("keyring.rotated rows = %d", len(rows))
	}
	// A second rotation works the same.
	res2, err := v.RotateKEK(ctx, op)
	if err != nil || res2.Rewrapped != 304 || res2.Retired[0] != res.NewKeyID {
		t.Fatalf("second rotation = %+v, %v", res2, err)
	}
}

// TestOldKeyIDsKeepWorking: a secret sealed under an old KEK still opens
// before it is re-wrapped, and a writer holding a retired key reseals.
func TestOldKeyIDsKeepWorking(t *testing.T) {
	v, _ := testVault(t)
	op := bootstrap(t, v)
	ctx := context.Background()
	if _, err := v.CreateSecret(ctx, op, CreateSecretRequest{Name: "OLD", Value: PlaintextString("old")}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.keys.addKEK(ctx); err != nil { // new active key, OLD not yet re-wrapped
		t.Fatal(err)
	}
	v.Invalidate(op.WorkspaceID, "OLD")
	if r, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: op.WorkspaceID, Name: "OLD", ActorID: op.KeyID}); err != nil || string(r.Value.Bytes()) != "old" {
		t.Fatalf("old key id: %v", err)
	}
	if _, err := v.CreateSecret(ctx, op, CreateSecretRequest{Name: "NEW", Value: PlaintextString("new")}); err != nil {
		t.Fatal(err)
	}
}

func TestAuditWriterFlushesOnClose(t *testing.T) {
	v, store := testVault(t)
	ctx := context.Background()
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "A", Value: PlaintextString("v")}); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "A", ActorID: a.KeyID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Close(ctx); err != nil {
		t.Fatal(err)
	}
	page, err := store.ListAudit(ctx, storage.AuditQuery{WorkspaceID: a.WorkspaceID, EventType: EventSecretAccessed, Limit: 2000})
	if err != nil || len(page.Events) != 1000 {
		t.Fatalf("after close: %d access rows, %v", len(page.Events), err)
	}
	if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "A", ActorID: a.KeyID}); !errors.Is(err, ErrClosed) {
		t.Fatalf("resolve after close: %v", err)
	}
}

// TestAuditWriterGroupCommits: access rows reach storage within the flush
// interval without an explicit flush, in few transactions.
func TestAuditWriterGroupCommits(t *testing.T) {
	store := testStore(t)
	cs := &appendCounter{Store: store}
	v := openVault(t, cs)
	ctx := context.Background()
	a := bootstrap(t, v)
	v.CreateSecret(ctx, a, CreateSecretRequest{Name: "A", Value: PlaintextString("v")})
	for range 2000 {
		v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "A", ActorID: a.KeyID})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		page, _ := store.ListAudit(ctx, storage.AuditQuery{WorkspaceID: a.WorkspaceID, EventType: EventSecretAccessed, Limit: 5000})
		if len(page.Events) == 2000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 2000 access rows written after 5s", len(page.Events))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := cs.appends.Load(); n > 2000/auditMaxBatch+10 {
		t.Fatalf("2000 access rows took %d transactions", n)
	}
}

type appendCounter struct {
	storage.Store
	appends atomic.Int64
}

func (c *appendCounter) AppendAudit(ctx context.Context, evs []storage.AuditEvent) ([]storage.AuditAppended, error) {
	c.appends.Add(1)
	return c.Store.AppendAudit(ctx, evs)
}

func (c *appendCounter) RetryAppendAudit(ctx context.Context, evs []storage.AuditEvent) ([]storage.AuditAppended, error) {
	c.appends.Add(1)
	return c.Store.RetryAppendAudit(ctx, evs)
}
