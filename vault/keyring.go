package vault

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"rotor.sh/rotor/storage"
)

// MasterKeySize is the size of the master key in bytes (AES-256).
const MasterKeySize = keySize

type keyEntry struct {
	id   string
	aead cipher.AEAD
}

// keyring holds the unwrapped key-encryption keys in memory. KEKs are random
// keys stored wrapped under the master key, so rotating them never needs the
// master key to change, and a wrong master key is detected on load.
type keyring struct {
	store  storage.Store
	master cipher.AEAD
	now    func() time.Time

	mu     sync.RWMutex
	keys   map[string]keyEntry
	active string
}

func kekAAD(id string) []byte { return appendLP([]byte("rotor:kek:v1\x00"), id) }

func newKEKID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "kek_" + hex.EncodeToString(b)
}

func loadKeyring(ctx context.Context, store storage.Store, masterKey []byte, now func() time.Time) (*keyring, error) {
	master, err := newGCM(masterKey)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	kr := &keyring{store: store, master: master, now: now, keys: map[string]keyEntry{}}
	if err := kr.reload(ctx); err != nil {
		return nil, err
	}
	if kr.active == "" {
		if _, err := kr.addKEK(ctx); err != nil {
			return nil, err
		}
	}
	return kr, nil
}

// reload reads the keyring from storage and unwraps every KEK.
func (kr *keyring) reload(ctx context.Context) error {
	keks, err := kr.store.ListKEKs(ctx)
	if err != nil {
		return fmt.Errorf("load keyring: %w", err)
	}
	keys := make(map[string]keyEntry, len(keks))
	active := ""
	for _, k := range keks {
		raw, err := gcmOpen(kr.master, k.Wrapped, kekAAD(k.ID))
		if err != nil {
			return fmt.Errorf("%w: cannot unwrap key-encryption key %s; this data was written under a different master key", ErrMasterKey, k.ID)
		}
		aead, err := newGCM(raw)
		zero(raw)
		if err != nil {
			return fmt.Errorf("%w: key %s: %v", ErrMasterKey, k.ID, err)
		}
		keys[k.ID] = keyEntry{id: k.ID, aead: aead}
		if k.Active {
			active = k.ID
		}
	}
	kr.mu.Lock()
	kr.keys, kr.active = keys, active
	kr.mu.Unlock()
	return nil
}

// addKEK creates a new random KEK, stores it wrapped and makes it active.
func (kr *keyring) addKEK(ctx context.Context) (string, error) {
	raw := randomKey()
	defer zero(raw)
	aead, err := newGCM(raw)
	if err != nil {
		return "", err
	}
	id := newKEKID()
	k := storage.KEK{ID: id, Wrapped: gcmSeal(kr.master, raw, kekAAD(id)), CreatedAt: kr.now().UTC()}
	if err := kr.store.AddKEK(ctx, storage.AddKEKArgs{KEK: k}); err != nil {
		return "", fmt.Errorf("store new key-encryption key: %w", err)
	}
	kr.mu.Lock()
	kr.keys[id] = keyEntry{id: id, aead: aead}
	kr.active = id
	kr.mu.Unlock()
	return id, nil
}

func (kr *keyring) activeKey() keyEntry {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.keys[kr.active]
}

// lookup returns the KEK with that id. A miss reloads once from storage,
// since another node may have rotated the keyring.
func (kr *keyring) lookup(ctx context.Context) func(string) (keyEntry, error) {
	return func(id string) (keyEntry, error) {
		kr.mu.RLock()
		k, ok := kr.keys[id]
		kr.mu.RUnlock()
		if ok {
			return k, nil
		}
		if err := kr.reload(ctx); err != nil {
			return keyEntry{}, err
		}
		kr.mu.RLock()
		k, ok = kr.keys[id]
		kr.mu.RUnlock()
		if !ok {
			return keyEntry{}, fmt.Errorf("%w: unknown key-encryption key %q", ErrDecrypt, id)
		}
		return k, nil
	}
}

func (kr *keyring) ids() (active string, all []string) {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	for id := range kr.keys {
		all = append(all, id)
	}
	return kr.active, all
}

// forget drops a deleted KEK from memory.
func (kr *keyring) forget(id string) {
	kr.mu.Lock()
	delete(kr.keys, id)
	kr.mu.Unlock()
}

var errNoActiveKey = errors.New("keyring has no active key")
