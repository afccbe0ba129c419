package vault

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAttackReplayedSealLaunderedByFreshNode: a database writer saves a
// validly MAC'd checkpoint, waits while later rows are written and sealed,
// then deletes one of those later rows, re-chains the rest, and puts the
// old checkpoint back. A node holding the newer seal (its anchor) refuses;
// but a node without one (PostgreSQL with the data dir on an emptyDir, as
// the Helm chart runs it, after every node was replaced) took the old seal
// as its starting point, walked rows that chain and carry genuine MACs, and
// sealed over the deletion: verify then passed. Rows written long after
// the newest seal, with none over them, mean that seal is not the newest
// one made: the sealer refuses them, as it refuses rows when the seal is
// deleted.
func TestAttackReplayedSealLaunderedByFreshNode(t *testing.T) {
	e := newChainEnv(t)
	ctx := context.Background()
	var old struct {
		last         int64
		chain, mac   []byte
		sealedAtText string
	}
	if err := e.db.QueryRow(ctx, `SELECT last_id, chain, mac, sealed_at::text FROM audit_checkpoint WHERE workspace_id=$1`, e.actor.WorkspaceID).
		Scan(&old.last, &old.chain, &old.mac, &old.sealedAtText); err != nil {
		t.Fatal(err)
	}
	// An hour later, a node writes and seals more rows.
	later := func(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }
	v1, err := Open(ctx, Options{Store: e.v.store, MasterKey: e.key, AuditSealInterval: -1, Now: later(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"LATER_A", "LATER_B", "LATER_C"} {
		if _, err := v1.CreateSecret(ctx, e.actor, CreateSecretRequest{Name: name, Value: NewPlaintext([]byte("later-value"))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v1.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	var victim int64
	if err := e.db.QueryRow(ctx, `SELECT min(id) FROM audit_event WHERE workspace_id=$1 AND id>$2`, e.actor.WorkspaceID, old.last).Scan(&victim); err != nil {
		t.Fatal(err)
	}
	if err := v1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Every node is gone; the attacker deletes LATER_A's creation, re-chains
	// and replays the old seal.
	e.exec(t, `DELETE FROM audit_event WHERE id=$1`, victim)
	e.rechain(t)
	e.exec(t, `UPDATE audit_checkpoint SET last_id=$2, chain=$3, mac=$4, sealed_at=$5::timestamptz WHERE workspace_id=$1`,
		e.actor.WorkspaceID, old.last, old.chain, old.mac, old.sealedAtText)
	// A fresh node, no anchor, shortly after the last rows.
	v2, err := Open(ctx, Options{Store: e.v.store, MasterKey: e.key, AuditSealInterval: -1, Now: later(time.Hour + 5*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close(ctx)
	if err := v2.sealWorkspace(ctx, e.actor.WorkspaceID); !errors.Is(err, ErrAuditTampered) {
		t.Fatalf("a fresh node sealed over a replayed seal and a deletion: %v", err)
	}
	res, err := v2.VerifyAudit(ctx, e.actor)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK {
		t.Fatalf("verify after the fresh node's seal round: %+v", res)
	}
}

// TestSealAfterCrashNoFalseAlarm: the legitimate case the rule above must
// let through: a node crashed just after a seal (rows written within a
// seal interval of it, never sealed), and a node without its anchor starts
// long after. It seals them, and verify passes.
func TestSealAfterCrashNoFalseAlarm(t *testing.T) {
	e := newChainEnv(t)
	ctx := context.Background()
	if _, err := e.v.CreateSecret(ctx, e.actor, CreateSecretRequest{Name: "JUST_BEFORE_CRASH", Value: NewPlaintext([]byte("crash-value"))}); err != nil {
		t.Fatal(err)
	}
	v2, err := Open(ctx, Options{Store: e.v.store, MasterKey: e.key, AuditSealInterval: -1, Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close(ctx)
	if err := v2.sealWorkspace(ctx, e.actor.WorkspaceID); err != nil {
		t.Fatalf("a node after a crash refused to seal: %v", err)
	}
	if res, err := v2.VerifyAudit(ctx, e.actor); err != nil || !res.OK {
		t.Fatalf("verify after the seal: %+v %v", res, err)
	}
	if res := e.verify(t); !res.OK || !strings.Contains(res.Problem+"ok", "ok") {
		t.Fatalf("verify on the first node: %+v", res)
	}
}
