package dispatch

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDetailBounds: what an attempt stores is bounded, valid UTF-8 and
// free of NULs (PostgreSQL's jsonb refuses \u0000), and credentials are
// redacted wherever they appear.
func TestDetailBounds(t *testing.T) {
	if got := excerpt([]byte("a\x00b"), false); got != "(binary body)" {
		t.Fatalf("NUL body: %q", got)
	}
	if got := excerpt([]byte{0xff, 0xfe, 'a'}, false); got != "(binary body)" {
		t.Fatalf("binary body: %q", got)
	}
	// A cut inside a rune keeps the whole runes before it.
	if got := excerpt([]byte("ab\xc3"), true); got != "ab…" {
		t.Fatalf("cut rune: %q", got)
	}
	if got := clip("x\x00y", 10); got != "xy" {
		t.Fatalf("clip NUL: %q", got)
	}
	if got := clip(strings.Repeat("é", 200), 201); !strings.HasSuffix(got, "…") || len(got) > 204 {
		t.Fatalf("clip: %d bytes", len(got))
	}
	h := http.Header{}
	for i := range 40 {
		h.Set("X-H"+strings.Repeat("a", i), "v")
	}
	h.Set("X-Token", "Bearer abc.def-ghi")
	got := responseHeaders(h)
	if len(got) != maxDetailHeader {
		t.Fatalf("%d headers kept", len(got))
	}
	for in, want := range map[string]string{
		"auth=Bearer tok_123456 rest":                        "auth=Bearer [redacted] rest",
		`{"authorization":"Basic dXNlcjpwdw=="}`:             `{"authorization":"Basic [redacted]"}`,
		"cb rcs_AbC-123_x and whsec_QUJD+/= and rtr_abc_def": "cb rcs_[redacted] and whsec_[redacted] and rtr_[redacted]",
		"no credentials here":                                "no credentials here",
	} {
		if got := redactCredentials(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzExcerpt: whatever a callback answers, the stored excerpt is valid
// UTF-8 without NULs, bounded, and holds no callback secret.
func FuzzExcerpt(f *testing.F) {
	f.Add([]byte("Authorization: Bearer rcs_abcdef"), true)
	f.Add([]byte("\xff\x00"), false)
	f.Fuzz(func(t *testing.T, b []byte, cut bool) {
		if len(b) > maxExcerptBytes {
			b, cut = b[:maxExcerptBytes], true
		}
		got := excerpt(b, cut)
		if !utf8.ValidString(got) || strings.ContainsRune(got, 0) || len(got) > maxExcerptBytes*2+8 {
			t.Fatalf("excerpt(%q) = %q", b, got)
		}
		if i := strings.Index(got, "rcs_"); i >= 0 && !strings.HasPrefix(got[i:], "rcs_[redacted]") && i+4 < len(got) && isTokenByte(got[i+4]) {
			t.Fatalf("callback secret kept: %q", got)
		}
	})
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+/=_.-", c) >= 0
}

// redactSlow is redactCredentials without its prefilter: the regexp alone.
func redactSlow(s string) string {
	saved := mayHoldCredentialHook
	mayHoldCredentialHook = func(string) bool { return true }
	defer func() { mayHoldCredentialHook = saved }()
	return redactCredentials(s)
}

// TestRedactPrefilter: the prefilter never lets a credential through that
// the regexp alone would redact, in any case and with Unicode folding.
func TestRedactPrefilter(t *testing.T) {
	for _, s := range []string{"", "ok", "application/json", "Bearer abc", "BEARER abc", "basic Zm9v", "x rcs_abc y", "WHSEC_abc", "Rtr_x", "bearer", "baſic Zm9v",
		"rcſ_abc", "text bearerabc", "a,basic  xyz;", "\"Bearer tok\"", "nginx/1.25"} {
		if got, want := redactCredentials(s), redactSlow(s); got != want {
			t.Errorf("%q: %q, the regexp alone gives %q", s, got, want)
		}
	}
}

func FuzzRedactPrefilter(f *testing.F) {
	for _, s := range []string{"Bearer abc", "rcs_x", "whsec_y", "rtr_z", "basic q", "plain text", "baſic x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := redactCredentials(s), redactSlow(s); got != want {
			t.Fatalf("%q: %q, the regexp alone gives %q", s, got, want)
		}
	})
}
