package vault

import (
	"bytes"
	"strings"
	"testing"

	"rotor.sh/rotor/plugins"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/storagetest"
)

// TestAuditChunkLoadBatch: a flush interval's worth of the proxy load's
// access rows (100 ms at ~30,000 rows/s) goes to storage in one call, one
// commit; with a 2000-row bound it was split in two, each paying a commit's
// fixed cost. The bounds stay within what the plugin and the retry accept.
func TestAuditChunkLoadBatch(t *testing.T) {
	if auditChunkRows > plugins.MaxBatch || auditChunkRows > storage.AuditRetryWindow || auditChunkBytes > plugins.MaxMessageSize/8 {
		t.Fatalf("chunk bounds %d rows, %d bytes: past the plugin's batch (%d), message (%d) or retry window (%d)",
			auditChunkRows, auditChunkBytes, plugins.MaxBatch, plugins.MaxMessageSize, storage.AuditRetryWindow)
	}
	rows := storagetest.LoadRows(3000)[0]
	for i := range rows { // ids as long as a UUID's, to be on the safe side
		rows[i].WorkspaceID = strings.Repeat("w", 36)
		rows[i].ActorID = strings.Repeat("a", 36)
	}
	if n := chunkLen(rows); n != len(rows) {
		t.Fatalf("a flush interval's %d load rows go in %d-row calls; want one call", len(rows), n)
	}
	if n := chunkLen(storagetest.LoadRows(auditChunkRows + 5)[0]); n != auditChunkRows {
		t.Fatalf("chunkLen of %d rows = %d; want the row bound %d", auditChunkRows+5, n, auditChunkRows)
	}
	// Large rows: the byte bound decides, and the first row always goes.
	big := storagetest.LoadRows(1000)[0]
	for i := range big {
		big[i].Output = bytes.Repeat([]byte{'x'}, 8<<10)
	}
	n := chunkLen(big)
	e := big[1]
	per := 160 + len(e.Nonce) + len(e.MAC) + len(e.WorkspaceID) + len(e.ActorID) + len(e.EventType) + len(e.ResourceType) + len(e.ResourceID) + len(e.Input) + len(e.Output)
	if n < 2 || n*(per+64) < auditChunkBytes || (n-1)*(per-64) > auditChunkBytes {
		t.Fatalf("chunkLen of 8 KiB rows = %d; want the byte bound (%d bytes)", n, auditChunkBytes)
	}
	huge := storagetest.LoadRows(2)[0]
	huge[0].Output = bytes.Repeat([]byte{'x'}, auditChunkBytes+1)
	if n := chunkLen(huge); n != 1 {
		t.Fatalf("chunkLen with an oversized first row = %d; want 1", n)
	}
}
