package vault

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

// readCounter counts the rows the vault reads back through ListAuditAsc.
type readCounter struct {
	storage.Store
	reads atomic.Int64
	calls atomic.Int64
}

func (c *readCounter) ListAuditAsc(ctx context.Context, r storage.AuditRange) ([]storage.AuditEvent, error) {
	evs, err := c.Store.ListAuditAsc(ctx, r)
	c.reads.Add(int64(len(evs)))
	c.calls.Add(1)
	return evs, err
}

func resolveN(t *testing.T, v *Vault, a Actor, name string, n int) {
	t.Helper()
	for range n {
		if _, err := v.Resolve(context.Background(), ResolveRequest{WorkspaceID: a.WorkspaceID, Name: name, ActorID: a.KeyID, Host: "api.example.com", RequestID: "req_1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func sealedThrough(t *testing.T, s storage.Store, ws string) (storage.AuditCheckpoint, storage.AuditHead) {
	t.Helper()
	cp, err := s.GetAuditCheckpoint(context.Background(), ws)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.GetAuditHead(context.Background(), ws)
	if err != nil {
		t.Fatal(err)
	}
	return cp, h
}

// TestSealFromAppends (issue 15): once a node has sealed, it seals the rows
// it appended itself from the heads AppendAudit returned, reading no row
// back; rows it did not append through the writer (written with a change)
// are walked; the background check then reads the sealed rows once.
func TestSealFromAppends(t *testing.T) {
	ctx := context.Background()
	store := &readCounter{Store: testStore(t)}
	v, err := Open(ctx, Options{Store: store, MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("value-0123456789")}); err != nil {
		t.Fatal(err)
	}
	if err := v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		store.reads.Store(0)
		resolveN(t, v, a, "TOKEN", 300)
		if err := v.SealAudit(ctx); err != nil {
			t.Fatal(err)
		}
		if n := store.reads.Load(); n != 0 {
			t.Fatalf("round %d: the sealer read %d rows back", round, n)
		}
		if cp, h := sealedThrough(t, store, a.WorkspaceID); cp.LastID != h.LastID {
			t.Fatalf("round %d: sealed through %d, head %d", round, cp.LastID, h.LastID)
		}
	}
	// A row written with a change reports no heads: the sealer walks it
	// (and the access rows after it), and then trusts appends again.
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "OTHER", Value: PlaintextString("value-0123456789")}); err != nil {
		t.Fatal(err)
	}
	store.reads.Store(0)
	resolveN(t, v, a, "TOKEN", 10)
	if err := v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := store.reads.Load(); n != 11 {
		t.Fatalf("after a gap the sealer read %d rows, want the 11 written since its last seal", n)
	}
	store.reads.Store(0)
	resolveN(t, v, a, "TOKEN", 10)
	if err := v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if cp, h := sealedThrough(t, store, a.WorkspaceID); store.reads.Load() != 0 || cp.LastID != h.LastID {
		t.Fatalf("after the gap: %d rows read, sealed through %d of %d", store.reads.Load(), cp.LastID, h.LastID)
	}
	// The background check reads the rows sealed unread, once.
	store.reads.Store(0)
	if err := v.CheckSealedAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := store.reads.Load(); n < 900 {
		t.Fatalf("background check read %d rows, want the 900+ sealed from appends", n)
	}
	store.reads.Store(0)
	if err := v.CheckSealedAudit(ctx); err != nil || store.reads.Load() != 0 {
		t.Fatalf("second check: %v, %d rows read", err, store.reads.Load())
	}
	if res, err := v.VerifyAudit(ctx, a); err != nil || !res.OK {
		t.Fatalf("verify = %+v, %v", res, err)
	}
}

// TestSealFromAppendsBlessesOnlyOwnRows: rows this node appended are edited
// in the database and the chain recomputed before the next seal. Reading
// them back (the old sealer) sealed the forged chain and verify passed; the
// seal from the node's own heads covers what the node wrote, and the
// background check reports it; verify fails at the edited row, whose row MAC
// no longer verifies.
func TestSealFromAppendsBlessesOnlyOwnRows(t *testing.T) {
	e := newChainEnv(t)
	ctx := context.Background()
	_, before := sealedThrough(t, e.v.store, e.actor.WorkspaceID)
	resolveN(t, e.v, e.actor, "CHAIN_1", 5)
	_, head := sealedThrough(t, e.v.store, e.actor.WorkspaceID)
	e.exec(t, `UPDATE audit_event SET input='{"host":"innocent.example"}' WHERE workspace_id=$1 AND id=(SELECT min(id) FROM audit_event WHERE workspace_id=$1 AND id>$2)`, e.actor.WorkspaceID, before.LastID)
	e.rechain(t)
	if err := e.v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	cp, _ := sealedThrough(t, e.v.store, e.actor.WorkspaceID)
	if cp.LastID != head.LastID {
		t.Fatalf("sealed through %d, want the node's own head %d", cp.LastID, head.LastID)
	}
	tamper := testutil.ToFloat64(e.v.metrics.auditTamper)
	if err := e.v.CheckSealedAudit(ctx); !errors.Is(err, ErrAuditTampered) {
		t.Fatalf("background check: %v, want ErrAuditTampered", err)
	}
	if got := testutil.ToFloat64(e.v.metrics.auditTamper); got != tamper+1 {
		t.Fatalf("tamper counter %v -> %v", tamper, got)
	}
	if res := e.verify(t); res.OK || res.FirstBadID <= before.LastID || res.FirstBadID > head.LastID || !strings.Contains(res.Problem, "MAC") {
		t.Fatalf("verify = %+v, want it to fail at the edited row (after %d) on its MAC", res, before.LastID)
	}
}

// TestSealFromAppendsTwoNodes: two nodes on one PostgreSQL trail append in
// turns; each one's appends start at the other's rows, so each walks them,
// and neither raises a false alarm.
func TestSealFromAppendsTwoNodes(t *testing.T) {
	e := newChainEnv(t)
	ctx := context.Background()
	v2, err := Open(ctx, Options{Store: e.v.store, MasterKey: e.key, AuditSealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close(ctx)
	tamper := testutil.ToFloat64(e.v.metrics.auditTamper) + testutil.ToFloat64(v2.metrics.auditTamper)
	for round := range 4 {
		for _, v := range []*Vault{e.v, v2} {
			resolveN(t, v, e.actor, "CHAIN_2", 7)
			if err := v.SealAudit(ctx); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if cp, h := sealedThrough(t, e.v.store, e.actor.WorkspaceID); cp.LastID != h.LastID {
				t.Fatalf("round %d: sealed through %d, head %d", round, cp.LastID, h.LastID)
			}
		}
	}
	for _, v := range []*Vault{e.v, v2} {
		if err := v.CheckSealedAudit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(e.v.metrics.auditTamper) + testutil.ToFloat64(v2.metrics.auditTamper); got != tamper {
		t.Fatalf("false tamper alarms: %v -> %v", tamper, got)
	}
	if res := e.verify(t); !res.OK {
		t.Fatalf("verify = %+v", res)
	}
}

// movingMarker is a bbolt store whose retention marker is forged and moves
// on at every read, as a database writer rewriting it while verify runs
// would make it: each verify attempt fails and sees a marker that moved,
// so VerifyAudit retries to its limit.
type movingMarker struct {
	*bolt.Store
	reads atomic.Int64
}

func (m *movingMarker) GetAuditRetention(_ context.Context, ws string) (storage.AuditRetention, error) {
	n := m.reads.Add(1)
	return storage.AuditRetention{WorkspaceID: ws, ThroughID: n, Chain: make([]byte, 32), Rows: n, PrunedAt: time.Now(), MAC: make([]byte, 32)}, nil
}

// TestVerifyRetryCountsTamperOnce (issue 11): a verification retried
// because the retention marker moved counts one detection in
// rotor_audit_tamper_detected_total, not one per attempt.
func TestVerifyRetryCountsTamperOnce(t *testing.T) {
	ctx := context.Background()
	store := &movingMarker{Store: testStore(t)}
	v, err := Open(ctx, Options{Store: store, MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	a := bootstrap(t, v)
	before := testutil.ToFloat64(v.metrics.auditTamper)
	res, err := v.VerifyAudit(ctx, a)
	if err != nil || res.OK || !strings.Contains(res.Problem, "retention marker") {
		t.Fatalf("verify = %+v, %v; want the forged marker reported", res, err)
	}
	if store.reads.Load() < 4 {
		t.Fatalf("verify read the marker %d times: it did not retry", store.reads.Load())
	}
	if got := testutil.ToFloat64(v.metrics.auditTamper) - before; got != 1 {
		t.Fatalf("one verification counted %v detections", got)
	}
}

// TestSealFastPathDoesNotReadPastTip: under load the head is nearly always
// past the tip (appends in flight, or another node's rows): the fast path
// seals through its tip without a storage read, and the rows after it are
// walked by a later round once the tip has not moved past them. (It used to
// list the rows after the tip on every round: a plugin call that decodes a
// whole bbolt audit segment, 36-41% of the plugin's CPU under proxy load.)
func TestSealFastPathDoesNotReadPastTip(t *testing.T) {
	ctx := context.Background()
	store := &readCounter{Store: testStore(t)}
	v, err := Open(ctx, Options{Store: store, MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("value-0123456789")}); err != nil {
		t.Fatal(err)
	}
	if err := v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	resolveN(t, v, a, "TOKEN", 50)
	// Another writer's row lands after this node's appends (signed, as a
	// second node's would be); the sealer has not been told of it.
	other := []storage.AuditEvent{{OccurredAt: time.Now().UTC(), WorkspaceID: a.WorkspaceID, ActorID: a.KeyID,
		EventType: "queue.created", ResourceType: "queue", ResourceID: "q", Input: []byte(`{"name":"q"}`)}}
	v.SignAudit(other)
	if _, err := store.Store.AppendAudit(ctx, other); err != nil {
		t.Fatal(err)
	}
	store.reads.Store(0)
	store.calls.Store(0)
	if err := v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	cp, h := sealedThrough(t, store, a.WorkspaceID)
	if n := store.calls.Load(); n != 0 {
		t.Fatalf("the fast path listed rows %d time(s) (%d rows)", n, store.reads.Load())
	}
	if cp.LastID != h.LastID-1 {
		t.Fatalf("sealed through %d, want the tip %d (head %d)", cp.LastID, h.LastID-1, h.LastID)
	}
	// The next round walks the row after the tip and seals it.
	if err := v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if cp, h := sealedThrough(t, store, a.WorkspaceID); cp.LastID != h.LastID || store.reads.Load() != 1 {
		t.Fatalf("second round: sealed through %d of %d, read %d rows (want the 1 after the tip)", cp.LastID, h.LastID, store.reads.Load())
	}
	if res, err := v.VerifyAudit(ctx, a); err != nil || !res.OK {
		t.Fatalf("verify: %+v %v", res, err)
	}
}

// headHook runs hook once, right after the next GetAuditHead.
type headHook struct {
	*readCounter
	hook atomic.Pointer[func()]
}

func (h *headHook) GetAuditHead(ctx context.Context, ws string) (storage.AuditHead, error) {
	head, err := h.readCounter.GetAuditHead(ctx, ws)
	if f := h.hook.Swap(nil); f != nil {
		(*f)()
	}
	return head, err
}

// TestSealFastPathAfterAppendDuringSeal (issue 15): under a steady access
// rate the writer appends while a seal round walks (the first round after
// start always does), so the append starting at the head the round seals is
// reported before the round moves the tip there. The sealer dropped that
// append and every later one, since none started at its tip, and walked
// every new row every round from then on.
func TestSealFastPathAfterAppendDuringSeal(t *testing.T) {
	ctx := context.Background()
	store := &headHook{readCounter: &readCounter{Store: testStore(t)}}
	v, err := Open(ctx, Options{Store: store, MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("value-0123456789")}); err != nil {
		t.Fatal(err)
	}
	// Round 0 is the node's first seal (a full walk), as when `rotor
	// serve` starts under load.
	for round := range 4 {
		resolveN(t, v, a, "TOKEN", 50)
		// Rows appended between the round's head read and its seal.
		during := func() { resolveN(t, v, a, "TOKEN", 20) }
		store.hook.Store(&during)
		store.reads.Store(0)
		if err := v.SealAudit(ctx); err != nil {
			t.Fatal(err)
		}
		if n := store.reads.Load(); round > 0 && n != 0 {
			t.Fatalf("round %d: the sealer read %d rows back", round, n)
		}
	}
	resolveN(t, v, a, "TOKEN", 5)
	if err := v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if cp, h := sealedThrough(t, store, a.WorkspaceID); cp.LastID != h.LastID || store.reads.Load() != 0 {
		t.Fatalf("sealed through %d of %d, %d rows read", cp.LastID, h.LastID, store.reads.Load())
	}
	if res, err := v.VerifyAudit(ctx, a); err != nil || !res.OK {
		t.Fatalf("verify = %+v, %v", res, err)
	}
}
