package vault

import (
	"context"
	"errors"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// TestAttackPruneLaundersRechainedRows (HOLE, for the audit code's owner):
// docs/security.md says the pruner "checks the rows it deletes against the
// chain and the seal first, so a marker never vouches for rows that did not
// verify". pruneBatch compares the rows with the seal only when the batch
// reaches the sealed row; before that it checks chain continuity alone,
// which a database writer recomputes. So an edited, re-chained row older
// than the retention is pruned, and the new marker MACs the forged chain
// value: verify still fails (at the sealed row), but the edited row, the
// evidence of what was changed, is gone for good.
func TestAttackPruneLaundersRechainedRows(t *testing.T) {
	ctx := context.Background()
	e := newChainEnv(t)
	e.exec(t, `UPDATE audit_event SET actor_id='key_framed' WHERE id=$1`, e.ids[1])
	e.rechain(t)
	n, err := e.v.pruneBatch(ctx, e.v.store.(storage.Retainer), e.actor.WorkspaceID, PruneAuditArgs{Before: time.Now().Add(time.Hour), Limit: 3})
	if err == nil || !errors.Is(err, ErrAuditTampered) || n != 0 {
		t.Fatalf("pruned %d rows (err %v) of a trail whose rows do not match their seal; want ErrAuditTampered and nothing pruned", n, err)
	}
	var count int
	if err := e.db.QueryRow(ctx, `SELECT count(*) FROM audit_event WHERE id=$1`, e.ids[1]).Scan(&count); err != nil || count != 1 {
		t.Fatalf("the edited row was deleted by retention (count %d, %v)", count, err)
	}
}
