package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// blockedPrefixes are refused by the SSRF guard: loopback, private,
// link-local (cloud metadata at 169.254.169.254), CGNAT, multicast,
// unspecified, and other special-purpose ranges. This covers every class
// smokescreen denies (not global unicast, private, CGNAT, IPv6 embedding;
// embeddings are checked finer, in embeddedV4), plus the IPv4-compatible
// ::/96 (deprecated by RFC 4291) and IPv4-translated ::ffff:0:0:0/96 (RFC
// 2765) forms, refused whole: neither is routed on the public internet,
// and a stack may still deliver [::127.0.0.1] to loopback.
var blockedPrefixes = mustPrefixes(
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
	"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
	"255.255.255.255/32",
	"::/96", "::ffff:0:0:0/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8",
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

var (
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local   = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour    = netip.MustParsePrefix("2002::/16")
	teredoPrefix = netip.MustParsePrefix("2001::/32")
)

// embeddedV4 returns the IPv4 addresses an IPv6 address carries (mapped,
// NAT64, 6to4, Teredo server and client), so a blocked IPv4 address cannot
// be reached by spelling it as IPv6.
func embeddedV4(a netip.Addr) []netip.Addr {
	if !a.Is6() {
		return nil
	}
	if a.Is4In6() {
		return []netip.Addr{a.Unmap()}
	}
	b := a.As16()
	switch {
	case nat64Prefix.Contains(a), nat64Local.Contains(a):
		return []netip.Addr{netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})}
	case sixToFour.Contains(a):
		return []netip.Addr{netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})}
	case teredoPrefix.Contains(a):
		return []netip.Addr{
			netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}),
			netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}),
		}
	}
	return nil
}

// guard decides which destination addresses may be dialled.
type guard struct {
	enabled bool
	allow   []netip.Prefix
}

// permitted reports whether a is allowed: always when the guard is off,
// always inside an allow range, otherwise only outside every blocked range
// (for a itself and every IPv4 address embedded in it).
func (g *guard) permitted(a netip.Addr) bool {
	if !g.enabled {
		return true
	}
	a = a.WithZone("")
	for _, p := range g.allow {
		if p.Contains(a) || a.Is4In6() && p.Contains(a.Unmap()) {
			return true
		}
	}
	for _, x := range append([]netip.Addr{a}, embeddedV4(a)...) {
		for _, p := range blockedPrefixes {
			if p.Contains(x) {
				return false
			}
		}
	}
	return true
}

// dialer resolves a destination once, checks the addresses, and dials only
// checked addresses, so DNS rebinding between check and dial is impossible.
type dialer struct {
	guard    guard
	resolver *net.Resolver
	net      net.Dialer
}

func newDialer(g guard) *dialer {
	return &dialer{guard: g, resolver: net.DefaultResolver, net: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		if addrs, err = d.resolver.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, err
		}
	}
	var allowed []netip.Addr
	for _, a := range addrs {
		if d.guard.permitted(a) {
			allowed = append(allowed, a)
		}
	}
	if len(allowed) == 0 {
		return nil, fmt.Errorf("%w: %s resolves only to blocked addresses", ErrDestinationBlocked, host)
	}
	var lastErr error
	for _, a := range allowed {
		c, err := d.net.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, lastErr
}
