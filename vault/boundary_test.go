package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The tests in this file pin the exact-at-limit inputs that mutation testing
// (issue 13) found unpinned: each limit is tried at, just under and just over
// its value, so a "<" turned into "<=" (or the reverse) fails a test.

func TestAllowedHostsCountLimit(t *testing.T) {
	hosts := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("h%d.example.com", i)
		}
		return out
	}
	got, err := NormalizeAllowedHosts(hosts(MaxAllowedHosts))
	if err != nil || len(got) != MaxAllowedHosts {
		t.Fatalf("%d entries: %d kept, err %v", MaxAllowedHosts, len(got), err)
	}
	if _, err := NormalizeAllowedHosts(hosts(MaxAllowedHosts + 1)); !errors.Is(err, ErrInvalidHost) {
		t.Fatalf("%d entries: err %v, want ErrInvalidHost", MaxAllowedHosts+1, err)
	}
}

// hostOfLen returns a valid host name of exactly n characters (n >= 1).
func hostOfLen(n int) string {
	var b strings.Builder
	for c := byte('a'); n > 63; c++ {
		l := min(62, n-2)
		b.WriteString(strings.Repeat(string(c), l) + ".")
		n -= l + 1
	}
	b.WriteString(strings.Repeat("z", n))
	return b.String()
}

func TestHostNameLengthLimits(t *testing.T) {
	for _, tc := range []struct {
		entry string
		ok    bool
	}{
		{hostOfLen(253), true},
		{hostOfLen(254), false},
		{"*." + hostOfLen(253), true}, // the limit is on the name after "*."
		{"*." + hostOfLen(254), false},
		{hostOfLen(253) + ".", true}, // a trailing dot is not counted
		{strings.Repeat("a", 63) + ".com", true},
		{strings.Repeat("a", 64) + ".com", false},
		{"a.com", true},
		{"a..com", false},
		{"a-b.com", true},
		{"-a.com", false},
		{"a-.com", false},
		{"a_b.z09.com", true},
		{"*.com", false}, // a wildcard needs two labels after it
		{"x.com:1", true},
		{"x.com:0", false},
		{"x.com:65535", true},
		{"x.com:65536", false},
		{"x.com:080", false},
	} {
		_, err := NormalizeAllowedHosts([]string{tc.entry})
		if (err == nil) != tc.ok {
			t.Errorf("%.40q (%d chars): err %v, want ok=%v", tc.entry, len(tc.entry), err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidHost) {
			t.Errorf("%.40q: err %v not ErrInvalidHost", tc.entry, err)
		}
	}
	// Every character class of a label, at its edges.
	for c := 0; c < 256; c++ {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		entry := "x" + string(rune(c)) + "y.example.com"
		if c >= 0x80 {
			entry = "x" + string([]byte{byte(c)}) + "y.example.com"
		}
		if c == '.' || c == ':' || c == '*' || c == '/' || c == '[' || c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' {
			continue // separators and trimmed space have their own meaning
		}
		if _, err := NormalizeAllowedHosts([]string{entry}); (err == nil) != ok {
			t.Errorf("label with %q: err %v, want ok=%v", rune(c), err, ok)
		}
	}
}

func TestHostOfLen(t *testing.T) {
	for n := 1; n <= 300; n++ {
		h := hostOfLen(n)
		if len(h) != n || strings.Contains(h, "..") || h[0] == '.' || h[len(h)-1] == '.' {
			t.Fatalf("hostOfLen(%d) = %q (%d)", n, h, len(h))
		}
	}
}

// envelope builds a format-1 envelope from raw parts, without checks.
func envelope(kekID string, wrapped, body []byte) []byte {
	b := append([]byte(sealMagic), sealFormatV1, byte(len(kekID)))
	b = append(b, kekID...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(wrapped)))
	b = append(b, wrapped...)
	return append(b, body...)
}

func TestParseSealedBoundaries(t *testing.T) {
	wrapped := bytes.Repeat([]byte{1}, wrappedLen)
	body := bytes.Repeat([]byte{2}, nonceSize+tagSize)
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"minimal", envelope("k", wrapped, body), true},
		{"key id 64", envelope(strings.Repeat("k", maxKEKIDLen), wrapped, body), true},
		{"key id 65", envelope(strings.Repeat("k", maxKEKIDLen+1), wrapped, body), false},
		{"key id empty", envelope("", wrapped, body), false},
		{"key id '!'", envelope("!", wrapped, body), true},
		{"key id '~'", envelope("~", wrapped, body), true},
		{"key id space", envelope(" ", wrapped, body), false},
		{"key id DEL", envelope("\x7f", wrapped, body), false},
		{"key id bad last", envelope("ab\x00", wrapped, body), false},
		{"wrapped short", envelope("k", wrapped[1:], body), false},
		{"wrapped long", envelope("k", append(bytes.Clone(wrapped), 0), body), false},
		{"body short", envelope("k", wrapped, body[1:]), false},
		{"body long", envelope("k", wrapped, append(bytes.Clone(body), 0)), true},
		{"wrapped cut", envelope("k", wrapped, nil)[:6+1+2+wrappedLen-1], false},
		{"header only", envelope("k", nil, nil)[:6+1+2], false},
		{"header cut", envelope("k", nil, nil)[:6+1+1], false},
		{"fixed header", []byte(sealMagic + "\x01\x01\x00\x00"), false},
		{"fixed header short", []byte(sealMagic + "\x01\x01\x00"), false},
		{"bad magic", append([]byte("RTRX"), envelope("k", wrapped, body)[4:]...), false},
		{"bad format", append([]byte("RTRS\x02"), envelope("k", wrapped, body)[5:]...), false},
		{"empty", nil, false},
	} {
		p, err := parseSealed(tc.b)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrDecrypt) {
				t.Errorf("%s: err %v not ErrDecrypt", tc.name, err)
			}
			if p.kekID != "" || p.wrapped != nil || p.body != nil {
				t.Errorf("%s: a refused envelope returned parts", tc.name)
			}
			continue
		}
		if !bytes.Equal(p.marshal(), tc.b) || len(p.wrapped) != wrappedLen {
			t.Errorf("%s: parts do not rebuild the envelope", tc.name)
		}
	}
}

// TestSealEmptyValue: an empty value seals to a body of exactly nonce+tag,
// the shortest body parseSealed and gcmOpen accept.
func TestSealEmptyValue(t *testing.T) {
	lookup, keys := testKeys(t, "kek_a")
	bd := binding{"ws_1", "EMPTY", 1}
	sealed, err := sealValue(keys[0], bd, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseSealed(sealed)
	if err != nil || len(p.body) != nonceSize+tagSize {
		t.Fatalf("parse: %v, body %d bytes", err, len(p.body))
	}
	got, err := openValue(lookup, bd, sealed)
	if err != nil || len(got.Bytes()) != 0 {
		t.Fatalf("open: %d bytes, %v", len(got.Bytes()), err)
	}
	// Anything shorter than nonce+tag is refused without a panic.
	for n := range nonceSize + tagSize {
		if _, err := gcmOpen(keys[0].aead, make([]byte, n), nil); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("gcmOpen of %d bytes: %v", n, err)
		}
	}
}
