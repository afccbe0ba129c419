package proxy

import (
	"fmt"
	"io"
)

// minScrubLen: values shorter than this are not scrubbed from responses,
// since replacing every occurrence of a 3-byte string would corrupt
// ordinary content. Secrets that short are not secrets.
const minScrubLen = 6

// scrubPattern is one plaintext form to replace in a response.
type scrubPattern struct {
	find    []byte
	replace []byte
}

// scrubber replaces resolved plaintext (in each form it was sent in or is
// commonly reflected in) with the reference text, so an upstream that
// echoes a credential (error pages often do) hands the worker back the
// reference, not the value.
//
// Matching is Aho–Corasick (matcher), so the cost is linear in the bytes
// scanned however the patterns overlap. Where matches overlap in the text,
// the whole overlapping stretch is replaced once: by the reference of the
// match that starts first (the longest of those, when several start
// there). No byte of any match is ever passed through.
type scrubber struct {
	patterns []scrubPattern
	m        *matcher
}

// MaxScrubBytes bounds the forms one request's scrubber looks for (their
// total length, which bounds the automaton's states at about 31 bytes
// each, plus dense tables): under 50 MB of automaton at worst. A request resolving more secret material than this is
// refused before it is sent (ErrScrubLimit), unless scrubbing is off.
const MaxScrubBytes = 1 << 20

// newScrubberBounded is newScrubber, refusing more than MaxScrubBytes of
// forms.
func newScrubberBounded(p []scrubPattern) (*scrubber, error) {
	total := 0
	for _, x := range p {
		if len(x.find) >= minScrubLen {
			total += len(x.find)
		}
	}
	if total > MaxScrubBytes {
		return nil, fmt.Errorf("%w: %d bytes of resolved values and their encodings, at most %d", ErrScrubLimit, total, MaxScrubBytes)
	}
	return newScrubber(p), nil
}

func newScrubber(p []scrubPattern) *scrubber {
	k := 0
	for _, x := range p {
		if len(x.find) >= minScrubLen {
			k++
		}
	}
	// Sized once: a request resolving one secret has several forms.
	s := &scrubber{patterns: make([]scrubPattern, 0, k)}
	for _, x := range p {
		if len(x.find) < minScrubLen {
			continue
		}
		s.patterns = append(s.patterns, x)
	}
	if len(s.patterns) == 0 {
		return nil
	}
	s.m = newMatcher(s.patterns)
	return s
}

// replaceAll scrubs a complete byte slice, returning it unchanged (and
// false) when nothing matched.
func (s *scrubber) replaceAll(b []byte) ([]byte, bool) {
	if !matchesIn(s.m, b) {
		return b, false // no output buffer for the common case
	}
	sc := scrubScan{s: s}
	out := sc.write(nil, b)
	out = sc.close(out)
	if sc.replaced == 0 {
		return b, false
	}
	return out, true
}

// matchesIn reports whether any of m's patterns occurs in b: a scan with
// no output, so text without a match costs no allocation.
func matchesIn[T string | []byte](m *matcher, b T) bool {
	if len(b) < m.minLen {
		return false
	}
	st := int32(0)
	for i := 0; i < len(b); i++ {
		if st == 0 {
			// No match can start before i: skip the positions that
			// start none, and stop when what is left is too short.
			if i = skipStart(m, b, i); len(b)-i < m.minLen {
				return false
			}
		}
		st = m.step(st, b[i])
		if m.outLen[st] > 0 {
			return true
		}
	}
	return false
}

// scrubScan is one streaming pass of a scrubber: bytes go in through write,
// and come out as soon as no match can still cover them. It holds back at
// most the automaton's depth (the longest pattern) plus nothing of a
// replaced stretch, so memory stays bounded whatever the input.
type scrubScan struct {
	s     *scrubber
	state int32
	// held are the input bytes from offset off on that are neither
	// emitted nor dropped yet.
	off  int64
	held []byte
	// mem is held's buffer (held is a window on it).
	mem []byte
	// The pending replaced stretch [rs, re) and its replacement.
	pending bool
	rs, re  int64
	rep     []byte
	// replaced counts replaced stretches.
	replaced int
}

// write scans b and appends what is final to out.
func (sc *scrubScan) write(out, b []byte) []byte {
	m := sc.s.m
	base := sc.off + int64(len(sc.held))
	sc.hold(b)
	st := sc.state
	for i := 0; i < len(b); i++ {
		if st == 0 {
			i = skipStart(m, b, i) // positions that start no match
		}
		st = m.step(st, b[i])
		if l := m.outLen[st]; l > 0 {
			end := base + int64(i) + 1
			out = sc.match(out, end-int64(l), end, sc.s.patterns[m.outPat[st]].replace)
		}
	}
	sc.state = st
	end := base + int64(len(b))
	return sc.flush(out, end-int64(m.depth[st]))
}

// close ends the input and appends everything left.
func (sc *scrubScan) close(out []byte) []byte {
	return sc.flush(out, sc.off+int64(len(sc.held)))
}

// match records the longest match [s, e) ending at e. Ends only grow, so a
// match either lies after the pending stretch, covers it from an earlier
// (or the same) start, or overlaps its tail.
func (sc *scrubScan) match(out []byte, s, e int64, rep []byte) []byte {
	switch {
	case !sc.pending:
	case s >= sc.re:
		out = sc.flush(out, s) // the pending stretch is final
	case s <= sc.rs:
		sc.rs, sc.re, sc.rep = s, e, rep
		return out
	default:
		sc.re = e
		return out
	}
	sc.pending, sc.rs, sc.re, sc.rep = true, s, e, rep
	return out
}

// flush emits the bytes before safe, the offset before which no future
// match can start, replacing the pending stretch once it is final.
func (sc *scrubScan) flush(out []byte, safe int64) []byte {
	if sc.pending {
		out = sc.emit(out, min(safe, sc.rs))
		if safe > sc.rs {
			// The stretch's start is final: its bytes are never emitted.
			sc.drop(min(sc.re, sc.off+int64(len(sc.held))))
		}
		if safe < sc.re {
			return out
		}
		out = append(out, sc.rep...)
		sc.replaced++
		sc.pending = false
	}
	return sc.emit(out, safe)
}

func (sc *scrubScan) emit(out []byte, to int64) []byte {
	if n := to - sc.off; n > 0 {
		out = append(out, sc.held[:n]...)
		sc.held = sc.held[n:]
		sc.off = to
	}
	return out
}

func (sc *scrubScan) drop(to int64) {
	if n := to - sc.off; n > 0 {
		sc.held = sc.held[n:]
		sc.off = to
	}
}

// hold appends b to the held bytes, moving them to the front of their
// buffer first when that makes room, so a long stream reuses one buffer.
func (sc *scrubScan) hold(b []byte) {
	if cap(sc.held)-len(sc.held) < len(b) && sc.mem != nil {
		n := copy(sc.mem, sc.held)
		sc.held = sc.mem[:n]
		if cap(sc.held)-n < len(b) {
			sc.mem = make([]byte, 2*(n+len(b)))
			copy(sc.mem, sc.held)
			sc.held = sc.mem[:n]
		}
	}
	sc.held = append(sc.held, b...)
	if sc.mem == nil || cap(sc.held) > cap(sc.mem) {
		sc.mem = sc.held[:cap(sc.held)]
	}
}

// scrubReader streams a response body through a scrubber in bounded memory.
type scrubReader struct {
	src io.ReadCloser
	sc  scrubScan
	buf []byte
	out []byte
	rd  int
	err error
	// full: the last read filled buf (grow it).
	full bool
	// onEOF runs once, when the source is exhausted (trailers are known
	// then).
	onEOF func()
}

func newScrubReader(src io.ReadCloser, s *scrubber, onEOF func()) *scrubReader {
	return &scrubReader{src: src, sc: scrubScan{s: s}, onEOF: onEOF}
}

// replaced counts replacements in the body so far.
func (r *scrubReader) replaced() int { return r.sc.replaced }

func (r *scrubReader) Read(p []byte) (int, error) {
	for r.rd == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		// Start small and double up to readChunk: most echoed bodies are
		// error pages of a few hundred bytes.
		if len(r.buf) < readChunk && (r.buf == nil || r.full) {
			r.buf = make([]byte, min(readChunk, max(2*len(r.buf), 2<<10)))
		}
		r.out, r.rd = r.out[:0], 0
		n, err := r.src.Read(r.buf)
		r.full = n == len(r.buf)
		r.out = r.sc.write(r.out, r.buf[:n])
		if err != nil {
			if err == io.EOF {
				r.out = r.sc.close(r.out)
				if r.onEOF != nil {
					r.onEOF()
					r.onEOF = nil
				}
			}
			r.err = err
		}
	}
	n := copy(p, r.out[r.rd:])
	r.rd += n
	return n, nil
}

func (r *scrubReader) Close() error { return r.src.Close() }
