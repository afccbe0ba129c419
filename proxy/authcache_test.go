package proxy

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestNegCache: a failed key is answered from the cache for negCacheTTL,
// then asked again; the cache never holds more than negCacheMax entries
// however many distinct keys fail.
func TestNegCache(t *testing.T) {
	var c negCache
	errBad := errors.New("bad key")
	now := time.Now()
	k := sha256.Sum256([]byte("rtr_wrong"))
	if c.get(k, now) != nil {
		t.Fatal("empty cache answered")
	}
	c.put(k, errBad, now)
	if c.get(k, now.Add(negCacheTTL/2)) != errBad {
		t.Fatal("failed key not remembered within the TTL")
	}
	if c.get(k, now.Add(negCacheTTL+time.Millisecond)) != nil {
		t.Fatal("failed key remembered past the TTL")
	}
	for i := range 3 * negCacheMax {
		c.put(sha256.Sum256([]byte(fmt.Sprint("flood", i))), errBad, now)
		if len(c.m) > negCacheMax {
			t.Fatalf("%d entries after %d keys, bound %d", len(c.m), i+1, negCacheMax)
		}
	}
	// Expired entries make room before the cache starts over.
	later := now.Add(2 * negCacheTTL)
	c.put(k, errBad, later)
	if len(c.m) != 1 || c.get(k, later) != errBad {
		t.Fatalf("expired entries kept: %d", len(c.m))
	}
}

// TestRequestIDs: ids keep their format (prx_ and 16 hex digits) and do not
// repeat within a process.
func TestRequestIDs(t *testing.T) {
	seen := make(map[string]bool)
	for range 100000 {
		id := newRequestID()
		if len(id) != 20 || id[:4] != "prx_" {
			t.Fatalf("id %q", id)
		}
		for _, c := range id[4:] {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				t.Fatalf("id %q", id)
			}
		}
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
	}
}
