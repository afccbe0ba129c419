package vault

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// sealReplayEnv is newChainEnv's trail plus a second node on the same
// database whose clock the test moves.
type sealReplayEnv struct {
	*chainEnv
	offset atomic.Int64 // added to time.Now for v1, in nanoseconds
	v1     *Vault
}

func newSealReplayEnv(t *testing.T) *sealReplayEnv {
	e := &sealReplayEnv{chainEnv: newChainEnv(t)}
	e.offset.Store(int64(time.Hour))
	v1, err := Open(context.Background(), Options{Store: e.v.store, MasterKey: e.key, AuditSealInterval: -1,
		Now: func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	e.v1 = v1
	return e
}

// write creates a secret on v1 at offset d past the hour, and seals.
func (e *sealReplayEnv) write(t *testing.T, name string, d time.Duration, seal bool) int64 {
	t.Helper()
	ctx := context.Background()
	e.offset.Store(int64(time.Hour + d))
	if _, err := e.v1.CreateSecret(ctx, e.actor, CreateSecretRequest{Name: name, Value: NewPlaintext([]byte("later-value"))}); err != nil {
		t.Fatal(err)
	}
	h, err := e.v1.store.GetAuditHead(ctx, e.actor.WorkspaceID)
	if err != nil {
		t.Fatal(err)
	}
	if seal {
		if err := e.v1.SealAudit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return h.LastID
}

type savedSeal struct {
	last         int64
	chain, mac   []byte
	sealedAtText string
}

func (e *sealReplayEnv) saveSeal(t *testing.T) savedSeal {
	t.Helper()
	var s savedSeal
	if err := e.db.QueryRow(context.Background(), `SELECT last_id, chain, mac, sealed_at::text FROM audit_checkpoint WHERE workspace_id=$1`, e.actor.WorkspaceID).
		Scan(&s.last, &s.chain, &s.mac, &s.sealedAtText); err != nil {
		t.Fatal(err)
	}
	return s
}

// tamper deletes row id, re-chains the trail and puts seal s back.
func (e *sealReplayEnv) tamper(t *testing.T, id int64, s savedSeal) {
	t.Helper()
	e.exec(t, `DELETE FROM audit_event WHERE id=$1`, id)
	e.rechain(t)
	e.exec(t, `UPDATE audit_checkpoint SET last_id=$2, chain=$3, mac=$4, sealed_at=$5::timestamptz WHERE workspace_id=$1`,
		e.actor.WorkspaceID, s.last, s.chain, s.mac, s.sealedAtText)
}

// freshNode is a node with no anchor (a new data dir), its clock at offset
// d past the hour.
func (e *sealReplayEnv) freshNode(t *testing.T, d time.Duration) *Vault {
	t.Helper()
	v2, err := Open(context.Background(), Options{Store: e.v.store, MasterKey: e.key, AuditSealInterval: -1,
		Now: func() time.Time { return time.Now().Add(time.Hour + d) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v2.Close(context.Background()) })
	return v2
}

// TestAttackReplayedSealLaunderedByFreshNode: a database writer saves a
// validly MAC'd checkpoint, waits while later rows are written and sealed,
// then deletes one of those later rows, re-chains the rest, and puts the
// old checkpoint back. A node holding the newer seal (its anchor) refuses;
// but a node without one (PostgreSQL with the data dir on an emptyDir, as
// the Helm chart runs it, once every node was replaced) took the old seal
// as its starting point, walked rows that chain and carry genuine MACs,
// and sealed over the deletion: verify then passed. A writer whose rows go
// on for longer than a few seal intervals with no seal over them was
// sealing meanwhile, so the seal is not the newest: the sealer refuses.
func TestAttackReplayedSealLaunderedByFreshNode(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		// sameWriter: the node that made the replayed seal wrote on.
		sameWriter bool
	}{{"the sealing node wrote on", true}, {"a later node wrote", false}} {
		t.Run(c.name, func(t *testing.T) {
			e := newSealReplayEnv(t)
			defer e.v1.Close(ctx)
			if c.sameWriter {
				e.write(t, "FIRST", 0, true) // v1 makes the seal it will replay
			}
			old := e.saveSeal(t)
			victim := e.write(t, "LATER_A", 10*time.Second, true)
			e.write(t, "LATER_B", 50*time.Second, true)
			e.write(t, "LATER_C", 90*time.Second, true)
			e.tamper(t, victim, old)
			v2 := e.freshNode(t, 95*time.Second)
			if err := v2.sealWorkspace(ctx, e.actor.WorkspaceID); !errors.Is(err, ErrAuditTampered) {
				t.Fatalf("a fresh node sealed over a replayed seal and a deletion: %v", err)
			}
			if res, err := v2.VerifyAudit(ctx, e.actor); err != nil || res.OK {
				t.Fatalf("verify after the fresh node's seal round: %+v %v", res, err)
			}
		})
	}
}

// TestSealReplayRuleNoFalseAlarm: what the rule above must let through.
// A node that crashed within a seal interval of its last seal, and a node
// started an hour after a clean stop that wrote for a few seconds and
// crashed; a node without an anchor seals both, and verify passes.
func TestSealReplayRuleNoFalseAlarm(t *testing.T) {
	ctx := context.Background()
	t.Run("crash after a seal", func(t *testing.T) {
		e := newSealReplayEnv(t)
		defer e.v1.Close(ctx)
		e.write(t, "SEALED", 0, true)
		e.write(t, "UNSEALED", 500*time.Millisecond, false)
		v2 := e.freshNode(t, time.Hour)
		if err := v2.sealWorkspace(ctx, e.actor.WorkspaceID); err != nil {
			t.Fatalf("refused to seal after a crash: %v", err)
		}
		if res, err := v2.VerifyAudit(ctx, e.actor); err != nil || !res.OK {
			t.Fatalf("verify: %+v %v", res, err)
		}
	})
	t.Run("restart long after a clean stop", func(t *testing.T) {
		e := newSealReplayEnv(t) // the first node sealed an hour ago
		defer e.v1.Close(ctx)
		e.write(t, "AFTER_RESTART_A", 0, false)
		e.write(t, "AFTER_RESTART_B", 3*time.Second, false)
		v2 := e.freshNode(t, 2*time.Hour)
		if err := v2.sealWorkspace(ctx, e.actor.WorkspaceID); err != nil {
			t.Fatalf("refused to seal after a restart: %v", err)
		}
		if res, err := v2.VerifyAudit(ctx, e.actor); err != nil || !res.OK {
			t.Fatalf("verify: %+v %v", res, err)
		}
	})
}
