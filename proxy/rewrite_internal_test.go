package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"rotor.sh/rotor/internal/proccpu"
	"rotor.sh/rotor/template"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
)

// loadTarget is bench/proxyload's resolving GET as its client sends it:
// a reference in the path (url.PathEscape), in the query
// (url.QueryEscape) and in the Authorization header.
const loadTarget = "http://upstream.test/hooks/$%7B%7B%20secrets.USER%20%7D%7D?token=%24%7B%7B+secrets.TOKEN+%7D%7D"

// BenchmarkRewriteRequest is reqState.rewrite alone on the load's GET:
// the URL and header references resolved, without the round trip around
// it. vault: resolveName and the vault (its cache, and the audit rows its
// writer records alongside: noisy); fixed: a resolver returning the values
// (the rewrite's own cost).
func BenchmarkRewriteRequest(b *testing.B) {
	ve, p := benchProxy(b, "TOKEN", "tok_live_5f3a9c2e7d1b4a60", "USER", "svc-deploy")
	values := map[string][]byte{"TOKEN": []byte("tok_live_5f3a9c2e7d1b4a60"), "USER": []byte("svc-deploy")}
	fixed := func(name string) ([]byte, error) { return values[name], nil }
	for _, mode := range []string{"vault", "fixed"} {
		b.Run(mode, func(b *testing.B) { benchRewrite(b, ve, p, mode == "fixed", fixed) })
	}
}

func benchRewrite(b *testing.B, ve *vaulttest.Env, p *Proxy, fixed bool, rf func(string) ([]byte, error)) {
	base, err := url.ParseRequestURI(loadTarget)
	if err != nil {
		b.Fatal(err)
	}
	auth := "Bearer ${{ secrets.TOKEN }}"
	r := &http.Request{Method: http.MethodGet, Body: http.NoBody}
	u := new(url.URL)
	hv := make([]string, 1)
	h := http.Header{"Authorization": hv}
	b.ReportAllocs()
	n := 0
	cpu0 := proccpu.Self()
	for b.Loop() {
		if n++; !fixed && n%4096 == 0 {
			// The audit writer keeps pace with a proxy, not with this
			// loop: its backlog is drained outside the timer.
			b.StopTimer()
			if err := ve.Vault.FlushAudit(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		// The request as the server hands it over (copied, not parsed:
		// the parse is the same before and after).
		*u = *base
		hv[0] = auth
		r.URL, r.Header, r.Host = u, h, u.Host
		st := &reqState{p: p, ctx: context.Background(), id: "prx_bench", actor: ve.Operator, host: "upstream.test", scheme: "http"}
		st.resolved, st.names = st.resolvedBuf[:0], st.namesBuf[:0]
		st.rf = st.resolveName
		if fixed {
			st.rf = rf
		}
		out, err := st.rewrite(r)
		if err != nil {
			b.Fatal(err)
		}
		if out.URL.RawQuery != "token=tok_live_5f3a9c2e7d1b4a60" || hv[0] != "Bearer tok_live_5f3a9c2e7d1b4a60" || out.URL.Path != "/hooks/svc-deploy" {
			b.Fatalf("rewritten to %q %q %q", out.URL.Path, out.URL.RawQuery, hv[0])
		}
	}
	// Process CPU (fixed: the rewrite and its garbage collection alone),
	// steadier than wall time on a shared machine.
	b.ReportMetric(float64(proccpu.Self()-cpu0)/float64(b.N), "cpu-ns/op")
}

// oldRewriteURL is how rewrite resolved the path, the query and a header
// before the arena (commit 7cd359a): EscapedPath, RewriteString, and
// PathUnescape into Path with RawPath the rewritten escaped form. The
// differential tests hold the new path to it.
func oldRewriteURL(u *url.URL, h http.Header, rf template.ResolveFunc) error {
	if esc := u.EscapedPath(); strings.ContainsAny(esc, "$%") {
		np, n, err := template.RewriteString(esc, template.ContextPath, rf)
		if err != nil {
			return err
		}
		if n > 0 {
			dec, err := url.PathUnescape(np)
			if err != nil {
				return fmt.Errorf("%w: rewritten path is not valid", template.ErrReference)
			}
			u.Path, u.RawPath = dec, np
		}
	}
	if u.RawQuery != "" {
		q, _, err := template.RewriteString(u.RawQuery, template.ContextQuery, rf)
		if err != nil {
			return err
		}
		u.RawQuery = q
	}
	for _, vs := range h {
		for i, v := range vs {
			if strings.IndexByte(v, '$') < 0 {
				continue
			}
			nv, _, err := template.RewriteString(v, template.ContextHeader, rf)
			if err != nil {
				return err
			}
			vs[i] = nv
		}
	}
	return nil
}

// checkRewriteLikeOld rewrites u (and one header value) both ways, with
// every reference resolving to value (FAIL: failing), and fails t when the
// outcomes differ: the error, the path, its escaped form, the request
// target, the query or the header.
func checkRewriteLikeOld(t *testing.T, u *url.URL, hv, value string) {
	t.Helper()
	rf := func(name string) ([]byte, error) {
		if name == "FAIL" {
			return nil, vault.ErrNotFound
		}
		return []byte(value), nil
	}
	ou := *u
	oh := http.Header{"X-Ref": {hv}}
	oldErr := oldRewriteURL(&ou, oh, rf)
	nu := *u
	r := &http.Request{Method: http.MethodGet, URL: &nu, Header: http.Header{"X-Ref": {hv}}, Host: nu.Host}
	st := &reqState{p: &Proxy{}, ctx: context.Background()}
	st.rf = rf
	_, newErr := st.rewrite(r)
	if (oldErr == nil) != (newErr == nil) || oldErr != nil && oldErr.Error() != newErr.Error() {
		t.Fatalf("path %q query %q header %q: old err %v, new err %v", u.Path, u.RawQuery, hv, oldErr, newErr)
	}
	if oldErr != nil {
		return
	}
	if nu.Path != ou.Path || nu.EscapedPath() != ou.EscapedPath() || nu.RequestURI() != ou.RequestURI() || nu.RawQuery != ou.RawQuery {
		t.Fatalf("path %q (raw %q) query %q: new Path %q escaped %q target %q, old Path %q escaped %q target %q",
			u.Path, u.RawPath, u.RawQuery, nu.Path, nu.EscapedPath(), nu.RequestURI(), ou.Path, ou.EscapedPath(), ou.RequestURI())
	}
	if got, want := r.Header.Get("X-Ref"), oh.Get("X-Ref"); got != want {
		t.Fatalf("header %q: new %q, old %q", hv, got, want)
	}
}

var rewriteSeeds = []struct{ target, header, value string }{
	{"/hooks/$%7B%7B%20secrets.USER%20%7D%7D?token=%24%7B%7B+secrets.TOKEN+%7D%7D", "Bearer ${{ secrets.TOKEN }}", "svc-deploy"},
	{"/hooks/${{secrets.USER}}", "", "a/b?c d%e"},
	{"/a%2Fb/$%7B%7B%20secrets.USER%20%7D%7D", "x", "é~!*'()"},
	{"/%24%7B%7B%20secrets.USER%20%7D%7D/x", "${{ secrets.FAIL }}", "v"},
	{"/$%7B%7B%20secrets.FAIL%20%7D%7D", "", "v"},
	{"/$%7B%20secret.USER%20%7D", "", "v"},
	{"/cost/$5/${HOME}", "$<< secrets.A >>", ""},
	{"/$%7B%7B%20secrets.USER%20%7D%7D", "", ""},
	{"/x?q=%24%7B%7B+secrets.A+%7D%7D&r=%", "${{ secrets.A }}\r\n", "a\nb"},
	{"/$$$/%25%32%34", "", "%24"},
}

// TestRewriteLikeOld: the arena rewrite of the URL and headers gives what
// the copy-per-string rewrite gave, for the load's request and the edges
// (RawPath set, values needing escapes, failures, near-misses).
func TestRewriteLikeOld(t *testing.T) {
	for _, s := range rewriteSeeds {
		u, err := url.ParseRequestURI(s.target)
		if err != nil {
			t.Fatal(err)
		}
		checkRewriteLikeOld(t, u, s.header, s.value)
	}
}

// FuzzRewriteLikeOld is TestRewriteLikeOld over any request target (as
// parsed, and as a Path set directly, as an in-process caller may) and
// any value.
func FuzzRewriteLikeOld(f *testing.F) {
	for _, s := range rewriteSeeds {
		f.Add(s.target, s.header, s.value)
	}
	f.Fuzz(func(t *testing.T, target, header, value string) {
		if u, err := url.ParseRequestURI(target); err == nil {
			checkRewriteLikeOld(t, u, header, value)
		}
		if target != "*" {
			checkRewriteLikeOld(t, &url.URL{Path: target}, header, value)
		}
	})
}

// TestEscapePathLikeNetURL: escapePath gives what EscapedPath gives for a
// Path without RawPath, for every byte and the load's path.
func TestEscapePathLikeNetURL(t *testing.T) {
	paths := []string{"/hooks/${{ secrets.USER }}", "/plain/path", "/a b?c#d%e", "/é/\x00\xff"}
	for c := range 256 {
		paths = append(paths, "/x"+string([]byte{byte(c)})+"y")
	}
	for _, p := range paths {
		st := &reqState{}
		if got, want := st.escapePath(p), (&url.URL{Path: p}).EscapedPath(); got != want {
			t.Fatalf("escapePath(%q) = %q, EscapedPath %q", p, got, want)
		}
	}
}

// TestRequestTargetLikeRequestURI: the lane writes the request target in
// two pieces; joined they are RequestURI's, for paths with and without a
// RawPath, forced and empty queries, "*" and opaque URLs.
func TestRequestTargetLikeRequestURI(t *testing.T) {
	us := []*url.URL{
		{Path: "/hooks/svc-deploy", RawQuery: "token=x"},
		{Path: "/a b", RawQuery: ""},
		{Path: "", ForceQuery: true},
		{Path: "*"},
		{Path: "*", RawQuery: "q"},
		{Opaque: "//host/p", Scheme: "http", RawQuery: "q=1"},
		{Opaque: "x?y", RawQuery: "z"},
		{Path: "/a/b", RawPath: "/a%2Fb"},
	}
	for _, target := range []string{"/", "/x?", "/x?a?b", "/%24%7B?q=%24", "/a%2Fb/c?d"} {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatal(err)
		}
		us = append(us, u)
	}
	for _, u := range us {
		p, q, has := requestTarget(u)
		got := p
		if has {
			got += "?" + q
		}
		if want := u.RequestURI(); got != want {
			t.Errorf("%#v: pieces %q %q %v, RequestURI %q", u, p, q, has, want)
		}
	}
}
