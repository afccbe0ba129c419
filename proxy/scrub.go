package proxy

import (
	"bytes"
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

// scrubber replaces resolved plaintext (in each form it was sent in) with
// the reference text, so an upstream that echoes a credential (error pages
// often do) hands the worker back the reference, not the value.
type scrubber struct {
	patterns []scrubPattern
	maxLen   int
}

func newScrubber(p []scrubPattern) *scrubber {
	s := &scrubber{}
	for _, x := range p {
		if len(x.find) < minScrubLen {
			continue
		}
		dup := false
		for _, y := range s.patterns {
			if bytes.Equal(y.find, x.find) {
				dup = true
			}
		}
		if !dup {
			s.patterns = append(s.patterns, x)
			s.maxLen = max(s.maxLen, len(x.find))
		}
	}
	if len(s.patterns) == 0 {
		return nil
	}
	return s
}

// replaceAll scrubs a complete byte slice, returning it unchanged (and
// false) when nothing matched.
func (s *scrubber) replaceAll(b []byte) ([]byte, bool) {
	out, _, n := s.process(nil, b, true)
	if n == 0 {
		return b, false
	}
	return out, true
}

// process scrubs b into out; unless atEOF it keeps back a tail that could
// be the start of a pattern and returns how much of b it consumed and how
// many replacements it made.
func (s *scrubber) process(out, b []byte, atEOF bool) ([]byte, int, int) {
	i, n := 0, 0
	for {
		at, which := -1, -1
		for k, p := range s.patterns {
			if j := bytes.Index(b[i:], p.find); j >= 0 && (at < 0 || j < at || j == at && len(p.find) > len(s.patterns[which].find)) {
				at, which = j, k
			}
		}
		if at < 0 {
			break
		}
		out = append(out, b[i:i+at]...)
		out = append(out, s.patterns[which].replace...)
		i += at + len(s.patterns[which].find)
		n++
	}
	end := len(b)
	if !atEOF {
		end = max(i, len(b)-(s.maxLen-1))
	}
	return append(out, b[i:end]...), end, n
}

// scrubReader streams a response body through a scrubber in bounded memory.
type scrubReader struct {
	src     io.ReadCloser
	s       *scrubber
	in, out []byte
	rd      int
	eof     bool
	err     error
	// replaced counts replacements, read once the body is closed.
	replaced int
}

func (r *scrubReader) Read(p []byte) (int, error) {
	for r.rd == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		r.out, r.rd = r.out[:0], 0
		if r.eof {
			r.err = io.EOF
			continue
		}
		if cap(r.in)-len(r.in) < readChunk {
			grown := make([]byte, len(r.in), len(r.in)+readChunk+r.s.maxLen)
			copy(grown, r.in)
			r.in = grown
		}
		n, err := r.src.Read(r.in[len(r.in):cap(r.in)])
		r.in = r.in[:len(r.in)+n]
		switch {
		case err == io.EOF:
			r.eof = true
		case err != nil:
			r.err = err
			if len(r.in) == 0 {
				continue
			}
		}
		var used, count int
		r.out, used, count = r.s.process(r.out, r.in, r.eof)
		r.replaced += count
		r.in = append(r.in[:0], r.in[used:]...)
	}
	n := copy(p, r.out[r.rd:])
	r.rd += n
	return n, nil
}

func (r *scrubReader) Close() error { return r.src.Close() }
