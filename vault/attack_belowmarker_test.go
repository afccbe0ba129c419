package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// TestAttackRowInsertedBelowRetentionMarker: retention deletes a
// workspace's rows up to its marker and verify walks the trail from the
// marker on. A database writer inserted a forged row (framing a key for a
// secret.deleted) with an id at or below the marker, where no walk looked:
// verify reported the trail intact, while GET /v1/audit (and the
// dashboard) listed the row. Retention leaves no row at or below its
// marker, so verify now names such a row.
func TestAttackRowInsertedBelowRetentionMarker(t *testing.T) {
	ctx := context.Background()
	e := newChainEnv(t)
	e.pruneOne(t, 6)
	m, err := e.v.store.(storage.Retainer).GetAuditRetention(ctx, e.actor.WorkspaceID)
	if err != nil || m.ThroughID != e.ids[5] {
		t.Fatalf("marker %+v, %v; want through row %d", m, err, e.ids[5])
	}
	if res := e.verify(t); !res.OK {
		t.Fatalf("after pruning: %+v", res)
	}
	forged := e.ids[2]
	e.exec(t, `INSERT INTO audit_event (id, occurred_at, workspace_id, actor_id, event_type, resource_type, resource_id, input)
		VALUES ($1, $2, $3, 'key_framed0000000', 'secret.deleted', 'secret', 'PAYROLL_DB', '{"name":"PAYROLL_DB"}')`,
		forged, time.Now().Add(-time.Hour), e.actor.WorkspaceID)
	page, err := e.v.ListAudit(ctx, e.actor, storage.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, ev := range page.Events {
		listed = listed || ev.ID == forged
	}
	res := e.verify(t)
	if res.OK || res.FirstBadID != forged || !strings.Contains(res.Problem, "retention") {
		t.Fatalf("a row inserted below the retention marker (listed by the API: %v): verify = %+v", listed, res)
	}
}
