package vault

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxAllowedHosts bounds the allowed_hosts list of one secret.
const MaxAllowedHosts = 64

// NormalizeAllowedHosts validates an allowed_hosts list and returns it
// lower-cased, de-duplicated, in the given order. Entries are host names
// ("api.example.com"), IP literals ("10.0.0.7", "::1"), or one leading
// wildcard label ("*.example.com", which matches sub-domains at any depth but
// not example.com itself). Ports and schemes are not part of an entry.
func NormalizeAllowedHosts(hosts []string) ([]string, error) {
	if len(hosts) > MaxAllowedHosts {
		return nil, fmt.Errorf("%w: %d entries, at most %d", ErrInvalidHost, len(hosts), MaxAllowedHosts)
	}
	out := make([]string, 0, len(hosts))
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
		if err := validHostPattern(n); err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrInvalidHost, truncate(h, 80), err)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

func validHostPattern(h string) error {
	if h == "" {
		return fmt.Errorf("empty")
	}
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return nil
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
		if !strings.Contains(name, ".") {
			return fmt.Errorf("a wildcard needs at least two labels after it (*.example.com)")
		}
	}
	if len(name) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("labels must be 1 to 63 characters")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Errorf("only letters, digits, '-' and '_' may appear in a label, and '*' only as the whole first label")
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("a label cannot start or end with '-'")
		}
	}
	return nil
}

// HostAllowed reports whether host (a request's destination, without port)
// is allowed by the patterns. An empty pattern list allows every host.
func HostAllowed(patterns []string, host string) bool {
	if len(patterns) == 0 {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	for _, p := range patterns {
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
			continue
		}
		if strings.Trim(p, "[]") == host {
			return true
		}
	}
	return false
}
