package template

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"rotor.sh/rotor/internal/jsonx"
)

// Context is where a reference sits. It decides how a reference may be
// spelled (raw, or percent-encoded) and how the value is encoded when it is
// put in place, so a value can never change the structure around it.
type Context int

const (
	// ContextRaw: a body of any other type; the value's bytes go in as they are.
	ContextRaw Context = iota
	// ContextHeader: a header value; the value goes in as is, but CR, LF,
	// NUL and other control characters (except tab) are refused.
	ContextHeader
	// ContextJSON: an application/json (or +json) body; references must sit
	// inside string literals and the value is JSON-string escaped.
	ContextJSON
	// ContextForm: an application/x-www-form-urlencoded body; references may
	// be percent-encoded and the value is query-escaped.
	ContextForm
	// ContextPath: the escaped URL path; the value is path-escaped (a '/' in
	// it cannot add a path segment).
	ContextPath
	// ContextQuery: the raw URL query; the value is query-escaped.
	ContextQuery
	// ContextUserinfo: a decoded userinfo component; the url package escapes
	// it on the way out.
	ContextUserinfo
)

var contextNames = [...]string{"body", "header", "JSON body", "form body", "URL path", "URL query", "URL userinfo"}

func (c Context) String() string { return contextNames[c] }

// decodes reports whether references may be percent-encoded in c, and
// whether '+' stands for a space.
func (c Context) decodes() (percent, plus bool) {
	switch c {
	case ContextForm, ContextQuery:
		return true, true
	case ContextPath:
		return true, false
	}
	return false, false
}

// ErrValueRefused: a resolved value cannot be placed in its context (a header
// injection attempt, say). The value itself is never in the error.
var ErrValueRefused = errors.New("secret value refused in this position")

// ErrOutsideString: a JSON body has a reference outside a string literal.
var ErrOutsideString = errors.New("secret reference outside a JSON string")

// encodeValue appends v encoded for c.
func encodeValue(dst []byte, c Context, name string, v []byte) ([]byte, error) {
	switch c {
	case ContextHeader:
		for _, b := range v {
			if b < 0x20 && b != '\t' || b == 0x7f {
				return dst, fmt.Errorf("%w: the value of %s holds a control character (CR, LF, NUL...) that would break the %s", ErrValueRefused, name, c)
			}
		}
		return append(dst, v...), nil
	case ContextJSON:
		return jsonx.AppendStringContent(dst, v), nil
	case ContextForm, ContextQuery:
		return AppendQueryEscape(dst, v), nil
	case ContextPath:
		return AppendPathEscape(dst, v), nil
	}
	return append(dst, v...), nil
}

// AppendQueryEscape appends what url.QueryEscape(string(v)) returns, and
// AppendPathEscape what url.PathEscape does (TestEscapeLikeNetURL), without
// the string copies of the plaintext those make.
func AppendQueryEscape(dst, v []byte) []byte { return appendEscape(dst, v, true) }

// AppendPathEscape is AppendQueryEscape's path-segment twin.
func AppendPathEscape(dst, v []byte) []byte { return appendEscape(dst, v, false) }

func appendEscape(dst, v []byte, query bool) []byte {
	const upperHex = "0123456789ABCDEF"
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			dst = append(dst, c)
		case query && c == ' ':
			dst = append(dst, '+')
		case !query && (c == '$' || c == '&' || c == '+' || c == ':' || c == '=' || c == '@'):
			// Reserved characters a path segment keeps as they are.
			dst = append(dst, c)
		default:
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xf])
		}
	}
	return dst
}

// ResolveFunc returns the plaintext of a secret for the request being
// rewritten. Errors stop the rewrite.
type ResolveFunc func(name string) ([]byte, error)

// RewriteString rewrites every reference in s for context c. It returns s
// itself (no allocation) when s holds no '$' or '%'.
func RewriteString(s string, c Context, resolve ResolveFunc) (string, int, error) {
	percent, _ := c.decodes()
	if !containsCandidate(s, percent) {
		return s, 0, nil
	}
	rw := rewriter{ctx: c, resolve: resolve}
	// One allocation and one copy: step only reads its input, so it scans
	// s's bytes in place, and out is handed over as the result (nothing
	// else holds it).
	out, _, err := rw.step(make([]byte, 0, len(s)+64), unsafe.Slice(unsafe.StringData(s), len(s)), true)
	if err != nil {
		return "", rw.refs, err
	}
	return unsafe.String(unsafe.SliceData(out), len(out)), rw.refs, nil
}

// AppendRewriteString appends s to dst with every reference rewritten for
// c: what RewriteString returns, into a buffer the caller owns, so a caller
// rewriting several strings (a request's path, query and headers) can keep
// them all in one buffer instead of an allocation each. When s holds
// nothing that could start a reference it returns dst unchanged and 0; with
// 0 references and no error, what it appended is s itself. On an error dst
// is returned as it was (its spare capacity may have been written).
func AppendRewriteString(dst []byte, s string, c Context, resolve ResolveFunc) ([]byte, int, error) {
	percent, _ := c.decodes()
	if !containsCandidate(s, percent) {
		return dst, 0, nil
	}
	rw := rewriter{ctx: c, resolve: resolve}
	// step only reads its input: s's bytes are scanned in place.
	out, _, err := rw.step(dst, unsafe.Slice(unsafe.StringData(s), len(s)), true)
	if err != nil {
		return dst, rw.refs, err
	}
	return out, rw.refs, nil
}

// ErrOutputLimit: AppendRewrite's output passed the bound it was given
// (values much longer than their references); nothing of it may be used.
var ErrOutputLimit = errors.New("rewritten output past its bound")

// Rewritten is what AppendRewrite replaced.
type Rewritten struct {
	// Refs is how many references were replaced; Bytes how many bytes of
	// reference text.
	Refs  int
	Bytes int64
}

// AppendRewrite appends src, the whole of a body, to dst with every
// reference rewritten for c: what a Rewriter reading src would return, in
// one pass and without its buffers. When src holds nothing that could start
// a reference, it returns dst unchanged, Refs 0 and a nil error, so the
// caller can send src as it is. Past max bytes appended (max > 0) it stops
// with ErrOutputLimit, before resolving further references; the bound
// keeps a body whose values are far longer than their references from
// growing without limit.
func AppendRewrite(dst, src []byte, c Context, resolve ResolveFunc, max int) ([]byte, Rewritten, error) {
	if !MayRewrite(src, c) {
		return dst, Rewritten{}, nil
	}
	rw := rewriter{ctx: c, resolve: resolve, limit: max, base: len(dst)}
	out, used, err := rw.step(dst, src, true)
	n := Rewritten{Refs: rw.refs, Bytes: rw.replaced}
	if err != nil {
		return dst, n, err
	}
	if used != len(src) {
		// step decides everything at EOF; as the Rewriter, never emit a
		// body with undecided input.
		return dst, n, fmt.Errorf("%w: internal: undecided input at EOF", ErrReference)
	}
	return out, n, nil
}

// MayRewrite reports whether src holds a byte that could start a
// reference in c ('$', or '%' where c percent-decodes). AppendRewrite
// leaves a src without one as it is, so a caller can skip the output
// buffer altogether.
func MayRewrite(src []byte, c Context) bool {
	if percent, _ := c.decodes(); percent {
		return indexDollarOrPercent(src) >= 0
	}
	return bytes.IndexByte(src, '$') >= 0
}

// containsCandidate reports whether s holds a '$' (or, when percent, a
// '%'): whether anything in it could start a reference. Vectorized
// searches: most strings a request carries hold neither.
func containsCandidate(s string, percent bool) bool {
	return strings.IndexByte(s, '$') >= 0 || percent && strings.IndexByte(s, '%') >= 0
}

// jsonLex tracks just enough JSON to know whether a byte is inside a string.
type jsonLex struct {
	inString, escaped bool
}

// feed advances the state over b, jumping between quotes and backslashes
// with vectorized searches rather than looking at every byte.
func (j *jsonLex) feed(b []byte) {
	for len(b) > 0 {
		if j.escaped {
			j.escaped = false
			b = b[1:]
			continue
		}
		if !j.inString {
			i := bytes.IndexByte(b, '"')
			if i < 0 {
				return
			}
			j.inString = true
			b = b[i+1:]
			continue
		}
		q := bytes.IndexByte(b, '"')
		end := q
		if end < 0 {
			end = len(b)
		}
		if bs := bytes.IndexByte(b[:end], '\\'); bs >= 0 {
			j.escaped = true
			b = b[bs+1:]
			continue
		}
		if q < 0 {
			return
		}
		j.inString = false
		b = b[q+1:]
	}
}

// rewriter holds the state that spans chunks of a stream.
type rewriter struct {
	ctx     Context
	resolve ResolveFunc
	json    jsonLex
	refs    int
	// replaced counts the bytes of references replaced (for metrics).
	replaced int64
	// limit, if > 0, bounds the output appended past base (AppendRewrite).
	limit, base int
}

// step rewrites as much of b as can be decided, returning bytes consumed.
func (rw *rewriter) step(out, b []byte, atEOF bool) ([]byte, int, error) {
	percent, plus := rw.ctx.decodes()
	i := 0
	for i < len(b) {
		var c int
		if percent {
			c = indexDollarOrPercent(b[i:])
		} else {
			c = bytes.IndexByte(b[i:], '$')
		}
		if c < 0 {
			// No '$' (nor, when decoding, '%') is left, so nothing here can
			// start a reference: a trailing "%" or "%2" is found above and
			// held back by matchRef.
			out = rw.emit(out, b[i:])
			return out, len(b), nil
		}
		c += i
		out = rw.emit(out, b[i:c])
		kind, end, name, err := matchRef(b, c, percent, plus, atEOF)
		switch kind {
		case noMatch:
			out = rw.emit(out, b[c:c+1])
			i = c + 1
		case needMore:
			return out, c, nil
		case malformed:
			return out, c, fmt.Errorf("in the %s: %w", rw.ctx, err)
		case matched:
			if rw.limit > 0 && len(out)-rw.base > rw.limit {
				return out, c, ErrOutputLimit
			}
			if rw.ctx == ContextJSON && (!rw.json.inString || rw.json.escaped) {
				return out, c, fmt.Errorf("%w: reference to %s", ErrOutsideString, name)
			}
			v, err := rw.resolve(name)
			if err != nil {
				return out, c, err
			}
			if out, err = encodeValue(out, rw.ctx, name, v); err != nil {
				return out, c, err
			}
			rw.refs++
			rw.replaced += int64(end - c)
			i = end
		}
	}
	return out, len(b), nil
}

func (rw *rewriter) emit(out, b []byte) []byte {
	if rw.ctx == ContextJSON {
		rw.json.feed(b)
	}
	return append(out, b...)
}

func indexDollarOrPercent(b []byte) int {
	for i, c := range b {
		if c == '$' || c == '%' {
			return i
		}
	}
	return -1
}

// readChunk is how much the streaming rewriter reads from its source at once.
const readChunk = 32 << 10

// Rewriter rewrites references in a stream as it flows, holding at most
// readChunk plus maxRefBytes of input, so a body of any size passes in
// constant memory. A reference split across reads is found all the same.
type Rewriter struct {
	src  io.Reader
	rw   rewriter
	in   []byte // undecided input
	out  []byte // rewritten output not yet read
	rd   int    // read offset into out
	eof  bool
	err  error
	read int64
}

// rewriteBufs recycles the Rewriter's two buffers (about 64 KiB per
// request body otherwise), which under load is most of the proxy's garbage.
var rewriteBufs sync.Pool

type bufPair struct{ in, out []byte }

// NewRewriter returns a Rewriter over src for context c.
func NewRewriter(src io.Reader, c Context, resolve ResolveFunc) *Rewriter {
	r := &Rewriter{src: src, rw: rewriter{ctx: c, resolve: resolve}}
	if bp, ok := rewriteBufs.Get().(*bufPair); ok {
		r.in, r.out = bp.in[:0], bp.out[:0]
	}
	return r
}

// release returns the buffers once the stream is finished and drained.
func (r *Rewriter) release() {
	if r.in == nil && r.out == nil {
		return
	}
	rewriteBufs.Put(&bufPair{in: r.in[:0], out: r.out[:0]})
	r.in, r.out, r.rd = nil, nil, 0
}

// References is how many references have been replaced so far.
func (r *Rewriter) References() int { return r.rw.refs }

// ReplacedBytes is how many bytes of reference text have been replaced.
func (r *Rewriter) ReplacedBytes() int64 { return r.rw.replaced }

// Err is the error that stopped the rewrite, if any (not io.EOF).
func (r *Rewriter) Err() error {
	if r.err == io.EOF {
		return nil
	}
	return r.err
}

// fastPathMin: reads at least this large try the zero-copy path.
const fastPathMin = 4 << 10

// Read implements io.Reader. A malformed reference, a failed resolution or
// a refused value is returned as the error, and nothing after it is emitted.
func (r *Rewriter) Read(p []byte) (int, error) {
	if n, ok := r.readFast(p); ok {
		return n, nil
	}
	for r.rd == len(r.out) {
		if r.err != nil {
			r.release()
			return 0, r.err
		}
		r.out, r.rd = r.out[:0], 0
		r.fill()
	}
	n := copy(p, r.out[r.rd:])
	r.rd += n
	return n, nil
}

// readFast reads straight into p when nothing is pending and returns the
// bytes before the first possible reference untouched: most chunks of most
// bodies hold no '$' at all, and then cost no copy. The rest of the chunk,
// from the first candidate on, goes to the general path.
func (r *Rewriter) readFast(p []byte) (int, bool) {
	if len(p) < fastPathMin || len(r.in) != 0 || r.rd != len(r.out) || r.err != nil || r.eof {
		return 0, false
	}
	n, err := r.src.Read(p)
	r.read += int64(n)
	switch {
	case err == io.EOF:
		r.eof = true
	case err != nil:
		r.err = err
	}
	percent, _ := r.rw.ctx.decodes()
	c := -1
	if percent {
		c = indexDollarOrPercent(p[:n])
	} else {
		c = bytes.IndexByte(p[:n], '$')
	}
	if c < 0 {
		if r.rw.ctx == ContextJSON {
			r.rw.json.feed(p[:n])
		}
		if n == 0 {
			return 0, false // let the general path report EOF or the error
		}
		return n, true
	}
	// Hand the tail to the general path, which decides what it is.
	if r.rw.ctx == ContextJSON {
		r.rw.json.feed(p[:c])
	}
	if cap(r.in) < n-c+readChunk {
		r.in = make([]byte, 0, n-c+readChunk+maxRefBytes)
	}
	r.in = append(r.in[:0], p[c:n]...)
	if c == 0 {
		return 0, false
	}
	return c, true
}

func (r *Rewriter) fill() {
	if r.eof {
		if len(r.in) == 0 {
			r.err = io.EOF
			return
		}
	} else {
		if cap(r.in)-len(r.in) < readChunk {
			grown := make([]byte, len(r.in), len(r.in)+readChunk+maxRefBytes)
			copy(grown, r.in)
			r.in = grown
		}
		n, err := r.src.Read(r.in[len(r.in):cap(r.in)])
		r.in = r.in[:len(r.in)+n]
		r.read += int64(n)
		if err == io.EOF {
			r.eof = true
		} else if err != nil {
			r.err = err
			return
		}
	}
	out, used, err := r.rw.step(r.out, r.in, r.eof)
	r.out = out
	if err != nil {
		// Emit nothing past a failure: the request must not be completed.
		r.out, r.rd, r.err = r.out[:0], 0, err
		return
	}
	r.in = append(r.in[:0], r.in[used:]...)
	if r.eof && len(r.in) > 0 {
		r.err = fmt.Errorf("%w: internal: undecided input at EOF", ErrReference)
		r.out = r.out[:0]
	}
}

// References returns the secret names referenced in s (in context c),
// without resolving anything, or the error a malformed reference gives.
// Queues validate their templates with it.
func References(s string, c Context) ([]string, error) {
	var names []string
	_, _, err := RewriteString(s, c, func(name string) ([]byte, error) {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
		return []byte("x"), nil
	})
	return names, err
}
