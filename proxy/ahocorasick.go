package proxy

import "slices"

// matcher is an Aho–Corasick automaton over byte patterns. Scanning costs
// amortized O(1) per input byte whatever the patterns are (shared
// prefixes, patterns inside patterns): each byte moves one level down the
// trie, and each failure link followed moves at least one level up, so the
// links followed never outnumber the bytes read.
//
// Transitions are sparse (a sorted edge list per state, a dense table only
// at the root): the automaton is built per request from a few resolved
// values, where a dense 256-wide table per state would cost more memory
// than the scan saves.
type matcher struct {
	root  [256]int32
	edges [][]edge
	fail  []int32
	// depth is the length of the string a state stands for: after a byte,
	// no match can start earlier than depth bytes back.
	depth []int32
	// outLen is the length of the longest pattern ending at a state (its
	// own or one reached through failure links), 0 for none; outPat is
	// that pattern's index.
	outLen []int32
	outPat []int32
}

type edge struct {
	b  byte
	to int32
}

func newMatcher(patterns [][]byte) *matcher {
	m := &matcher{edges: [][]edge{nil}, fail: []int32{0}, depth: []int32{0}, outLen: []int32{0}, outPat: []int32{-1}}
	for i, p := range patterns {
		if len(p) == 0 {
			continue
		}
		s := int32(0)
		for _, c := range p {
			next := m.child(s, c)
			if next < 0 {
				next = int32(len(m.fail))
				m.edges = append(m.edges, nil)
				m.fail = append(m.fail, 0)
				m.depth = append(m.depth, m.depth[s]+1)
				m.outLen = append(m.outLen, 0)
				m.outPat = append(m.outPat, -1)
				m.edges[s] = append(m.edges[s], edge{c, next})
			}
			s = next
		}
		if m.outPat[s] < 0 { // the first of equal patterns wins
			m.outLen[s], m.outPat[s] = int32(len(p)), int32(i)
		}
	}
	for s := range m.edges {
		slices.SortFunc(m.edges[s], func(a, b edge) int { return int(a.b) - int(b.b) })
	}
	for _, e := range m.edges[0] {
		m.root[e.b] = e.to
	}
	// Breadth first, so a state's failure target (shallower) is complete
	// before the state.
	queue := make([]int32, 0, len(m.fail))
	for _, e := range m.edges[0] {
		queue = append(queue, e.to)
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, e := range m.edges[u] {
			v := e.to
			queue = append(queue, v)
			f := m.fail[u]
			for f != 0 && m.child(f, e.b) < 0 {
				f = m.fail[f]
			}
			if u == 0 {
				m.fail[v] = 0
			} else if c := m.child(f, e.b); c >= 0 {
				m.fail[v] = c
			} else {
				m.fail[v] = m.root[e.b]
			}
			if m.outLen[v] == 0 {
				m.outLen[v], m.outPat[v] = m.outLen[m.fail[v]], m.outPat[m.fail[v]]
			}
		}
	}
	return m
}

// child is the trie edge from s on c, or -1.
func (m *matcher) child(s int32, c byte) int32 {
	es := m.edges[s]
	if len(es) > 8 {
		i, ok := slices.BinarySearchFunc(es, c, func(e edge, c byte) int { return int(e.b) - int(c) })
		if ok {
			return es[i].to
		}
		return -1
	}
	for _, e := range es {
		if e.b == c {
			return e.to
		}
	}
	return -1
}

// step is the automaton's transition on c.
func (m *matcher) step(s int32, c byte) int32 {
	for s != 0 {
		if n := m.child(s, c); n >= 0 {
			return n
		}
		s = m.fail[s]
	}
	return m.root[c]
}
