package storagetest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"rotor.sh/rotor/storage"
)

// LoadRows builds batches of access rows shaped like bench/proxyload's
// resolving GET as the vault's audit writer sends them (issue 15): one
// workspace and actor, two rows per request (TOKEN and USER) sharing a
// request id and host, a distinct request id per request, the host varying
// with the upstream's port, a 16-byte nonce from a counter and a 32-byte
// MAC that looks random. sizes are the batches' row counts (the writer
// sends up to 2,000 rows a call, ~1,500 at 30,000 rows/s in 50 ms). Rows
// of a benchmark that cycles through the batches repeat; what a store does
// with a row does not depend on it being new.
func LoadRows(sizes ...int) [][]storage.AuditEvent {
	var seq uint64
	out := make([][]storage.AuditEvent, len(sizes))
	t0 := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	for bi, n := range sizes {
		evs := make([]storage.AuditEvent, n)
		for i := range evs {
			req := seq / 2
			seq++
			nonce := make([]byte, 0, 16)
			nonce = append(nonce, 'a', 1, 2, 3, 4, 5, 6, 7)
			nonce = binary.BigEndian.AppendUint64(nonce, seq)
			mac := sha256.Sum256(nonce)
			name := "TOKEN"
			if seq%2 == 0 {
				name = "USER"
			}
			evs[i] = storage.AuditEvent{
				OccurredAt: t0.Add(time.Duration(seq) * 33 * time.Microsecond), WorkspaceID: "ws_5f0c2a1e9b7d4c3a",
				ActorID: "key_8d1e4b6a2c9f0e7d", EventType: "secret.accessed", ResourceType: "secret", ResourceID: name,
				Input:  fmt.Appendf(nil, `{"host":"127.0.0.1:%d","request_id":"prx_3fa81c07%08x"}`, 40000+req%7, req),
				Output: []byte(`{"version":1}`), Nonce: nonce, MAC: mac[:],
			}
			if seq%2 == 0 { // the request's second row shares its first's input
				evs[i].Input = evs[i-min(i, 1)].Input
			}
		}
		out[bi] = evs
	}
	return out
}
