package vault

import (
	"context"
	"fmt"

	"rotor.sh/rotor/storage"
)

// rowBelowMarker returns the first row of ws at or below the retention
// marker, if any (0 when none). Retention deletes every row up to its
// marker in the transaction that moves it, so such a row was put there
// afterwards: below the marker no walk checks it, yet the audit API lists
// it.
func (v *Vault) rowBelowMarker(ctx context.Context, ws string, m storage.AuditRetention) (int64, string, error) {
	evs, err := v.store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: ws, AfterID: 0, Limit: 1})
	if err != nil || len(evs) == 0 || evs[0].ID > m.ThroughID {
		return 0, "", err
	}
	return evs[0].ID, fmt.Sprintf("the row is at or before the retention marker (through row %d), which deleted every such row: it was inserted by someone without the master key", m.ThroughID), nil
}
