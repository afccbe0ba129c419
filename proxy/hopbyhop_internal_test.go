package proxy

import (
	"maps"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// TestIsHopByHopMatchesList: the switch and the list name the same fields,
// all canonical (removeHopByHop deletes map keys, as Del does with
// canonical names).
func TestIsHopByHopMatchesList(t *testing.T) {
	for _, k := range hopByHop {
		if !isHopByHop(k) || textproto.CanonicalMIMEHeaderKey(k) != k {
			t.Errorf("%q: isHopByHop %v, canonical %q", k, isHopByHop(k), textproto.CanonicalMIMEHeaderKey(k))
		}
	}
	n := 0
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade", "Trailer", "Authorization", "Host", "TE", "te"} {
		if isHopByHop(k) {
			n++
		}
	}
	if n != len(hopByHop) {
		t.Fatalf("isHopByHop takes %d names, hopByHop has %d", n, len(hopByHop))
	}
}

// TestRemoveHopByHopAsDel: the one-pass removal leaves what a Del per
// hop-by-hop name (the previous code) left, keepTrailer or not.
func TestRemoveHopByHopAsDel(t *testing.T) {
	ref := removeHopByHopDel
	cases := []http.Header{
		{},
		{"Authorization": {"Bearer x"}, "User-Agent": {"ua"}, "Accept-Encoding": {"gzip"}},
		{"Connection": {"keep-alive, X-Gone , close"}, "X-Gone": {"1"}, "Keep-Alive": {"timeout=5"}, "X-Kept": {"2"}},
		{"Te": {"trailers"}, "Transfer-Encoding": {"chunked"}, "Upgrade": {"h2c"}, "Trailer": {"X-T"}, "Proxy-Connection": {"keep-alive"}},
		{"Proxy-Authorization": {"Bearer k"}, "Proxy-Foo": {"1"}, "proxy-lower": {"2"}, "te": {"not canonical"}, "TE": {"upper"}},
		{"Content-Length": {"2"}, "Trailer": {"X-A"}, "Connection": {"Trailer"}},
	}
	for i, c := range cases {
		for _, keep := range []bool{false, true} {
			want, got := http.Header(maps.Clone(c)), http.Header(maps.Clone(c))
			ref(want, keep)
			removeHopByHop(got, keep)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("case %d keepTrailer=%v: %v, want %v", i, keep, got, want)
			}
		}
	}
}

// removeHopByHopDel is removeHopByHop as it was: a Del per hop-by-hop
// name, then the Proxy-* fields.
func removeHopByHopDel(h http.Header, keepTrailer bool) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopByHop {
		if k == "Trailer" && keepTrailer {
			continue
		}
		h.Del(k)
	}
	for k := range h {
		if strings.HasPrefix(k, "Proxy-") {
			delete(h, k)
		}
	}
}

// BenchmarkRemoveHopByHop: a proxyload GET's request fields, one pass
// (new) against a Del per name (del).
func BenchmarkRemoveHopByHop(b *testing.B) {
	for _, c := range []struct {
		name string
		f    func(http.Header, bool)
	}{{"onepass", removeHopByHop}, {"del", removeHopByHopDel}} {
		b.Run(c.name, func(b *testing.B) {
			h := http.Header{}
			for b.Loop() {
				h["Authorization"] = []string{"Bearer x"}
				h["User-Agent"] = []string{"Go-http-client/1.1"}
				h["Accept-Encoding"] = []string{"gzip"}
				c.f(h, false)
			}
		})
	}
}
