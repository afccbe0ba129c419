package bolt

import (
	"fmt"
	"sync"

	"go.etcd.io/bbolt"
)

// maxGroupOps and maxGroupItems bound what one group commit carries, so one
// transaction's dirty pages, and the wait of the first writer in it, stay
// bounded however many callers pile up: at most maxGroupOps writes, and
// further writes join only while the items they write (jobs, results, audit
// rows) add up to at most maxGroupItems, the protocol's largest call. A
// write larger than that commits alone.
const (
	maxGroupOps   = 256
	maxGroupItems = 10_000
)

// groupCommit runs concurrent writes in shared bbolt transactions: one
// commit, one pair of fdatasyncs, for every write that arrived while the
// previous commit was being written. It replaces bbolt's Batch, whose
// timer (MaxBatchDelay) made every write wait out the delay before its
// transaction even started, and capped commits at one per delay whatever
// the disk could do. Here there is no timer: a write that finds no commit
// in progress commits at once; under load, the group grows with the time a
// commit takes (the disk's fdatasync), which is what clocks it, and writes
// that arrive while the group's functions run join it before it commits.
//
// Each write keeps Update's promises: it returns once the transaction
// holding it is committed and synced, and a write that fails commits
// nothing of its own. A failing write rolls back the shared transaction;
// it is taken out, the rest are committed without it, and it runs again
// alone in its caller (as Batch does), so its error is the one it gets on
// its own and never another writer's. A commit error (the disk) goes to
// every write of that group: none of them was committed.
type groupCommit struct {
	db *bbolt.DB

	mu      sync.Mutex
	pending []*groupOp
	leading bool // a caller is running a group (under mu)
}

// groupOp is one caller's write. wake (buffered) carries true when the op
// is handed the lead, and false once it is done (err set); the leader of a
// group does not read its own op's false.
type groupOp struct {
	fn   func(*bbolt.Tx) error
	n    int // items written, for maxGroupItems
	err  error
	wake chan bool // true: lead the next group; false: done
}

// update runs fn, which writes n items, in a shared transaction and
// returns once that is durable. fn may run more than once (when another
// write of its group fails, or when it fails itself), so it must start
// afresh each time.
func (g *groupCommit) update(n int, fn func(*bbolt.Tx) error) error {
	op := &groupOp{fn: fn, n: max(n, 1), wake: make(chan bool, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, op)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if !lead {
		lead = <-op.wake
	}
	if lead {
		g.lead()
	}
	if op.err == errTrySolo {
		return g.db.Update(func(tx *bbolt.Tx) error { return safeCall(fn, tx) })
	}
	return op.err
}

// lead commits one group, the oldest pending writes (the leader's own among
// them: it was pending when it was handed the lead, or the queue was
// empty), then hands the lead to the next waiting write, whose goroutine
// runs the next group: there is no long-lived writer goroutine to own.
func (g *groupCommit) lead() {
	g.mu.Lock()
	group, items := g.take(nil, 0)
	g.mu.Unlock()

	g.commit(group, items)

	g.mu.Lock()
	var next *groupOp
	if len(g.pending) > 0 {
		next = g.pending[0]
	} else {
		g.leading = false
		g.pending = nil // drop the drained backing array
	}
	g.mu.Unlock()
	if next != nil {
		next.wake <- true
	}
}

// take moves the oldest pending writes into group while the bounds allow
// (always at least one into an empty group). g.mu is held.
func (g *groupCommit) take(group []*groupOp, items int) ([]*groupOp, int) {
	for len(g.pending) > 0 && len(group) < maxGroupOps && (len(group) == 0 || items+g.pending[0].n <= maxGroupItems) {
		items += g.pending[0].n
		group = append(group, g.pending[0])
		g.pending = g.pending[1:]
	}
	return group, items
}

// commit runs the group in one transaction and tells each op its outcome.
// Writes that arrive while the transaction runs join it before it commits:
// that adds nothing to their wait and their fsync is shared. An op whose fn
// fails is told to run alone (errTrySolo) and the rest are run again
// without it; each round drops one op, so it ends.
func (g *groupCommit) commit(group []*groupOp, items int) {
	for len(group) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bbolt.Tx) error {
			for i := 0; ; i++ {
				if i == len(group) {
					g.mu.Lock()
					group, items = g.take(group, items)
					g.mu.Unlock()
					if i == len(group) {
						return nil
					}
				}
				if err := safeCall(group[i].fn, tx); err != nil {
					failed = i
					return err
				}
			}
		})
		if failed >= 0 && len(group) > 1 {
			op := group[failed]
			group = append(group[:failed:failed], group[failed+1:]...)
			items -= op.n
			op.err = errTrySolo
			op.wake <- false
			continue
		}
		// Committed, a commit error for all, or a lone op's own error: the
		// transaction was this group's alone, so its outcome is each op's.
		for _, op := range group {
			op.err = err
			op.wake <- false
		}
		return
	}
}

// safeCall runs fn, turning a panic into an error for fn's caller (as
// bbolt's Batch does) so that it does not end the leader's goroutine, which
// is serving other callers' writes too.
func safeCall(fn func(*bbolt.Tx) error, tx *bbolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errWritePanicked, p)
		}
	}()
	return fn(tx)
}
