package vault

import (
	"errors"
	"strings"
	"testing"
)

// TestAllowedHostsSchemePort: entries with a scheme and a port, and the
// rule that an entry without a port means the default ports only. A secret
// bound to allowed.test was once sent to allowed.test:9002.
func TestAllowedHostsSchemePort(t *testing.T) {
	got, err := NormalizeAllowedHosts([]string{"HTTPS://API.example.com", "api.example.com:8443", "http://[::1]:8080", "[::1]", "*.example.org:9443", "https://10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	want := "https://api.example.com,api.example.com:8443,http://[::1]:8080,::1,*.example.org:9443,https://10.0.0.7"
	if strings.Join(got, ",") != want {
		t.Fatalf("normalized = %v\nwant %s", got, want)
	}
	for _, c := range []struct {
		patterns []string
		d        Destination
		ok       bool
	}{
		{[]string{"allowed.test"}, Destination{"http", "allowed.test", 9002}, false}, // the case
		{[]string{"allowed.test"}, Destination{"http", "allowed.test", 0}, true},
		{[]string{"allowed.test"}, Destination{"http", "allowed.test", 80}, true},
		{[]string{"allowed.test"}, Destination{"https", "allowed.test", 443}, true},
		{[]string{"allowed.test"}, Destination{"http", "allowed.test", 443}, false}, // not http's default
		{[]string{"allowed.test"}, Destination{"", "allowed.test", 0}, true},
		{[]string{"allowed.test"}, Destination{"", "allowed.test", 8080}, false},
		{[]string{"allowed.test:9002"}, Destination{"http", "allowed.test", 9002}, true},
		{[]string{"allowed.test:9002"}, Destination{"https", "allowed.test", 9002}, true},
		{[]string{"allowed.test:9002"}, Destination{"http", "allowed.test", 0}, false},
		{[]string{"allowed.test:443"}, Destination{"https", "allowed.test", 0}, true},
		{[]string{"https://allowed.test"}, Destination{"https", "allowed.test", 0}, true},
		{[]string{"https://allowed.test"}, Destination{"http", "allowed.test", 0}, false},
		{[]string{"https://allowed.test"}, Destination{"https", "allowed.test", 8443}, false},
		{[]string{"https://allowed.test:8443"}, Destination{"https", "allowed.test", 8443}, true},
		{[]string{"https://allowed.test:8443"}, Destination{"http", "allowed.test", 8443}, false},
		{[]string{"*.example.org:9443"}, Destination{"https", "a.example.org", 9443}, true},
		{[]string{"*.example.org:9443"}, Destination{"https", "a.example.org", 443}, false},
		{[]string{"http://[::1]:8080"}, Destination{"http", "::1", 8080}, true},
		{[]string{"http://[::1]:8080"}, Destination{"http", "[::1]", 8080}, true},
		{[]string{"[::1]"}, Destination{"https", "::1", 0}, true},
		{[]string{"[::1]"}, Destination{"https", "::1", 8443}, false},
		{[]string{"*.bad:tag"}, Destination{"https", "x.bad", 0}, false}, // an unparsable stored entry matches nothing
		{[]string{"allowed.test"}, Destination{"HTTP", "Allowed.TEST.", 80}, true},
	} {
		if got := DestinationAllowed(c.patterns, c.d); got != c.ok {
			t.Errorf("DestinationAllowed(%v, %+v) = %v, want %v", c.patterns, c.d, got, c.ok)
		}
		// Resolve's check, on the entries parsed when the secret was cached.
		e := cacheEntry{allowedHosts: c.patterns, hosts: parseHostEntries(c.patterns)}
		if got := deny(e, ResolveRequest{Scheme: c.d.Scheme, Host: c.d.Host, Port: c.d.Port}) == ""; got != c.ok {
			t.Errorf("deny(%v, %+v) allows = %v, want %v", c.patterns, c.d, got, c.ok)
		}
	}
	_, err = NormalizeAllowedHosts([]string{"ok.test", "ftp://x.test"})
	if !errors.Is(err, ErrInvalidHost) || !strings.Contains(err.Error(), "allowed_hosts[1]") {
		t.Fatalf("error %v, want ErrInvalidHost naming allowed_hosts[1]", err)
	}
}

func FuzzNormalizeAllowedHosts(f *testing.F) {
	for _, s := range []string{"a.b", "*.a.b:1", "https://[::1]:443", "[::1", "http://a:99999", "::ffff:1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeAllowedHosts([]string{s})
		if err != nil {
			return
		}
		// Normalized entries are fixed points and always parse again.
		again, err := NormalizeAllowedHosts(got)
		if err != nil || again[0] != got[0] {
			t.Fatalf("%q normalized to %q, then %q (%v)", s, got[0], again, err)
		}
	})
}
