package vault

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxAllowedHosts bounds the allowed_hosts list of one secret.
const MaxAllowedHosts = 64

// Default ports: an allowed_hosts entry without a port means these only.
const (
	DefaultHTTPPort  = 80
	DefaultHTTPSPort = 443
)

// NormalizeAllowedHosts validates an allowed_hosts list and returns it
// lower-cased, de-duplicated, in the given order. An entry is
//
//	host            api.example.com, 10.0.0.7, ::1, [::1]
//	*.host          sub-domains at any depth, not the domain itself
//	host:port       api.example.com:8443, [::1]:8443
//	scheme://host   https://api.example.com (http or https)
//	scheme://host:port
//
// An entry without a port matches the default port of the request's
// scheme only (80 for http, 443 for https); one without a scheme matches
// either scheme. Entries stored before ports existed are bare hosts and
// keep exactly this meaning: nothing is rewritten.
func NormalizeAllowedHosts(hosts []string) ([]string, error) {
	if len(hosts) > MaxAllowedHosts {
		return nil, fmt.Errorf("%w: allowed_hosts has %d entries, at most %d", ErrInvalidHost, len(hosts), MaxAllowedHosts)
	}
	out := make([]string, 0, len(hosts))
	seen := make(map[string]bool, len(hosts))
	for i, h := range hosts {
		e, err := parseHostEntry(lowerASCII(strings.TrimSpace(h)))
		if err != nil {
			return nil, fmt.Errorf("%w: allowed_hosts[%d] %q: %v", ErrInvalidHost, i, truncate(h, 80), err)
		}
		n := e.String()
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// hostEntry is one parsed allowed_hosts entry.
type hostEntry struct {
	scheme string // "", "http" or "https"
	host   string // lower-case, no trailing dot, IPv6 without brackets; "*.x" for a wildcard
	port   int    // 0: the scheme's default port
}

func (e hostEntry) String() string {
	h := e.host
	if strings.Contains(h, ":") && (e.port != 0 || e.scheme != "") {
		h = "[" + h + "]"
	}
	if e.port != 0 {
		h += ":" + strconv.Itoa(e.port)
	}
	if e.scheme != "" {
		h = e.scheme + "://" + h
	}
	return h
}

// parseHostEntry parses a lower-cased entry.
func parseHostEntry(s string) (hostEntry, error) {
	var e hostEntry
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		if scheme != "http" && scheme != "https" {
			return e, fmt.Errorf("the scheme must be http or https")
		}
		e.scheme, s = scheme, rest
		if strings.ContainsAny(s, "/?#@") {
			return e, fmt.Errorf("only scheme://host[:port], without path, query or user")
		}
	}
	host, port, err := splitEntry(s)
	if err != nil {
		return e, err
	}
	if port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || port[0] == '0' {
			return e, fmt.Errorf("the port must be a number from 1 to 65535")
		}
		e.port = p
	}
	e.host = strings.TrimSuffix(host, ".")
	return e, validHostPattern(e.host)
}

// splitEntry splits host[:port], where host may be a bare or bracketed
// IPv6 literal.
func splitEntry(s string) (host, port string, err error) {
	if rest, ok := strings.CutPrefix(s, "["); ok {
		h, after, ok := strings.Cut(rest, "]")
		if !ok {
			return "", "", fmt.Errorf("unclosed '['")
		}
		if after == "" {
			return h, "", nil
		}
		p, ok := strings.CutPrefix(after, ":")
		if !ok || p == "" {
			return "", "", fmt.Errorf("only :port may follow ']'")
		}
		if _, err := netip.ParseAddr(h); err != nil || !strings.Contains(h, ":") {
			return "", "", fmt.Errorf("brackets hold an IPv6 address only")
		}
		return h, p, nil
	}
	if strings.Count(s, ":") > 1 {
		return s, "", nil // a bare IPv6 literal, validated by the caller
	}
	if h, p, ok := strings.Cut(s, ":"); ok {
		if p == "" {
			return "", "", fmt.Errorf("empty port")
		}
		return h, p, nil
	}
	return s, "", nil
}

func validHostPattern(h string) error {
	if h == "" {
		return fmt.Errorf("empty")
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if strings.Contains(h, ":") {
		return fmt.Errorf("not an IPv6 address")
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

// Destination is where a resolved value is about to be sent.
type Destination struct {
	// Scheme is "http" or "https"; "" when the caller does not know it.
	Scheme string
	// Host is the host name or IP literal, without port or brackets.
	Host string
	// Port is the destination port; 0 means the scheme's default.
	Port int
}

// defaultPort reports whether d goes to its scheme's default port (either
// default when the scheme is unknown).
func (d Destination) defaultPort() bool {
	switch d.Scheme {
	case "http":
		return d.Port == 0 || d.Port == DefaultHTTPPort
	case "https":
		return d.Port == 0 || d.Port == DefaultHTTPSPort
	}
	return d.Port == 0 || d.Port == DefaultHTTPPort || d.Port == DefaultHTTPSPort
}

// DestinationAllowed reports whether d matches one of the (normalized)
// patterns. An empty pattern list allows every destination.
func DestinationAllowed(patterns []string, d Destination) bool {
	if len(patterns) == 0 {
		return true
	}
	return destinationMatches(parseHostEntries(patterns), d)
}

// parseHostEntries parses patterns, leaving out the ones that do not parse
// (stored by an older, laxer validation: they match nothing). The vault
// parses a secret's allowed_hosts once, when it caches the secret, instead
// of on every Resolve (a fifth of a cached resolve's CPU).
func parseHostEntries(patterns []string) []hostEntry {
	if len(patterns) == 0 {
		return nil
	}
	out := make([]hostEntry, 0, len(patterns))
	for _, p := range patterns {
		if e, err := parseHostEntry(p); err == nil {
			out = append(out, e)
		}
	}
	return out
}

// destinationMatches reports whether d matches one of entries (none: no
// match; the caller handles "no allowed_hosts").
func destinationMatches(entries []hostEntry, d Destination) bool {
	host := lowerASCII(strings.TrimSuffix(strings.Trim(d.Host, "[]"), "."))
	scheme := lowerASCII(d.Scheme)
	port := d.Port
	if port == 0 && scheme == "http" {
		port = DefaultHTTPPort
	} else if port == 0 && scheme == "https" {
		port = DefaultHTTPSPort
	}
	for _, e := range entries {
		if e.scheme != "" && e.scheme != scheme {
			continue
		}
		if e.port != 0 && e.port != port || e.port == 0 && !d.defaultPort() {
			continue
		}
		if suffix, ok := strings.CutPrefix(e.host, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
			continue
		}
		if e.host == host {
			return true
		}
	}
	return false
}

// lowerASCII lower-cases ASCII letters only. strings.ToLower maps some
// non-ASCII letters to ASCII ones (U+212A KELVIN SIGN to "k"), which would
// let a different host name match an entry.
func lowerASCII(s string) string {
	if !hasUpperASCII(s) {
		return s // the usual case, without a copy
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// HostAllowed reports whether host, sent to a default port (80 or 443),
// is allowed by the patterns; callers that know the scheme and port use
// DestinationAllowed. An empty pattern list allows every host.
func HostAllowed(patterns []string, host string) bool {
	return DestinationAllowed(patterns, Destination{Host: host})
}
