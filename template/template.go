package template

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"rotor.sh/rotor/vault"
)

// References look like ${{ secrets.NAME }} or $<< secrets.NAME >>, with
// optional spaces or tabs inside the brackets. In URL components and form
// bodies any character of a reference may be percent-encoded (and '+' is a
// space), because HTTP clients encode '$', braces, angle brackets and spaces
// before the proxy sees them.
//
// Once "${{ secrets." (or "$<< secrets.") has been read, the text is a
// reference: anything malformed after that point is an error, so a request
// with a broken reference is refused rather than sent with template text.
//
// Near-misses fail closed the same way: '$', up to two spaces, one to three
// '{' or '<', spaces, then "secret." or "secrets." in any case, in any form
// but the exact one ("${{ secret.X }}", "${{ Secrets.X }}", "${ secrets.X }",
// "${{{ secrets.X }}}", "$ {{ secrets.X }}", "$<< secret.X >>"). A typo there
// would otherwise send the template text, and never the secret, upstream.
// Text that merely looks similar (${{ env.X }}, ${HOME}, $<<EOF) passes
// untouched.
const (
	refPrefix = "secrets."
	// maxRefSpace bounds the spaces on each side of a reference's name; more
	// than that and the text is not taken as a reference.
	maxRefSpace = 32
	// maxRefChars is the longest reference, in decoded characters.
	maxRefChars = 3 + maxRefSpace + len(refPrefix) + vault.MaxNameLen + 1 + maxRefSpace + 2
	// maxRefBytes is the longest reference as raw bytes (every character
	// percent-encoded): the streaming rewriter's look-ahead bound.
	maxRefBytes = 3 * maxRefChars
	// maxNearGap and maxNearBrackets bound what is read as a near-miss
	// ("$ {{", "${{{"); both stay well inside maxRefChars.
	maxNearGap      = 2
	maxNearBrackets = 3
)

// ErrReference is the sentinel of every malformed-reference error.
var ErrReference = errors.New("malformed secret reference")

type matchKind int

const (
	noMatch   matchKind = iota
	matched             // a complete, valid reference
	needMore            // the input ends before a decision; read more
	malformed           // a committed reference that is not valid
)

// scanner reads logical characters from raw bytes, decoding %XX (and '+')
// where the context allows.
type scanner struct {
	b         []byte
	pos       int
	decode    bool // percent-decoding
	plusSpace bool // '+' is a space (query strings, form bodies)
	atEOF     bool
}

// next returns the next logical character; ok=false means the input ends
// (more may come unless atEOF).
func (s *scanner) next() (c byte, ok bool) {
	if s.pos >= len(s.b) {
		return 0, false
	}
	c = s.b[s.pos]
	if s.decode && c == '%' {
		if s.pos+2 >= len(s.b) {
			if !s.atEOF {
				return 0, false // cannot tell yet whether this is %XX
			}
		} else if h, l := unhex(s.b[s.pos+1]), unhex(s.b[s.pos+2]); h >= 0 && l >= 0 {
			s.pos += 3
			return byte(h<<4 | l), true
		}
	}
	if s.plusSpace && c == '+' {
		c = ' '
	}
	s.pos++
	return c, true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

func isNameChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
}

// matchRef tries to read a reference starting at b[start]. On matched it
// returns the end (exclusive) and the secret name; on malformed an error
// wrapping ErrReference.
func matchRef(b []byte, start int, decode, plusSpace, atEOF bool) (kind matchKind, end int, name string, err error) {
	s := scanner{b: b, pos: start, decode: decode, plusSpace: plusSpace, atEOF: atEOF}
	// Before commitment, running out of input is needMore (or noMatch at EOF).
	short := func() (matchKind, int, string, error) {
		if atEOF {
			return noMatch, 0, "", nil
		}
		return needMore, 0, "", nil
	}
	var c, open, closer byte
	var ok bool
	if n, cl := spelledPrefix(b[start:], decode, plusSpace); n > 0 {
		// The opening exactly as clients spell it: what the reading
		// below commits to, without reading it a character at a time.
		s.pos, closer = start+n, cl
	} else {
		c, ok = s.next()
		if !ok {
			return short()
		}
		if c != '$' {
			return noMatch, 0, "", nil
		}
		// A space between '$' and the brackets is only ever a near-miss.
		gap := 0
		for {
			if c, ok = s.next(); !ok {
				return short()
			}
			if !isSpace(c) {
				break
			}
			if gap++; gap > maxNearGap {
				return noMatch, 0, "", nil
			}
		}
		open = c
		switch open {
		case '{':
			closer = '}'
		case '<':
			closer = '>'
		default:
			return noMatch, 0, "", nil
		}
		brackets := 1
		for {
			if c, ok = s.next(); !ok {
				return short()
			}
			if c != open {
				break
			}
			if brackets++; brackets > maxNearBrackets {
				return noMatch, 0, "", nil
			}
		}
		spaces := 0
		for isSpace(c) {
			if spaces++; spaces > maxRefSpace {
				return noMatch, 0, "", nil
			}
			if c, ok = s.next(); !ok {
				return short()
			}
		}
		// The prefix, compared without regard to case and with the plural's 's'
		// optional: "secret.", "Secrets." and the like are near-misses.
		var word [len(refPrefix)]byte
		n := 0
		for {
			if n > 0 {
				if c, ok = s.next(); !ok {
					return short()
				}
			}
			word[n] = c
			n++
			if c == '.' || n == len(word) {
				break
			}
		}
		if !prefixLike(word[:n]) {
			return noMatch, 0, "", nil
		}
		if gap != 0 || brackets != 2 || string(word[:n]) != refPrefix {
			return malformed, 0, "", fmt.Errorf("%w: %q is not a reference; write $%c%c %sNAME %c%c",
				ErrReference, nearMissText(gap, open, brackets, spaces, word[:n]), open, open, refPrefix, closer, closer)
		}
	}
	// Committed: from here on the text is a secret reference.
	bad := func(format string, args ...any) (matchKind, int, string, error) {
		return malformed, 0, "", fmt.Errorf("%w: %s", ErrReference, fmt.Sprintf(format, args...))
	}
	unterminated := func() (matchKind, int, string, error) {
		if atEOF {
			return bad("unterminated reference (expected %c%c)", closer, closer)
		}
		return needMore, 0, "", nil
	}
	if end, name := spelledRest(b, s.pos, closer, decode, plusSpace); end > 0 {
		return matched, end, name, nil
	}
	var nameArr [vault.MaxNameLen]byte
	nameBuf := nameArr[:0]
	for {
		if c, ok = s.next(); !ok {
			return unterminated()
		}
		if !isNameChar(c) {
			break
		}
		if len(nameBuf) == vault.MaxNameLen {
			return bad("secret name longer than %d characters", vault.MaxNameLen)
		}
		nameBuf = append(nameBuf, c)
	}
	if len(nameBuf) == 0 {
		return bad("missing secret name after %q", refPrefix)
	}
	spaces := 0
	for isSpace(c) {
		if spaces++; spaces > maxRefSpace {
			return bad("too much space in reference to %s", string(nameBuf))
		}
		if c, ok = s.next(); !ok {
			return unterminated()
		}
	}
	if c != closer {
		return bad("unexpected %q in reference to %s (expected %c%c)", c, string(nameBuf), closer, closer)
	}
	if c, ok = s.next(); !ok {
		return unterminated()
	}
	if c != closer {
		return bad("unexpected %q in reference to %s (expected %c%c)", c, string(nameBuf), closer, closer)
	}
	// The name outlives the scan (audit rows, the request's list): a name
	// seen before comes from the intern table, a new one is copied once.
	if name = internedName(nameBuf); name == "" {
		name = string(nameBuf)
		if err := vault.ValidateName(name); err != nil {
			return bad("%v", err)
		}
		internName(name)
	}
	return matched, s.pos, name, nil
}

// names interns valid secret names: every resolving request matches the
// same few names, and each match would otherwise copy its name to a new
// string. A fixed table of slots chosen by hash, each holding the last
// valid name that hashed there: bounded (a name is at most
// vault.MaxNameLen bytes), lock-free, and a miss costs only the copy it
// saves. Names are not secret (they are in logs and audit rows).
var names [256]atomic.Pointer[string]

func nameSlot(b []byte) *atomic.Pointer[string] {
	h := uint32(2166136261) // FNV-1a
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return &names[h%uint32(len(names))]
}

// internedName is the interned copy of b, or "" when b is not in the table
// (only names that passed vault.ValidateName are).
func internedName(b []byte) string {
	if p := nameSlot(b).Load(); p != nil && *p == string(b) {
		return *p
	}
	return ""
}

func internName(name string) {
	nameSlot(unsafe.Slice(unsafe.StringData(name), len(name))).Store(&name)
}

// spelling is one way clients write part of a reference. closer is the
// bracket of the reference it belongs to; percent: it holds %XX (read only
// where the context decodes it); plus: it holds a '+' read as a space.
type spelling struct {
	text          string
	closer        byte
	percent, plus bool
}

// spellings are the openings of a reference as clients send them: as
// written, and url.PathEscape's, url.QueryEscape's and the %20 form of it.
var spellings = [...]spelling{
	{"${{ secrets.", '}', false, false},
	{"$%7B%7B%20secrets.", '}', true, false},
	{"%24%7B%7B+secrets.", '}', true, true},
	{"%24%7B%7B%20secrets.", '}', true, false},
	{"${{secrets.", '}', false, false},
	{"$<< secrets.", '>', false, false},
}

// useSpellings lets the tests compare matchRef with and without them.
var useSpellings = true

// spelledPrefix is the length of the spelling b starts with (0: none that
// applies in this context) and the closing bracket it asks for. Every
// spelling is one that the character-by-character reading takes as a
// committed opening: '$', "{{" (or "<<"), at most one space, "secrets.".
func spelledPrefix(b []byte, decode, plusSpace bool) (int, byte) {
	if !useSpellings || len(b) < len("${{secrets.") {
		return 0, 0
	}
	for _, sp := range spellings {
		if sp.percent && !decode || sp.plus && !plusSpace {
			continue
		}
		if len(b) >= len(sp.text) && string(b[:len(sp.text)]) == sp.text {
			return len(sp.text), sp.closer
		}
	}
	return 0, 0
}

// closings are the ends of a reference as clients send them (after the
// name).
var closings = [...]spelling{
	{" }}", '}', false, false},
	{"%20%7D%7D", '}', true, false},
	{"+%7D%7D", '}', true, true},
	{"}}", '}', false, false},
	{" >>", '>', false, false},
}

// spelledRest reads a reference's name and end from b[pos] when both are
// spelled as clients send them: the name in plain characters, then one of
// the closings. It returns the end and the name (end 0: anything else,
// which the caller reads a character at a time). A name a closing follows
// is what that reading finds too: name characters are never '%' or '+'.
func spelledRest(b []byte, pos int, closer byte, decode, plusSpace bool) (int, string) {
	if !useSpellings {
		return 0, ""
	}
	i := pos
	for i < len(b) && i-pos <= vault.MaxNameLen && isNameChar(b[i]) {
		i++
	}
	if i == pos || i-pos > vault.MaxNameLen {
		return 0, ""
	}
	for _, cl := range closings {
		if cl.closer != closer || cl.percent && !decode || cl.plus && !plusSpace {
			continue
		}
		if len(b)-i >= len(cl.text) && string(b[i:i+len(cl.text)]) == cl.text {
			nb := b[pos:i]
			name := internedName(nb)
			if name == "" {
				name = string(nb)
				if vault.ValidateName(name) != nil {
					return 0, "" // the error is the reading's to give
				}
				internName(name)
			}
			return i + len(cl.text), name
		}
	}
	return 0, ""
}

// prefixLike reports whether w is "secret." or "secrets." in any case.
func prefixLike(w []byte) bool {
	const stem = "secret"
	if len(w) < len(stem)+1 || len(w) > len(stem)+2 || w[len(w)-1] != '.' {
		return false
	}
	for i := 0; i < len(stem); i++ {
		if w[i]|0x20 != stem[i] {
			return false
		}
	}
	return len(w) == len(stem)+1 || w[len(stem)]|0x20 == 's'
}

// nearMissText rebuilds the near-miss as read (decoded) for the error: only
// the part before the name, never the text after it.
func nearMissText(gap int, open byte, brackets, spaces int, word []byte) string {
	b := make([]byte, 0, 1+gap+brackets+min(spaces, 1)+len(word))
	b = append(b, '$')
	for range gap {
		b = append(b, ' ')
	}
	for range brackets {
		b = append(b, open)
	}
	if spaces > 0 {
		b = append(b, ' ')
	}
	return string(append(b, word...))
}
