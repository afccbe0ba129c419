package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// laneReadAll runs the lane's parser over data as the server does: the head
// up to the first empty line, then the body, then what follows.
func laneReadAll(data []byte) (*http.Request, []byte, []byte, error) {
	return laneReadAllMode(data, modeProxy)
}

func laneReadAllMode(data []byte, mode laneMode) (*http.Request, []byte, []byte, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	raw, err := readLaneHead(br, nil, laneMaxHead)
	if err != nil {
		return nil, nil, nil, err
	}
	hd, err := parseLaneHeadMode(raw, mode)
	if err != nil {
		return nil, nil, nil, err
	}
	var lb laneBody
	hd.attachBody(br, &lb)
	body, err := io.ReadAll(hd.req.Body)
	if err != nil {
		return nil, nil, nil, err
	}
	rest, _ := io.ReadAll(br)
	return hd.req, body, rest, nil
}

// stdReadAll is what net/http's server makes of data: http.ReadRequest
// plus the checks its conn.readRequest adds.
func stdReadAll(data []byte) (*http.Request, []byte, []byte, error) {
	return stdReadAllMode(data, modeProxy)
}

// stdReadAllMode, in tunnel mode, builds the URL as goproxy's MITM loop
// does: https:// + the request's Host + the target.
func stdReadAllMode(data []byte, mode laneMode) (*http.Request, []byte, []byte, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	r, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, nil, err
	}
	// ReadRequest drops the Host field, which the server checks: read the
	// head again as readRequest does.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
	_, _ = tp.ReadLine()
	mh, _ := tp.ReadMIMEHeader()
	hosts, ok := mh["Host"]
	if r.ProtoMajor != 1 || !ok || len(hosts) != 1 || !httpguts.ValidHostHeader(hosts[0]) {
		return nil, nil, nil, errors.New("server refuses")
	}
	for k, vv := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, nil, nil, errors.New("bad name")
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, nil, nil, errors.New("bad value")
			}
		}
	}
	delete(r.Header, "Host")
	if mode == modeTunnel && !r.URL.IsAbs() {
		u, err := url.Parse("https://" + r.Host + r.URL.String())
		if err != nil {
			return nil, nil, nil, err
		}
		r.URL = u
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, nil, nil, err
	}
	rest, _ := io.ReadAll(br)
	return r, body, rest, nil
}

// checkLaneAgainstStd fails when the lane accepts what net/http refuses, or
// reads it differently: method, target, headers, framing, body, and where
// the next request starts.
func checkLaneAgainstStd(t *testing.T, data []byte) bool {
	return checkLaneAgainstStdMode(t, data, modeProxy)
}

func checkLaneAgainstStdMode(t *testing.T, data []byte, mode laneMode) bool {
	t.Helper()
	lr, lbody, lrest, lerr := laneReadAllMode(data, mode)
	if lerr != nil {
		return false
	}
	sr, sbody, srest, serr := stdReadAllMode(data, mode)
	if serr != nil {
		t.Fatalf("lane accepts what net/http refuses (%v): %q", serr, data)
	}
	if lr.Method != sr.Method || lr.RequestURI != sr.RequestURI || lr.URL.String() != sr.URL.String() ||
		!reflect.DeepEqual(lr.URL, sr.URL) || lr.Host != sr.Host || lr.Proto != sr.Proto || lr.Close != sr.Close {
		t.Fatalf("request line differs:\nlane %s %q %+v host %q close %v\nstd  %s %q %+v host %q close %v\ninput %q",
			lr.Method, lr.RequestURI, lr.URL, lr.Host, lr.Close, sr.Method, sr.RequestURI, sr.URL, sr.Host, sr.Close, data)
	}
	if !reflect.DeepEqual(lr.Header, sr.Header) {
		t.Fatalf("headers differ:\nlane %q\nstd  %q\ninput %q", lr.Header, sr.Header, data)
	}
	if lr.ContentLength != sr.ContentLength || !reflect.DeepEqual(lr.TransferEncoding, sr.TransferEncoding) {
		t.Fatalf("framing differs: lane %d %q, std %d %q; input %q", lr.ContentLength, lr.TransferEncoding, sr.ContentLength, sr.TransferEncoding, data)
	}
	if !bytes.Equal(lbody, sbody) || !bytes.Equal(lrest, srest) {
		t.Fatalf("body or next request differs:\nlane %q | %q\nstd  %q | %q\ninput %q", lbody, lrest, sbody, srest, data)
	}
	return true
}

var laneSeeds = []string{
	"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
	"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\naccept: a\r\nx-custom_h: v \t\r\n\r\nGET http://n/ HTTP/1.1\r\n",
	"POST http://example.com/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhelloGET",
	"POST http://example.com/x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nnext",
	"POST http://example.com/x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n",
	// Smuggling shapes: every one must be handed over (or read exactly as net/http reads it).
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nContent-Length: 3, 3\r\n\r\nabc",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
	"GET http://e/ HTTP/1.1\nHost: e\n\n",
	"GET http://e/ HTTP/1.1\r\nHost: e\r\nX: a\x00b\r\n\r\n",
	"GET http://e/ HTTP/1.1\r\nHost: e\r\nX: a\r\n folded\r\n\r\n",
	"GET http://e/ HTTP/1.1\r\nHost: e\r\nX : a\r\n\r\n",
	"GET http://e/ HTTP/1.1\r\nHost: e\r\nHost: f\r\n\r\n",
	"GET http://e/ HTTP/1.1\r\nHost: e\rX: y\r\n\r\n",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("0", 5000) + "5\r\nhello\r\n0\r\n\r\n",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nContent-Length: +5\r\n\r\nhello",
	"POST http://e/ HTTP/1.1\r\nHost: e\r\nContent-Length: 007\r\n\r\nhelloab",
	"GET http://e/ HTTP/1.1\r\nHost: e\r\nExpect: 100-continue\r\n\r\n",
	"GET http://e/ HTTP/1.1\r\nHost: e\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	"GET http://e/ HTTP/1.1\r\nHost: e\r\nConnection: keep-alive, close\r\nPragma: no-cache\r\n\r\n",
	"CONNECT e:443 HTTP/1.1\r\nHost: e:443\r\n\r\n",
	"GET /x HTTP/1.1\r\nHost: e\r\n\r\n",
	"GET http://e/ HTTP/1.0\r\nHost: e\r\n\r\n",
	"GET HTTP://e/ HTTP/1.1\r\nHost: e\r\n\r\n",
	"GET http://u:p@e:80/a%2Fb;c?d#f HTTP/1.1\r\nHost: e\r\n\r\n",
	"GET http://e/\x7f HTTP/1.1\r\nHost: e\r\n\r\n",
	"GET http://e/ HTTP/1.1\r\nHost: e\r\nX: \x80\xff\r\n\r\n",
	"G\x00T http://e/ HTTP/1.1\r\nHost: e\r\n\r\n",
	"GET http://e/  HTTP/1.1\r\nHost: e\r\n\r\n",
	"GET http://e/ HTTP/1.1 \r\nHost: e\r\n\r\n",
	"GET http://[::1]:80/ HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
	"GET http://e/ HTTP/1.1\r\nHost: e/evil\r\n\r\n",
}

func FuzzLaneParse(f *testing.F) {
	for _, s := range laneSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte("GET /a%2Fb?x=${{%20secrets.T%20}} HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n"))
	f.Add([]byte("POST /a HTTP/1.1\r\nHost: e\r\nContent-Length: 2\r\n\r\nhi"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkLaneAgainstStdMode(t, data, modeProxy)
		checkLaneAgainstStdMode(t, data, modeTunnel)
	})
}

// TestLaneParseSubset pins which of the seeds the lane reads itself; every
// smuggling shape is handed over to net/http.
func TestLaneParseSubset(t *testing.T) {
	accepted := map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 12: true, 23: true, 26: true, 31: true, 33: true, 37: true}
	for i, s := range laneSeeds {
		got := checkLaneAgainstStd(t, []byte(s))
		if got != accepted[i] {
			t.Errorf("seed %d accepted=%v, want %v: %q", i, got, accepted[i], s)
		}
	}
}

func TestLaneParseLimits(t *testing.T) {
	many := "GET http://e/ HTTP/1.1\r\nHost: e\r\n" + strings.Repeat("X-A: 1\r\n", laneMaxHeaders+1) + "\r\n"
	if _, _, _, err := laneReadAll([]byte(many)); !errors.Is(err, errLaneHandoff) {
		t.Fatalf("too many fields: %v", err)
	}
	long := "GET http://e/ HTTP/1.1\r\nHost: e\r\nX-A: " + strings.Repeat("a", laneMaxHead) + "\r\n\r\n"
	if _, _, _, err := laneReadAll([]byte(long)); !errors.Is(err, errLaneHandoff) {
		t.Fatalf("long head: %v", err)
	}
	// A chunk-size line longer than net/http's 4 KiB is a body error.
	big := "POST http://e/ HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("0", 5000) + "5\r\nhello\r\n0\r\n\r\n"
	if _, _, _, err := laneReadAll([]byte(big)); err == nil {
		t.Fatal("oversize chunk-size line accepted")
	}
}

// tunnelURLCases are targets and hosts for tunnelURL: the usual shapes
// (its shortcut) and those that take the String/Parse round trip.
var tunnelURLCases = []struct{ target, host string }{
	{"/hooks?token=${{%20secrets.TOKEN%20}}", "127.0.0.1:8443"},
	{"/a/b", "api.example.com"},
	{"/a%2Fb?x=1", "api.example.com:443"},
	{"/a b", "e"},
	{"/a#b", "e"},
	{"/a?x=1#frag", "e"},
	{"/?", "e"},
	{"//x/y", "e"},
	{"/%7E/~", "E.Example:80"},
	{"/a;b?c=d;e", "e:"},
	{"/", "[::1]:80"},
	{"/", "[::1"},
	{"/", "e:8a"},
	{"/", "e:80:90"},
	{"/", "a]b"},
	{"/é", "e_x-y.z"},
}

// TestLaneTunnelURL: tunnelURL gives, field for field, the URL goproxy's
// https:// + Host + target round trip gives, and refuses what it refuses.
func TestLaneTunnelURL(t *testing.T) {
	for _, c := range tunnelURLCases {
		checkTunnelURL(t, c.target, c.host)
	}
}

func FuzzLaneTunnelURL(f *testing.F) {
	for _, c := range tunnelURLCases {
		f.Add(c.target, c.host)
	}
	f.Fuzz(func(t *testing.T, target, host string) {
		if !strings.HasPrefix(target, "/") || !laneHostOK(host) {
			return
		}
		checkTunnelURL(t, target, host)
	})
}

func checkTunnelURL(t *testing.T, target, host string) {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return
	}
	want, werr := url.Parse("https://" + host + u.String())
	wantOK := werr == nil && want.Host == host
	got, ok := tunnelURL(u, host)
	if ok != wantOK {
		t.Fatalf("%q on %q: ok %v, the round trip's %v (%v)", target, host, ok, wantOK, werr)
	}
	if ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q on %q: %#v, the round trip gives %#v", target, host, got, want)
	}
}
