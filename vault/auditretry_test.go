package vault

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"rotor.sh/rotor/plugins"
	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/postgres/pgtest"
)

// TestAuditRetryAfterLostReply: an AppendAudit that commits and then fails
// (the reply lost after COMMIT, or the host's call deadline firing after
// the backend wrote) is retried without writing its rows twice. Before,
// the retry appended them again: TestAuditOutageThroughPlugin once saw
// "17760 values served but 18240 access rows written", a trail saying a
// secret was used more often than it was. Here the loss is injected
// deterministically, three times in a row (a retry's reply is lost too),
// while resolutions keep queueing rows, so a retry's chunk is the rows
// already stored plus new ones; through bbolt, and through the real
// storage plugin on bbolt and on PostgreSQL.
func TestAuditRetryAfterLostReply(t *testing.T) {
	launch := func(t *testing.T, cfg *proto.ConfigureRequest) storage.Store {
		p, err := plugins.Launch(context.Background(), plugins.LaunchOptions{
			Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, Config: cfg,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	for _, tc := range []struct {
		name string
		open func(t *testing.T) storage.Store
	}{
		{"bbolt", func(t *testing.T) storage.Store { return testStore(t) }},
		{"plugin-bbolt", func(t *testing.T) storage.Store {
			return launch(t, &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")})
		}},
		{"plugin-postgres", func(t *testing.T) storage.Store {
			dsn, _ := pgtest.Schema(t)
			return launch(t, &proto.ConfigureRequest{Backend: "postgres", Dsn: dsn})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			v, st, actor := outageVault(t, tc.open(t), 0)
			const lost = 3
			st.lostReplies.Store(lost)
			var served int64
			for i := range 1500 {
				if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: actor.WorkspaceID, Name: "TOKEN", ActorID: actor.KeyID, Host: "example.com"}); err != nil {
					t.Fatal(err)
				}
				served++
				if i%100 == 99 {
					// Let the writer flush and retry between bursts.
					time.Sleep(30 * time.Millisecond)
				}
			}
			deadline := time.Now().Add(20 * time.Second)
			for v.FlushAudit(ctx) != nil {
				if time.Now().After(deadline) {
					t.Fatal("the audit writer did not recover within 20 s")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if n := st.lostReplies.Load(); n != 0 {
				t.Fatalf("%d of %d lost replies not injected", n, lost)
			}
			checkNoRowLost(t, v, st, actor, served)
			if st.retries.Load() < lost {
				t.Fatalf("%d retries for %d lost replies", st.retries.Load(), lost)
			}
			// The chain is whole, and seals (the skipped rows reported no
			// heads: the sealer walks them).
			if err := v.SealAudit(ctx); err != nil {
				t.Fatal(err)
			}
			res, err := v.VerifyAudit(ctx, actor)
			if err != nil || !res.OK {
				t.Fatalf("verify after retries: %+v, %v", res, err)
			}
		})
	}
}
