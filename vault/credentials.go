package vault

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"

	"rotor.sh/rotor/storage"
)

// Each workspace has two dispatch credentials, sealed like secrets but under
// reserved names that the API and templates cannot reach (a ':' is not a
// valid secret name character): the callback secret dispatch sends as
// "Authorization: Bearer ..." (the product guide's ROTOR_CALLBACK_SECRET),
// and the Standard Webhooks signing key ("whsec_...").
//
// Both obey one destination policy, the allowed_hosts stored on the
// callback secret's record (see CallbackSettings): the proxy attaches
// neither to a host outside it, and a key below admin may only point a
// queue at a host inside it (docs/security.md, "Callback credentials").
const (
	CredentialCallback = "rotor:callback_secret"
	CredentialSigning  = "rotor:signing_secret"
	// credentialSigningPrevious holds the signing secret a rotation replaced,
	// with the end of its grace period sealed beside it ("<unix>\n<key>"),
	// so a database writer cannot extend the grace.
	credentialSigningPrevious = "rotor:signing_secret_previous"
)

// isReserved reports whether name is an internal credential name.
func isReserved(name string) bool { return strings.Contains(name, ":") }

// CallbackCredentials are shown only when created or rotated.
type CallbackCredentials struct {
	CallbackSecret Plaintext
	SigningSecret  Plaintext
}

func newCallbackCredentials() CallbackCredentials {
	a, b := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(a)
	_, _ = rand.Read(b)
	return CallbackCredentials{
		CallbackSecret: PlaintextString("rcs_" + base64.RawURLEncoding.EncodeToString(a)),
		SigningSecret:  PlaintextString("whsec_" + base64.StdEncoding.EncodeToString(b)),
	}
}

// putCredential creates or replaces one credential without audit rows of
// its own (the caller audits the operation).
func (v *Vault) putCredential(ctx context.Context, wsID, name string, value Plaintext) error {
	for range casAttempts {
		kek := v.keys.activeKey()
		now := v.now().UTC()
		cur, err := v.store.GetSecret(ctx, wsID, name)
		version := int64(1)
		switch {
		case err == nil:
			version = cur.Version + 1
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		sealed, err := sealValue(kek, binding{wsID, name, version}, value.b)
		if err != nil {
			return err
		}
		rec := storage.SecretRecord{SecretMeta: storage.SecretMeta{WorkspaceID: wsID, Name: name, Version: version, Hint: "...", KEKID: kek.id, CreatedAt: now, UpdatedAt: now}, Sealed: sealed}
		if version > 1 {
			// A new value keeps the destination policy.
			rec.AllowedHosts = cur.AllowedHosts
		}
		if version == 1 {
			err = v.store.CreateSecret(ctx, storage.CreateSecretArgs{Secret: rec})
		} else {
			rec.CreatedAt = cur.CreatedAt
			err = v.store.UpdateSecret(ctx, storage.UpdateSecretArgs{Secret: rec, ExpectedRevision: cur.Revision})
		}
		if errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrExists) {
			if err := v.keys.reload(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		v.cache.invalidate(wsID, name)
		return nil
	}
	return ErrBusy
}

// EnsureCallbackCredentials creates the workspace's dispatch credentials if
// it has none (workspaces from before dispatch existed) and returns them
// when it created them.
func (v *Vault) EnsureCallbackCredentials(ctx context.Context, wsID string) (CallbackCredentials, bool, error) {
	if _, err := v.store.GetSecret(ctx, wsID, CredentialSigning); err == nil {
		if _, err := v.store.GetSecret(ctx, wsID, CredentialCallback); err == nil {
			return CallbackCredentials{}, false, nil
		}
	}
	creds := newCallbackCredentials()
	if err := v.putCredential(ctx, wsID, CredentialCallback, creds.CallbackSecret); err != nil {
		return CallbackCredentials{}, false, err
	}
	if err := v.putCredential(ctx, wsID, CredentialSigning, creds.SigningSecret); err != nil {
		return CallbackCredentials{}, false, err
	}
	return creds, true, nil
}
