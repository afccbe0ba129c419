package proxy_test

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"rotor.sh/rotor/proxy"
)

// TestAttackScrubHeaderName: scrubbing looked at header values only. An
// upstream that turns query parameters into response headers, as httpbin's /response-headers does,
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

// TestAttackScrubRangeSlices: the worker's Range header reached the
// upstream, so an upstream that echoes the request
// and honours Range (any handler built on http.ServeContent) returns the
// value a few bytes at a time; no slice holds the whole value, so none is
// scrubbed, and the worker joins them. Requests that resolve a secret now
// drop Range and If-Range.
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
			// The fix: the upstream got no Range and sent the whole echo,
			// scrubbed.
			if res.StatusCode != 200 || string(b) != "key=${{ secrets.TOKEN }}\n" || up.last(t).Header.Get("Range") != "" {
				t.Fatalf("without Range: %d %q (upstream saw Range %q)", res.StatusCode, b, up.last(t).Header.Get("Range"))
			}
			break
		}
		got.Write(b)
	}
	if strings.Contains(got.String(), tokenValue) {
		t.Fatalf("the worker joined the resolved value from Range slices: %q", got.String())
	}
}

// TestAttackScrubHeaderNameForms: a field whose name holds the value is
// dropped, in headers and trailers, whatever case the upstream gives it;
// the other fields stay.
func TestAttackScrubHeaderNameForms(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	up.respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		v := r.Header.Get("X-Key")
		w.Header().Set("Trailer", "X-Late-"+v)
		w.Header()["X-"+strings.ToUpper(v)] = []string{"1"} // not canonicalized
		w.Header().Set("X-Kept", "1")
		io.WriteString(w, "{}")
		w.Header().Set("X-Late-"+v, "1")
	}
	req, _ := http.NewRequest("GET", up.URL+"/h", nil)
	req.Header.Set("X-Key", "${{ secrets.TOKEN }}")
	res, err := e.client(e.key, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	for _, h := range []http.Header{res.Header, res.Trailer} {
		for k, vs := range h {
			if strings.Contains(strings.ToLower(k+strings.Join(vs, ",")), tokenValue) {
				t.Errorf("the value reached the worker in %s: %q", k, vs)
			}
		}
	}
	if res.Header.Get("X-Kept") != "1" {
		t.Errorf("a field without the value was dropped: %v", res.Header)
	}
}

// TestAttackScrubTransformedEchoes: the forms an echo commonly takes
// besides the ones the rewriter sends: upper-cased, percent-encoding with
// lower-case hex, HTML-escaped (Go's and Python's entities), JSON with
// non-ASCII as \uXXXX (Python), hex, and base64 at each alignment inside
// a longer encoded text.
func TestAttackScrubTransformedEchoes(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	e.secret("HOSTILE", hostileValue)
	const uni = "clé-secrète-✓-𝄞"
	e.secret("UNI", uni)
	forms := func(v string) []string {
		py := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#x27;").Replace(v)
		// ASCII case only: the matcher does not fold other letters.
		upper := strings.Map(func(r rune) rune {
			if 'a' <= r && r <= 'z' {
				return r - 'a' + 'A'
			}
			return r
		}, v)
		out := []string{upper, strings.ToLower(url.QueryEscape(v)), html.EscapeString(v), py,
			hex.EncodeToString([]byte(v)), strings.ToUpper(hex.EncodeToString([]byte(v))), pyJSON(v)}
		for _, pre := range []string{"", "a", "ab", "abc"} {
			out = append(out, base64.StdEncoding.EncodeToString([]byte(pre+v+"tail")),
				base64.URLEncoding.EncodeToString([]byte(pre+v+"tail")),
				base64.RawStdEncoding.EncodeToString([]byte(pre+v)))
		}
		return out
	}
	up.respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		for _, h := range []string{"X-Token", "X-Hostile", "X-Uni"} {
			for _, f := range forms(r.Header.Get(h)) {
				io.WriteString(w, f+"\n")
			}
		}
	}
	r := e.send(e.client(e.key, nil), "GET", up.URL+"/t", "", "",
		"X-Token", "${{ secrets.TOKEN }}", "X-Hostile", "${{ secrets.HOSTILE }}", "X-Uni", "${{ secrets.UNI }}")
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	for _, v := range []string{tokenValue, hostileValue, uni} {
		for _, f := range forms(v) {
			// Each form whole, and what of a base64 text depends on the
			// value alone (its middle).
			if strings.Contains(r.body, f) || len(f) > 24 && strings.Contains(r.body, f[4:len(f)-8]) {
				t.Errorf("the body holds %q (a form of %q):\n%s", f, v, r.body)
			}
		}
	}
}

// TestAttackScrubPartialResponse: a streamed body resolves its reference
// after the headers (and the worker's Range) went out; the upstream's 206
// answer is refused, since a slice cannot be scanned for a value cut at
// its edges.
func TestAttackScrubPartialResponse(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		// http.ServeContent honours Range on GET and HEAD only; an echo
		// endpoint may slice any method's.
		var from, to int
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &from, &to); err == nil && from <= to && to < len(body) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(body)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(body[from : to+1])
			return
		}
		w.Write(body)
	}
	// The reference lies past the buffered first BufferLimit bytes, so it
	// resolves after the headers went out (the rewriter reads ahead of what
	// it buffers).
	pad := "pad=" + strings.Repeat("x", proxy.BufferLimit+256<<10)
	big := pad + "&key=${{ secrets.TOKEN }}"
	at := len(pad) + len("&key=")
	r := e.send(e.client(e.key, nil), "POST", up.URL+"/echo", "application/x-www-form-urlencoded", big,
		"Range", fmt.Sprintf("bytes=%d-%d", at, at+5))
	if up.count() != 1 {
		t.Fatalf("the upstream got %d requests", up.count())
	}
	if r.status != http.StatusBadGateway || r.header.Get(proxy.HeaderError) != proxy.CodeResponseUnscannable {
		t.Fatalf("a 206 to a request that resolved a secret: %d %q %.200s", r.status, r.header.Get(proxy.HeaderError), r.body)
	}
	if strings.Contains(r.body, tokenValue[:6]) {
		t.Fatalf("the refusal holds a slice of the value: %s", r.body)
	}
}

// TestAttackScrubReasonPhrase: inside an intercepted tunnel goproxy
// writes the upstream's reason phrase; an upstream that reflects a value
// there hands it to the worker unless it is scrubbed too.
func TestAttackScrubReasonPhrase(t *testing.T) {
	up := newUpstream(t, true)
	e, roots := mitmEnv(t, up)
	e.secret("TOKEN", tokenValue)
	up.respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 400 bad key %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno", r.Header.Get("X-Key"))
		buf.Flush()
	}
	req, _ := http.NewRequest("GET", up.URL+"/reason", nil)
	req.Header.Set("X-Key", "${{ secrets.TOKEN }}")
	res, err := e.client(e.key, roots).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if up.count() != 1 || res.StatusCode != 400 {
		t.Fatalf("%d calls, status %q", up.count(), res.Status)
	}
	if strings.Contains(strings.ToLower(res.Status), tokenValue) {
		t.Fatalf("the worker reads the value in the reason phrase: %q", res.Status)
	}
}

// pyJSON is v as Python's json.dumps writes it inside a string.
func pyJSON(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch {
		case r == '"' || r == '\\':
			b.WriteString("\\" + string(r))
		case r < 0x80:
			b.WriteRune(r)
		default:
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				fmt.Fprintf(&b, "\\u%04x\\u%04x", r1, r2)
			} else {
				fmt.Fprintf(&b, "\\u%04x", r)
			}
		}
	}
	return b.String()
}
