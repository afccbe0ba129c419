package vault

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"rotor.sh/rotor/storage"
)

// Audit retention (issue 11). Rows older than the retention are deleted in
// chain order, oldest first, in batches, and each batch leaves a marker:
// the last pruned row's id and chain value, MAC'd under the audit key like
// a seal. VerifyAudit walks the remaining trail from the marker. A database
// writer cannot make a marker (no key), so a deletion that is not covered by
// one breaks the chain at the first remaining row, as before. Only rows
// that are sealed (and exported, with an export) are pruned: the marker
// never vouches for rows no seal has checked.

// PruneAuditArgs bounds one pruning pass.
type PruneAuditArgs struct {
	// Before: rows written before this go.
	Before time.Time
	// Limit is the rows per batch (one short transaction each).
	Limit int
}

// DefaultAuditPruneBatch is the rows one batch deletes.
const DefaultAuditPruneBatch = 1000

func (v *Vault) retentionMAC(m storage.AuditRetention) []byte {
	h := hmac.New(sha256.New, v.auditKey)
	b := []byte("retention\x00")
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.WorkspaceID)))
	b = append(b, m.WorkspaceID...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.ThroughID))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Rows))
	b = binary.BigEndian.AppendUint64(b, uint64(m.PrunedAt.UnixMicro()))
	b = append(b, m.Chain...)
	h.Write(b)
	return h.Sum(nil)
}

// PruneAudit deletes every workspace's sealed (and exported) rows written
// before args.Before, in batches of args.Limit, and returns how many it
// deleted. The store must be a storage.Retainer.
func (v *Vault) PruneAudit(ctx context.Context, args PruneAuditArgs) (int, error) {
	r, ok := v.store.(storage.Retainer)
	if !ok {
		return 0, fmt.Errorf("audit retention: %w", errors.ErrUnsupported)
	}
	if args.Limit <= 0 {
		args.Limit = DefaultAuditPruneBatch
	}
	wss, err := v.store.ListWorkspaces(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	var errs []error
	for _, ws := range wss {
		for {
			n, err := v.pruneBatch(ctx, r, ws.ID, args)
			total += n
			if err != nil {
				errs = append(errs, fmt.Errorf("workspace %s: %w", ws.ID, err))
				break
			}
			if n < args.Limit {
				break
			}
			if err := ctx.Err(); err != nil {
				return total, err
			}
		}
	}
	return total, errors.Join(errs...)
}

// auditMarker returns the workspace's retention marker, checked; found is
// false when nothing was pruned.
func (v *Vault) auditMarker(ctx context.Context, r storage.Retainer, ws string) (m storage.AuditRetention, found bool, err error) {
	m, err = r.GetAuditRetention(ctx, ws)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return m, false, nil
	case err != nil:
		return m, false, err
	case !hmac.Equal(m.MAC, v.retentionMAC(m)):
		// Counted by the caller (a retried verify counts once).
		return m, true, fmt.Errorf("%w: the retention marker (through row %d) does not verify: rows were deleted and disguised as retention, or it was written under another master key", ErrAuditTampered, m.ThroughID)
	}
	return m, true, nil
}

func (v *Vault) pruneBatch(ctx context.Context, r storage.Retainer, ws string, args PruneAuditArgs) (int, error) {
	prev, _, err := v.auditMarker(ctx, r, ws)
	if err != nil {
		if errors.Is(err, ErrAuditTampered) {
			v.metrics.auditTamper.Inc()
		}
		return 0, err
	}
	// Only what a seal (that agrees with this node's anchor) covers. The
	// anchor is read first (see sealWorkspace's note on the order).
	anchor, haveAnchor := v.anchor.get(ws)
	cp, err := v.store.GetAuditCheckpoint(ctx, ws)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	case !hmac.Equal(cp.MAC, v.checkpointMAC(cp)):
		v.metrics.auditTamper.Inc()
		return 0, fmt.Errorf("%w: the stored seal does not verify; not pruning (run rotor audit verify)", ErrAuditTampered)
	}
	if haveAnchor {
		if why := sealBehind(anchor, cp, true); why != "" {
			v.metrics.auditTamper.Inc()
			return 0, fmt.Errorf("%w: this node sealed row %d, but %s; not pruning (run rotor audit verify)", ErrAuditTampered, anchor.LastID, why)
		}
	}
	upTo := cp.LastID
	if v.export != nil {
		upTo = min(upTo, v.export.exported(ws))
	}
	if upTo <= prev.ThroughID {
		return 0, nil
	}
	evs, err := v.store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: ws, AfterID: prev.ThroughID, Limit: args.Limit})
	if err != nil {
		return 0, err
	}
	next := prev
	next.WorkspaceID = ws
	chain := prev.Chain
	count := int64(0)
	for _, e := range evs {
		if e.ID > upTo || !e.OccurredAt.Before(args.Before) {
			break
		}
		// Never let a marker vouch for rows that do not verify.
		want := storage.NextChain(chain, e)
		if !bytes.Equal(want, e.Chain) || e.ID == cp.LastID && !bytes.Equal(want, cp.Chain) {
			v.metrics.auditTamper.Inc()
			return 0, fmt.Errorf("%w: row %d does not match the chain; not pruning (run rotor audit verify)", ErrAuditTampered, e.ID)
		}
		chain = want
		next.ThroughID, next.Chain = e.ID, want
		count++
	}
	if count == 0 {
		return 0, nil
	}
	next.Rows = prev.Rows + count
	next.PrunedAt = v.now().UTC().Truncate(time.Microsecond)
	next.MAC = v.retentionMAC(next)
	n, err := r.PruneAudit(ctx, storage.PruneAuditArgs{Marker: next})
	if err != nil {
		return 0, err
	}
	v.metrics.auditPruned.Add(float64(n))
	return n, nil
}
