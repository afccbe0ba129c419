package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"rotor.sh/rotor/storage"
)

// casAttempts bounds retries of a compare-and-swap write that keeps colliding.
const casAttempts = 8

// CreateSecretRequest is the input of CreateSecret.
type CreateSecretRequest struct {
	Name         string
	Value        Plaintext
	AllowedHosts []string
}

// UpdateSecretRequest is the input of UpdateSecret: a nil field is left alone.
type UpdateSecretRequest struct {
	Name         string
	Value        *Plaintext
	AllowedHosts *[]string
}

func validateValue(p Plaintext) error {
	if p.Len() == 0 {
		return fmt.Errorf("%w: value is empty", ErrInvalidValue)
	}
	if p.Len() > MaxValueLen {
		return fmt.Errorf("%w: value is %d bytes, at most %d allowed", ErrInvalidValue, p.Len(), MaxValueLen)
	}
	return nil
}

// CreateSecret stores version 1 of a new secret in the actor's workspace.
func (v *Vault) CreateSecret(ctx context.Context, actor Actor, req CreateSecretRequest) (storage.SecretMeta, error) {
	if err := ValidateName(req.Name); err != nil {
		return storage.SecretMeta{}, err
	}
	if err := validateValue(req.Value); err != nil {
		return storage.SecretMeta{}, err
	}
	hosts, err := NormalizeAllowedHosts(req.AllowedHosts)
	if err != nil {
		return storage.SecretMeta{}, err
	}
	for range casAttempts {
		kek := v.keys.activeKey()
		sealed, err := sealValue(kek, binding{actor.WorkspaceID, req.Name, 1}, req.Value.b)
		if err != nil {
			return storage.SecretMeta{}, err
		}
		now := v.now().UTC()
		rec := storage.SecretRecord{
			SecretMeta: storage.SecretMeta{
				WorkspaceID: actor.WorkspaceID, Name: req.Name, Version: 1, Revision: 1,
				Hint: Hint(req.Value), AllowedHosts: hosts, KEKID: kek.id,
				CreatedAt: now, UpdatedAt: now,
			},
			Sealed: sealed,
		}
		ev := v.event(actor, EventSecretCreated, ResourceSecret, req.Name,
			map[string]any{"name": req.Name, "allowed_hosts": hosts},
			map[string]any{"version": 1, "value_hint": rec.Hint})
		err = v.store.CreateSecret(ctx, storage.CreateSecretArgs{Secret: rec, Audit: []storage.AuditEvent{ev}})
		if errors.Is(err, storage.ErrConflict) {
			// The keyring moved under us (a key rotation retired our KEK): reload and reseal.
			if err := v.keys.reload(ctx); err != nil {
				return storage.SecretMeta{}, err
			}
			continue
		}
		if err != nil {
			return storage.SecretMeta{}, mapStoreErr(err, secretRef(req.Name))
		}
		v.metrics.secretWrites.WithLabelValues("create").Inc()
		v.cache.invalidate(actor.WorkspaceID, req.Name)
		return rec.SecretMeta, nil
	}
	return storage.SecretMeta{}, ErrBusy
}

// UpdateSecret rotates a secret's value (a new version, sealed under a new
// data key), changes its allowed hosts, or both. The next Resolve sees it.
func (v *Vault) UpdateSecret(ctx context.Context, actor Actor, req UpdateSecretRequest) (storage.SecretMeta, error) {
	if err := ValidateName(req.Name); err != nil {
		return storage.SecretMeta{}, err
	}
	if req.Value == nil && req.AllowedHosts == nil {
		return storage.SecretMeta{}, fmt.Errorf("%w: nothing to update: give value and/or allowed_hosts", ErrInvalidArgument)
	}
	if req.Value != nil {
		if err := validateValue(*req.Value); err != nil {
			return storage.SecretMeta{}, err
		}
	}
	var hosts []string
	if req.AllowedHosts != nil {
		var err error
		if hosts, err = NormalizeAllowedHosts(*req.AllowedHosts); err != nil {
			return storage.SecretMeta{}, err
		}
	}
	for range casAttempts {
		cur, err := v.store.GetSecret(ctx, actor.WorkspaceID, req.Name)
		if err != nil {
			return storage.SecretMeta{}, mapStoreErr(err, secretRef(req.Name))
		}
		next := cur
		next.UpdatedAt = v.now().UTC()
		evType := EventSecretUpdated
		in := map[string]any{"name": req.Name}
		if req.AllowedHosts != nil {
			next.AllowedHosts = hosts
			in["allowed_hosts"] = hosts
		}
		if req.Value != nil {
			evType = EventSecretRotated
			kek := v.keys.activeKey()
			next.Version = cur.Version + 1
			next.KEKID = kek.id
			next.Hint = Hint(*req.Value)
			if next.Sealed, err = sealValue(kek, binding{actor.WorkspaceID, req.Name, next.Version}, req.Value.b); err != nil {
				return storage.SecretMeta{}, err
			}
		}
		ev := v.event(actor, evType, ResourceSecret, req.Name, in,
			map[string]any{"version": next.Version, "previous_version": cur.Version, "value_hint": next.Hint})
		err = v.store.UpdateSecret(ctx, storage.UpdateSecretArgs{Secret: next, ExpectedRevision: cur.Revision, Audit: []storage.AuditEvent{ev}})
		if errors.Is(err, storage.ErrConflict) {
			if err := v.keys.reload(ctx); err != nil {
				return storage.SecretMeta{}, err
			}
			continue
		}
		if err != nil {
			return storage.SecretMeta{}, mapStoreErr(err, secretRef(req.Name))
		}
		v.cache.invalidate(actor.WorkspaceID, req.Name)
		op := "update"
		if req.Value != nil {
			op = "rotate"
		}
		v.metrics.secretWrites.WithLabelValues(op).Inc()
		next.Revision = cur.Revision + 1
		return next.SecretMeta, nil
	}
	return storage.SecretMeta{}, ErrBusy
}

// DeleteSecret removes a secret. Its sealed value, the only copy of its
// wrapped data key, goes with it (crypto-shredding; see docs/security.md for
// what that means for bbolt's free pages).
func (v *Vault) DeleteSecret(ctx context.Context, actor Actor, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	cur, err := v.store.GetSecret(ctx, actor.WorkspaceID, name)
	if err != nil {
		return mapStoreErr(err, secretRef(name))
	}
	ev := v.event(actor, EventSecretDeleted, ResourceSecret, name,
		map[string]any{"name": name}, map[string]any{"version": cur.Version})
	if err := v.store.DeleteSecret(ctx, storage.DeleteSecretArgs{WorkspaceID: actor.WorkspaceID, Name: name, Audit: []storage.AuditEvent{ev}}); err != nil {
		return mapStoreErr(err, secretRef(name))
	}
	v.cache.invalidate(actor.WorkspaceID, name)
	v.metrics.secretWrites.WithLabelValues("delete").Inc()
	return nil
}

// GetSecret returns a secret's metadata, never its value.
func (v *Vault) GetSecret(ctx context.Context, actor Actor, name string) (storage.SecretMeta, error) {
	if err := ValidateName(name); err != nil {
		return storage.SecretMeta{}, err
	}
	r, err := v.store.GetSecret(ctx, actor.WorkspaceID, name)
	return r.SecretMeta, mapStoreErr(err, secretRef(name))
}

// ListSecrets returns the metadata of the actor's workspace's secrets, by name.
func (v *Vault) ListSecrets(ctx context.Context, actor Actor) ([]storage.SecretMeta, error) {
	out, err := v.store.ListSecrets(ctx, storage.ListSecretsArgs{WorkspaceID: actor.WorkspaceID})
	out = slices.DeleteFunc(out, func(m storage.SecretMeta) bool { return isReserved(m.Name) })
	slices.SortFunc(out, func(a, b storage.SecretMeta) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, err
}
