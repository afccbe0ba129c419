package vault

import (
	"context"
	"errors"
	"testing"

	"rotor.sh/rotor/storage"
)

// TestAttackRowReplayedIntoAnotherWorkspace (guard): a database writer
// copies a genuine, MAC'd row of one workspace (a secret.deleted, say)
// into another workspace's trail, appended with a correctly computed chain
// value, to frame that workspace's key holder. The row MAC binds the
// workspace id: the sealer refuses the row, and verify names it. (Fails
// with the workspace id left out of the row MAC.)
func TestAttackRowReplayedIntoAnotherWorkspace(t *testing.T) {
	ctx := context.Background()
	e := newChainEnv(t)
	other, err := e.v.CreateWorkspace(ctx, e.actor, "victim")
	if err != nil {
		t.Fatal(err)
	}
	victim := Actor{KeyID: other.AdminKey.ID, WorkspaceID: other.Workspace.ID, Role: RoleAdmin}
	if err := e.v.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.v.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := e.v.VerifyAudit(ctx, victim); err != nil || !res.OK {
		t.Fatalf("the victim's trail before: %+v %v", res, err)
	}
	// The genuine secret.deleted row of the first workspace.
	evs, err := e.v.store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: e.actor.WorkspaceID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var row storage.AuditEvent
	for _, ev := range evs {
		if ev.EventType == EventSecretDeleted {
			row = ev
		}
	}
	if len(row.MAC) == 0 {
		t.Fatalf("no signed secret.deleted row in %d rows", len(evs))
	}
	row.ID, row.Chain, row.WorkspaceID = 0, nil, victim.WorkspaceID
	if _, err := e.v.store.AppendAudit(ctx, []storage.AuditEvent{row}); err != nil {
		t.Fatal(err)
	}
	if err := e.v.SealAudit(ctx); !errors.Is(err, ErrAuditTampered) {
		t.Fatalf("the sealer took a row replayed from another workspace: %v", err)
	}
	if res, err := e.v.VerifyAudit(ctx, victim); err != nil || res.OK {
		t.Fatalf("verify of the victim's trail: %+v %v", res, err)
	}
}
