// Package bolt is Rotor's embedded storage backend, a single bbolt file.
//
// Every operation runs inside one bbolt Update or View closure, and every
// value is decoded into fresh memory before the closure returns (bbolt's
// byte slices are only valid inside the transaction). Writes are fsynced on
// commit: NoSync is never set, since an acknowledged write must survive a
// crash.
package bolt
