// Package bolt is Rotor's embedded storage backend, a single bbolt file.
//
// Every operation runs inside one bbolt Update or View closure, and every
// value is decoded into fresh memory before the closure returns (bbolt's
// byte slices are only valid inside the transaction). Writes are fsynced on
// commit: NoSync is never set, since an acknowledged write must survive a
// crash.
//
// The hot writes (enqueues, leases, attempt results, audit appends and the
// workflow engine's checkpoints) go through a group commit (groupcommit.go)
// instead of a transaction each: writes that arrive while a commit is being
// written and synced share the next transaction, so one fsync pair covers
// many. There is no timer (bbolt's Batch waited out a fixed delay before
// every transaction): a write that finds the file idle commits at once. Each
// write still returns only once its transaction is synced, a write that
// fails commits nothing (the group is rolled back and committed again
// without it, and it runs again alone), and a group holds at most
// maxGroupOps writes and, beyond its first, maxGroupItems items. The rare
// writes (secrets, keys, workspaces, queues, retention) keep a transaction
// of their own.
package bolt
