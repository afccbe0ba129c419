package proxy

// matcher is an Aho–Corasick automaton over byte patterns. Scanning costs
// amortized O(1) per input byte whatever the patterns are (shared
// prefixes, patterns inside patterns): each byte moves one level down the
// trie, and each failure link followed moves at least one level up, so the
// links followed never outnumber the bytes read.
//
// Transitions are sparse (a sibling list per state; a dense 256-wide table
// only at the root and at states with many children): the automaton is
// built per request from a few resolved values, where a dense table per
// state would cost far more memory than the scan saves. All per-state data
// lives in flat slices sized once, so building costs no allocation per
// state.
//
// Matching ignores ASCII case (patterns are folded when built, input bytes
// as they are read): an upstream that upper-cases what it echoes, a
// percent-encoding reflected with lower-case hex, and a header name that
// Go or HTTP/2 re-cased all still match, at the cost of one table lookup
// per byte.
type matcher struct {
	root [256]int32
	// first is a state's first child (0: none; the root is nobody's
	// child), next its next sibling, label the byte leading to it.
	first, next []int32
	label       []byte
	// dense holds the transitions of states with many children; denseOf
	// indexes it (-1: none).
	dense   [][256]int32
	denseOf []int32
	fail    []int32
	// depth is the length of the string a state stands for: after a byte,
	// no match can start earlier than depth bytes back.
	depth []int32
	// outLen is the length of the longest pattern ending at a state (its
	// own or one reached through failure links), 0 for none; outPat is
	// that pattern's index.
	outLen []int32
	outPat []int32
	// minLen is the shortest pattern's length: a text shorter than that
	// holds no match, so most header values (a status, a date, a length)
	// are passed without a step.
	minLen int
	// pairs has the bit pairBit(a, b) set for the first two bytes a, b of
	// every pattern, in every ASCII case (a superset: two pairs may share
	// a bit). At the root, a position whose pair is not set starts no
	// match, and the automaton would come back to the root's child of the
	// next byte whether or not it stepped, so the scan skips it: in text
	// without plaintext almost every byte costs one table lookup
	// (skipStart). Unused (noPairs) when some pattern is shorter than
	// two bytes: then every byte is stepped.
	pairs   [pairWords]uint64
	noPairs bool
}

// pairWords sizes the pair filter: 8192 bits (1 KiB in each automaton,
// which the proxy caches per set of values).
const pairWords = 8192 / 64

// pairBit is the filter's bit for the byte pair a, b (b fills the low
// bits, a the high ones: distinct for a given a).
func pairBit(a, b byte) uint { return (uint(a)<<5 ^ uint(b)) & (pairWords*64 - 1) }

// denseFanout: states with at least this many children get a dense table
// (1 KiB each, so at most one per 64 pattern bytes).
const denseFanout = 64

// newMatcher builds the automaton of the patterns' find strings (taken as
// they are, so the scrubber's patterns need no second slice).
func newMatcher(patterns []scrubPattern) *matcher {
	// At most one state per pattern byte, plus the root: sized once.
	n := 1
	for _, p := range patterns {
		n += len(p.find)
	}
	// The per-state slices share one allocation, each with its own capacity
	// n (three-index slices, so an append never runs into the next).
	arena := make([]int32, 9*n)
	part := func(k, l int) []int32 { return arena[k*n : k*n+l : (k+1)*n] }
	m := &matcher{
		first: part(0, 1), next: part(1, 1), label: make([]byte, 1, n),
		fail: part(2, 1), depth: part(3, 1), outLen: part(4, 1), outPat: part(5, 1),
	}
	m.outPat[0] = -1
	fanout := part(6, 1)
	for i, x := range patterns {
		p := x.find
		if len(p) == 0 {
			continue
		}
		if m.minLen == 0 || len(p) < m.minLen {
			m.minLen = len(p)
		}
		if len(p) < 2 {
			m.noPairs = true
		} else {
			for _, a := range caseVariants(p[0]) {
				for _, b := range caseVariants(p[1]) {
					k := pairBit(a, b)
					m.pairs[k/64] |= 1 << (k % 64)
				}
			}
		}
		s := int32(0)
		for _, c := range p {
			c = foldASCII[c]
			next := m.child(s, c)
			if next < 0 {
				next = int32(len(m.fail))
				m.first = append(m.first, 0)
				m.next = append(m.next, m.first[s])
				m.label = append(m.label, c)
				m.fail = append(m.fail, 0)
				m.depth = append(m.depth, m.depth[s]+1)
				m.outLen = append(m.outLen, 0)
				m.outPat = append(m.outPat, -1)
				fanout = append(fanout, 0)
				m.first[s] = next
				fanout[s]++
				if s == 0 {
					m.root[c] = next
				}
			}
			s = next
		}
		if m.outPat[s] < 0 { // the first of equal patterns wins
			m.outLen[s], m.outPat[s] = int32(len(p)), int32(i)
		}
	}
	m.denseOf = part(7, len(m.fail))
	for s := range m.denseOf {
		m.denseOf[s] = -1
		if s != 0 && fanout[s] >= denseFanout {
			var t [256]int32
			for c := m.first[s]; c != 0; c = m.next[c] {
				t[m.label[c]] = c
			}
			m.denseOf[s] = int32(len(m.dense))
			m.dense = append(m.dense, t)
		}
	}
	// Breadth first, so a state's failure target (shallower) is complete
	// before the state.
	queue := part(8, 0)
	for c := m.first[0]; c != 0; c = m.next[c] {
		queue = append(queue, c)
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for v := m.first[u]; v != 0; v = m.next[v] {
			queue = append(queue, v)
			if u == 0 {
				continue // depth 1: fails to the root
			}
			b := m.label[v]
			f := m.fail[u]
			for f != 0 && m.child(f, b) < 0 {
				f = m.fail[f]
			}
			if c := m.child(f, b); c >= 0 {
				m.fail[v] = c
			} else {
				m.fail[v] = m.root[b]
			}
			if m.outLen[v] == 0 {
				m.outLen[v], m.outPat[v] = m.outLen[m.fail[v]], m.outPat[m.fail[v]]
			}
		}
	}
	return m
}

// caseVariants is c in both ASCII cases (c twice for other bytes).
func caseVariants(c byte) [2]byte {
	l := foldASCII[c]
	if 'a' <= l && l <= 'z' {
		return [2]byte{l, l - ('a' - 'A')}
	}
	return [2]byte{c, c}
}

// skipStart returns the first position from i on where a match can start
// when the automaton is at the root before b[i]: the last byte is never
// skipped (its pair's second byte is not known yet), so a scan's end
// state is the automaton's. With no pair filter it returns i.
func skipStart[T string | []byte](m *matcher, b T, i int) int {
	if m.noPairs {
		return i
	}
	p := &m.pairs
	for n := len(b) - 1; i < n; i++ {
		k := pairBit(b[i], b[i+1])
		if p[k/64]&(1<<(k%64)) != 0 {
			break
		}
	}
	return i
}

// child is the trie edge from s on c, or -1.
func (m *matcher) child(s int32, c byte) int32 {
	if s == 0 {
		if t := m.root[c]; t != 0 {
			return t
		}
		return -1
	}
	if s < int32(len(m.denseOf)) {
		if d := m.denseOf[s]; d >= 0 {
			if t := m.dense[d][c]; t != 0 {
				return t
			}
			return -1
		}
	}
	for t := m.first[s]; t != 0; t = m.next[t] {
		if m.label[t] == c {
			return t
		}
	}
	return -1
}

// foldASCII maps each byte to its ASCII lower case (other bytes to
// themselves).
var foldASCII = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] += 'a' - 'A'
		}
	}
	return t
}()

// step is the automaton's transition on c, without regard to ASCII case.
func (m *matcher) step(s int32, c byte) int32 {
	c = foldASCII[c]
	for s != 0 {
		if n := m.child(s, c); n >= 0 {
			return n
		}
		s = m.fail[s]
	}
	return m.root[c]
}
