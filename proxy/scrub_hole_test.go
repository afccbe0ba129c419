//go:build hole

package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAttackScrubHeaderName (HOLE, for the proxy's owner): scrubbing
// (docs/security.md, "Scrubbing ... covers response headers, body and
// trailers") looks at header values only. An upstream that turns query
// parameters into response headers, as httpbin's /response-headers does,
// hands a worker the value in a header *name*: the worker puts the
// reference in a query key and reads the name back. Go canonicalizes the
// name (first letter and letters after '-' upper-cased, the rest lower),
// which hides nothing from a lower-case or hex value.
func TestAttackScrubHeaderName(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	up.respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		for k, vs := range r.URL.Query() {
			w.Header().Set(k, strings.Join(vs, ","))
		}
		io.WriteString(w, "{}")
	}
	req, _ := http.NewRequest("GET", up.URL+"/response-headers?%24%7B%7B%20secrets.TOKEN%20%7D%7D=1", nil)
	res, err := e.client(e.key, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if up.count() != 1 || !strings.Contains(up.last(t).RawQuery, tokenValue) {
		t.Fatalf("the value was not sent in the query key (%d calls; %d %s)", up.count(), res.StatusCode, body)
	}
	for k := range res.Header {
		if strings.Contains(strings.ToLower(k), tokenValue) {
			t.Fatalf("the worker reads the resolved value in a response header name: %q", k)
		}
	}
}

// TestAttackScrubRangeSlices (HOLE, for the proxy's owner): the worker's
// Range header reaches the upstream, so an upstream that echoes the request
// and honours Range (any handler built on http.ServeContent) returns the
// value a few bytes at a time; no slice holds the whole value, so none is
// scrubbed, and the worker joins them. Requests that resolved a secret could
// drop Range and If-Range (a 206 answer to one is then unsolicited).
func TestAttackScrubRangeSlices(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	up.respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		echo := "key=" + r.Header.Get("X-Key") + "\n"
		http.ServeContent(w, r, "echo.txt", time.Time{}, strings.NewReader(echo))
	}
	c := e.client(e.key, nil)
	var got strings.Builder
	for off := 0; off < 64; off += 4 {
		req, _ := http.NewRequest("GET", up.URL+"/echo", nil)
		req.Header.Set("X-Key", "${{ secrets.TOKEN }}")
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+3))
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusPartialContent {
			break
		}
		got.Write(b)
	}
	if strings.Contains(got.String(), tokenValue) {
		t.Fatalf("the worker joined the resolved value from Range slices: %q", got.String())
	}
}
