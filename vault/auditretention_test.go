package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// prune runs one pruning pass over everything sealed.
func (e *chainEnv) prune(t *testing.T, limit int) int {
	t.Helper()
	n, err := e.v.PruneAudit(context.Background(), PruneAuditArgs{Before: time.Now().Add(time.Hour), Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pruneOne runs one batch of limit rows.
func (e *chainEnv) pruneOne(t *testing.T, limit int) {
	t.Helper()
	n, err := e.v.pruneBatch(context.Background(), e.v.store.(storage.Retainer), e.actor.WorkspaceID, PruneAuditArgs{Before: time.Now().Add(time.Hour), Limit: limit})
	if err != nil || n != limit {
		t.Fatalf("pruned %d, %v; want %d", n, err, limit)
	}
}

func (e *chainEnv) moreRows(t *testing.T, seal bool) {
	t.Helper()
	ctx := context.Background()
	for _, name := range []string{"CHAIN_1", "CHAIN_2"} {
		if _, err := e.v.Resolve(ctx, ResolveRequest{WorkspaceID: e.actor.WorkspaceID, Name: name, ActorID: e.actor.KeyID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.v.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if seal {
		if err := e.v.SealAudit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func wantBad(t *testing.T, res AuditVerification, want string) {
	t.Helper()
	if res.OK || !strings.Contains(res.Problem, want) {
		t.Fatalf("verify: %+v; want a failure mentioning %q", res, want)
	}
}

// TestAuditRetentionPostgres: pruning leaves a marker the remaining trail
// verifies from; unsealed and unexported rows stay; and a database writer
// cannot pass a deletion off as retention.
func TestAuditRetentionPostgres(t *testing.T) {
	ctx := context.Background()
	t.Run("PrunedTrailVerifies", func(t *testing.T) {
		e := newChainEnv(t)
		// Rows not sealed yet are never pruned.
		e.moreRows(t, false)
		if n := e.prune(t, 5); n != len(e.ids) {
			t.Fatalf("pruned %d rows, want the %d sealed ones", n, len(e.ids))
		}
		res := e.verify(t)
		last := e.ids[len(e.ids)-1]
		if !res.OK || res.PrunedThrough != last || res.PrunedRows != int64(len(e.ids)) || res.PrunedAt.IsZero() || res.Rows != 2 {
			t.Fatalf("after pruning: %+v", res)
		}
		e.moreRows(t, true)
		if res := e.verify(t); !res.OK || res.Rows != 4 || res.SealedThrough <= last {
			t.Fatalf("after more rows: %+v", res)
		}
		// Everything sealed pruned: the trail is empty and still verifies.
		e.prune(t, 100)
		if res := e.verify(t); !res.OK || res.Rows != 0 || res.PrunedRows != int64(len(e.ids))+4 {
			t.Fatalf("all pruned: %+v", res)
		}
	})
	t.Run("ExportCursorBounds", func(t *testing.T) {
		e := newChainEnv(t)
		e.v.export = &auditExporter{cursor: map[string]int64{e.actor.WorkspaceID: e.ids[2]}}
		n := e.prune(t, 100)
		e.v.export = nil // it has no goroutine for Close to stop
		if n != 3 {
			t.Fatalf("pruned %d rows with the export at row %d, want 3", n, e.ids[2])
		}
		if res := e.verify(t); !res.OK || res.PrunedThrough != e.ids[2] {
			t.Fatalf("%+v", res)
		}
	})
	// The attacker writes the database: rows, head, seals and markers.
	t.Run("ForgedMarker", func(t *testing.T) {
		e := newChainEnv(t)
		var chain []byte
		if err := e.db.QueryRow(ctx, `SELECT chain FROM audit_event WHERE id=$1`, e.ids[4]).Scan(&chain); err != nil {
			t.Fatal(err)
		}
		e.exec(t, `DELETE FROM audit_event WHERE id <= $1`, e.ids[4])
		e.exec(t, `INSERT INTO audit_retention VALUES ($1,$2,$3,5,now(),$4)`, e.actor.WorkspaceID, e.ids[4], chain, []byte("not the mac"))
		wantBad(t, e.verify(t), "retention marker")
		if _, err := e.v.PruneAudit(ctx, PruneAuditArgs{Before: time.Now().Add(time.Hour), Limit: 10}); err == nil {
			t.Fatal("pruning over a forged marker succeeded")
		}
	})
	t.Run("DeletionBeyondMarker", func(t *testing.T) {
		e := newChainEnv(t)
		e.pruneOne(t, 3)
		e.exec(t, `DELETE FROM audit_event WHERE id = $1`, e.ids[3])
		wantBad(t, e.verify(t), "does not match the chain")
	})
	t.Run("MarkerMovedForward", func(t *testing.T) {
		// A valid marker edited to cover more rows no longer verifies.
		e := newChainEnv(t)
		e.pruneOne(t, 3)
		var chain []byte
		if err := e.db.QueryRow(ctx, `SELECT chain FROM audit_event WHERE id=$1`, e.ids[5]).Scan(&chain); err != nil {
			t.Fatal(err)
		}
		e.exec(t, `DELETE FROM audit_event WHERE id <= $1`, e.ids[5])
		e.exec(t, `UPDATE audit_retention SET through_id=$2, chain=$3 WHERE workspace_id=$1`, e.actor.WorkspaceID, e.ids[5], chain)
		wantBad(t, e.verify(t), "retention marker")
	})
	t.Run("OlderMarkerReplayed", func(t *testing.T) {
		e := newChainEnv(t)
		e.pruneOne(t, 3)
		var m1 storage.AuditRetention
		if err := e.db.QueryRow(ctx, `SELECT through_id, chain, rows, pruned_at, mac FROM audit_retention`).Scan(&m1.ThroughID, &m1.Chain, &m1.Rows, &m1.PrunedAt, &m1.MAC); err != nil {
			t.Fatal(err)
		}
		e.pruneOne(t, 3)
		e.exec(t, `UPDATE audit_retention SET through_id=$1, chain=$2, rows=$3, pruned_at=$4, mac=$5`, m1.ThroughID, m1.Chain, m1.Rows, m1.PrunedAt, m1.MAC)
		wantBad(t, e.verify(t), "does not match the chain")
	})
	t.Run("MarkerDeleted", func(t *testing.T) {
		e := newChainEnv(t)
		e.pruneOne(t, 3)
		e.exec(t, `DELETE FROM audit_retention`)
		wantBad(t, e.verify(t), "does not match the chain")
	})
}

// TestAuditRetentionBolt: the same on a bbolt file; the attacker writes the
// file through the store (a marker of its own over more rows).
func TestAuditRetentionBolt(t *testing.T) {
	ctx := context.Background()
	store := testStore(t)
	v, err := Open(ctx, Options{Store: store, MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	actor := bootstrap(t, v)
	for i := range 6 {
		if _, err := v.CreateSecret(ctx, actor, CreateSecretRequest{Name: "BOLT_" + string(rune('A'+i)), Value: NewPlaintext([]byte("bolt-value-0123"))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	all, err := store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: actor.WorkspaceID, Limit: 100})
	if err != nil || len(all) < 6 {
		t.Fatalf("%d rows, %v", len(all), err)
	}
	if _, err := v.pruneBatch(ctx, store, actor.WorkspaceID, PruneAuditArgs{Before: time.Now().Add(time.Hour), Limit: 2}); err != nil {
		t.Fatal(err)
	}
	res, err := v.VerifyAudit(ctx, actor)
	if err != nil || !res.OK || res.PrunedThrough != all[1].ID || res.PrunedRows != 2 || res.Rows != int64(len(all)-2) {
		t.Fatalf("after pruning: %+v, %v", res, err)
	}
	forged := storage.AuditRetention{WorkspaceID: actor.WorkspaceID, ThroughID: all[3].ID, Chain: all[3].Chain, Rows: 4, PrunedAt: time.Now().UTC(), MAC: make([]byte, 32)}
	if _, err := store.PruneAudit(ctx, storage.PruneAuditArgs{Marker: forged}); err != nil {
		t.Fatal(err)
	}
	res, err = v.VerifyAudit(ctx, actor)
	if err != nil {
		t.Fatal(err)
	}
	wantBad(t, res, "retention marker")
}

// TestAuditRetentionBatchesBolt: several batches over bbolt segments (64 rows
// each, split by a marker), verified after each round.
func TestAuditRetentionBatchesBolt(t *testing.T) {
	ctx := context.Background()
	store := testStore(t)
	v, err := Open(ctx, Options{Store: store, MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	actor := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, actor, CreateSecretRequest{Name: "R", Value: NewPlaintext([]byte("bolt-value-0123"))}); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		for range 20 {
			if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: actor.WorkspaceID, Name: "R", ActorID: actor.KeyID}); err != nil {
				t.Fatal(err)
			}
		}
		v.FlushAudit(ctx)
		v.SealAudit(ctx)
		n, err := v.PruneAudit(ctx, PruneAuditArgs{Before: time.Now().Add(time.Hour), Limit: 7})
		t.Logf("round %d: pruned %d %v", round, n, err)
		if err != nil {
			t.Fatal(err)
		}
		res, _ := v.VerifyAudit(ctx, actor)
		if !res.OK {
			t.Fatalf("%+v", res)
		}
	}
}
