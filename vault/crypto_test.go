package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"rotor.sh/rotor/storage"
)

func testKeys(t testing.TB, ids ...string) (func(string) (keyEntry, error), []keyEntry) {
	var entries []keyEntry
	m := map[string]keyEntry{}
	for _, id := range ids {
		aead, err := newGCM(randomKey())
		if err != nil {
			t.Fatal(err)
		}
		e := keyEntry{id: id, aead: aead}
		entries = append(entries, e)
		m[id] = e
	}
	return func(id string) (keyEntry, error) {
		if e, ok := m[id]; ok {
			return e, nil
		}
		return keyEntry{}, ErrDecrypt
	}, entries
}

func TestSealOpenRoundTrip(t *testing.T) {
	lookup, keys := testKeys(t, "kek_a")
	bd := binding{"ws_1", "API_TOKEN", 3}
	for _, size := range []int{1, 15, 4096, MaxValueLen} {
		pt := make([]byte, size)
		rand.Read(pt)
		sealed, err := sealValue(keys[0], bd, pt)
		if err != nil {
			t.Fatal(err)
		}
		if size >= 15 && bytes.Contains(sealed, pt) {
			t.Fatal("plaintext visible in envelope")
		}
		got, err := openValue(lookup, bd, sealed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), pt) {
			t.Fatal("round trip changed the value")
		}
		id, err := sealedKEKID(sealed)
		if err != nil || id != "kek_a" {
			t.Fatalf("sealedKEKID = %q, %v", id, err)
		}
	}
	// Two seals of one value differ (fresh data key and nonces).
	a, _ := sealValue(keys[0], bd, []byte("same"))
	b, _ := sealValue(keys[0], bd, []byte("same"))
	if bytes.Equal(a, b) {
		t.Fatal("sealing is deterministic")
	}
}

// TestTamper: every way of moving, swapping or altering a ciphertext fails
// to open with ErrDecrypt, never with wrong plaintext.
func TestTamper(t *testing.T) {
	lookup, keys := testKeys(t, "kek_a", "kek_b")
	bd := binding{"ws_1", "API_TOKEN", 2}
	sealed, err := sealValue(keys[0], bd, []byte("the-real-value"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := sealValue(keys[0], binding{"ws_1", "OTHER", 2}, []byte("other-value"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := parseSealed(sealed)
	po, _ := parseSealed(other)

	swapWrapped := sealedParts{kekID: p.kekID, wrapped: po.wrapped, body: p.body}.marshal()
	swapBody := sealedParts{kekID: p.kekID, wrapped: p.wrapped, body: po.body}.marshal()
	relabel := sealedParts{kekID: "kek_b", wrapped: p.wrapped, body: p.body}.marshal()

	cases := []struct {
		name   string
		bd     binding
		sealed []byte
	}{
		{"other name", binding{"ws_1", "OTHER", 2}, sealed},
		{"other version", binding{"ws_1", "API_TOKEN", 1}, sealed},
		{"other workspace", binding{"ws_2", "API_TOKEN", 2}, sealed},
		{"swapped wrapped key", bd, swapWrapped},
		{"swapped body", bd, swapBody},
		{"key id relabelled", bd, relabel},
		{"unknown key id", bd, sealedParts{kekID: "kek_zz", wrapped: p.wrapped, body: p.body}.marshal()},
		{"truncated", bd, sealed[:len(sealed)-1]},
		{"extended", bd, append(bytes.Clone(sealed), 0)},
		{"empty", bd, nil},
		{"header only", bd, sealed[:10]},
	}
	for i := range sealed {
		for _, bit := range []byte{0x01, 0x80} {
			flipped := bytes.Clone(sealed)
			flipped[i] ^= bit
			cases = append(cases, struct {
				name   string
				bd     binding
				sealed []byte
			}{"bit flip", bd, flipped})
		}
	}
	for _, c := range cases {
		got, err := openValue(lookup, c.bd, c.sealed)
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("%s: err = %v, want ErrDecrypt", c.name, err)
		}
		if got.Len() != 0 {
			t.Fatalf("%s: returned plaintext alongside the error", c.name)
		}
	}
}

func TestRewrapKeepsBody(t *testing.T) {
	lookup, keys := testKeys(t, "kek_a", "kek_b")
	bd := binding{"ws_1", "A", 1}
	sealed, _ := sealValue(keys[0], bd, []byte("value"))
	re, err := rewrapValue(lookup, keys[1], bd, sealed)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := parseSealed(sealed)
	pr, _ := parseSealed(re)
	if pr.kekID != "kek_b" || !bytes.Equal(p.body, pr.body) || bytes.Equal(p.wrapped, pr.wrapped) {
		t.Fatal("rewrap must change only the key id and wrapped key")
	}
	got, err := openValue(lookup, bd, re)
	if err != nil || string(got.Bytes()) != "value" {
		t.Fatalf("open after rewrap: %v", err)
	}
	if _, err := rewrapValue(lookup, keys[1], binding{"ws_1", "B", 1}, sealed); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("rewrap under a wrong binding: %v", err)
	}
}

// TestStoredTamper tampers with records in the real store: the vault refuses
// to resolve them.
func TestStoredTamper(t *testing.T) {
	v, store := testVault(t)
	a := bootstrap(t, v)
	ctx := context.Background()
	for _, n := range []string{"A", "B"} {
		if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: n, Value: PlaintextString("value-of-" + n)}); err != nil {
			t.Fatal(err)
		}
	}
	recA, _ := store.GetSecret(ctx, a.WorkspaceID, "A")
	recB, _ := store.GetSecret(ctx, a.WorkspaceID, "B")

	// Copy A's ciphertext over B.
	moved := recB
	moved.Sealed = recA.Sealed
	if err := store.UpdateSecret(ctx, storage.UpdateSecretArgs{Secret: moved, ExpectedRevision: recB.Revision}); err != nil {
		t.Fatal(err)
	}
	v.Invalidate(a.WorkspaceID, "B")
	if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "B", ActorID: a.KeyID}); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("moved ciphertext: %v", err)
	}
	// Bump the version without resealing.
	bumped := recA
	bumped.Version++
	if err := store.UpdateSecret(ctx, storage.UpdateSecretArgs{Secret: bumped, ExpectedRevision: recA.Revision}); err != nil {
		t.Fatal(err)
	}
	v.Invalidate(a.WorkspaceID, "A")
	if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "A", ActorID: a.KeyID}); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("version bump: %v", err)
	}
	// The ciphertext copied into another workspace under the same name.
	nw, err := v.CreateWorkspace(ctx, a, "other")
	if err != nil {
		t.Fatal(err)
	}
	wsB := nw.Workspace
	copyRec := recA
	copyRec.WorkspaceID = wsB.ID
	if err := store.CreateSecret(ctx, storage.CreateSecretArgs{Secret: copyRec}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: wsB.ID, Name: "A", ActorID: "key_test"}); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("copied to another workspace: %v", err)
	}
}

func FuzzParseSealed(f *testing.F) {
	_, keys := testKeys(f, "kek_a")
	good, _ := sealValue(keys[0], binding{"w", "N", 1}, []byte("v"))
	f.Add(good)
	f.Add([]byte("RTRS\x01\x05kek_a\x00\x3c"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseSealed(b)
		if err != nil {
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("parse error not ErrDecrypt: %v", err)
			}
			return
		}
		// A parsed envelope re-marshals to the same bytes.
		if !bytes.Equal(p.marshal(), b) {
			t.Fatalf("marshal(parse(b)) != b")
		}
	})
}
