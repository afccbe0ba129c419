package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/template"
)

// TestBodyFraming: how a request body leaves the proxy, by its size and
// what its references resolve to. A body within BufferLimit goes whole,
// with its exact Content-Length, whether it had references or not, and
// whether the client sent a length or chunks; one whose values make it
// grow past BufferLimit goes streamed (chunked), rewritten all the same.
func TestBodyFraming(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	big := strings.Repeat("v", 60<<10)
	e.secret("TOKEN", tokenValue)
	e.secret("BIG", big)
	c := e.client(e.key, nil)
	grow := strings.Repeat("${{ secrets.BIG }} ", 20) // ~380 bytes, 1.2 MB resolved
	cases := []struct {
		name, ctype, body, want string
		chunkedIn               bool // the client sends chunks, no length
		streamed                bool // the upstream gets chunks, no length
	}{
		{"no references", "application/json", `{"a":"b $5 100%"}`, `{"a":"b $5 100%"}`, false, false},
		{"references", "application/json", `{"t":"${{ secrets.TOKEN }}"}`, `{"t":"` + tokenValue + `"}`, false, false},
		{"references, chunked in", "application/json", `{"t":"${{ secrets.TOKEN }}"}`, `{"t":"` + tokenValue + `"}`, true, false},
		{"no references, chunked in", "text/plain", strings.Repeat("x", 70<<10), strings.Repeat("x", 70<<10), true, false},
		{"grows past the buffer", "text/plain", grow, strings.Repeat(big+" ", 20), false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunkedIn {
				body = io.MultiReader(body) // no length: the client sends chunks
			}
			req, err := http.NewRequest("POST", up.URL+"/b", body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tc.ctype)
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			got := up.last(t)
			if string(got.Body) != tc.want {
				t.Fatalf("upstream got %d bytes %.60q, want %d bytes %.60q", len(got.Body), got.Body, len(tc.want), tc.want)
			}
			if tc.streamed {
				if got.ContentLength != -1 || len(got.TransferEncoding) != 1 {
					t.Fatalf("grown body: Content-Length %d, Transfer-Encoding %q; want streamed", got.ContentLength, got.TransferEncoding)
				}
			} else if got.ContentLength != int64(len(tc.want)) || len(got.TransferEncoding) != 0 {
				t.Fatalf("Content-Length %d, Transfer-Encoding %q; want %d, none", got.ContentLength, got.TransferEncoding, len(tc.want))
			}
		})
	}
	if len(strings.Repeat(big+" ", 20)) <= proxy.BufferLimit {
		t.Fatal("the growing body does not grow past BufferLimit")
	}
}

// TestBodyReferenceFailsBeforeSending: a body within BufferLimit whose
// last reference cannot be resolved is refused, and nothing of it reaches
// the upstream (the whole body is decided before a byte is sent).
func TestBodyReferenceFailsBeforeSending(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	c := e.client(e.key, nil)
	body := "${{ secrets.TOKEN }}" + strings.Repeat("x", 200<<10) + "${{ secrets.MISSING }}"
	r := e.send(c, "POST", up.URL+"/b", "text/plain", body)
	if r.status < 400 || up.count() != 0 {
		t.Fatalf("status %d, upstream saw %d requests", r.status, up.count())
	}
	assertNoValue(t, "refusal", r.body, tokenValue)
}

// TestBodyContextSpellings: the usual Content-Type values (matched as
// sent, without parsing) pick the context their parsed media type does.
func TestBodyContextSpellings(t *testing.T) {
	for ct, want := range map[string]template.Context{
		"application/json": template.ContextJSON, "application/json; charset=utf-8": template.ContextJSON,
		"application/json;charset=utf-8": template.ContextJSON, "application/json; charset=UTF-8": template.ContextJSON,
		"Application/JSON": template.ContextJSON, "application/vnd.api+json": template.ContextJSON,
		"application/x-www-form-urlencoded": template.ContextForm, "application/x-www-form-urlencoded; charset=utf-8": template.ContextForm,
		"": template.ContextRaw, "text/plain": template.ContextRaw, "text/plain; charset=utf-8": template.ContextRaw,
		"application/octet-stream": template.ContextRaw, "application/json; =bad": template.ContextRaw,
	} {
		if got := proxy.BodyContext(ct); got != want {
			t.Errorf("%q: %s, want %s", ct, got, want)
		}
	}
}
