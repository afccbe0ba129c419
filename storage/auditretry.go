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

// RetriedRows is how many of evs' leading rows are already stored, given
// stored: the nonces of the workspace's stored rows from the one whose
// nonce equals evs[0]'s on, in id order (empty when none has it). Rows are
// matched by their host-chosen 16-byte random nonces, one by one, so a
// stored prefix of evs is recognised whatever was appended after it. A row
// without a nonce (written without row MACs) is never taken as stored.
func RetriedRows(stored [][]byte, evs []AuditEvent) int {
	n := 0
	for n < len(evs) && n < len(stored) && len(evs[n].Nonce) > 0 && bytes.Equal(stored[n], evs[n].Nonce) {
		n++
	}
	return n
}
