package vault_test

import (
	"strings"
	"testing"

	"rotor.sh/rotor/vault"
)

// A wildcard matches by suffix on a label boundary, never by substring: a
// host that merely contains the pattern's domain (an attacker's own domain
// with the victim's as a prefix) is refused.
func TestWildcardIsSuffixNotContains(t *testing.T) {
	patterns, err := vault.NormalizeAllowedHosts([]string{"*.example.org", "api.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{
		"api.example.org.evil.com", "example.org.evil.com", "x.example.orgevil.com",
		"evil.com.example.org.", // allowed: it does end with .example.org
		"api.example.com.evil.com", "evilapi.example.com", "apiexample.com",
	} {
		want := strings.HasSuffix(strings.TrimSuffix(h, "."), ".example.org")
		if got := vault.HostAllowed(patterns, h); got != want {
			t.Errorf("HostAllowed(%v, %q) = %v, want %v", patterns, h, got, want)
		}
	}
}

// hostMatchAllowed is the property, written independently of the matcher:
// after the matcher's own normalization (case, one trailing dot, IPv6
// brackets), an exact pattern equals the host, and "*.d" matches only a
// host that ends with ".d" and has at least one more label.
func hostMatchAllowed(pattern, host string) bool {
	h := strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if d, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(h, "."+d) && len(h) > len(d)+1
	}
	return strings.Trim(pattern, "[]") == h
}

// FuzzHostAllowed: a pattern never matches a host that does not end with it
// on a label boundary (or equal it, for an exact pattern).
func FuzzHostAllowed(f *testing.F) {
	for _, s := range [][2]string{
		{"*.example.org", "api.example.org.evil.com"}, {"*.example.org", "evilexample.org"},
		{"*.example.org", "a.b.example.org"}, {"*.example.org", "example.org"}, {"*.example.org", ".example.org"},
		{"*.example.org", "A.EXAMPLE.ORG."}, {"api.example.com", "api.example.com.evil.com"},
		{"api.example.com", "xapi.example.com"}, {"::1", "[::1]"}, {"10.0.0.7", "10.0.0.70"},
		{"*.example.org", "x.example.org.."}, {"*.x.co", "[a.x.co]"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		ps, err := vault.NormalizeAllowedHosts([]string{pattern})
		if err != nil {
			return // only valid patterns are ever stored
		}
		got := vault.HostAllowed(ps, host)
		if want := hostMatchAllowed(ps[0], host); got && !want {
			t.Fatalf("pattern %q matches host %q, which does not end with it on a label boundary", ps[0], host)
		} else if want && !got {
			t.Fatalf("pattern %q refuses host %q, which it covers", ps[0], host)
		}
	})
}

// The same property over generated hosts: every way of putting the
// pattern's domain inside a host (before, after, glued to a label, with a
// dot), so the check does not depend on the fuzzer's luck.
func TestHostAllowedProperty(t *testing.T) {
	patterns := []string{"*.example.org", "*.a.b.example.org", "api.example.com", "10.0.0.7", "::1", "*.x_y.co"}
	parts := []string{"", ".", "x", "x.", ".x", "evil.com", "-", "EXAMPLE.ORG", "example.org", "org"}
	n := 0
	for _, raw := range patterns {
		ps, err := vault.NormalizeAllowedHosts([]string{raw})
		if err != nil {
			t.Fatal(err)
		}
		core := strings.TrimPrefix(ps[0], "*.")
		for _, a := range parts {
			for _, b := range parts {
				for _, sep := range []string{"", "."} {
					host := a + sep + core + b
					n++
					if got, want := vault.HostAllowed(ps, host), hostMatchAllowed(ps[0], host); got != want {
						t.Errorf("HostAllowed(%q, %q) = %v, property says %v", ps[0], host, got, want)
					}
				}
			}
		}
	}
	if n < 1000 {
		t.Fatalf("only %d hosts generated", n)
	}
}
