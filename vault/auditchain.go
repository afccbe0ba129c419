package vault

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"rotor.sh/rotor/storage"
)

// Tamper evidence for the audit trail.
//
// The store chains rows: each row's chain value is SHA-256 over the previous
// row's (per workspace) and the row's columns (storage.NextChain). A chain
// alone proves nothing against someone who can write the database: they can
// edit a row and recompute every later value. So the vault seals the chain:
// about once a second it checks the rows written since the last seal against
// the chain and stores a checkpoint whose MAC is HMAC-SHA256 under a key
// derived from the master key (never stored, never sent to the storage
// plugin) over (workspace, last id, chain value, time). VerifyAudit recomputes
// the chain from the first row and checks every stored value and the seal:
// an edited, deleted or reordered row breaks the chain at that row; a row
// edited and re-chained breaks the seal; rows deleted from the tail leave the
// sealed row missing. What a seal cannot cover is the last interval's rows
// before they are sealed (docs/security.md).

const (
	// DefaultAuditSealInterval is how often the vault seals chain heads.
	DefaultAuditSealInterval = time.Second
	auditKeyInfo             = "rotor audit chain v1"
	auditVerifyPage          = 1000
	// Rows older than auditStaleSeals seal intervals (at least auditStaleMin)
	// with no seal over them fail verification: the sealer seals every
	// interval, so such rows mean the seal over them was deleted.
	auditStaleSeals = 10
	auditStaleMin   = 30 * time.Second
)

// AuditVerification is the result of VerifyAudit. OK is false when a
// problem was found; FirstBadID (0 when not one row) and Problem say what.
type AuditVerification struct {
	OK            bool      `json:"ok"`
	Rows          int64     `json:"rows"`
	LastID        int64     `json:"last_id"`
	SealedThrough int64     `json:"sealed_through"`
	SealedAt      time.Time `json:"sealed_at,omitzero"`
	FirstBadID    int64     `json:"first_bad_id,omitempty"`
	Problem       string    `json:"problem,omitempty"`
	// Retention (issue 11): rows up to PrunedThrough (PrunedRows in all)
	// were deleted by --audit-retention, last at PrunedAt; the trail is
	// verified from the marker they left.
	PrunedThrough int64     `json:"pruned_through,omitempty"`
	PrunedRows    int64     `json:"pruned_rows,omitempty"`
	PrunedAt      time.Time `json:"pruned_at,omitzero"`
}

func deriveAuditKey(master []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, master, nil, auditKeyInfo, 32)
}

func (v *Vault) checkpointMAC(c storage.AuditCheckpoint) []byte {
	m := hmac.New(sha256.New, v.auditKey)
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.WorkspaceID)))
	b = append(b, c.WorkspaceID...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.LastID))
	b = binary.BigEndian.AppendUint64(b, uint64(c.SealedAt.UnixMicro()))
	b = append(b, c.Chain...)
	if c.RowMACFrom != 0 {
		// Seals made before row MACs have no boundary; a seal with one
		// cannot be turned into one without (the MAC changes).
		b = append(b, "row_mac_from\x00"...)
		b = binary.BigEndian.AppendUint64(b, uint64(c.RowMACFrom))
	}
	m.Write(b)
	return m.Sum(nil)
}

// SealAudit seals the chain heads of every workspace whose trail grew since
// its last seal. The vault's sealer calls it every interval; it is exported
// for tests and for `rotor` commands that write and exit.
func (v *Vault) SealAudit(ctx context.Context) error {
	v.sealRun.Lock()
	defer v.sealRun.Unlock()
	wss, err := v.store.ListWorkspaces(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ws := range wss {
		if err := v.sealWorkspace(ctx, ws.ID); err != nil {
			errs = append(errs, fmt.Errorf("workspace %s: %w", ws.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (v *Vault) sealWorkspace(ctx context.Context, ws string) error {
	// The state is read before the head: this node's appends reported in
	// the state are then all at or below the head.
	st, known := v.chainSnapshot(ws)
	head, err := v.store.GetAuditHead(ctx, ws)
	if err != nil || head.LastID == 0 {
		return err
	}
	if known && st.sealed.LastID == head.LastID {
		return nil
	}
	// The anchor is read before the database's seal: sealing writes the
	// database first and the anchor second, so an anchor read first is never
	// newer than an untampered database read after it (no false alarm when
	// a seal lands in between).
	anchor, haveAnchor := v.anchor.get(ws)
	prev, err := v.store.GetAuditCheckpoint(ctx, ws)
	found := err == nil
	var from storage.AuditHead
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return err
	case !hmac.Equal(prev.MAC, v.checkpointMAC(prev)):
		v.metrics.auditTamper.Inc()
		return fmt.Errorf("%w: the stored seal does not verify; not sealing over it (run rotor audit verify)", ErrAuditTampered)
	}
	if haveAnchor {
		if why := sealBehind(anchor, prev, found); why != "" {
			v.metrics.auditTamper.Inc()
			return fmt.Errorf("%w: this node sealed row %d, but %s; not sealing over it (run rotor audit verify)", ErrAuditTampered, anchor.LastID, why)
		}
	}
	prevHead := storage.AuditHead{LastID: prev.LastID, Chain: prev.Chain}
	switch {
	case found && prev.LastID >= head.LastID:
		// Another node sealed further: trust its seal as a starting point
		// only (its rows are walked before this node seals past them).
		v.setSealed(ws, prevHead, false, nil)
		v.setMACFrom(ws, rowMACFrom(prev, true))
		return v.anchor.update(prev)
	case found:
		from = prevHead
	}
	// fast: the database's newest seal is this node's, so the rows up to
	// tip are this node's own appends (auditseal.go) and only the rows after
	// tip are walked: none when this node wrote everything since.
	fast := known && found && sameHead(prevHead, st.sealed) && st.tip.LastID > st.sealed.LastID && st.tip.LastID <= head.LastID
	if fast {
		// Seal through the tip alone, with no storage read: the rows after
		// it (appends still in flight, or another writer's) are walked by
		// a later round, once the tip has not moved past them. Under load
		// the head is nearly always past the tip, and listing those rows
		// every round cost a plugin call decoding a whole audit segment.
		from, head = st.tip, st.tip
	}
	// Seal only what is consistent with the last seal.
	// Rows this node did not append are checked for their row MAC too:
	// a row a database writer added chains correctly, but has no MAC.
	macFrom := rowMACFrom(prev, found)
	res, err := v.walkChain(ctx, ws, from, head.LastID, nil, newRowCheck(v.rows.key, macFrom))
	if err != nil {
		return err
	}
	if res.bad != 0 {
		v.metrics.auditTamper.Inc()
		return fmt.Errorf("%w: row %d: %s; not sealing over it (run rotor audit verify)", ErrAuditTampered, res.bad, res.problem)
	}
	if res.lastID != head.LastID {
		return nil // the head moved on, or rows vanished: the next round (or verify) tells
	}
	if !found && !res.firstUnsealedAt.IsZero() && v.now().Sub(res.firstUnsealedAt) > v.staleAfter {
		v.metrics.auditTamper.Inc()
		return fmt.Errorf("%w: row %d is older than %s and no seal covers it (the seal was deleted); not sealing over it (run rotor audit verify)", ErrAuditTampered, res.firstUnsealed, v.staleAfter)
	}
	if found && !haveAnchor && res.rows > 0 {
		// No seal of its own to compare with the database's (sealreplay.go).
		why, err := v.replayedSeal(ctx, ws, prev, res.lastID)
		if err != nil {
			return err
		}
		if why != "" {
			v.metrics.auditTamper.Inc()
			return fmt.Errorf("%w: %s; not sealing over it (run rotor audit verify)", ErrAuditTampered, why)
		}
	}
	c := storage.AuditCheckpoint{WorkspaceID: ws, LastID: res.lastID, Chain: res.chain, SealedAt: v.now().UTC().Truncate(time.Microsecond), RowMACFrom: macFrom}
	c.MAC = v.checkpointMAC(c)
	if err := v.store.PutAuditCheckpoint(ctx, c); err != nil {
		return err
	}
	if err := v.anchor.update(c); err != nil {
		// The seal is in the database; only the copy outside it failed.
		v.log.Error("audit anchor not written", "err", err)
	}
	// The tip stays trusted when the seal is the tip itself (nothing
	// walked): appends reported since then extend it.
	walked := &from
	if fast {
		walked = nil // rows up to tip were not read
	}
	v.setSealed(ws, storage.AuditHead{LastID: c.LastID, Chain: c.Chain}, fast && res.rows == 0, walked)
	v.setMACFrom(ws, macFrom)
	v.metrics.auditSeals.Inc()
	return nil
}

type walkResult struct {
	rows    int64
	lastID  int64
	chain   []byte
	bad     int64
	problem string
	// sealSeen: the sealed row was reached and matched.
	sealSeen bool
	// firstUnsealed is the first row walked after the seal (or after from
	// when there is none), and when it was written.
	firstUnsealed   int64
	firstUnsealedAt time.Time
}

// walkChain recomputes the chain from the row after `from` up to id `upTo`
// (0: to the end). When seal is not nil, the row with seal.LastID must be
// there and carry seal.Chain.
//
// rows, when not nil, checks every row's MAC and nonce (auditrowmac.go).
func (v *Vault) walkChain(ctx context.Context, ws string, from storage.AuditHead, upTo int64, seal *storage.AuditCheckpoint, rows *rowCheck) (walkResult, error) {
	r := walkResult{lastID: from.LastID, chain: from.Chain}
	if upTo > 0 && from.LastID >= upTo && seal == nil {
		return r, nil // nothing to read (the sealer's fast path)
	}
	if seal != nil && from.LastID > 0 && seal.LastID <= from.LastID {
		// Retention pruned through the sealed row (never past it).
		switch {
		case seal.LastID < from.LastID:
			r.bad, r.problem = seal.LastID, fmt.Sprintf("the seal (row %d) is older than the rows pruned by retention (through row %d): an older seal was replayed", seal.LastID, from.LastID)
			return r, nil
		case !bytes.Equal(seal.Chain, from.Chain):
			r.bad, r.problem = seal.LastID, "the retention marker and the seal disagree on this row's chain value"
			return r, nil
		}
		r.sealSeen = true
	}
	for {
		evs, err := v.store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: ws, AfterID: r.lastID, Limit: auditVerifyPage})
		if err != nil {
			return r, err
		}
		for _, e := range evs {
			if upTo > 0 && e.ID > upTo {
				return r, nil
			}
			if seal != nil && !r.sealSeen && e.ID > seal.LastID {
				r.bad, r.problem = seal.LastID, fmt.Sprintf("row %d, sealed at %s, is missing: rows were deleted", seal.LastID, seal.SealedAt.Format(time.RFC3339))
				return r, nil
			}
			want := storage.NextChain(r.chain, e)
			if !bytes.Equal(e.Chain, want) {
				r.bad, r.problem = e.ID, "the row does not match the chain: it was edited, or a row before it was deleted, inserted or moved"
				return r, nil
			}
			if rows != nil {
				if why := rows.check(e); why != "" {
					r.bad, r.problem = e.ID, why
					return r, nil
				}
			}
			r.rows++
			r.lastID, r.chain = e.ID, want
			if r.firstUnsealed == 0 && (seal == nil || e.ID > seal.LastID) {
				r.firstUnsealed, r.firstUnsealedAt = e.ID, e.OccurredAt
			}
			if seal != nil && e.ID == seal.LastID {
				if !bytes.Equal(want, seal.Chain) {
					r.bad, r.problem = e.ID, "the rows up to this one do not match their seal: rows were edited and the chain recomputed"
					return r, nil
				}
				r.sealSeen = true
			}
		}
		if len(evs) < auditVerifyPage {
			return r, nil
		}
		if err := ctx.Err(); err != nil {
			return r, err
		}
	}
}

// VerifyAudit walks the actor's workspace trail from its first row and
// reports the first row that was edited, deleted, reordered or truncated.
// It needs the master key (through the vault): the store alone cannot.
func (v *Vault) VerifyAudit(ctx context.Context, actor Actor) (AuditVerification, error) {
	// Retention may prune rows while the walk reads them (another node, or
	// this one's task): a failure with the marker moved on is walked again.
	// The tamper counter counts the verification, not its attempts.
	res, err := v.verifyAuditRetried(ctx, actor)
	if err == nil && !res.OK {
		v.metrics.auditTamper.Inc()
	}
	return res, err
}

func (v *Vault) verifyAuditRetried(ctx context.Context, actor Actor) (AuditVerification, error) {
	for attempt := 0; ; attempt++ {
		res, err := v.verifyAudit(ctx, actor)
		if err != nil || res.OK || attempt == 2 {
			return res, err
		}
		rt, ok := v.store.(storage.Retainer)
		if !ok {
			return res, nil
		}
		m, err := rt.GetAuditRetention(ctx, actor.WorkspaceID)
		if err != nil || m.ThroughID == res.PrunedThrough {
			return res, nil
		}
	}
}

func (v *Vault) verifyAudit(ctx context.Context, actor Actor) (AuditVerification, error) {
	ws := actor.WorkspaceID
	out := AuditVerification{OK: true}
	var seal *storage.AuditCheckpoint
	// Anchor first, database second (see sealWorkspace's note on the order).
	anchor, haveAnchor := v.anchor.get(ws)
	cp, err := v.store.GetAuditCheckpoint(ctx, ws)
	found := err == nil
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return out, err
	case !hmac.Equal(cp.MAC, v.checkpointMAC(cp)):
		return AuditVerification{Problem: "the chain's seal does not verify: it was forged, edited, or written under another master key"}, nil
	default:
		seal = &cp
		out.SealedThrough, out.SealedAt = cp.LastID, cp.SealedAt
	}
	// The seal kept outside the database wins when the database's is
	// missing or older: a deleted or replayed seal.
	anchorProblem := ""
	if haveAnchor {
		if why := sealBehind(anchor, cp, found); why != "" {
			anchorProblem = fmt.Sprintf("this node sealed row %d at %s (kept in its data dir), but %s: a seal was deleted or an older one replayed", anchor.LastID, anchor.SealedAt.Format(time.RFC3339), why)
			seal = &anchor
			out.SealedThrough, out.SealedAt = anchor.LastID, anchor.SealedAt
		}
	}
	var from storage.AuditHead
	if rt, ok := v.store.(storage.Retainer); ok {
		m, found, err := v.auditMarker(ctx, rt, ws)
		switch {
		case errors.Is(err, ErrAuditTampered):
			return AuditVerification{FirstBadID: m.ThroughID, Problem: fmt.Sprintf("the retention marker (through row %d) does not verify: rows were deleted and disguised as retention, or it was written under another master key", m.ThroughID)}, nil
		case err != nil:
			return out, err
		case found:
			from = storage.AuditHead{LastID: m.ThroughID, Chain: m.Chain}
			out.PrunedThrough, out.PrunedRows, out.PrunedAt = m.ThroughID, m.Rows, m.PrunedAt
			// The walk starts after the marker: a row put below it is
			// looked for on its own (belowmarker.go).
			bad, why, err := v.rowBelowMarker(ctx, ws, m)
			if err != nil {
				return out, err
			}
			if bad != 0 {
				out.OK, out.FirstBadID, out.Problem = false, bad, why
				return out, nil
			}
		}
	}
	macFrom := int64(1)
	if seal != nil {
		macFrom = rowMACFrom(*seal, true)
	}
	r, err := v.walkChain(ctx, ws, from, 0, seal, newVerifyRowCheck(v.rows.key, macFrom))
	if err != nil {
		return out, err
	}
	out.Rows, out.LastID = r.rows, r.lastID
	switch {
	case r.bad != 0:
		out.OK, out.FirstBadID, out.Problem = false, r.bad, r.problem
	case seal != nil && !r.sealSeen:
		out.OK, out.FirstBadID = false, seal.LastID
		out.Problem = fmt.Sprintf("the trail ends at row %d but row %d was sealed at %s: rows were deleted from the end (truncated)", r.lastID, seal.LastID, seal.SealedAt.Format(time.RFC3339))
	case r.firstUnsealed != 0 && v.now().Sub(r.firstUnsealedAt) > v.staleAfter:
		out.OK, out.FirstBadID = false, r.firstUnsealed
		out.Problem = fmt.Sprintf("row %d was written at %s, more than %s ago, and no seal covers it: the seal over it was deleted (or the sealer has not run)", r.firstUnsealed, r.firstUnsealedAt.Format(time.RFC3339), v.staleAfter)
	default:
		head, err := v.store.GetAuditHead(ctx, ws)
		if err != nil {
			return out, err
		}
		bad := head.LastID < r.lastID || head.LastID == r.lastID && !bytes.Equal(head.Chain, r.chain)
		if head.LastID > r.lastID {
			// Rows appended while walking are fine; rows that vanished are not.
			more, err := v.store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: ws, AfterID: r.lastID, Limit: 1})
			if err != nil {
				return out, err
			}
			bad = len(more) == 0
		}
		if bad {
			out.OK = false
			out.Problem = fmt.Sprintf("the chain head (row %d) does not match the trail, which ends at row %d: rows at the end were deleted, or the head was altered", head.LastID, r.lastID)
		}
	}
	if anchorProblem != "" {
		if out.OK {
			out.FirstBadID = seal.LastID
		}
		out.OK = false
		out.Problem = strings.TrimSuffix(anchorProblem+"; "+out.Problem, "; ")
	}
	return out, nil
}

// sealLoop runs SealAudit every interval until stop closes. It is owned by
// the Vault and stopped by Close.
func (v *Vault) sealLoop(interval time.Duration) {
	defer close(v.sealDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-v.sealStop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*interval+10*time.Second)
		if err := v.SealAudit(ctx); err != nil {
			v.log.Error("audit seal failed", "err", err)
		}
		cancel()
		if now := time.Now(); now.After(v.checkDue) {
			v.checkDue = now.Add(auditCheckInterval)
			ctx, cancel := context.WithTimeout(context.Background(), auditCheckInterval)
			_ = v.CheckSealedAudit(ctx) // logged and counted inside
			cancel()
		}
	}
}
