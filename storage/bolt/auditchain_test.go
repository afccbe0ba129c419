package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/vault"
)

// TestAuditChainTamper edits a real bbolt file the way someone with the
// file (but not the master key) could, and checks that the vault's
// verification names the first row affected: with the rows rewritten in the
// JSON segments of before issue 15 (a database an older Rotor wrote), in
// the v1 binary segments, and in v2 segments (with their dictionaries).
func TestAuditChainTamper(t *testing.T) {
	for _, format := range []string{"json", "v1", "v2"} {
		t.Run(format, func(t *testing.T) { testAuditChainTamper(t, format) })
	}
}

func testAuditChainTamper(t *testing.T, format string) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		rewrite func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead)
		wantBad func(ids []int64) int64
		want    string
		// Issue 11: the attacker also deletes the seal; the node checks with
		// its anchor file, or without it, a clock an hour later.
		dropSeal, noAnchor bool
	}{
		{"Intact", func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) { return evs, nil },
			func([]int64) int64 { return 0 }, "", false, false},
		{"EditedRow", func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) {
			evs[4].ActorID = "key_someone_else"
			return evs, nil
		}, func(ids []int64) int64 { return ids[4] }, "edited", false, false},
		{"DeletedRow", func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) {
			return slices.Delete(evs, 3, 4), nil
		}, func(ids []int64) int64 { return ids[4] }, "deleted", false, false},
		{"Reordered", func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) {
			evs[2].ID, evs[5].ID = evs[5].ID, evs[2].ID
			evs[2].Chain, evs[5].Chain = evs[5].Chain, evs[2].Chain
			return evs, nil
		}, func(ids []int64) int64 { return ids[2] }, "moved", false, false},
		{"RechainedAfterEdit", func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) {
			evs[1].EventType = "secret.accessed"
			var prev []byte
			for i := range evs {
				evs[i].Chain = storage.NextChain(prev, evs[i])
				prev = evs[i].Chain
			}
			return evs, &storage.AuditHead{LastID: evs[len(evs)-1].ID, Chain: prev}
		}, func(ids []int64) int64 { return ids[1] }, "MAC", false, false}, // the edited row's MAC (before row MACs: the seal)
		{"Truncated", func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) {
			evs = evs[:len(evs)-3]
			last := evs[len(evs)-1]
			return evs, &storage.AuditHead{LastID: last.ID, Chain: last.Chain}
		}, func(ids []int64) int64 { return ids[len(ids)-1] }, "truncated", false, false},
		{"TruncatedSealDeleted", func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) {
			evs = evs[:len(evs)-3]
			last := evs[len(evs)-1]
			return evs, &storage.AuditHead{LastID: last.ID, Chain: last.Chain}
		}, func(ids []int64) int64 { return ids[len(ids)-1] }, "seal", true, false},
		{"RechainedSealDeleted", func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) {
			evs = slices.Delete(evs, 3, 4)
			var prev []byte
			for i := range evs {
				evs[i].Chain = storage.NextChain(prev, evs[i])
				prev = evs[i].Chain
			}
			return evs, &storage.AuditHead{LastID: evs[len(evs)-1].ID, Chain: prev}
		}, func(ids []int64) int64 { return ids[len(ids)-1] }, "seal", true, false},
		{"RechainedSealDeletedNoAnchor", func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) {
			evs = slices.Delete(evs, 3, 4)
			var prev []byte
			for i := range evs {
				evs[i].Chain = storage.NextChain(prev, evs[i])
				prev = evs[i].Chain
			}
			return evs, &storage.AuditHead{LastID: evs[len(evs)-1].ID, Chain: prev}
		}, func(ids []int64) int64 { return ids[0] }, "no seal covers", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "rotor.db")
			anchor := filepath.Join(dir, "audit-anchor.json")
			key := vault.GenerateMasterKey()
			var now func() time.Time
			open := func() (*bolt.Store, *vault.Vault) {
				s, err := bolt.Open(path, bolt.Options{})
				if err != nil {
					t.Fatal(err)
				}
				v, err := vault.Open(ctx, vault.Options{Store: s, MasterKey: key, AuditSealInterval: -1, AuditAnchorPath: anchor, Now: now})
				if err != nil {
					t.Fatal(err)
				}
				return s, v
			}
			s, v := open()
			boot, err := v.Bootstrap(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			actor, err := v.Authenticate(ctx, boot.Key)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 4 {
				if _, err := v.CreateSecret(ctx, actor, vault.CreateSecretRequest{Name: fmt.Sprintf("S%d", i), Value: vault.NewPlaintext([]byte("some-value"))}); err != nil {
					t.Fatal(err)
				}
				if _, err := v.Resolve(ctx, vault.ResolveRequest{WorkspaceID: actor.WorkspaceID, Name: fmt.Sprintf("S%d", i), ActorID: actor.KeyID}); err != nil {
					t.Fatal(err)
				}
			}
			v.Close(ctx) // flushes and seals
			s.Close()

			var ids []int64
			if err := bolt.RewriteAudit(path, actor.WorkspaceID, format, func(evs []storage.AuditEvent) ([]storage.AuditEvent, *storage.AuditHead) {
				for _, e := range evs {
					ids = append(ids, e.ID)
				}
				return tc.rewrite(evs)
			}); err != nil {
				t.Fatal(err)
			}
			if len(ids) < 8 {
				t.Fatalf("trail has %d rows", len(ids))
			}
			if tc.dropSeal {
				if err := bolt.DeleteAuditCheckpoint(path, actor.WorkspaceID); err != nil {
					t.Fatal(err)
				}
			}
			if tc.noAnchor {
				// Another node, or a lost data dir: only the rows' age tells.
				anchor = filepath.Join(dir, "other-node-anchor.json")
				now = func() time.Time { return time.Now().Add(time.Hour) }
			}
			s, v = open()
			defer s.Close()
			defer v.Close(ctx)
			res, err := v.VerifyAudit(ctx, actor)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if !res.OK || res.Rows != int64(len(ids)) || res.SealedThrough != ids[len(ids)-1] {
					t.Fatalf("intact: %+v", res)
				}
				return
			}
			if res.OK || res.FirstBadID != tc.wantBad(ids) || !strings.Contains(res.Problem, tc.want) {
				t.Fatalf("verify = %+v, want first bad row %d and a problem mentioning %q", res, tc.wantBad(ids), tc.want)
			}
		})
	}
}
