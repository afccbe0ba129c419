package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"rotor.sh/rotor/storage"
)

// Sealing without reading the rows back (issue 15).
//
// Each AppendAudit reports, per workspace, the chain head it read in its
// transaction (Prev) and the head it left (Head). The vault keeps, per
// workspace, the newest seal it wrote or checked against the rows (sealed)
// and tip: the head reached from sealed through appends this node made
// itself, each starting exactly where the previous one ended. The rows from
// sealed to tip are then exactly the rows this node wrote, chained by its
// own store code; sealing tip blesses nothing else. The sealer walks (reads
// and re-hashes) only the rows after tip: rows another node appended
// (PostgreSQL), rows written in the same transaction as a change
// (CreateSecret and the like, which report no heads), or rows someone put
// into the database behind this node's back (Prev no longer equals tip).
// On bbolt with only access traffic that walk is empty. Anything that
// breaks the lineage (another node's newer seal, a restart, an append whose
// Prev is not tip) drops back to the full walk from the database's seal.
//
// What the seal no longer proves is that the rows the node wrote still sat
// in the database unchanged at sealing time; VerifyAudit proves that
// whenever it runs, and checkSealed re-reads sealed rows in the background
// (auditCheckInterval, at most auditCheckRows rows per workspace per round),
// so an edit is also caught without anyone asking.

const (
	// auditCheckInterval is how often sealed rows are re-read and checked
	// against their seal in the background.
	auditCheckInterval = time.Minute
	// auditCheckRows caps one workspace's background check: past it, the
	// check covers the newest rows before the seal and leaves the older
	// ones to `rotor audit verify` (bounded CPU at any access rate).
	auditCheckRows = 10_000
)

// chainState is what this node knows about one workspace's chain. Heads
// compare by id and chain value.
type chainState struct {
	sealed storage.AuditHead // the newest seal this node wrote or checked
	tip    storage.AuditHead // sealed, extended by this node's own appends
	// checked: rows up to here were read and matched a seal (the
	// background check resumes from it; zero: not yet).
	checked storage.AuditHead
	// macFrom is the row MAC boundary of the newest seal (auditrowmac.go).
	macFrom int64
}

func sameHead(a, b storage.AuditHead) bool {
	return a.LastID == b.LastID && bytes.Equal(a.Chain, b.Chain)
}

// auditPendingAppends bounds, per workspace, the appends kept because they
// did not start at the tip when reported (see noteAppended).
const auditPendingAppends = 64

// noteAppended extends each workspace's tip with an append that starts
// exactly at it. An append that does not is kept (bounded): under a steady
// access rate the writer appends while a seal round walks, so the append
// starting at the head that round seals is reported before setSealed moves
// the tip there; without it the tip never caught up again and every round
// walked (issue 15's profile: walkChain at 10% of the proxy's CPU). Appends
// that never connect (someone else wrote in between) leave tip where it
// is, and the sealer walks the rows after it.
func (v *Vault) noteAppended(heads []storage.AuditAppended) {
	if len(heads) == 0 {
		return
	}
	v.sealMu.Lock()
	defer v.sealMu.Unlock()
	for _, a := range heads {
		p := append(v.appends[a.WorkspaceID], a)
		if len(p) > auditPendingAppends {
			p = slices.Delete(p, 0, len(p)-auditPendingAppends)
		}
		v.appends[a.WorkspaceID] = p
		v.extendTip(a.WorkspaceID)
	}
}

// extendTip follows the kept appends from the workspace's tip, each starting
// where the previous one ended, and drops those the tip has passed. The
// caller holds sealMu.
func (v *Vault) extendTip(ws string) {
	st, p := v.chains[ws], v.appends[ws]
	if st == nil || len(p) == 0 {
		return
	}
	for range len(p) {
		i := slices.IndexFunc(p, func(a storage.AuditAppended) bool { return sameHead(a.Prev, st.tip) })
		if i < 0 {
			break
		}
		st.tip = p[i].Head
		p = slices.Delete(p, i, i+1)
	}
	p = slices.DeleteFunc(p, func(a storage.AuditAppended) bool { return a.Head.LastID <= st.tip.LastID })
	if len(p) == 0 {
		delete(v.appends, ws)
		return
	}
	v.appends[ws] = p
}

// chainSnapshot returns a copy of the workspace's state (ok false: none).
func (v *Vault) chainSnapshot(ws string) (chainState, bool) {
	v.sealMu.Lock()
	defer v.sealMu.Unlock()
	st := v.chains[ws]
	if st == nil {
		return chainState{}, false
	}
	return *st, true
}

// setSealed records a seal this node wrote or checked. keepTip: the
// current tip descends from c (the seal was tip itself), so appends made
// while sealing stay trusted; otherwise tip restarts at c. walkedFrom, when
// not nil, is where the walk that checked the rows up to c started: the
// background check needs nothing up to c if it had checked up to there.
func (v *Vault) setSealed(ws string, c storage.AuditHead, keepTip bool, walkedFrom *storage.AuditHead) {
	v.sealMu.Lock()
	defer v.sealMu.Unlock()
	st := v.chains[ws]
	fresh := st == nil
	if fresh {
		st = &chainState{}
		v.chains[ws] = st
	}
	st.sealed = c
	if !keepTip || st.tip.LastID < c.LastID {
		st.tip = c
	}
	if walkedFrom != nil && (fresh || st.checked.LastID >= walkedFrom.LastID) {
		st.checked = c
	}
	v.extendTip(ws)
}

func (v *Vault) setMACFrom(ws string, from int64) {
	v.sealMu.Lock()
	defer v.sealMu.Unlock()
	if st := v.chains[ws]; st != nil {
		st.macFrom = from
	}
}

func (v *Vault) setChecked(ws string, c storage.AuditHead) {
	v.sealMu.Lock()
	defer v.sealMu.Unlock()
	if st := v.chains[ws]; st != nil && c.LastID > st.checked.LastID {
		st.checked = c
	}
}

// CheckSealedAudit re-reads every workspace's sealed rows written since
// the last check (the newest auditCheckRows of them when more) and checks
// them against the seal. Rows this node sealed from its own appends were
// never read back; this is where an edit made after sealing shows without
// anyone running `rotor audit verify`. A mismatch is logged and counted in
// rotor_audit_tamper_detected_total; the returned error wraps
// ErrAuditTampered.
func (v *Vault) CheckSealedAudit(ctx context.Context) error {
	v.sealRun.Lock()
	defer v.sealRun.Unlock()
	wss, err := v.store.ListWorkspaces(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ws := range wss {
		if err := v.checkSealed(ctx, ws.ID); err != nil {
			errs = append(errs, fmt.Errorf("workspace %s: %w", ws.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (v *Vault) checkSealed(ctx context.Context, ws string) error {
	st, ok := v.chainSnapshot(ws)
	if !ok || st.sealed.LastID <= st.checked.LastID {
		return nil
	}
	seal := storage.AuditCheckpoint{WorkspaceID: ws, LastID: st.sealed.LastID, Chain: st.sealed.Chain}
	from := st.checked
	if from.LastID == 0 || st.sealed.LastID-from.LastID > auditCheckRows {
		// Start from a stored row's chain value, unverified: if the rows
		// after it hash to the sealed value, they are the rows sealed
		// (a changed start value would change the sealed value too).
		rows, err := v.store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: ws, AfterID: max(st.sealed.LastID-auditCheckRows, from.LastID), Limit: 1})
		if err != nil || len(rows) == 0 {
			return err
		}
		from = storage.AuditHead{LastID: rows[0].ID, Chain: rows[0].Chain}
		if from.LastID >= st.sealed.LastID {
			if !sameHead(from, st.sealed) {
				return v.checkFailed(ctx, ws, from, st.sealed.LastID, "the sealed row was changed after it was sealed")
			}
			v.setChecked(ws, st.sealed)
			return nil
		}
	}
	res, err := v.walkChain(ctx, ws, from, st.sealed.LastID, &seal, newRowCheck(v.rows.key, max(st.macFrom, 1)))
	if err != nil {
		return err
	}
	switch {
	case res.bad != 0:
		return v.checkFailed(ctx, ws, from, res.bad, res.problem)
	case !res.sealSeen:
		return v.checkFailed(ctx, ws, from, seal.LastID, fmt.Sprintf("sealed row %d is missing", seal.LastID))
	}
	v.setChecked(ws, st.sealed)
	return nil
}

// checkFailed reports a failed background check, unless retention pruned
// the rows the check started from while it read (not tampering: the next
// round starts after the pruned rows).
func (v *Vault) checkFailed(ctx context.Context, ws string, from storage.AuditHead, bad int64, problem string) error {
	if rt, ok := v.store.(storage.Retainer); ok {
		m, found, err := v.auditMarker(ctx, rt, ws)
		if err != nil {
			if errors.Is(err, ErrAuditTampered) {
				v.metrics.auditTamper.Inc()
			}
			return err
		}
		if found && m.ThroughID >= from.LastID {
			v.setChecked(ws, storage.AuditHead{LastID: m.ThroughID, Chain: m.Chain})
			return nil
		}
	}
	v.metrics.auditTamper.Inc()
	err := fmt.Errorf("%w: background check: row %d: %s (run rotor audit verify)", ErrAuditTampered, bad, problem)
	v.log.Error("audit trail changed after sealing", "workspace_id", ws, "row", bad, "err", err)
	return err
}
