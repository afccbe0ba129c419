package vault

import "testing"

// TestAttackAllowedHostUnicodeCase: a destination whose host only lower-cases
// (strings.ToLower) to an allowed entry is another host: U+212A KELVIN SIGN
// becomes "k", so "hoo\u212As.example.com" matched "hooks.example.com" and a
// secret bound to it was resolved for a name that DNS, /etc/hosts or a
// certificate treat as different. Only ASCII letters fold.
func TestAttackAllowedHostUnicodeCase(t *testing.T) {
	for _, c := range []struct {
		patterns []string
		host     string
		ok       bool
	}{
		{[]string{"hooks.example.com"}, "HOOKS.Example.COM", true},
		{[]string{"hooks.example.com"}, "hooks.example.com.", true},
		{[]string{"hooks.example.com"}, "hoo\u212As.example.com", false},
		{[]string{"*.hooks.example.com"}, "a.hoo\u212As.example.com", false},
		{[]string{"*.example.com"}, "a.exampl\u0130.com", false},
		{[]string{"hooks.example.com"}, "hoo\u212aS.EXAMPLE.COM", false},
	} {
		for _, scheme := range []string{"", "https"} {
			if got := DestinationAllowed(c.patterns, Destination{Scheme: scheme, Host: c.host}); got != c.ok {
				t.Errorf("DestinationAllowed(%q, %q over %q) = %v, want %v", c.patterns, c.host, scheme, got, c.ok)
			}
		}
	}
}

// TestAttackAllowedHostEntryUnicodeCase: an entry that only lower-cases to
// an ASCII name is refused (422), not silently stored as that other name.
func TestAttackAllowedHostEntryUnicodeCase(t *testing.T) {
	for _, h := range []string{"hoo\u212As.example.com", "https://hoo\u212As.example.com", "*.\u212Aey.example.com"} {
		if got, err := NormalizeAllowedHosts([]string{h}); err == nil {
			t.Errorf("NormalizeAllowedHosts(%q) = %q, want an error", h, got)
		}
	}
	if got, err := NormalizeAllowedHosts([]string{"HOOKS.Example.COM"}); err != nil || len(got) != 1 || got[0] != "hooks.example.com" {
		t.Fatalf("ASCII upper case: %q, %v", got, err)
	}
}
