package proxy

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"rotor.sh/rotor/internal/jsonx"
)

// maxContentCodings bounds the codings of one response the proxy undoes
// (gzip of gzip is legal, a hundred layers is an attack).
const maxContentCodings = 4

// hopByHop are the connection-specific fields of RFC 9110 §7.6.1 (plus the
// obsolete Proxy-Connection clients still send). Every Proxy-* field is
// dropped too (removeHopByHop).
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade", "Trailer"}

// removeHopByHop deletes the hop-by-hop fields of h, the fields its
// Connection header names, and every Proxy-* field: they describe one
// connection and must not be forwarded over the next (RFC 9110 §7.6.1).
// Trailer is kept in responses (keepTrailer), where it announces trailers
// the proxy relays.
func removeHopByHop(h http.Header, keepTrailer bool) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	// One pass over the fields present (a request has a handful) rather
	// than a Del per hop-by-hop name, each canonicalising and hashing a
	// name that is mostly absent: twice per request, that showed in the
	// profile (issue 15). Del matches canonical keys only, and so does
	// this: hopByHop's names are canonical.
	for k := range h {
		if strings.HasPrefix(k, "Proxy-") || isHopByHop(k) && (k != "Trailer" || !keepTrailer) {
			delete(h, k)
		}
	}
}

// isHopByHop reports whether k is one of hopByHop.
func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Transfer-Encoding", "Upgrade", "Trailer":
		return true
	}
	return false
}

// removeOwned deletes every field in the proxy's own namespace (X-Rotor-*,
// Rotor-*): only the proxy speaks there, so an upstream cannot forge an
// X-Rotor-Error that a worker or the dispatcher would take for the
// proxy's.
func removeOwned(h http.Header) {
	for k := range h {
		if hasPrefixFold(k, "x-rotor-") || hasPrefixFold(k, "rotor-") {
			delete(h, k)
		}
	}
}

// hasPrefixFold is strings.HasPrefix without regard to ASCII case, with no
// lowered copy of s.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// valueForms are the forms of a resolved value the scrubber looks for,
// each replaced with the reference: the raw bytes (also what a server
// reflects after decoding a query or path), each encoding the rewriter
// produces (query and path percent-encoding, JSON string content), the
// JSON escapings servers commonly use when they reflect it (only '"' and
// '\' escaped; '/' escaped too, as PHP does; non-ASCII as \uXXXX, as
// Python does), HTML escaping (Go's and
// Python's entities, as error pages reflect it), hex, and base64 (standard
// and URL alphabets, at each of the three alignments the value can have
// inside a longer encoded text: only the characters that depend on the
// value alone). The matcher ignores ASCII case, which covers upper-cased
// echoes and either case of hex and percent-escapes.
//
// Two allocations: every form and the reference share one buffer (sliced
// once it is complete, so a growth cannot leave a form behind), and the
// patterns. No plaintext copy is made outside that buffer.
func valueForms(name string, v []byte) []scrubPattern {
	const nForms = 16
	html := 0
	for _, c := range v {
		if c == '&' || c == '<' || c == '>' || c == '"' || c == '\'' {
			html++
		}
	}
	nonASCII := 0
	for _, c := range v {
		if c >= utf8.RuneSelf {
			nonASCII++
		}
	}
	buf := make([]byte, 0, 18*len(v)+2*(len(v)+5*html)+len(v)+6*nonASCII+len(name)+48)
	buf = append(buf, "${{ secrets."...)
	buf = append(buf, name...)
	buf = append(buf, " }}"...)
	var ends [nForms + 1]int
	ends[0] = len(buf)
	k := 1
	mark := func() { ends[k] = len(buf); k++ }
	buf = append(buf, v...)
	mark()
	buf = appendQueryEscape(buf, v)
	mark()
	buf = appendPathEscape(buf, v)
	mark()
	buf = jsonx.AppendStringContent(buf, v)
	mark()
	buf = appendJSONMinimal(buf, v, false)
	mark()
	buf = appendJSONMinimal(buf, v, true)
	mark()
	buf = appendJSONASCII(buf, v)
	mark()
	buf = appendHTMLEscape(buf, v, `&#34;`, `&#39;`) // Go's html.EscapeString
	mark()
	buf = appendHTMLEscape(buf, v, `&quot;`, `&#x27;`) // Python's html.escape
	mark()
	buf = hex.AppendEncode(buf, v)
	mark()
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for align := range 3 {
			buf = appendBase64Core(buf, v, align, enc)
			mark()
		}
	}
	ref := buf[:ends[0]:ends[0]]
	var forms [nForms][]byte
	for i := range forms {
		forms[i] = buf[ends[i]:ends[i+1]:ends[i+1]]
	}
	out := make([]scrubPattern, 0, len(forms))
	for i, f := range forms {
		dup := len(f) < minScrubLen
		for _, g := range forms[:i] {
			dup = dup || bytes.EqualFold(f, g)
		}
		if !dup {
			out = append(out, scrubPattern{find: f, replace: ref})
		}
	}
	return out
}

// appendJSONASCII appends v escaped for a JSON string by an encoder that
// writes ASCII only (Python's json.dumps): minimal escapes, and each
// non-ASCII character as \uXXXX (a surrogate pair beyond U+FFFF). Invalid
// UTF-8 becomes \ufffd.
func appendJSONASCII(out, v []byte) []byte {
	const hexDigits = "0123456789abcdef"
	u := func(out []byte, r rune) []byte {
		return append(out, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
	}
	for i := 0; i < len(v); {
		if v[i] < utf8.RuneSelf {
			out = appendJSONMinimal(out, v[i:i+1], false)
			i++
			continue
		}
		r, size := utf8.DecodeRune(v[i:])
		i += size
		if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
			out = u(u(out, r1), r2)
		} else {
			out = u(out, r)
		}
	}
	return out
}

// appendHTMLEscape appends v with &, <, > and the two quotes as HTML
// entities (quot and apos name the spellings of the quotes).
func appendHTMLEscape(out, v []byte, quot, apos string) []byte {
	for _, c := range v {
		switch c {
		case '&':
			out = append(out, "&amp;"...)
		case '<':
			out = append(out, "&lt;"...)
		case '>':
			out = append(out, "&gt;"...)
		case '"':
			out = append(out, quot...)
		case '\'':
			out = append(out, apos...)
		default:
			out = append(out, c)
		}
	}
	return out
}

// appendBase64Core appends the characters of the base64 of v that depend
// on v alone when v starts at byte offset align (mod 3) of the encoded
// text: what any base64 text containing v contains, whatever surrounds
// it. enc is a raw (unpadded) encoding.
func appendBase64Core(out, v []byte, align int, enc *base64.Encoding) []byte {
	if align > 0 {
		// The group v starts in: its first align bytes are unknown (zero
		// here), and its first align+1 characters carry bits of them.
		if len(v) < 3-align {
			return out
		}
		var head [3]byte
		copy(head[align:], v[:3-align])
		var h [4]byte
		enc.Encode(h[:], head[:])
		out = append(out, h[align+1:]...)
		v = v[3-align:]
	}
	out = enc.AppendEncode(out, v)
	if len(v)%3 != 0 {
		// The last character of a partial group shares bits with the
		// byte after v.
		out = out[:len(out)-1]
	}
	return out
}

// appendJSONMinimal appends v escaped for a JSON string the way minimal
// encoders do: '"', '\' and control characters only (and '/' if slash).
func appendJSONMinimal(out, v []byte, slash bool) []byte {
	const hexDigits = "0123456789abcdef"
	for _, c := range v {
		switch {
		case c == '"' || c == '\\' || slash && c == '/':
			out = append(out, '\\', c)
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\r':
			out = append(out, '\\', 'r')
		case c == '\t':
			out = append(out, '\\', 't')
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			out = append(out, c)
		}
	}
	return out
}

// basicForms are the forms of a Basic credential that carried a resolved
// value: its base64 (padded, unpadded, URL-safe), replaced with the base64
// of the credential as the client wrote it (with the reference).
func basicForms(sent, written string) []scrubPattern {
	var out []scrubPattern
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		f := []byte(enc.EncodeToString([]byte(sent)))
		dup := false
		for _, p := range out {
			dup = dup || bytes.Equal(p.find, f)
		}
		if !dup {
			out = append(out, scrubPattern{find: f, replace: []byte(enc.EncodeToString([]byte(written)))})
		}
	}
	return out
}

// decodeResponse undoes the response's gzip and deflate codings, so the
// scrubber reads the plain body, and relays it decoded (Content-Encoding
// and Content-Length removed): re-encoding would cost CPU for nothing the
// worker needs. Any other coding cannot be scanned: ErrResponseUnscannable.
func decodeResponse(resp *http.Response) error {
	var codings []string
	for _, v := range resp.Header.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.ToLower(textproto.TrimString(c)); c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	if len(codings) == 0 || resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0 {
		return nil // nothing to decode, or no body to read (HEAD, 204, 304)
	}
	if len(codings) > maxContentCodings {
		return fmt.Errorf("%w: %d content codings", ErrResponseUnscannable, len(codings))
	}
	for _, c := range codings {
		if c != "gzip" && c != "x-gzip" && c != "deflate" {
			return fmt.Errorf("%w: content coding %q", ErrResponseUnscannable, boundField(c, 40))
		}
	}
	src := resp.Body
	var r io.Reader = src
	// Codings are listed in the order they were applied: undo the last first.
	for i := len(codings) - 1; i >= 0; i-- {
		var err error
		if r, err = decoder(codings[i], r); err != nil {
			return fmt.Errorf("%w: %s body: %v", ErrResponseUnscannable, codings[i], err)
		}
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{r, src}
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	resp.Uncompressed = true
	return nil
}

func decoder(coding string, r io.Reader) (io.Reader, error) {
	if coding != "deflate" {
		return gzip.NewReader(r)
	}
	// "deflate" is zlib-wrapped (RFC 9110 §8.4.1.2); some servers send raw
	// deflate. A zlib header is two bytes whose big-endian value is a
	// multiple of 31, with method 8.
	br := bufio.NewReader(r)
	h, err := br.Peek(2)
	if err != nil {
		return nil, err
	}
	if h[0]&0x0f == 8 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 {
		return zlib.NewReader(br)
	}
	return flate.NewReader(br), nil
}

// scrubResponse replaces echoed plaintext in the response's headers and
// body with the reference text; trailers are scrubbed when the body ends
// (loggedBody.Close). The body is decoded first (decodeResponse).
func (st *reqState) scrubResponse(resp *http.Response, sc *scrubber) int {
	n := scrubHeader(resp.Header, sc)
	if matchesIn(sc.m, resp.Status) {
		// The reason phrase: goproxy writes the upstream's to a client
		// inside an intercepted tunnel. The standard one replaces it.
		resp.Status = strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
		n++
	}
	// The trailers announced so far (names only, relayed before the body):
	// their values are scrubbed when the body ends (cleanTrailer).
	n += scrubHeader(resp.Trailer, sc)
	if resp.Body == nil || resp.Body == http.NoBody {
		return n
	}
	if resp.ContentLength >= 0 && resp.ContentLength <= BufferLimit {
		// Small and of known length: scrubbed whole, so Content-Length
		// stays exact. One allocation of exactly that length (the transport
		// never returns more than Content-Length), relayed as it is when
		// nothing matched.
		var data []byte
		var body *bytesBody
		if resp.ContentLength <= smallBodyLen {
			// A short answer (an acknowledgement, a small JSON object): the
			// bytes and their reader in one allocation.
			sb := new(smallBody)
			data, body = sb.buf[:resp.ContentLength], &sb.bytesBody
		} else {
			data = make([]byte, resp.ContentLength)
		}
		got, err := io.ReadFull(resp.Body, data)
		if err == nil {
			resp.Body.Close()
			if nd, changed := sc.replaceAll(data); changed {
				data = nd
				n++
				resp.ContentLength = int64(len(data))
				resp.Header.Set("Content-Length", strconv.Itoa(len(data)))
			}
			if body == nil {
				body = new(bytesBody)
			}
			body.Reset(data)
			resp.Body = body
			return n
		}
		// A short or failed read: scrub what came, then relay the error.
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		resp.Body = newScrubReader(struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(data[:got]), errReader{err}), resp.Body}, sc, nil)
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
		return n
	}
	resp.Body = newScrubReader(resp.Body, sc, nil)
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return n
}

// bytesBody is a response body held in memory (one allocation, where
// io.NopCloser(bytes.NewReader(b)) makes two).
type bytesBody struct{ bytes.Reader }

func (*bytesBody) Close() error { return nil }

// smallBodyLen is the longest scrubbed body held with its reader (176
// bytes in all, one size class).
const smallBodyLen = 128

type smallBody struct {
	bytesBody
	buf [smallBodyLen]byte
}

// scrubHeader replaces resolved values in the values of h, and deletes
// each field whose name holds one (an upstream that turns query keys into
// response headers): the reference cannot stand in a field name (spaces
// and braces are not token characters), and any rename would be a field
// the upstream never sent. Names are matched without regard to case,
// since the client's HTTP stack re-cases them (Go canonicalizes, HTTP/2
// lower-cases).
func scrubHeader(h http.Header, sc *scrubber) int {
	n := 0
	for k, vs := range h {
		if matchesIn(sc.m, k) {
			delete(h, k)
			n++
			continue
		}
		for i, v := range vs {
			if !matchesIn(sc.m, v) {
				continue // the common case, with no copy of v
			}
			if nv, changed := sc.replaceAll([]byte(v)); changed {
				vs[i] = string(nv) // in place: vs is the map's slice
				n++
			}
		}
	}
	return n
}

// cleanTrailer runs when the body is closed, before the proxy relays the
// trailers: the upstream's trailers get the treatment of its headers.
func cleanTrailer(resp *http.Response, sc *scrubber) int {
	if resp == nil || len(resp.Trailer) == 0 {
		return 0
	}
	removeOwned(resp.Trailer)
	removeHopByHop(resp.Trailer, false)
	if sc == nil {
		return 0
	}
	return scrubHeader(resp.Trailer, sc)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.ErrUnexpectedEOF
	}
	return 0, e.err
}

// boundField truncates a client- or upstream-chosen string for a log line
// or an audit row, marking the cut.
func boundField(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(truncated)"
}

// Bounds of client-chosen fields in the proxy's log line. The host is
// refused beyond maxHostLen before it reaches anything; the port adds a
// few characters.
const (
	maxHostLen   = 253
	maxLogHost   = maxHostLen + 8
	maxLogMethod = 32
	// maxLogRefusedHost: what the log keeps of a host refused as too long.
	maxLogRefusedHost = 64
)

// checkHost refuses a destination host no DNS name can have.
func checkHost(host string) error {
	if len(host) > maxHostLen {
		return fmt.Errorf("%w (%d)", ErrHostTooLong, len(host))
	}
	return nil
}
