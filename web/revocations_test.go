package web

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

func sess(key string, n int, at time.Time) session {
	return session{ID: key + "-" + strconv.Itoa(n), KeyID: key, CSRF: "c", Issued: at.Unix(), Seen: at.Unix(), IssuedNano: at.UnixNano()}
}

// TestRevocationsFailClosed: whatever other keys log out, and however
// often, a logged-out session stays out; every bound folds records into a
// watermark instead of dropping them, and memory stays within the bounds.
func TestRevocationsFailClosed(t *testing.T) {
	const life = 8 * time.Hour
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	var l revocations
	victim := sess("victim", 0, t0)
	l.add(victim, t0, life)

	// Another key floods: its ids fold into its watermark at the per-key
	// bound; the victim's record is untouched.
	var flood []session
	for i := range maxLoggedOut + 10 {
		at := t0.Add(time.Duration(i+1) * time.Microsecond)
		s := sess("flood", i, at)
		flood = append(flood, s)
		l.add(s, at, life)
		if len(l.keys["flood"].ids) > maxLoggedOutPerKey || l.ids > maxLoggedOut {
			t.Fatalf("after %d logouts: %d ids of one key, %d on the node", i+1, len(l.keys["flood"].ids), l.ids)
		}
	}
	if !l.revoked(victim) {
		t.Fatal("another key's logouts revived the victim's session")
	}
	for i, s := range flood {
		if !l.revoked(s) {
			t.Fatalf("flood session %d revived by the key's own later logouts", i)
		}
	}
	next := sess("flood", -1, t0.Add(time.Second))
	if l.revoked(next) {
		t.Fatal("a sign-in after the watermark is refused")
	}
	// A cookie sealed before IssuedNano existed carries whole seconds,
	// which are no later than the sign-in: a watermark still covers it.
	old := flood[len(flood)-1]
	old.IssuedNano = 0
	if !l.revoked(old) {
		t.Fatal("an old-format cookie escapes the watermark")
	}

	// A session signed in on a node whose clock runs ahead (sessions are
	// accepted up to a minute early) stays out when its key's ids fold.
	ahead := sess("ahead", 0, t0.Add(30*time.Second))
	l.add(ahead, t0, life)
	for i := range maxLoggedOutPerKey {
		l.add(sess("ahead", i+1, t0), t0, life)
	}
	if l.keys["ahead"].before == 0 || !l.revoked(ahead) {
		t.Fatal("a session issued ahead of this node's clock escapes its key's watermark")
	}

	// The node-wide id bound: many keys with ids each; the one that
	// reaches it folds its own ids, nobody's are dropped.
	var many []session
	for k := 0; l.ids < maxLoggedOut && k < 2*maxLoggedOut; k++ {
		for i := range maxLoggedOutPerKey {
			s := sess("k"+strconv.Itoa(k), i, t0.Add(time.Minute))
			many = append(many, s)
			l.add(s, t0.Add(time.Minute), life)
		}
	}
	if l.ids > maxLoggedOut {
		t.Fatalf("%d ids on the node, bound %d", l.ids, maxLoggedOut)
	}
	last := sess("late", 0, t0.Add(2*time.Minute))
	l.add(last, t0.Add(2*time.Minute), life)
	if l.ids > maxLoggedOut {
		t.Fatalf("%d ids on the node past the bound %d", l.ids, maxLoggedOut)
	}
	for _, s := range append(many, last, victim) {
		if !l.revoked(s) {
			t.Fatalf("%s revived at the node-wide bound", s.ID)
		}
	}

	// The key bound: one more key than it keeps raises the node-wide
	// watermark (everyone signs in again), reported once; it covers a
	// session issued ahead of this node's clock too.
	skewed := sess("skewed", 0, t0.Add(3*time.Minute+30*time.Second))
	l.add(skewed, t0.Add(3*time.Minute), life)
	raised := 0
	for k := range maxLoggedOutKeys + 1 {
		s := sess("x"+strconv.Itoa(k), 0, t0.Add(3*time.Minute))
		if l.add(s, t0.Add(3*time.Minute), life) {
			raised++
		}
	}
	if raised != 1 || len(l.keys) > maxLoggedOutKeys || l.ids != 0 {
		t.Fatalf("raised %d times; %d keys, %d ids", raised, len(l.keys), l.ids)
	}
	for _, s := range append(many, last, victim, flood[0], ahead, skewed) {
		if !l.revoked(s) {
			t.Fatalf("%s revived at the key bound", s.ID)
		}
	}
	if l.revoked(sess("fresh", 0, t0.Add(4*time.Minute))) {
		t.Fatal("a sign-in after the node-wide watermark is refused")
	}

	// Once every covered session is past its lifetime, one add sweeps the
	// rest away.
	later := t0.Add(4*time.Minute + life + time.Second)
	l.add(sess("after", 0, later), later, life)
	if len(l.keys) != 1 || l.ids != 1 || l.all != 0 {
		t.Fatalf("after the lifetime: %d keys, %d ids, node-wide %d", len(l.keys), l.ids, l.all)
	}
}

// TestRevocationsMemoryBounded: the worst case the bounds allow (every key
// the node keeps with a record, the node's ids all held) stays a few MiB.
func TestRevocationsMemoryBounded(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	var l revocations
	before := heap()
	for k := range maxLoggedOutKeys {
		key := "key_" + strconv.FormatInt(int64(1<<60+k), 16) // the length of a real key id
		for i := range 2 {
			l.add(session{ID: randomToken()[:32], KeyID: key, Issued: t0.Unix(), IssuedNano: t0.UnixNano() + int64(i)}, t0, 8*time.Hour)
		}
	}
	after := heap()
	runtime.KeepAlive(&l)
	if len(l.keys) != maxLoggedOutKeys || l.ids != maxLoggedOut {
		t.Fatalf("not the worst case: %d keys, %d ids", len(l.keys), l.ids)
	}
	if after > before && after-before > 16<<20 {
		t.Fatalf("%d keys and %d ids take %d KiB", len(l.keys), l.ids, (after-before)>>10)
	}
}
