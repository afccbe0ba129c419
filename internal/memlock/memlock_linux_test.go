//go:build linux

package memlock

import "testing"

func TestDisableCoreDumps(t *testing.T) {
	if err := DisableCoreDumps(); err != nil {
		t.Fatal(err)
	}
	cur, max, err := coreLimit()
	if err != nil || cur != 0 || max != 0 {
		t.Fatalf("RLIMIT_CORE %d/%d (%v), want 0/0", cur, max, err)
	}
	if d, err := dumpable(); err != nil || d {
		t.Fatalf("still dumpable (%v)", err)
	}
}

func TestLock(t *testing.T) {
	b := make([]byte, 32)
	if err := Lock(b); err != nil {
		// RLIMIT_MEMLOCK may be tiny in a container; 32 bytes fit any.
		t.Fatalf("mlock of 32 bytes: %v", err)
	}
	if err := Lock(nil); err != nil {
		t.Fatal(err)
	}
}
