package proxy_test

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"rotor.sh/rotor/proxy"
)

// The attacks of issue 10 (proxy half), each run against the proxy with a
// hostile loopback upstream. Each failed on the code before its fix.

// echoAll is a hostile upstream: it reflects every header, the path, the
// query and the body, in the given encoding.
func echoAll(r *http.Request, body []byte) []byte {
	var b bytes.Buffer
	for k, vs := range r.Header {
		b.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
	}
	b.WriteString("path " + r.URL.Path + "\nquery " + r.URL.Query().Encode() + "\n")
	for _, v := range r.URL.Query() {
		b.WriteString("qv " + strings.Join(v, ",") + "\n")
	}
	b.Write(body)
	return b.Bytes()
}

func assertNoValue(t *testing.T, where, s string, values ...string) {
	t.Helper()
	for _, v := range values {
		if strings.Contains(s, v) {
			t.Errorf("%s holds the value %q", where, v)
		}
	}
}

func TestAttackScrubTrailer(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	up.respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Trailer", "X-Echo")
		w.Write([]byte("body"))
		w.Header().Set("X-Echo", r.Header.Get("X-Key"))
	}
	req, _ := http.NewRequest("GET", up.URL+"/t", nil)
	req.Header.Set("X-Key", "${{ secrets.TOKEN }}")
	res, err := e.client(e.key, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if got := res.Trailer.Get("X-Echo"); got != "${{ secrets.TOKEN }}" {
		t.Fatalf("trailer %q, want the reference", got)
	}
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func zl(b []byte) []byte {
	var out bytes.Buffer
	w := zlib.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func rawDeflate(b []byte) []byte {
	var out bytes.Buffer
	w, _ := flate.NewWriter(&out, 5)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// decodeBody undoes what the client got, as a browser would.
func decodeBody(t *testing.T, ce string, b []byte) string {
	t.Helper()
	var r io.Reader
	switch strings.ToLower(ce) {
	case "":
		return string(b)
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "deflate":
		zr, err := zlib.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	default:
		return string(b)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestAttackScrubEncodedBodies(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	c := e.client(e.key, nil)
	for _, tc := range []struct {
		name, ce string
		enc      func([]byte) []byte
	}{
		{"gzip", "gzip", gz},
		{"deflate-zlib", "deflate", zl},
		{"deflate-raw", "deflate", rawDeflate},
		{"x-gzip", "x-gzip", gz},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
				// Unsolicited: the request said nothing of this encoding.
				w.Header().Set("Content-Encoding", tc.ce)
				w.Write(tc.enc([]byte("echo " + r.Header.Get("X-Key"))))
			}
			r := e.send(c, "GET", up.URL+"/e", "", "", "X-Key", "${{ secrets.TOKEN }}")
			if r.status != 200 {
				t.Fatalf("status %d %s", r.status, r.body)
			}
			plain := decodeBody(t, r.header.Get("Content-Encoding"), []byte(r.body))
			assertNoValue(t, "decoded body", plain, tokenValue)
			if !strings.Contains(plain, "echo ${{ secrets.TOKEN }}") {
				t.Fatalf("body %q", plain)
			}
		})
	}
}

func TestAttackScrubUnknownEncoding(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Encoding", "x-made-up")
		w.Write([]byte("echo " + r.Header.Get("X-Key")))
	}
	c := e.client(e.key, nil)
	r := e.send(c, "GET", up.URL+"/e", "", "", "X-Key", "${{ secrets.TOKEN }}")
	assertNoValue(t, "body", r.body, tokenValue)
	if r.status != http.StatusBadGateway || r.header.Get(proxy.HeaderError) != proxy.CodeResponseUnscannable {
		t.Fatalf("got %d %q, want 502 %s", r.status, r.header.Get(proxy.HeaderError), proxy.CodeResponseUnscannable)
	}
	// Without a resolved secret nothing needs scanning: relayed as is.
	r = e.send(c, "GET", up.URL+"/e", "", "")
	if r.status != 200 || r.header.Get("Content-Encoding") != "x-made-up" {
		t.Fatalf("no secret: %d %v", r.status, r.header)
	}
	// Scrubbing switched off: relayed as is.
	e2 := newEnv(t, func(o *proxy.Options) { o.NoScrub = true })
	e2.secret("TOKEN", tokenValue)
	if r := e2.send(e2.client(e2.key, nil), "GET", up.URL+"/e", "", "", "X-Key", "${{ secrets.TOKEN }}"); r.status != 200 {
		t.Fatalf("no-scrub: %d", r.status)
	}
}

// TestAttackScrubForms: the upstream reflects each value in a form Rotor
// produced or a server commonly reflects.
func TestAttackScrubForms(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	e.secret("HOSTILE", hostileValue)
	e.secret("PASS", "basic-pass-value-77")
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		echo := echoAll(r, body)
		j, _ := json.Marshal(map[string]string{"h": r.Header.Get("X-Key"), "q": r.URL.Query().Get("t"), "p": r.URL.Path})
		w.Write(append(append(echo, '\n'), j...))
	}
	c := e.client(e.key, nil)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:${{ secrets.PASS }}"))
	r := e.send(c, "GET", up.URL+"/p/${{%20secrets.HOSTILE%20}}?t=${{%20secrets.HOSTILE%20}}", "", "",
		"X-Key", "${{ secrets.HOSTILE }}", "Authorization", basic)
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	jsonEsc, _ := json.Marshal(hostileValue)
	assertNoValue(t, "body", r.body, hostileValue, url.QueryEscape(hostileValue), url.PathEscape(hostileValue),
		string(jsonEsc[1:len(jsonEsc)-1]), base64.StdEncoding.EncodeToString([]byte("user:basic-pass-value-77")))
	if !strings.Contains(r.body, basic[6:]) {
		t.Errorf("the Basic credential is not written back as its reference form:\n%s", r.body)
	}
	// URL userinfo: the client sends it as Basic.
	pu, _ := url.Parse(up.URL)
	pu.User = url.UserPassword("user", "${{ secrets.PASS }}")
	r = e.send(c, "GET", pu.String()+"/u", "", "")
	assertNoValue(t, "userinfo echo", r.body, "basic-pass-value-77", base64.StdEncoding.EncodeToString([]byte("user:basic-pass-value-77")))
}

func TestAttackUpstreamRotorHeaders(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	up.respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set(proxy.HeaderError, "forged_"+strings.Repeat("x", 1000))
		w.Header().Set("X-Rotor-Job", "forged")
		w.Header().Set("Rotor-Attempt", "forged")
		w.Header().Set("Trailer", "X-Rotor-Late")
		w.WriteHeader(503)
		w.Write([]byte("x"))
		w.Header().Set("X-Rotor-Late", "forged")
	}
	req, _ := http.NewRequest("GET", up.URL+"/h", nil)
	res, err := e.client(e.key, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	for _, h := range []http.Header{res.Header, res.Trailer} {
		for k := range h {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, "x-rotor-") || strings.HasPrefix(lk, "rotor-") {
				t.Errorf("upstream header %s reached the client", k)
			}
		}
	}
}

func TestAttackHopByHop(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	up.respond = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Write([]byte("ok"))
	}
	r := e.send(e.client(e.key, nil), "GET", up.URL+"/h", "", "",
		"Connection", "X-Hop-Secret", "X-Hop-Secret", "1", "Keep-Alive", "timeout=5", "Te", "trailers", "Upgrade", "h2c", "Proxy-Foo", "1")
	got := up.last(t).Header
	for _, k := range []string{"Connection", "X-Hop-Secret", "Keep-Alive", "Te", "Upgrade", "Proxy-Foo"} {
		if got.Get(k) != "" {
			t.Errorf("request hop-by-hop header %s reached the upstream", k)
		}
	}
	for _, k := range []string{"X-Up-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if r.header.Get(k) != "" {
			t.Errorf("response hop-by-hop header %s reached the client", k)
		}
	}
}

func TestAttackLongHost(t *testing.T) {
	e := newEnv(t)
	e.secret("TOKEN", tokenValue)
	// Labels over 63 characters: Go refuses such a name before any DNS
	// query, so nothing outside loopback is asked even on unfixed code.
	long := strings.Repeat("a", 300) + ".test"
	r := e.send(e.client(e.key, nil), "GET", "http://"+long+"/x", "", "", "X-Key", "${{ secrets.TOKEN }}")
	if r.status != 400 {
		t.Fatalf("status %d %q, want 400", r.status, r.header.Get(proxy.HeaderError))
	}
	if strings.Contains(e.logs.String(), strings.Repeat("a", 254)) {
		t.Fatalf("the long host reached the log: %.600s", e.logs.String())
	}
	// The method is client-chosen too; the log line bounds it.
	r = e.send(e.client(e.key, nil), strings.Repeat("M", 5000), "http://127.0.0.1:9/x", "", "")
	if strings.Contains(e.logs.String(), strings.Repeat("M", 200)) {
		t.Fatal("a 5000-character method reached the log")
	}
}

func TestAttackAllowedHostPort(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	_, port, _ := net.SplitHostPort(up.Listener.Addr().String())
	c := e.client(e.key, nil)
	before := up.count()
	// A bare host means the default ports only: the upstream listens on
	// another port.
	e.secret("BARE", tokenValue, "127.0.0.1")
	r := e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.BARE }}")
	refused(t, r, up, before, 403, proxy.CodeHostNotAllowed)
	e.secret("PORTED", tokenValue, "127.0.0.1:"+port)
	e.secret("HTTPSONLY", tokenValue, "https://127.0.0.1:"+port)
	e.secret("HTTPPORT", tokenValue, "http://127.0.0.1:"+port)
	r = e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.HTTPSONLY }}")
	refused(t, r, up, before, 403, proxy.CodeHostNotAllowed)
	for _, n := range []string{"PORTED", "HTTPPORT"} {
		if r := e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets."+n+" }}"); r.status != 200 {
			t.Fatalf("%s: %d %s", n, r.status, r.body)
		}
	}
}

// TestUnscannableWithoutBody: a response without a body has nothing to
// scan, whatever its Content-Encoding says.
func TestUnscannableWithoutBody(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Encoding", "br")
		w.WriteHeader(http.StatusNoContent)
	}
	c := e.client(e.key, nil)
	for _, m := range []string{"HEAD", "GET"} {
		if r := e.send(c, m, up.URL+"/e", "", "", "X-Key", "${{ secrets.TOKEN }}"); r.status != http.StatusNoContent {
			t.Fatalf("%s: %d %s", m, r.status, r.body)
		}
	}
}

// TestLibraryLogBounded: goproxy's own lines, which quote what clients
// send, are bounded too.
func TestLibraryLogBounded(t *testing.T) {
	var buf bytes.Buffer
	l := proxy.GoproxyLoggerForTest(&buf)
	l.Printf("Illegal URL %s", "http://h/"+strings.Repeat("p", 10000))
	if buf.Len() == 0 || strings.Contains(buf.String(), strings.Repeat("p", 600)) {
		t.Fatalf("goproxy line not bounded (%d bytes)", buf.Len())
	}
}

// TestAttackScrubLimit: large values with many encodings would make the
// response scrubber's automaton huge; past MaxScrubBytes the request is
// refused before anything is sent.
func TestAttackScrubLimit(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	big := strings.Repeat(`"/`, 20000) // 40 KB, 800 KB of distinct forms
	three := "${{ secrets.BIG1 }} ${{ secrets.BIG2 }} ${{ secrets.BIG3 }}"
	for _, x := range []*env{e} {
		x.secret("BIG1", big)
		x.secret("BIG2", big+"x")
		x.secret("BIG3", big+"y")
	}
	c := e.client(e.key, nil)
	if r := e.send(c, "POST", up.URL+"/one", "text/plain", "${{ secrets.BIG1 }}"); r.status != 200 {
		t.Fatalf("one big secret: %d %s", r.status, r.body)
	}
	before := up.count()
	r := e.send(c, "POST", up.URL+"/three", "text/plain", three)
	refused(t, r, up, before, 400, proxy.CodeScrubLimit)
	e2 := newEnv(t, func(o *proxy.Options) { o.NoScrub = true })
	e2.secret("BIG1", big)
	e2.secret("BIG2", big+"x")
	e2.secret("BIG3", big+"y")
	if r := e2.send(e2.client(e2.key, nil), "POST", up.URL+"/three", "text/plain", three); r.status != 200 {
		t.Fatalf("no-scrub: %d", r.status)
	}
}
