package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// Limits of the dispatcher's internal headers and of the dialer that
// mutation testing (issue 13) found unpinned.

func TestInternalActorLimits(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      DispatcherActor,
		"key_0123456789abcdef":                  "key_0123456789abcdef",
		strings.Repeat("a", maxInternalActor):   strings.Repeat("a", maxInternalActor),
		strings.Repeat("a", maxInternalActor+1): DispatcherActor,
		"azAZ09_-.":                             "azAZ09_-.",
		"a b":                                   DispatcherActor,
		"a/b":                                   DispatcherActor,
		"a@b":                                   DispatcherActor, // '@' is just before 'A'
		"a[b":                                   DispatcherActor, // '[' is just after 'Z'
		"a`b":                                   DispatcherActor, // '`' is just before 'a'
		"a{b":                                   DispatcherActor, // '{' is just after 'z'
		"a:b":                                   DispatcherActor, // ':' is just after '9'
		"key\u00e9":                             DispatcherActor,
	} {
		h := http.Header{}
		if in != "" {
			h.Set(HeaderInternalActor, in)
		}
		if got := internalActor(h); got != want {
			t.Errorf("internalActor(%.40q) = %.40q, want %.40q", in, got, want)
		}
	}
	// Each edge character alone, as the first character (so the check of
	// every position, not only later ones, is exercised).
	for _, c := range []byte("aAzZ09_-.") {
		h := http.Header{HeaderInternalActor: {string(c)}}
		if got := internalActor(h); got != string(c) {
			t.Errorf("internalActor(%q) = %q", c, got)
		}
	}
}

func TestAuditExtra(t *testing.T) {
	for _, tc := range []struct {
		in   internalReq
		want map[string]string
	}{
		{internalReq{attempt: "1", job: "job_1"}, map[string]string{"attempt": "1", "job_id": "job_1"}},
		{internalReq{attempt: "2"}, map[string]string{"attempt": "2", "job_id": ""}},
		{internalReq{attempt: "1", run: "run_1", step: "s"}, map[string]string{"attempt": "1", "run_id": "run_1", "step_id": "s"}},
		{internalReq{attempt: "1", job: "job_1", run: "run_1", step: "s"}, map[string]string{"attempt": "1", "job_id": "job_1", "run_id": "run_1", "step_id": "s"}},
	} {
		got := tc.in.auditExtra()
		if len(got) != len(tc.want) {
			t.Errorf("%+v: %v, want %v", tc.in, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%+v: %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

// TestDialerRefusesOnlyBlocked: a destination with one blocked and one
// allowed address is dialled at the allowed one; one with only blocked
// addresses is refused before any dial.
func TestDialerRefusesOnlyBlocked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	allowLoop := guard{enabled: true, allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	d := newDialer(allowLoop)
	c, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("allowed loopback: %v", err)
	}
	c.Close()
	d = newDialer(guard{enabled: true})
	if _, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); !errors.Is(err, ErrDestinationBlocked) {
		t.Fatalf("blocked loopback: %v", err)
	}
	if _, err := d.DialContext(context.Background(), "tcp", "no-port"); err == nil {
		t.Fatal("an address without a port dialled")
	}
	if d.net.Timeout <= 0 || d.net.KeepAlive <= 0 {
		t.Fatalf("dialer timeout %v, keep-alive %v", d.net.Timeout, d.net.KeepAlive)
	}
}

func itoa(n int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(n)).String()[len("0.0.0.0:"):]
}
