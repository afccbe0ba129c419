package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

var bucketTest = []byte("t")

func openGroupDB(t *testing.T) (*bbolt.DB, *groupCommit) {
	db, _ := openGroupDBFile(t)
	return db, &groupCommit{db: db}
}

// openGroupDBFile also returns bbolt's file, for a test to break.
func openGroupDBFile(t *testing.T) (*bbolt.DB, *os.File) {
	t.Helper()
	var f *os.File
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, &bbolt.Options{
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			var err error
			f, err = os.OpenFile(name, flag, perm)
			return f, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(bucketTest); return err }); err != nil {
		t.Fatal(err)
	}
	return db, f
}

// holdWriter takes bbolt's writer lock until the returned func is called, so
// that writes pile up behind the group in flight, as they do behind a
// commit's fdatasync under load.
func holdWriter(t *testing.T, db *bbolt.DB) func() {
	t.Helper()
	tx, err := db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	return func() { _ = tx.Rollback() }
}

// waitPending waits (bounded) until n writes are queued behind the leader.
func waitPending(t *testing.T, g *groupCommit, n int) {
	t.Helper()
	for i := 0; ; i++ {
		g.mu.Lock()
		got := len(g.pending)
		g.mu.Unlock()
		if got >= n {
			return
		}
		if i == 100000 {
			t.Fatalf("%d writes pending, want %d", got, n)
		}
		runtime.Gosched()
		time.Sleep(100 * time.Microsecond)
	}
}

func getKey(db *bbolt.DB, key string) []byte {
	var v []byte
	_ = db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketTest).Get([]byte(key)); b != nil {
			v = append([]byte{}, b...)
		}
		return nil
	})
	return v
}

// TestGroupCommitErrorsToTheirCaller: in one group, a write that fails
// (after writing) and one that panics get their own errors and leave
// nothing behind; every other write of the group is committed, and the
// writes were in fact grouped (fewer transactions than writes).
func TestGroupCommitErrorsToTheirCaller(t *testing.T) {
	db, g := openGroupDB(t)
	errMine := errors.New("write 7 refuses")
	const n = 40
	var txMu sync.Mutex
	txs := map[int]int{} // transaction id -> writes committed in it (last run)
	release := holdWriter(t, db)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = g.update(1, func(tx *bbolt.Tx) error {
				if err := tx.Bucket(bucketTest).Put(fmt.Appendf(nil, "k%02d", i), []byte("v")); err != nil {
					return err
				}
				switch i {
				case 7:
					return errMine
				case 23:
					panic("write 23 breaks")
				}
				txMu.Lock()
				txs[tx.ID()]++
				txMu.Unlock()
				return nil
			})
		})
		if i == 0 {
			// The first write leads, and waits for the writer lock.
			waitLeading(t, g)
		}
	}
	waitPending(t, g, n-1)
	release()
	wg.Wait()
	for i, err := range errs {
		switch i {
		case 7:
			if !errors.Is(err, errMine) {
				t.Errorf("write 7: %v, want its own error", err)
			}
		case 23:
			if !errors.Is(err, errWritePanicked) {
				t.Errorf("write 23: %v, want errWritePanicked", err)
			}
		default:
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		}
		v := getKey(db, fmt.Sprintf("k%02d", i))
		if failed := i == 7 || i == 23; failed != (v == nil) {
			t.Errorf("write %d: stored %q (failed: %v)", i, v, failed)
		}
	}
	if len(txs) >= n-2 {
		t.Errorf("%d writes in %d transactions: not grouped", n-2, len(txs))
	}
}

// waitLeading waits (bounded) until a write leads a group.
func waitLeading(t *testing.T, g *groupCommit) {
	t.Helper()
	for i := 0; ; i++ {
		g.mu.Lock()
		l := g.leading && len(g.pending) == 0
		g.mu.Unlock()
		if l {
			return
		}
		if i == 100000 {
			t.Fatal("no write took the lead")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestGroupCommitBounded: a pile of writes behind a slow commit is
// committed in groups of at most maxGroupOps, all of them.
func TestGroupCommitBounded(t *testing.T) {
	db, g := openGroupDB(t)
	const n = 2*maxGroupOps + 50
	var txMu sync.Mutex
	txs := map[int]int{}
	release := holdWriter(t, db)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = g.update(1, func(tx *bbolt.Tx) error {
				txMu.Lock()
				txs[tx.ID()]++
				txMu.Unlock()
				return tx.Bucket(bucketTest).Put(fmt.Appendf(nil, "k%04d", i), []byte("v"))
			})
		})
		if i == 0 {
			waitLeading(t, g)
		}
	}
	waitPending(t, g, n-1)
	release()
	wg.Wait()
	most, total := 0, 0
	for _, c := range txs {
		most = max(most, c)
		total += c
	}
	if most != maxGroupOps || total != n {
		t.Errorf("largest group %d (want %d), %d writes in %d transactions (want %d writes)", most, maxGroupOps, total, len(txs), n)
	}
	for i, err := range errs {
		if err != nil || getKey(db, fmt.Sprintf("k%04d", i)) == nil {
			t.Fatalf("write %d: %v, stored %q", i, err, getKey(db, fmt.Sprintf("k%04d", i)))
		}
	}
}

// TestGroupCommitFailedCommit: when the shared transaction cannot commit,
// every write of the group gets the error and none is stored: no write is
// acknowledged without its commit.
func TestGroupCommitFailedCommit(t *testing.T) {
	db, file := openGroupDBFile(t)
	g := &groupCommit{db: db}
	release := holdWriter(t, db)
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = g.update(1, func(tx *bbolt.Tx) error {
				return tx.Bucket(bucketTest).Put(fmt.Appendf(nil, "k%02d", i), []byte("v"))
			})
		})
		if i == 0 {
			waitLeading(t, g)
		}
	}
	waitPending(t, g, n-1)
	// Break the commits to come: writing the file's pages fails once its
	// descriptor is closed underneath bbolt.
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	release()
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("write %d acknowledged without a commit", i)
		}
	}
}

// TestGroupCommitBoundedItems: writes join a group only while their items
// add up to maxGroupItems; a write larger than that commits alone.
func TestGroupCommitBoundedItems(t *testing.T) {
	db, g := openGroupDB(t)
	sizes := []int{1, maxGroupItems / 2, maxGroupItems / 2, 1, 2 * maxGroupItems, 3, 4}
	var txMu sync.Mutex
	items := map[int]int{} // transaction id -> items in it
	release := holdWriter(t, db)
	var wg sync.WaitGroup
	errs := make([]error, len(sizes))
	for i, n := range sizes {
		wg.Go(func() {
			errs[i] = g.update(n, func(tx *bbolt.Tx) error {
				txMu.Lock()
				items[tx.ID()] += n
				txMu.Unlock()
				return tx.Bucket(bucketTest).Put(fmt.Appendf(nil, "k%d", i), []byte("v"))
			})
		})
		// One at a time, so the queue's order is the slice's.
		if i == 0 {
			waitLeading(t, g)
		} else {
			waitPending(t, g, i)
		}
	}
	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// The leader's 1 (it took the lead before the others queued) and the
	// first 5,000, which joined its transaction while it ran (the next 5,000
	// would pass the bound), then 5,000+1 (20,000 would pass it), then
	// 20,000 alone, then 3+4.
	var got []int
	for _, id := range slices.Sorted(maps.Keys(items)) {
		got = append(got, items[id])
	}
	want := []int{1 + maxGroupItems/2, maxGroupItems/2 + 1, 2 * maxGroupItems, 7}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("items per transaction %v, want %v", got, want)
	}
}

// TestGroupCommitConcurrentCount: 16 goroutines make 200 writes each to a
// shared counter; every seventh write fails after incrementing it. The
// counter ends equal to the writes acknowledged, and each write's own key
// is stored exactly when it was acknowledged: no failed write's increment
// survives, and no acknowledged one is lost, however the writes grouped.
func TestGroupCommitConcurrentCount(t *testing.T) {
	db, g := openGroupDB(t)
	errOdd := errors.New("refused")
	const workers, each = 16, 200
	var acked [workers][each]bool
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				fail := (w*each+i)%7 == 3
				err := g.update(1, func(tx *bbolt.Tx) error {
					b := tx.Bucket(bucketTest)
					var n uint64
					if v := b.Get([]byte("count")); v != nil {
						n = binary.BigEndian.Uint64(v)
					}
					if err := b.Put([]byte("count"), binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
						return err
					}
					if err := b.Put(fmt.Appendf(nil, "w%02d-%03d", w, i), []byte("v")); err != nil {
						return err
					}
					if fail {
						return errOdd
					}
					return nil
				})
				switch {
				case fail && !errors.Is(err, errOdd):
					t.Errorf("write %d/%d: %v, want its own error", w, i, err)
				case !fail && err != nil:
					t.Errorf("write %d/%d: %v", w, i, err)
				}
				acked[w][i] = err == nil
			}
		})
	}
	wg.Wait()
	want := uint64(0)
	for w := range workers {
		for i := range each {
			if acked[w][i] {
				want++
			}
			if stored := getKey(db, fmt.Sprintf("w%02d-%03d", w, i)) != nil; stored != acked[w][i] {
				t.Errorf("write %d/%d: stored %v, acknowledged %v", w, i, stored, acked[w][i])
			}
		}
	}
	if got := getKey(db, "count"); got == nil || binary.BigEndian.Uint64(got) != want {
		t.Errorf("counter %x, want %d", got, want)
	}
}
