package vault

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// Redacted is what a Plaintext prints as, in every form.
const Redacted = "[REDACTED]"

// Plaintext holds a secret value. It redacts itself in fmt (every verb), slog,
// JSON and text encoding, so a value that reaches a log line or a response by
// mistake shows as [REDACTED]. Only Bytes and String-free accessors reveal it,
// and they are called where the value is placed into an outgoing request.
type Plaintext struct {
	b []byte
}

// NewPlaintext copies b into a Plaintext.
func NewPlaintext(b []byte) Plaintext { return Plaintext{b: append([]byte(nil), b...)} }

// PlaintextString makes a Plaintext from s.
func PlaintextString(s string) Plaintext { return Plaintext{b: []byte(s)} }

// Bytes reveals the value. The caller must not modify or retain it beyond the
// request it is placed into.
func (p Plaintext) Bytes() []byte { return p.b }

// Len is the value's length in bytes.
func (p Plaintext) Len() int { return len(p.b) }

// Equal compares two values in constant time.
func (p Plaintext) Equal(o Plaintext) bool { return subtle.ConstantTimeCompare(p.b, o.b) == 1 }

func (Plaintext) String() string               { return Redacted }
func (Plaintext) GoString() string             { return "vault.Plaintext{" + Redacted + "}" }
func (Plaintext) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(Redacted)) }
func (Plaintext) LogValue() slog.Value         { return slog.StringValue(Redacted) }
func (Plaintext) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }
func (Plaintext) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// zero overwrites a byte slice; best effort, since Go may have copied it.
func zero(b []byte) { clear(b) }
