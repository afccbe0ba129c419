//go:build hole

package vault

import (
	"context"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// TestAttackForgedRowAppendedIsSealed (HOLE, for the audit code's owner):
// under the threat model of docs/security.md (full write access to the
// database, no master key, no node) "inserting ... rows" is to make verify
// fail. A row appended after the head, with its chain value computed the way
// the store computes it (unkeyed SHA-256, which the attacker knows), is
// indistinguishable from a genuine one: the sealer seals it on its next
// round and verify reports the trail intact. Here the writer frames another
// key for deleting a secret. The storage.Store is driven directly, without
// the vault: exactly what a database writer can do (no key is involved).
func TestAttackForgedRowAppendedIsSealed(t *testing.T) {
	ctx := context.Background()
	e := newChainEnv(t)
	forged := storage.AuditEvent{OccurredAt: time.Now().UTC(), WorkspaceID: e.actor.WorkspaceID, ActorID: "key_framed0000000",
		EventType: EventSecretDeleted, ResourceType: ResourceSecret, ResourceID: "PAYROLL_DB", Input: []byte(`{"name":"PAYROLL_DB"}`)}
	if err := e.v.store.AppendAudit(ctx, []storage.AuditEvent{forged}); err != nil {
		t.Fatal(err)
	}
	if err := e.v.SealAudit(ctx); err != nil {
		t.Logf("sealer: %v", err)
	}
	if res := e.verify(t); res.OK {
		t.Fatalf("a row forged by a database writer verifies and is sealed: %+v", res)
	}
}
