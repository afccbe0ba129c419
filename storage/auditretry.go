package storage

import "bytes"

// AuditRetryWindow bounds how far back RetryAppendAudit looks for a
// batch's rows: the workspace's newest AuditRetryWindow rows. The rows of
// an earlier attempt sit below the rows appended since it committed (other
// nodes' batches, rows written with a change); the vault's writer retries
// within seconds, and each node's writer sends at most 2,000 rows a call, so
// an earlier attempt's rows are found unless about fifty writers' full
// chunks landed between the attempt and its retry. Past the window a row
// can be written twice (the pre-retry behaviour), never lost. The bound
// keeps a retry after a plain failure (nothing committed, so nothing found)
// from scanning the whole trail.
const AuditRetryWindow = 100_000

// StoredRow is what RetriedRows compares of a stored row.
type StoredRow struct{ Nonce, MAC []byte }

// RetriedRows is how many of evs' leading rows are already stored, given
// stored: the workspace's stored rows from the one whose nonce equals
// evs[0]'s on, in id order (empty when none has it). Rows match by nonce
// and MAC, one by one, so a stored prefix of evs is recognised whatever
// was appended after it, and a row planted with a predicted nonce (the
// nonce is an instance's random prefix and a counter) does not match: its
// MAC needs the host's key. A row without a nonce (written without row
// MACs) is never taken as stored.
func RetriedRows(stored []StoredRow, evs []AuditEvent) int {
	n := 0
	for n < len(evs) && n < len(stored) && len(evs[n].Nonce) > 0 &&
		bytes.Equal(stored[n].Nonce, evs[n].Nonce) && bytes.Equal(stored[n].MAC, evs[n].MAC) {
		n++
	}
	return n
}
