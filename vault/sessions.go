package vault

import (
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"

	"rotor.sh/rotor/internal/memlock"
	"rotor.sh/rotor/storage"
)

// Dashboard sessions are sealed tokens, not server state: every node that
// shares the master key opens the token another node issued, and no node's
// memory grows with sign-ins. The key is derived from the master key like
// the audit seal key (HKDF, its own info string), never stored.
const sessionKeyInfo = "rotor dashboard session v1"

var sessionAAD = []byte(sessionKeyInfo)

func newSessionAEAD(master []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, master, nil, sessionKeyInfo, keySize)
	if err != nil {
		return nil, err
	}
	defer zero(k)
	return newGCM(k)
}

// SealSession encrypts and authenticates a session token's contents
// (AES-GCM, random nonces: keep well under 2^32 tokens per master key, which
// is why the dashboard reissues a session's token at most once a minute).
func (v *Vault) SealSession(pt []byte) []byte { return gcmSeal(v.sessions, pt, sessionAAD) }

// OpenSession opens a token SealSession made on any node with the same
// master key; ErrDecrypt for anything else.
func (v *Vault) OpenSession(sealed []byte) ([]byte, error) {
	return gcmOpen(v.sessions, sealed, sessionAAD)
}

// ActorByKeyID returns the actor of an API key by its id, checking it is
// not revoked: the dashboard keeps the key id, never the key, and asks on
// every request.
func (v *Vault) ActorByKeyID(ctx context.Context, id string) (Actor, error) {
	rec, err := v.store.GetAPIKey(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return Actor{}, fmt.Errorf("%w: unknown API key", ErrUnauthenticated)
	}
	if err != nil {
		return Actor{}, err
	}
	if rec.RevokedAt != nil {
		return Actor{}, fmt.Errorf("%w: API key %s was revoked", ErrUnauthenticated, rec.ID)
	}
	return Actor{KeyID: rec.ID, WorkspaceID: rec.WorkspaceID, Role: rec.Role}, nil
}

// lockKey keeps long-lived key bytes out of swap, best effort.
func lockKey(log interface{ Debug(string, ...any) }, what string, b []byte) {
	if err := memlock.Lock(b); err != nil {
		log.Debug("could not lock key material in memory", "what", what, "err", err)
	}
}
