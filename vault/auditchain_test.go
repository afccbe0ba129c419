package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/postgres"
	"rotor.sh/rotor/storage/postgres/pgtest"
)

// chainEnv is a vault on its own PostgreSQL schema with a trail of rows
// (creates, rotations, accesses, a delete), sealed, and a direct SQL
// connection playing the attacker with write access to the database.
type chainEnv struct {
	v     *Vault
	actor Actor
	db    *pgx.Conn
	ids   []int64 // the workspace's row ids, oldest first
	key   []byte
}

func newChainEnv(t *testing.T) *chainEnv {
	t.Helper()
	ctx := context.Background()
	dsn, _ := pgtest.Schema(t)
	store, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	key := GenerateMasterKey()
	v, err := Open(ctx, Options{Store: store, MasterKey: key, AuditSealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	e := &chainEnv{v: v, actor: bootstrap(t, v), key: key}
	for i := range 4 {
		name := fmt.Sprintf("CHAIN_%d", i)
		if _, err := v.CreateSecret(ctx, e.actor, CreateSecretRequest{Name: name, Value: NewPlaintext([]byte("value-number-one"))}); err != nil {
			t.Fatal(err)
		}
		val := NewPlaintext([]byte("value-number-two"))
		if _, err := v.UpdateSecret(ctx, e.actor, UpdateSecretRequest{Name: name, Value: &val}); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: e.actor.WorkspaceID, Name: name, ActorID: e.actor.KeyID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.DeleteSecret(ctx, e.actor, "CHAIN_0"); err != nil {
		t.Fatal(err)
	}
	if err := v.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	e.db, err = pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close(context.Background()) })
	rows, err := e.db.Query(ctx, `SELECT id FROM audit_event WHERE workspace_id=$1 ORDER BY id`, e.actor.WorkspaceID)
	if err != nil {
		t.Fatal(err)
	}
	e.ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(e.ids) < 12 {
		t.Fatalf("trail: %d rows, %v", len(e.ids), err)
	}
	return e
}

func (e *chainEnv) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := e.db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

func (e *chainEnv) verify(t *testing.T) AuditVerification {
	t.Helper()
	res, err := e.v.VerifyAudit(context.Background(), e.actor)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// rechain recomputes every stored chain value and the head from the first
// row, as an attacker who knows the algorithm (but not the key) would.
func (e *chainEnv) rechain(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var prev []byte
	var after int64
	for {
		evs, err := e.v.store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: e.actor.WorkspaceID, AfterID: after, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			prev, after = storage.NextChain(prev, ev), ev.ID
			e.exec(t, `UPDATE audit_event SET chain=$2 WHERE id=$1`, ev.ID, prev)
		}
	}
	e.exec(t, `UPDATE audit_head SET last_id=$2, chain=$3 WHERE workspace_id=$1`, e.actor.WorkspaceID, after, prev)
}

func TestAuditChainPostgres(t *testing.T) {
	t.Run("Intact", func(t *testing.T) {
		e := newChainEnv(t)
		res := e.verify(t)
		last := e.ids[len(e.ids)-1]
		if !res.OK || res.Rows != int64(len(e.ids)) || res.LastID != last || res.SealedThrough != last || res.SealedAt.IsZero() {
			t.Fatalf("intact trail: %+v (ids %v)", res, e.ids)
		}
		// Rows after the seal are fine too (they are sealed next round).
		if _, err := e.v.CreateSecret(context.Background(), e.actor, CreateSecretRequest{Name: "LATER", Value: NewPlaintext([]byte("later-value"))}); err != nil {
			t.Fatal(err)
		}
		if res := e.verify(t); !res.OK || res.SealedThrough != last || res.LastID <= last {
			t.Fatalf("after one more row: %+v", res)
		}
	})
	type tc struct {
		name   string
		tamper func(t *testing.T, e *chainEnv) (wantBad int64)
		want   string
	}
	for _, c := range []tc{
		{"EditedRow", func(t *testing.T, e *chainEnv) int64 {
			e.exec(t, `UPDATE audit_event SET actor_id='key_someone_else' WHERE id=$1`, e.ids[5])
			return e.ids[5]
		}, "edited"},
		{"EditedInput", func(t *testing.T, e *chainEnv) int64 {
			e.exec(t, `UPDATE audit_event SET input='{"name":"OTHER"}' WHERE id=$1`, e.ids[3])
			return e.ids[3]
		}, "edited"},
		{"EditedTime", func(t *testing.T, e *chainEnv) int64 {
			e.exec(t, `UPDATE audit_event SET occurred_at=occurred_at - interval '1 day' WHERE id=$1`, e.ids[7])
			return e.ids[7]
		}, "edited"},
		{"DeletedRow", func(t *testing.T, e *chainEnv) int64 {
			e.exec(t, `DELETE FROM audit_event WHERE id=$1`, e.ids[4])
			return e.ids[5] // the next row no longer follows
		}, "deleted"},
		{"Reordered", func(t *testing.T, e *chainEnv) int64 {
			// Swap the contents of two rows, keeping ids and chain values.
			a, b := e.ids[2], e.ids[6]
			e.exec(t, `UPDATE audit_event x SET event_type=y.event_type, resource_id=y.resource_id, input=y.input, output=y.output
				FROM audit_event y WHERE (x.id, y.id) IN (($1::bigint, $2::bigint), ($2, $1))`, a, b)
			return a
		}, "moved"},
		{"MovedToOtherWorkspace", func(t *testing.T, e *chainEnv) int64 {
			e.exec(t, `UPDATE audit_event SET workspace_id='ws_elsewhere' WHERE id=$1`, e.ids[8])
			return e.ids[9]
		}, "deleted"},
		{"EditedAndRechained", func(t *testing.T, e *chainEnv) int64 {
			e.exec(t, `UPDATE audit_event SET event_type='secret.accessed' WHERE id=$1`, e.ids[1])
			e.rechain(t)
			return e.ids[len(e.ids)-1] // caught by the seal over the last row
		}, "seal"},
		{"DeletedAndRechained", func(t *testing.T, e *chainEnv) int64 {
			e.exec(t, `DELETE FROM audit_event WHERE id=$1`, e.ids[2])
			e.rechain(t)
			return e.ids[len(e.ids)-1]
		}, "seal"},
		{"TruncatedTail", func(t *testing.T, e *chainEnv) int64 {
			keep := e.ids[len(e.ids)-4]
			e.exec(t, `DELETE FROM audit_event WHERE workspace_id=$1 AND id>$2`, e.actor.WorkspaceID, keep)
			e.exec(t, `UPDATE audit_head h SET last_id=a.id, chain=a.chain FROM audit_event a WHERE a.id=$1 AND h.workspace_id=a.workspace_id`, keep)
			return e.ids[len(e.ids)-1]
		}, "truncated"},
		{"TruncatedHeadLeft", func(t *testing.T, e *chainEnv) int64 {
			// Rows after the seal deleted; the head still names them.
			if _, err := e.v.CreateSecret(context.Background(), e.actor, CreateSecretRequest{Name: "UNSEALED", Value: NewPlaintext([]byte("unsealed-value"))}); err != nil {
				t.Fatal(err)
			}
			e.exec(t, `DELETE FROM audit_event WHERE workspace_id=$1 AND id>$2`, e.actor.WorkspaceID, e.ids[len(e.ids)-1])
			return 0
		}, "head"},
		// Issue 11: seals deleted or replayed. The node keeps its newest seal
		// outside the database (the data dir), so the database cannot go
		// back to an older one or to none.
		{"DeletedCheckpoint", func(t *testing.T, e *chainEnv) int64 {
			e.exec(t, `DELETE FROM audit_checkpoint WHERE workspace_id=$1`, e.actor.WorkspaceID)
			return e.ids[len(e.ids)-1]
		}, "seal"},
		{"TruncatedAndCheckpointDeleted", func(t *testing.T, e *chainEnv) int64 {
			keep := e.ids[len(e.ids)-4]
			e.exec(t, `DELETE FROM audit_event WHERE workspace_id=$1 AND id>$2`, e.actor.WorkspaceID, keep)
			e.exec(t, `UPDATE audit_head h SET last_id=a.id, chain=a.chain FROM audit_event a WHERE a.id=$1 AND h.workspace_id=a.workspace_id`, keep)
			e.exec(t, `DELETE FROM audit_checkpoint WHERE workspace_id=$1`, e.actor.WorkspaceID)
			return e.ids[len(e.ids)-1]
		}, "seal"},
		{"DeletedMidRowRechainedCheckpointDeleted", func(t *testing.T, e *chainEnv) int64 {
			e.exec(t, `DELETE FROM audit_event WHERE id=$1`, e.ids[5])
			e.rechain(t)
			e.exec(t, `DELETE FROM audit_checkpoint WHERE workspace_id=$1`, e.actor.WorkspaceID)
			return e.ids[len(e.ids)-1]
		}, "seal"},
		{"ReplayedOldSealTruncated", func(t *testing.T, e *chainEnv) int64 {
			// The attacker saved an older, validly MAC'd checkpoint; later rows
			// are sealed; then they truncate to the old seal and replay it.
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
			if _, err := e.v.CreateSecret(ctx, e.actor, CreateSecretRequest{Name: "LATER_ONE", Value: NewPlaintext([]byte("later-value"))}); err != nil {
				t.Fatal(err)
			}
			if err := e.v.SealAudit(ctx); err != nil {
				t.Fatal(err)
			}
			h, err := e.v.store.GetAuditHead(ctx, e.actor.WorkspaceID)
			if err != nil || h.LastID <= old.last {
				t.Fatalf("head %+v, %v", h, err)
			}
			e.exec(t, `DELETE FROM audit_event WHERE workspace_id=$1 AND id>$2`, e.actor.WorkspaceID, old.last)
			e.exec(t, `UPDATE audit_head SET last_id=$2, chain=$3 WHERE workspace_id=$1`, e.actor.WorkspaceID, old.last, old.chain)
			e.exec(t, `UPDATE audit_checkpoint SET last_id=$2, chain=$3, mac=$4, sealed_at=$5::timestamptz WHERE workspace_id=$1`,
				e.actor.WorkspaceID, old.last, old.chain, old.mac, old.sealedAtText)
			return h.LastID
		}, "seal"},
		{"ForgedSeal", func(t *testing.T, e *chainEnv) int64 {
			e.exec(t, `UPDATE audit_checkpoint SET last_id=$2 WHERE workspace_id=$1`, e.actor.WorkspaceID, e.ids[3])
			return 0
		}, "seal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newChainEnv(t)
			if res := e.verify(t); !res.OK {
				t.Fatalf("before tampering: %+v", res)
			}
			wantBad := c.tamper(t, e)
			res := e.verify(t)
			if res.OK || res.FirstBadID != wantBad || !strings.Contains(res.Problem, c.want) {
				t.Fatalf("verify = %+v, want first bad row %d and a problem mentioning %q", res, wantBad, c.want)
			}
			// The sealer refuses to seal new rows that do not follow the
			// last seal (edits before it are left for verify to report).
			if c.want == "seal" || c.want == "truncated" {
				if _, err := e.v.CreateSecret(context.Background(), e.actor, CreateSecretRequest{Name: "AFTER_TAMPER", Value: NewPlaintext([]byte("after-value"))}); err != nil {
					t.Fatal(err)
				}
				e.v.sealMu.Lock()
				e.v.chains = map[string]*chainState{}
				e.v.sealMu.Unlock()
				if err := e.v.SealAudit(context.Background()); !errors.Is(err, ErrAuditTampered) {
					t.Fatalf("sealed over a tampered chain")
				}
				if res := e.verify(t); res.OK {
					t.Fatalf("verify after another write and a seal round: %+v", res)
				}
			}
		})
	}
}

// TestAuditSealDeletedStaleRows: a node that never saw the seal (another
// node, or a lost data dir) still fails verification when the seal is
// deleted: rows older than a few seal intervals with no seal over them are
// a failure, not "never sealed", and the sealer refuses to seal them.
func TestAuditSealDeletedStaleRows(t *testing.T) {
	e := newChainEnv(t)
	ctx := context.Background()
	e.exec(t, `DELETE FROM audit_event WHERE id=$1`, e.ids[5])
	e.rechain(t)
	e.exec(t, `DELETE FROM audit_checkpoint WHERE workspace_id=$1`, e.actor.WorkspaceID)
	// The same master key, no anchor, a clock an hour later.
	v2, err := Open(ctx, Options{Store: e.v.store, MasterKey: e.key, AuditSealInterval: -1, Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close(ctx)
	res, err := v2.VerifyAudit(ctx, e.actor)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.FirstBadID != e.ids[0] || !strings.Contains(res.Problem, "no seal covers") {
		t.Fatalf("verify = %+v, want row %d named as unsealed", res, e.ids[0])
	}
	if err := v2.sealWorkspace(ctx, e.actor.WorkspaceID); !errors.Is(err, ErrAuditTampered) {
		t.Fatalf("sealed stale unsealed rows: %v", err)
	}
	// The same node (with its anchor) names the seal.
	if res := e.verify(t); res.OK || !strings.Contains(res.Problem, "seal") {
		t.Fatalf("verify with the anchor = %+v", res)
	}
}
