package vault

import (
	"context"
	"errors"
	"fmt"

	"rotor.sh/rotor/storage"
)

// rewrapBatch is how many secrets are re-wrapped per listing.
const rewrapBatch = 256

// RotateKEKResult reports a keyring rotation.
type RotateKEKResult struct {
	NewKeyID  string   `json:"new_key_id"`
	Rewrapped int      `json:"rewrapped"`
	Retired   []string `json:"retired_key_ids"`
	// Remaining lists old keys that still seal secrets (a concurrent writer
	// kept winning); they keep working, and the next rotation retires them.
	Remaining []string `json:"remaining_key_ids,omitempty"`
}

// RotateKEK introduces a new key-encryption key, re-wraps every data key
// under it without touching the sealed values, and retires the old keys.
// Until a secret is re-wrapped its old key id keeps working, so this runs
// online. Needs the operator role: the keyring is shared by all workspaces.
func (v *Vault) RotateKEK(ctx context.Context, actor Actor) (RotateKEKResult, error) {
	if err := actor.require(RoleOperator); err != nil {
		return RotateKEKResult{}, err
	}
	if err := v.keys.reload(ctx); err != nil {
		return RotateKEKResult{}, err
	}
	_, old := v.keys.ids()
	newID, err := v.keys.addKEK(ctx)
	if err != nil {
		return RotateKEKResult{}, err
	}
	res := RotateKEKResult{NewKeyID: newID}
	to := v.keys.activeKey()
	lookup := v.keys.lookup(ctx)
	for _, oldID := range old {
		n, err := v.rewrapAll(ctx, oldID, to, lookup)
		res.Rewrapped += n
		if err != nil {
			return res, err
		}
		switch err := v.store.DeleteKEK(ctx, oldID); {
		case err == nil:
			v.keys.forget(oldID)
			res.Retired = append(res.Retired, oldID)
		case errors.Is(err, storage.ErrInUse):
			res.Remaining = append(res.Remaining, oldID)
		default:
			return res, fmt.Errorf("retire key %s: %w", oldID, err)
		}
	}
	ev := v.event(actor, EventKeyringRotated, ResourceKeyring, newID, nil,
		map[string]any{"new_key_id": newID, "rewrapped": res.Rewrapped, "retired_key_ids": res.Retired})
	heads, err := v.store.AppendAudit(ctx, []storage.AuditEvent{ev})
	if err != nil {
		return res, err
	}
	v.noteAppended(heads)
	v.log.Info("keyring rotated", "new_key_id", newID, "rewrapped", res.Rewrapped, "retired", res.Retired)
	return res, nil
}

func (v *Vault) rewrapAll(ctx context.Context, from string, to keyEntry, lookup func(string) (keyEntry, error)) (int, error) {
	done := 0
	// Each pass handles what it listed; a record changed concurrently is
	// listed again by the next pass if it is still under the old key. Passes
	// that make no progress are bounded, so a pathological writer cannot hold
	// rotation forever (the key is then reported as remaining).
	for stalled := 0; stalled < 8; {
		before := done
		recs, err := v.store.ListSecretsByKEK(ctx, from, rewrapBatch)
		if err != nil {
			return done, err
		}
		if len(recs) == 0 {
			return done, nil
		}
		for _, r := range recs {
			sealed, err := rewrapValue(lookup, to, binding{r.WorkspaceID, r.Name, r.Version}, r.Sealed)
			if err != nil {
				return done, fmt.Errorf("re-wrap %s in %s: %w", r.Name, r.WorkspaceID, err)
			}
			next := r
			next.Sealed, next.KEKID = sealed, to.id
			err = v.store.UpdateSecret(ctx, storage.UpdateSecretArgs{Secret: next, ExpectedRevision: r.Revision})
			switch {
			case err == nil:
				done++
			case errors.Is(err, storage.ErrConflict), errors.Is(err, storage.ErrNotFound):
			default:
				return done, err
			}
		}
		if done == before {
			stalled++
		}
	}
	return done, nil
}
