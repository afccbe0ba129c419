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
	"hash"
	"sync"
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
func (s *rowSigner) sign(e *storage.AuditEvent, kind byte) { s.signIn(e, kind, nil, nil, false) }

// signIn is sign with the nonce and MAC carved from ar (nil: allocated),
// hashed with ms (nil: a pooled state; the writer, one goroutine, keeps its
// own). canon says e's Input and Output are already in the MAC's sorted
// form (canonAccessJSON), so the MAC hashes them as they are.
func (s *rowSigner) signIn(e *storage.AuditEvent, kind byte, ar *rowArena, ms *macState, canon bool) {
	n := ar.room(rowNonceLen)
	n = append(n, kind)
	n = append(n, s.instance[:]...)
	n = binary.BigEndian.AppendUint64(n, s.counter.Add(1))
	e.Nonce = ar.keep(n)
	if ms == nil {
		ms = macScratch.Get().(*macState)
		defer macScratch.Put(ms)
	}
	e.MAC = ar.keep(ms.appendMAC(ar.room(sha256.Size), s.key, e, canon))
}

// rowMAC covers the nonce and what a store keeps of the row's content: the
// time in microseconds (PostgreSQL's precision), the strings, and Input and
// Output with sorted keys (a jsonb column reorders them).
func rowMAC(key []byte, e storage.AuditEvent) []byte { return appendRowMAC(nil, key, e) }

// appendRowMAC appends e's row MAC to dst.
func appendRowMAC(dst, key []byte, e storage.AuditEvent) []byte {
	sc := macScratch.Get().(*macState)
	defer macScratch.Put(sc)
	return sc.appendMAC(dst, key, &e, false)
}

// appendMAC appends e's row MAC to dst. canon: e.Input and e.Output are
// known to be their own sorted form (appendSortedJSON would return them
// unchanged), so they are hashed without being parsed again; the MAC is
// the same either way (FuzzCanonAccessJSON).
func (sc *macState) appendMAC(dst, key []byte, e *storage.AuditEvent, canon bool) []byte {
	if sc.h == nil || !bytes.Equal(sc.key, key) {
		sc.key = append(sc.key[:0], key...)
		sc.h = hmac.New(sha256.New, sc.key)
	}
	h := sc.h
	h.Reset()
	b := append(sc.buf[:0], "row\x00"...)
	b = appendField(b, e.Nonce)
	b = binary.BigEndian.AppendUint64(b, uint64(e.OccurredAt.UnixMicro()))
	b = appendField(b, e.WorkspaceID)
	b = appendField(b, e.ActorID)
	b = appendField(b, e.EventType)
	b = appendField(b, e.ResourceType)
	b = appendField(b, e.ResourceID)
	if canon {
		b = appendField(b, e.Input)
		b = appendField(b, e.Output)
	} else {
		for _, m := range [...]json.RawMessage{e.Input, e.Output} {
			n := len(b)
			b = append(b, 0, 0, 0, 0)
			b = appendSortedJSON(b, m)
			binary.BigEndian.PutUint32(b[n:], uint32(len(b)-n-4))
		}
	}
	h.Write(b)
	sc.buf = b
	return h.Sum(dst)
}

// appendField appends s with its length (u32, big endian).
func appendField[S ~string | ~[]byte](b []byte, s S) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// macState is a reusable HMAC and buffer: the writer MACs every access
// row, so rowMAC allocates only the MAC it returns.
type macState struct {
	key []byte
	h   hash.Hash
	buf []byte
}

var macScratch = sync.Pool{New: func() any { return &macState{} }}

// canonString reports whether json.Marshal writes s as is between quotes,
// and appendFlatSorted keeps it unchanged: printable ASCII without \\, ",
// <, > or &. jsonx writes such strings the same way.
func canonString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' || c == '"' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// appendSortedJSON appends sortedJSON(m), without decoding when m is a
// flat object of plain values (every access row): the fast path gives the
// same bytes (FuzzSortedJSON checks it).
func appendSortedJSON(dst []byte, m json.RawMessage) []byte {
	if out, ok := appendFlatSorted(dst, m); ok {
		return out
	}
	return append(dst, sortedJSON(m)...)
}

// appendFlatSorted handles {"k":v,...} with up to 16 keys, no duplicates,
// and keys and string values of printable ASCII that json.Marshal writes
// unchanged (no \\, ", <, >, &); values are such strings, numbers, true,
// false or null. ok is false for anything else.
func appendFlatSorted(dst []byte, m []byte) ([]byte, bool) {
	type kv struct{ k, v []byte }
	var pairs [16]kv
	n := 0
	i := 0
	ws := func() {
		for i < len(m) && (m[i] == ' ' || m[i] == '\t' || m[i] == '\n' || m[i] == '\r') {
			i++
		}
	}
	str := func() ([]byte, bool) { // at '"': the string with its quotes
		start := i
		for i++; i < len(m); i++ {
			c := m[i]
			switch {
			case c == '"':
				i++
				return m[start:i], true
			case c < 0x20 || c >= 0x7f || c == '\\' || c == '<' || c == '>' || c == '&':
				return nil, false
			}
		}
		return nil, false
	}
	ws()
	if i >= len(m) || m[i] != '{' {
		return dst, false
	}
	i++
	ws()
	if i < len(m) && m[i] == '}' {
		i++
	} else {
		for {
			if n == len(pairs) || i >= len(m) || m[i] != '"' {
				return dst, false
			}
			k, ok := str()
			if !ok {
				return dst, false
			}
			ws()
			if i >= len(m) || m[i] != ':' {
				return dst, false
			}
			i++
			ws()
			if i >= len(m) {
				return dst, false
			}
			var v []byte
			switch c := m[i]; {
			case c == '"':
				if v, ok = str(); !ok {
					return dst, false
				}
			case c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n':
				start := i
				for i < len(m) && (m[i] >= '0' && m[i] <= '9' || m[i] >= 'a' && m[i] <= 'z' || m[i] == '-' || m[i] == '+' || m[i] == '.' || m[i] == 'E') {
					i++
				}
				v = m[start:i]
				if !plainLiteral(v) {
					return dst, false
				}
			default:
				return dst, false
			}
			pairs[n] = kv{k, v}
			n++
			ws()
			if i < len(m) && m[i] == ',' {
				i++
				ws()
				continue
			}
			if i < len(m) && m[i] == '}' {
				i++
				break
			}
			return dst, false
		}
	}
	ws()
	if i != len(m) {
		return dst, false
	}
	// Insertion sort by key, as encoding/json sorts map keys.
	inner := func(k []byte) []byte { return k[1 : len(k)-1] }
	for a := 1; a < n; a++ {
		for b := a; b > 0 && bytes.Compare(inner(pairs[b-1].k), inner(pairs[b].k)) > 0; b-- {
			pairs[b-1], pairs[b] = pairs[b], pairs[b-1]
		}
	}
	dst = append(dst, '{')
	for a := range n {
		if a > 0 {
			if bytes.Equal(pairs[a-1].k, pairs[a].k) {
				return dst, false // duplicate keys: the decoder's rule decides
			}
			dst = append(dst, ',')
		}
		dst = append(dst, pairs[a].k...)
		dst = append(dst, ':')
		dst = append(dst, pairs[a].v...)
	}
	return append(dst, '}'), true
}

// plainLiteral: true, false, null, or a number json.Marshal writes back as
// is (an integer without leading zeros; anything else takes the slow path).
func plainLiteral(v []byte) bool {
	switch string(v) {
	case "true", "false", "null":
		return true
	}
	d := v
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 1 && d[0] == '0' {
		return false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
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

// rowCheck checks rows' MACs and nonces along one walk of a trail.
type rowCheck struct {
	key []byte
	// from: rows with a smaller id may lack a MAC (written before row MACs).
	from int64
	// order: check the nonce rules too (last access counter seen per
	// instance; tx nonces seen). Only verify does: a write the store
	// committed but reported failed is retried, and its rows are skipped
	// (RetryAppendAudit) unless past storage.AuditRetryWindow or written by
	// an older build: then copies; the sealer, the background check and
	// retention must not stop on that forever, and a copy's content is
	// genuine (its MAC).
	order  bool
	access map[[7]byte]uint64
	tx     map[[rowNonceLen]byte]struct{}
}

func newRowCheck(key []byte, from int64) *rowCheck {
	return &rowCheck{key: key, from: from}
}

// newVerifyRowCheck also checks that nonces do not repeat or go back.
func newVerifyRowCheck(key []byte, from int64) *rowCheck {
	return &rowCheck{key: key, from: from, order: true, access: map[[7]byte]uint64{}, tx: map[[rowNonceLen]byte]struct{}{}}
}

// check returns "" when e passes, else what is wrong with it.
func (c *rowCheck) check(e storage.AuditEvent) string {
	if len(e.MAC) == 0 && len(e.Nonce) == 0 {
		// Every row the nodes write from the boundary on is signed: the
		// vault's own, and queue, workflow and run rows (SignAudit).
		if e.ID < c.from {
			return ""
		}
		return fmt.Sprintf("the row has no MAC, but every row from row %d on must have one: it was added by someone without the master key", c.from)
	}
	if len(e.Nonce) != rowNonceLen || e.Nonce[0] != nonceAccess && e.Nonce[0] != nonceTx || !hmac.Equal(e.MAC, rowMAC(c.key, e)) {
		return "the row's MAC does not verify: it was added or edited by someone without the master key"
	}
	if !c.order {
		return ""
	}
	var inst [7]byte
	copy(inst[:], e.Nonce[1:8])
	ctr := binary.BigEndian.Uint64(e.Nonce[8:])
	switch e.Nonce[0] {
	case nonceAccess:
		if last, ok := c.access[inst]; ok && ctr <= last {
			return "the row is a copy of an earlier row, or rows were moved: its writer's numbering goes back (a replay by a database writer, or a write the store committed but reported failed, retried)"
		}
		c.access[inst] = ctr
	case nonceTx:
		k := [rowNonceLen]byte(e.Nonce)
		if _, ok := c.tx[k]; ok {
			return "the row is a copy of an earlier row: its nonce repeats (a replay by a database writer, or a write the store committed but reported failed, retried)"
		}
		c.tx[k] = struct{}{}
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
