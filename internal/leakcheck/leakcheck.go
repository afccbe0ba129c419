// Package leakcheck finds a secret value in places it must never reach: raw
// files, logs, response bodies, metrics, audit rows. Tests plant a random
// canary value and scan everything Rotor wrote with Scan.
package leakcheck

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Forms returns the encodings of value a leak could take: raw, base64 (std
// and URL alphabets, padded or not, at every 3-byte alignment so the value
// is found inside a longer encoded string too), hex (both cases) and URL
// encodings (query and path).
func Forms(value string) map[string]string {
	f := map[string]string{
		"raw":         value,
		"hex":         hex.EncodeToString([]byte(value)),
		"HEX":         strings.ToUpper(hex.EncodeToString([]byte(value))),
		"query-esc":   url.QueryEscape(value),
		"path-esc":    url.PathEscape(value),
		"json-escape": strings.ReplaceAll(value, "/", `\/`),
	}
	for pad := range 3 {
		prefixed := []byte(strings.Repeat("\x00", pad) + value)
		for name, enc := range map[string]*base64.Encoding{"b64": base64.StdEncoding, "b64url": base64.URLEncoding} {
			s := enc.EncodeToString(prefixed)
			// Drop the characters touched by the prefix and by the padding:
			// what remains appears in any encoding that contains the value
			// at this alignment.
			skip := (pad*8 + 5) / 6
			end := len(strings.TrimRight(s, "=")) - 3
			if end > skip+8 {
				f[name+"-align"+string(rune('0'+pad))] = s[skip:end]
			}
		}
	}
	return f
}

// Scan fails t if any form of value appears in any of the named blobs.
func Scan(t testing.TB, value string, blobs map[string][]byte) {
	t.Helper()
	if len(value) < 16 {
		t.Fatalf("leakcheck: canary %d bytes is too short to scan for reliably", len(value))
	}
	for where, blob := range blobs {
		s := string(blob)
		for form, needle := range Forms(value) {
			if strings.Contains(s, needle) {
				t.Errorf("secret value leaked (%s form) into %s", form, where)
			}
		}
	}
}

// Buffer is a concurrency-safe bytes.Buffer for capturing logs and process
// output while a server runs, to scan afterwards.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
