package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// A row's MAC survives what stores do to its content: PostgreSQL's jsonb
// reorders keys and respaces, timestamptz keeps microseconds, the plugin
// wire HTML-escapes. Any change to the content itself breaks it.
func TestRowMACSurvivesStoreNormalization(t *testing.T) {
	s := newRowSigner([]byte("0123456789abcdef0123456789abcdef"))
	e := storage.AuditEvent{OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), WorkspaceID: "ws_a", ActorID: "key_1",
		EventType: EventSecretAccessed, ResourceType: ResourceSecret, ResourceID: "TOKEN",
		Input: json.RawMessage(`{"request_id":"r1","host":"a<b>.example","n":12}`), Output: json.RawMessage(`{"version":3}`)}
	s.sign(&e, nonceAccess)
	stored := e
	stored.OccurredAt = e.OccurredAt.Truncate(time.Microsecond)
	stored.Input = json.RawMessage(`{"n": 12, "host": "a\u003cb\u003e.example", "request_id": "r1"}`)
	c := newVerifyRowCheck(s.key, 1)
	if why := c.check(stored); why != "" {
		t.Fatalf("the stored form of a signed row fails: %s", why)
	}
	for name, edit := range map[string]func(*storage.AuditEvent){
		"actor": func(e *storage.AuditEvent) { e.ActorID = "key_2" },
		"type":  func(e *storage.AuditEvent) { e.EventType = EventSecretDeleted },
		"input": func(e *storage.AuditEvent) {
			e.Input = json.RawMessage(`{"n":13,"host":"a<b>.example","request_id":"r1"}`)
		},
		"output": func(e *storage.AuditEvent) { e.Output = nil },
		"time":   func(e *storage.AuditEvent) { e.OccurredAt = e.OccurredAt.Add(time.Microsecond) },
		"ws":     func(e *storage.AuditEvent) { e.WorkspaceID = "ws_b" },
		"nonce":  func(e *storage.AuditEvent) { e.Nonce = append([]byte(nil), e.Nonce...); e.Nonce[15]++ },
		"mac":    func(e *storage.AuditEvent) { e.MAC = nil },
	} {
		x := e
		edit(&x)
		if why := newRowCheck(s.key, 1).check(x); why == "" {
			t.Errorf("editing %s leaves the row MAC valid", name)
		}
	}
	if why := newRowCheck([]byte("another master key's row key...."), 1).check(e); why == "" {
		t.Error("a row MAC verifies under another key")
	}
}

func FuzzSortedJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[1,{"d":2,"c":"x"}]}`, `{}`, `[]`, `"s"`, `{"a":1e2}`, `{"a":`, `{"a":"\u2028<&>"}`, `{ "z" : 1, "a":"x", "a ":-2 , "b":true,"c":null}`, `{"a":1,"a":2}`, `{"a":01}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		once := sortedJSON(b)
		// The fast path agrees with decoding, whenever it applies.
		if fast, ok := appendFlatSorted(nil, b); ok && string(fast) != string(once) {
			t.Fatalf("fast path %q, decoding %q, for %q", fast, once, b)
		}
		if !json.Valid(b) {
			return
		}
		if twice := sortedJSON(once); string(twice) != string(once) {
			t.Fatalf("not stable: %q -> %q -> %q", b, once, twice)
		}
		// Whitespace is not part of it (a jsonb column respaces).
		var spaced bytes.Buffer
		if json.Indent(&spaced, b, " ", "  ") == nil {
			if again := sortedJSON(spaced.Bytes()); string(again) != string(once) {
				t.Fatalf("whitespace changes it: %q vs %q", again, once)
			}
		}
	})
}

// Rows this vault writes carry row MACs; a copy of a genuine row appended
// by a database writer (same nonce and MAC: a replay) fails verify, for
// access rows and rows written with a change alike. The sealer seals it.
func TestAttackReplayedRowFailsVerify(t *testing.T) {
	for _, typ := range []string{EventSecretAccessed, EventSecretDeleted} {
		t.Run(typ, func(t *testing.T) {
			ctx := context.Background()
			e := newChainEnv(t)
			rows, err := e.v.store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: e.actor.WorkspaceID, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			var orig *storage.AuditEvent
			for i := range rows {
				if len(rows[i].MAC) == 0 {
					t.Fatalf("row %d (%s) was written without a row MAC", rows[i].ID, rows[i].EventType)
				}
				if rows[i].EventType == typ && orig == nil {
					orig = &rows[i]
				}
			}
			if orig == nil {
				t.Fatalf("no %s row", typ)
			}
			cp := *orig
			cp.ID, cp.Chain = 0, nil
			heads, err := e.v.store.AppendAudit(ctx, []storage.AuditEvent{cp})
			if err != nil {
				t.Fatal(err)
			}
			// A copy is also what a retried write leaves when the store
			// committed but reported failure: the sealer does not stop on
			// it (its content is genuine); verify reports it.
			if err := e.v.SealAudit(ctx); err != nil {
				t.Fatalf("the sealer stops on a copied row: %v", err)
			}
			res := e.verify(t)
			if res.OK || res.FirstBadID != heads[0].Head.LastID || !strings.Contains(res.Problem, "copy") {
				t.Fatalf("verify = %+v, want a failure at the copied row %d", res, heads[0].Head.LastID)
			}
		})
	}
}

// A trail from before row MACs: its rows have none, and its seal has no
// boundary. They verify; the first seal after the upgrade records the
// boundary (under the seal's MAC), and from there on a row without a MAC is
// refused by the sealer and verify. Removing the boundary from the seal
// breaks the seal's MAC.
func TestRowMACUpgradeBoundary(t *testing.T) {
	ctx := context.Background()
	e := newChainEnv(t)
	const ws = "ws_legacy0000000"
	actor := Actor{WorkspaceID: ws, KeyID: "key_legacy000000"}
	if err := e.v.store.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: ws, Name: "legacy", CreatedAt: time.Now().UTC()}}); err != nil {
		t.Fatal(err)
	}
	legacy := func(name string) storage.AuditEvent {
		return storage.AuditEvent{OccurredAt: time.Now().UTC(), WorkspaceID: ws, ActorID: actor.KeyID, EventType: EventSecretCreated,
			ResourceType: ResourceSecret, ResourceID: name, Input: []byte(`{"name":"` + name + `"}`)}
	}
	heads, err := e.v.store.AppendAudit(ctx, []storage.AuditEvent{legacy("OLD_1"), legacy("OLD_2")})
	if err != nil {
		t.Fatal(err)
	}
	// The old sealer's seal: no boundary, MAC without it.
	old := storage.AuditCheckpoint{WorkspaceID: ws, LastID: heads[0].Head.LastID, Chain: heads[0].Head.Chain, SealedAt: time.Now().UTC().Truncate(time.Microsecond)}
	old.MAC = e.v.checkpointMAC(old)
	if err := e.v.store.PutAuditCheckpoint(ctx, old); err != nil {
		t.Fatal(err)
	}
	verify := func() AuditVerification {
		t.Helper()
		res, err := e.v.VerifyAudit(ctx, actor)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := verify(); !res.OK {
		t.Fatalf("rows from before row MACs under an old seal: %+v", res)
	}
	if _, err := e.v.store.AppendAudit(ctx, []storage.AuditEvent{e.v.event(actor, EventSecretCreated, ResourceSecret, "NEW_1", nil, nil)}); err != nil {
		t.Fatal(err)
	}
	if err := e.v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	cp, err := e.v.store.GetAuditCheckpoint(ctx, ws)
	if err != nil || cp.RowMACFrom != old.LastID+1 {
		t.Fatalf("seal after the upgrade = %+v (%v), want row MACs required from row %d", cp, err, old.LastID+1)
	}
	if res := verify(); !res.OK {
		t.Fatalf("after the upgrade's first seal: %+v", res)
	}
	// A database writer appends a row the old way.
	forged, err := e.v.store.AppendAudit(ctx, []storage.AuditEvent{legacy("FORGED")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.v.SealAudit(ctx); !errors.Is(err, ErrAuditTampered) {
		t.Fatalf("sealer over a row without a MAC past the boundary: %v, want ErrAuditTampered", err)
	}
	if res := verify(); res.OK || res.FirstBadID != forged[0].Head.LastID || !strings.Contains(res.Problem, "no MAC") {
		t.Fatalf("verify = %+v, want a failure at row %d", res, forged[0].Head.LastID)
	}
	// ...and moves the boundary away.
	e.exec(t, `UPDATE audit_checkpoint SET row_mac_from=0 WHERE workspace_id=$1`, ws)
	if res := verify(); res.OK || !strings.Contains(res.Problem, "seal does not verify") {
		t.Fatalf("verify with the boundary removed = %+v", res)
	}
}

// The forged append of TestAttackForgedRowAppendedIsSealed on a bbolt
// file, through the store the vault uses, and rows that the vault wrote
// through the writer and with changes all verify there.
func TestAttackForgedRowAppendedBolt(t *testing.T) {
	ctx := context.Background()
	v, err := Open(ctx, Options{Store: testStore(t), MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "PAYROLL_DB", Value: PlaintextString("a-value-of-some-length")}); err != nil {
		t.Fatal(err)
	}
	resolveN(t, v, a, "PAYROLL_DB", 3)
	if err := v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := v.VerifyAudit(ctx, a); err != nil || !res.OK {
		t.Fatalf("before: %+v, %v", res, err)
	}
	forged := storage.AuditEvent{OccurredAt: time.Now().UTC(), WorkspaceID: a.WorkspaceID, ActorID: "key_framed0000000",
		EventType: EventSecretDeleted, ResourceType: ResourceSecret, ResourceID: "PAYROLL_DB", Input: []byte(`{"name":"PAYROLL_DB"}`)}
	heads, err := v.store.AppendAudit(ctx, []storage.AuditEvent{forged})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.SealAudit(ctx); !errors.Is(err, ErrAuditTampered) {
		t.Fatalf("sealer over a forged row: %v, want ErrAuditTampered", err)
	}
	res, err := v.VerifyAudit(ctx, a)
	if err != nil || res.OK || res.FirstBadID != heads[0].Head.LastID {
		t.Fatalf("verify = %+v (%v), want a failure at the forged row %d", res, err, heads[0].Head.LastID)
	}
}

// Export row lines carry the row's nonce and MAC; with the key they verify
// on their own (the export is outside the database writer's reach).
func TestExportCarriesRowMAC(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	v, err := Open(ctx, Options{Store: testStore(t), MasterKey: GenerateMasterKey(), AuditSealInterval: -1, AuditExport: "file:" + path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("a-value-of-some-length")}); err != nil {
		t.Fatal(err)
	}
	resolveN(t, v, a, "TOKEN", 2)
	var rows []ExportLine
	for range 100 { // the exporter runs every auditExportInterval
		rows = rows[:0]
		b, _ := os.ReadFile(path)
		for line := range bytes.Lines(b) {
			var l ExportLine
			if json.Unmarshal(line, &l) == nil && l.Type == "row" && l.WorkspaceID == a.WorkspaceID {
				rows = append(rows, l)
			}
		}
		if len(rows) >= 4 { // workspace, created, two accesses
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(rows) < 4 {
		t.Fatalf("exported %d rows, want 4", len(rows))
	}
	c := newVerifyRowCheck(v.rows.key, 1)
	for _, l := range rows {
		nonce, err1 := hex.DecodeString(l.Nonce)
		mac, err2 := hex.DecodeString(l.MAC)
		if err1 != nil || err2 != nil || len(mac) == 0 {
			t.Fatalf("row %d exported without a row MAC: %+v", l.ID, l)
		}
		e := storage.AuditEvent{ID: l.ID, OccurredAt: *l.OccurredAt, WorkspaceID: l.WorkspaceID, ActorID: l.ActorID, EventType: l.EventType,
			ResourceType: l.ResourceType, ResourceID: l.ResourceID, Input: l.Input, Output: l.Output, Nonce: nonce, MAC: mac}
		if why := c.check(e); why != "" {
			t.Fatalf("exported row %d: %s", l.ID, why)
		}
		e.ActorID = "key_other"
		if why := newRowCheck(v.rows.key, 1).check(e); why == "" {
			t.Fatalf("exported row %d edited still verifies", l.ID)
		}
	}
}
