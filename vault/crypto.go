package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// Sealed envelope, format 1. Every field is authenticated: the header's KEK
// id is bound into the wrapped key's associated data, and the wrapped key
// decides which data key opens the body.
//
//	magic     "RTRS"          4 bytes
//	format    0x01            1 byte
//	kekLen    n (1..64)       1 byte
//	kekID     n bytes (ASCII)
//	wrapLen   m               2 bytes, big endian
//	wrapped   m bytes         nonce(12) || AES-256-GCM(KEK, data key, wrapAAD)
//	body      rest            nonce(12) || AES-256-GCM(data key, value, dataAAD)
//
// dataAAD binds (workspace, name, version); wrapAAD binds the same plus the
// KEK id. Re-wrapping under a new KEK rewrites only the header and wrapped
// key; the body, sealed once per version, is never touched.
const (
	sealMagic    = "RTRS"
	sealFormatV1 = 1
	keySize      = 32
	nonceSize    = 12
	tagSize      = 16
	maxKEKIDLen  = 64
	headerFixed  = len(sealMagic) + 1 + 1 + 2
	// wrappedLen is the exact size of a wrapped 256-bit key.
	wrappedLen = nonceSize + keySize + tagSize
)

// sealedParts is a parsed envelope; its slices alias the input.
type sealedParts struct {
	kekID   string
	wrapped []byte
	body    []byte
}

// parseSealed splits an envelope into its parts, checking every length. It
// never decrypts; a well-formed envelope may still fail to open.
func parseSealed(b []byte) (sealedParts, error) {
	var p sealedParts
	if len(b) < headerFixed {
		return p, fmt.Errorf("%w: envelope too short (%d bytes)", ErrDecrypt, len(b))
	}
	if string(b[:4]) != sealMagic {
		return p, fmt.Errorf("%w: not a rotor envelope", ErrDecrypt)
	}
	if b[4] != sealFormatV1 {
		return p, fmt.Errorf("%w: unsupported envelope format %d", ErrDecrypt, b[4])
	}
	n := int(b[5])
	if n == 0 || n > maxKEKIDLen {
		return p, fmt.Errorf("%w: bad key id length %d", ErrDecrypt, n)
	}
	rest := b[6:]
	if len(rest) < n+2 {
		return p, fmt.Errorf("%w: truncated header", ErrDecrypt)
	}
	p.kekID = string(rest[:n])
	for i := 0; i < n; i++ {
		if c := p.kekID[i]; c < 0x21 || c > 0x7e {
			return sealedParts{}, fmt.Errorf("%w: bad key id", ErrDecrypt)
		}
	}
	rest = rest[n:]
	m := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if m != wrappedLen || len(rest) < m {
		return sealedParts{}, fmt.Errorf("%w: bad wrapped key length %d", ErrDecrypt, m)
	}
	p.wrapped = rest[:m]
	p.body = rest[m:]
	if len(p.body) < nonceSize+tagSize {
		return sealedParts{}, fmt.Errorf("%w: body too short", ErrDecrypt)
	}
	return p, nil
}

func (p sealedParts) marshal() []byte {
	out := make([]byte, 0, headerFixed+len(p.kekID)+len(p.wrapped)+len(p.body))
	out = append(out, sealMagic...)
	out = append(out, sealFormatV1, byte(len(p.kekID)))
	out = append(out, p.kekID...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(p.wrapped)))
	out = append(out, p.wrapped...)
	return append(out, p.body...)
}

// binding is what a ciphertext is bound to through associated data.
type binding struct {
	workspace string
	name      string
	version   int64
}

func appendLP(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func (bd binding) dataAAD() []byte {
	b := []byte("rotor:secret:v1\x00")
	b = appendLP(b, bd.workspace)
	b = appendLP(b, bd.name)
	return binary.BigEndian.AppendUint64(b, uint64(bd.version))
}

func (bd binding) wrapAAD(kekID string) []byte {
	b := []byte("rotor:dek:v1\x00")
	b = appendLP(b, bd.workspace)
	b = appendLP(b, bd.name)
	b = binary.BigEndian.AppendUint64(b, uint64(bd.version))
	return appendLP(b, kekID)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("key must be %d bytes, got %d", keySize, len(key))
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// gcmSeal returns nonce || ciphertext with a fresh random nonce. Random
// 96-bit nonces are safe here because every data key seals exactly one
// message, and KEKs seal far fewer than 2^32 keys.
func gcmSeal(aead cipher.AEAD, pt, aad []byte) []byte {
	out := make([]byte, nonceSize, nonceSize+len(pt)+tagSize)
	if _, err := rand.Read(out); err != nil {
		panic("vault: crypto/rand failed: " + err.Error()) // crypto/rand does not fail on supported platforms
	}
	return aead.Seal(out, out, pt, aad)
}

func gcmOpen(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < nonceSize+tagSize {
		return nil, fmt.Errorf("%w: too short", ErrDecrypt)
	}
	pt, err := aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	return pt, nil
}

// randomKey returns a fresh 256-bit key.
func randomKey() []byte {
	k := make([]byte, keySize)
	if _, err := rand.Read(k); err != nil {
		panic("vault: crypto/rand failed: " + err.Error())
	}
	return k
}

// sealValue seals pt under a fresh data key wrapped by kek.
func sealValue(kek keyEntry, bd binding, pt []byte) ([]byte, error) {
	dek := randomKey()
	defer zero(dek)
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	parts := sealedParts{
		kekID:   kek.id,
		wrapped: gcmSeal(kek.aead, dek, bd.wrapAAD(kek.id)),
		body:    gcmSeal(aead, pt, bd.dataAAD()),
	}
	return parts.marshal(), nil
}

// openValue opens an envelope with the KEK that lookup returns for its key id.
func openValue(lookup func(id string) (keyEntry, error), bd binding, sealed []byte) (Plaintext, error) {
	p, err := parseSealed(sealed)
	if err != nil {
		return Plaintext{}, err
	}
	kek, err := lookup(p.kekID)
	if err != nil {
		return Plaintext{}, err
	}
	dek, err := gcmOpen(kek.aead, p.wrapped, bd.wrapAAD(p.kekID))
	if err != nil {
		return Plaintext{}, fmt.Errorf("%w (wrapped data key)", err)
	}
	defer zero(dek)
	aead, err := newGCM(dek)
	if err != nil {
		return Plaintext{}, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	pt, err := gcmOpen(aead, p.body, bd.dataAAD())
	if err != nil {
		return Plaintext{}, fmt.Errorf("%w (value)", err)
	}
	return Plaintext{b: pt}, nil
}

// rewrapValue re-wraps an envelope's data key under to, leaving the body as is.
func rewrapValue(lookup func(id string) (keyEntry, error), to keyEntry, bd binding, sealed []byte) ([]byte, error) {
	p, err := parseSealed(sealed)
	if err != nil {
		return nil, err
	}
	from, err := lookup(p.kekID)
	if err != nil {
		return nil, err
	}
	dek, err := gcmOpen(from.aead, p.wrapped, bd.wrapAAD(p.kekID))
	if err != nil {
		return nil, fmt.Errorf("%w (wrapped data key)", err)
	}
	defer zero(dek)
	p.kekID = to.id
	p.wrapped = gcmSeal(to.aead, dek, bd.wrapAAD(to.id))
	return p.marshal(), nil
}

// sealedKEKID returns the key id in an envelope's header.
func sealedKEKID(sealed []byte) (string, error) {
	p, err := parseSealed(sealed)
	return p.kekID, err
}
