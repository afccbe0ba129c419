package proxy_test

import (
	"strings"
	"testing"

	"rotor.sh/rotor/proxy"
)

// TestNearMissRefusedByProxy: a near-miss of a reference is answered 400
// invalid_reference and the upstream is never called; a look-alike passes
// to the upstream untouched.
func TestNearMissRefusedByProxy(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("NOTIFY_TOKEN", tokenValue)
	c := e.client(e.key, nil)
	for _, tc := range []struct {
		name, url, ctype, body string
		hdr                    []string
	}{
		{"singular in header", "/x", "", "", []string{"X-Key", "${{ secret.NOTIFY_TOKEN }}"}},
		{"wrong case in query", "/x?t=${{%20Secrets.NOTIFY_TOKEN%20}}", "", "", nil},
		{"single brace in body", "/x", "text/plain", "t=${ secrets.NOTIFY_TOKEN }", nil},
		{"angle singular in JSON", "/x", "application/json", `{"t":"$<< secret.NOTIFY_TOKEN >>"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.count()
			method := "GET"
			if tc.body != "" {
				method = "POST"
			}
			r := e.send(c, method, up.URL+tc.url, tc.ctype, tc.body, tc.hdr...)
			refused(t, r, up, before, 400, proxy.CodeInvalidReference)
		})
	}
	before := up.count()
	r := e.send(c, "POST", up.URL+"/x", "application/json", `{"a":"${{ env.X }}","b":"${HOME}","c":"$<<EOF"}`, "X-Key", "${{ env.NOTIFY_TOKEN }}")
	if r.status != 200 || up.count() != before+1 {
		t.Fatalf("look-alike: %d %s", r.status, r.body)
	}
	got := up.last(t)
	if !strings.Contains(string(got.Body), `"${{ env.X }}"`) || !strings.Contains(string(got.Body), `"${HOME}"`) {
		t.Fatalf("look-alike changed: %q", got.Body)
	}
}
