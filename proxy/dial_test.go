package proxy

import (
	"net/netip"
	"testing"
)

func TestGuardRanges(t *testing.T) {
	g := guard{enabled: true}
	blocked := []string{
		"127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.254", "224.0.0.1", "239.1.1.1",
		"0.0.0.0", "0.1.2.3", "255.255.255.255", "240.0.0.1", "198.18.0.1",
		"::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", // IPv4-mapped
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", // NAT64
		"2002:7f00:1::", "2002:a9fe:a9fe::1", // 6to4
		"2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1 (inverted)
		"2001:0:a9fe:a9fe::1",                  // Teredo, server 169.254.169.254
	}
	for _, s := range blocked {
		if g.permitted(netip.MustParseAddr(s)) {
			t.Errorf("%s permitted, want blocked", s)
		}
	}
	allowed := []string{"8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"}
	for _, s := range allowed {
		if !g.permitted(netip.MustParseAddr(s)) {
			t.Errorf("%s blocked, want permitted", s)
		}
	}
	g.allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if !g.permitted(netip.MustParseAddr("10.9.9.9")) || !g.permitted(netip.MustParseAddr("::ffff:10.9.9.9")) || g.permitted(netip.MustParseAddr("192.168.0.1")) {
		t.Error("allow ranges")
	}
	if !(&guard{}).permitted(netip.MustParseAddr("127.0.0.1")) {
		t.Error("a disabled guard blocks")
	}
}

// TestGuardEmbeddedForms: every spelling of a blocked IPv4 address inside
// IPv6 that smokescreen's classification treats as an IPv6 embedding, plus
// the IPv4-compatible (::/96) and IPv4-translated (::ffff:0:0:0/96, RFC 2765) forms.
func TestGuardEmbeddedForms(t *testing.T) {
	g := guard{enabled: true}
	for _, s := range []string{
		"::127.0.0.1", "::7f00:1", "::a9fe:a9fe", "::10.0.0.1", // IPv4-compatible ::/96
		"::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe", "::ffff:0:10.1.2.3", // IPv4-translated ::ffff:0:0:0/96
		"::ffff:0:808:808", // translated forms are refused whatever they carry: no public use
		"::808:808",        // deprecated IPv4-compatible: no public use either
	} {
		if g.permitted(netip.MustParseAddr(s)) {
			t.Errorf("%s permitted, want blocked", s)
		}
	}
}
