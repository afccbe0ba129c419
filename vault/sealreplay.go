package vault

import (
	"context"
	"fmt"
	"time"

	"rotor.sh/rotor/storage"
)

// replayedSeal tells, for a node that takes the database's seal as its
// starting point with no seal of its own to compare (no anchor: a fresh
// data dir), whether that seal can be the newest one made. A sealer seals
// every interval, so a writer instance (the nonce's seven random bytes per
// vault) whose rows after the seal go on for more than staleAfter, counted
// from the seal when it also wrote the sealed row and from its first row
// after the seal otherwise, was running and sealing meanwhile: the seal in
// the database is an older one, put back over rows deleted and re-chained
// after it. A crash leaves rows from within an interval of the last seal,
// and a node started after a clean stop writes its rows from its start,
// neither of which this refuses. It returns "" or the problem.
//
// What it cannot tell: a writer who deletes every row an instance wrote
// more than staleAfter before its last one (a roll-back of that much) is
// a crash to it.
func (v *Vault) replayedSeal(ctx context.Context, ws string, seal storage.AuditCheckpoint, upTo int64) (string, error) {
	start := map[[7]byte]time.Time{}
	after := seal.LastID - 1
	for after < upTo {
		evs, err := v.store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: ws, AfterID: after, Limit: auditVerifyPage})
		if err != nil {
			return "", err
		}
		for _, e := range evs {
			if e.ID > upTo {
				return "", nil
			}
			after = e.ID
			if len(e.Nonce) != rowNonceLen {
				continue // written before row MACs: no instance to follow
			}
			inst := [7]byte(e.Nonce[1:8])
			if e.ID <= seal.LastID {
				start[inst] = seal.SealedAt // it wrote the sealed row
				continue
			}
			t0, ok := start[inst]
			if !ok {
				start[inst] = e.OccurredAt
				continue
			}
			if e.OccurredAt.Sub(t0) > v.staleAfter {
				return fmt.Sprintf("row %d was written more than %s after its writer's rows began with no seal over them, yet the newest seal in the database is row %d (sealed at %s): an older seal was replayed over deleted or re-chained rows",
					e.ID, v.staleAfter, seal.LastID, seal.SealedAt.Format(time.RFC3339)), nil
			}
		}
		if len(evs) < auditVerifyPage {
			return "", nil
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
	}
	return "", nil
}
