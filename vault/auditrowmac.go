package vault

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"

	"rotor.sh/rotor/storage"
)

// Row MACs (issue 11, docs/security.md "Audit row MACs"). The chain is
// unkeyed, so a database writer can append a row with a correct chain value
// and the sealer would seal it. Each row the vault writes therefore carries
// a nonce and HMAC-SHA256(row key, nonce || content) made here, on the host
// that holds the master key (the key is derived from it and never stored
// or sent to the storage plugin). The MAC does not cover the id (the store
// assigns it after the MAC is made); the nonce binds the row instead:
//
//	nonce = kind (1 byte) || instance (7 random bytes per Vault) || counter (8 bytes)
//
// Access rows (kind 'a') are numbered by the writer goroutine and written in
// that order, so along the trail each instance's counters strictly increase:
// a copied (replayed) or moved access row breaks that. Rows written with a
// change (kind 't') commit in any order; their nonces must be unique.

const (
	auditRowKeyInfo = "rotor audit row v1"
	nonceAccess     = 'a'
	nonceTx         = 't'
	rowNonceLen     = 16
)

func deriveAuditRowKey(master []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, master, nil, auditRowKeyInfo, 32)
}

// rowSigner makes row nonces and MACs. Safe for concurrent use.
type rowSigner struct {
	key      []byte
	instance [7]byte
	counter  atomic.Uint64
}

func newRowSigner(key []byte) *rowSigner {
	s := &rowSigner{key: key}
	_, _ = rand.Read(s.instance[:]) // crypto/rand never fails (Go 1.24+)
	return s
}

// sign sets e's nonce and MAC.
func (s *rowSigner) sign(e *storage.AuditEvent, kind byte) {
	n := make([]byte, rowNonceLen)
	n[0] = kind
	copy(n[1:8], s.instance[:])
	binary.BigEndian.PutUint64(n[8:], s.counter.Add(1))
	e.Nonce = n
	e.MAC = rowMAC(s.key, *e)
}

// rowMAC covers the nonce and what a store keeps of the row's content: the
// time in microseconds (PostgreSQL's precision), the strings, and Input and
// Output with sorted keys (a jsonb column reorders them).
func rowMAC(key []byte, e storage.AuditEvent) []byte {
	b := make([]byte, 0, 256)
	put := func(s []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = append(b, "row\x00"...)
	put(e.Nonce)
	b = binary.BigEndian.AppendUint64(b, uint64(e.OccurredAt.UnixMicro()))
	for _, s := range []string{e.WorkspaceID, e.ActorID, e.EventType, e.ResourceType, e.ResourceID} {
		put([]byte(s))
	}
	put(sortedJSON(e.Input))
	put(sortedJSON(e.Output))
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(nil)
}

// sortedJSON re-encodes JSON with object keys sorted and numbers as
// written; invalid JSON is used as is (and then fails the MAC if a store
// changed it).
func sortedJSON(m json.RawMessage) []byte {
	if len(m) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(m))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return m
	}
	out, err := json.Marshal(v)
	if err != nil {
		return m
	}
	return out
}

// vaultRowTypes are the event types only the vault writes: from the
// boundary on, such a row without a MAC is a forgery. Rows of other types
// (jobs, queues, workflows) are written by services that may run without
// the master key; they are checked when they carry a MAC.
func vaultRowType(t string) bool {
	for _, p := range []string{"secret.", "api_key.", "workspace.", "keyring."} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

// rowCheck checks rows' MACs and nonces along one walk of a trail.
type rowCheck struct {
	key []byte
	// from: rows with a smaller id may lack a MAC (written before row MACs).
	from int64
	// last access counter seen per instance; tx nonces seen.
	access map[[7]byte]uint64
	tx     map[[rowNonceLen]byte]struct{}
}

func newRowCheck(key []byte, from int64) *rowCheck {
	return &rowCheck{key: key, from: from, access: map[[7]byte]uint64{}, tx: map[[rowNonceLen]byte]struct{}{}}
}

// check returns "" when e passes, else what is wrong with it.
func (c *rowCheck) check(e storage.AuditEvent) string {
	if len(e.MAC) == 0 && len(e.Nonce) == 0 {
		if e.ID < c.from || !vaultRowType(e.EventType) {
			return ""
		}
		return fmt.Sprintf("the row has no MAC, but every row from row %d on must have one: it was added by someone without the master key", c.from)
	}
	if len(e.Nonce) != rowNonceLen || !hmac.Equal(e.MAC, rowMAC(c.key, e)) {
		return "the row's MAC does not verify: it was added or edited by someone without the master key"
	}
	var inst [7]byte
	copy(inst[:], e.Nonce[1:8])
	ctr := binary.BigEndian.Uint64(e.Nonce[8:])
	switch e.Nonce[0] {
	case nonceAccess:
		if last, ok := c.access[inst]; ok && ctr <= last {
			return "the row is a copy of an earlier row, or rows were moved: its writer's numbering goes back"
		}
		c.access[inst] = ctr
	case nonceTx:
		k := [rowNonceLen]byte(e.Nonce)
		if _, ok := c.tx[k]; ok {
			return "the row is a copy of an earlier row (its nonce repeats)"
		}
		c.tx[k] = struct{}{}
	default:
		return "the row's nonce is malformed"
	}
	return ""
}

// rowMACFrom is the boundary a seal records (see storage.AuditCheckpoint):
// a seal made before row MACs (0) covers rows without one up to its row.
func rowMACFrom(c storage.AuditCheckpoint, found bool) int64 {
	switch {
	case !found:
		return 1
	case c.RowMACFrom != 0:
		return c.RowMACFrom
	}
	return c.LastID + 1
}
