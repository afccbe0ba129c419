package proxy

import "testing"

// TestScrubCacheLastDropped: the lock-free last-hit entry goes with its
// entry. A drop that left it would keep a scrubber (forms of a plaintext)
// the vault no longer holds, reachable by any request presenting its key.
func TestScrubCacheLastDropped(t *testing.T) {
	c := newScrubCache()
	mk := func(v string) *scrubber {
		sc, err := newScrubberBounded(valueForms("TOKEN", []byte(v)))
		if err != nil || sc == nil {
			t.Fatalf("scrubber: %v", err)
		}
		return sc
	}
	live := func() bool { return true }
	k1, k2 := scrubKey{1, 2}, scrubKey{3}
	sc1, sc2 := mk("first-value-1111"), mk("second-value-2222")
	c.put(k1, sc1, live)
	c.put(k2, sc2, live)
	if c.get(k1) != sc1 || c.get(k1) != sc1 {
		t.Fatal("k1 not cached")
	}
	if e := c.last.Load(); e == nil || e.k != k1 {
		t.Fatal("get did not keep its hit as last")
	}
	c.drop(3) // another entry: last stays
	if c.get(k2) != nil || c.get(k1) != sc1 {
		t.Fatal("drop(3) removed the wrong entry")
	}
	c.drop(2)
	if e := c.last.Load(); e != nil {
		t.Fatalf("last still holds the dropped entry %v", e.k)
	}
	if c.get(k1) != nil {
		t.Fatal("dropped entry still returned")
	}
}
