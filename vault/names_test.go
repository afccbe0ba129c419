package vault

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	good := []string{"A", "NOTIFY_TOKEN", "STRIPE_KEY_2", "X9", strings.Repeat("A", MaxNameLen)}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	bad := []string{"", "a", "notify_token", "_A", "9A", "A-B", "A B", "A.B", "Ä", "A\x00", strings.Repeat("A", MaxNameLen+1), "${{ secrets.A }}"}
	for _, n := range bad {
		if err := ValidateName(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", n, err)
		}
	}
}

func TestHint(t *testing.T) {
	cases := map[string]string{
		"your-token-here":            "your-t...", // the product guide's example
		"a":                          "...",
		"ab":                         "...",
		"abc":                        "a...",
		"abcde":                      "ab...",
		"abcdefghijklmnopqrstuvwxyz": "abcdefgh...",
		"ключ-доступа":               "ключ...", // counted in runes, never splits one
		"🔑🔑🔑🔑🔑":                      "🔑🔑...",
	}
	for in, want := range cases {
		if got := Hint(PlaintextString(in)); got != want {
			t.Errorf("Hint(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAllowedHosts(t *testing.T) {
	got, err := NormalizeAllowedHosts([]string{"API.Example.com", "*.example.org", "api.example.com", "10.0.0.7", "::1", "example.net."})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"api.example.com", "*.example.org", "10.0.0.7", "::1", "example.net"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("normalized = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "*", "*.com", "a*.example.com", "ftp://x.com", "x.com:0", "x.com:65536", "x.com:", "https://x.com/path", "[x.com]:80", "exa mple.com", "-x.com", "x..com", "*.*.x.com", strings.Repeat("a", 64) + ".com"} {
		if _, err := NormalizeAllowedHosts([]string{bad}); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("NormalizeAllowedHosts(%q) = %v, want ErrInvalidHost", bad, err)
		}
	}
	if _, err := NormalizeAllowedHosts(make([]string, MaxAllowedHosts+1)); !errors.Is(err, ErrInvalidHost) {
		t.Error("too many hosts accepted")
	}
	match := []struct {
		host string
		ok   bool
	}{
		{"api.example.com", true}, {"API.EXAMPLE.COM.", true}, {"a.b.example.org", true}, {"example.org", false},
		{"evilexample.org", false}, {"10.0.0.7", true}, {"[::1]", true}, {"other.com", false}, {"", false},
	}
	for _, m := range match {
		if got := HostAllowed(want, m.host); got != m.ok {
			t.Errorf("HostAllowed(%q) = %v, want %v", m.host, got, m.ok)
		}
	}
	if !HostAllowed(nil, "anything.com") {
		t.Error("no patterns must allow every host")
	}
}
