package postgres

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

func jsonJobs() []storage.Job {
	at := time.Date(2026, 11, 29, 23, 1, 2, 345678900, time.UTC)
	return []storage.Job{
		{},
		{ID: "job_1", WorkspaceID: "ws_1", Queue: "q", Payload: json.RawMessage(`{"a":1}`), Status: storage.JobQueued, RunAt: at, CreatedAt: at, UpdatedAt: at, EnqueuedBy: "key_1"},
		{
			ID: "job_2", WorkspaceID: "ws_1", Queue: "q", IdempotencyKey: "idem-é\"\\<>&\x01\b\f\n\r\t\u2028\u2029\xff",
			Payload: json.RawMessage("{ \"html\" : \"<a href='x'>&</a>\",\n \"t\": \"${{ secrets.TOKEN }}\", \"u\": \"\u2028\" }"),
			Status:  storage.JobLeased, RunAt: at, LeaseUntil: at.Add(time.Minute), LeaseToken: 1<<63 + 5, Leases: 3, RetryFrom: 1,
			EnqueuedBy: "key_1", CreatedAt: at.In(time.FixedZone("x", -3600)), UpdatedAt: at.Round(time.Second), DeliveredAt: at,
			Attempts: []storage.Attempt{
				{N: 1, StartedAt: at, Duration: 1500 * time.Millisecond, StatusCode: 500, ErrorCode: "http_status",
					RequestURL: "https://x.example/${{ secrets.TOKEN }}", RequestHeaders: map[string]string{"X-Key": "${{ secrets.TOKEN }}", "Content-Type": "application/json", "A": "<"},
					Error: "the callback answered 500", ResponseHeaders: map[string]string{"Server": "x"}, ResponseExcerpt: "bad \xff\xfe bytes \x7f"},
				{N: 2, StartedAt: at.Add(time.Second), Duration: -1, ErrorCode: "timeout", RequestHeaders: map[string]string{}},
			},
		},
		{ID: "job_3", Payload: nil, RunAt: time.Date(1960, 1, 1, 0, 0, 0, 1, time.Local), Attempts: []storage.Attempt{}},
	}
}

// TestMarshalJobMatchesEncodingJSON: the hand-written encoding is
// encoding/json's, byte for byte, for every field and escape.
func TestMarshalJobMatchesEncodingJSON(t *testing.T) {
	for i, j := range jsonJobs() {
		want, werr := json.Marshal(j)
		got, gerr := marshalJob(j)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("%d:\n got %s (%v)\nwant %s (%v)", i, got, gerr, want, werr)
		}
	}
	for _, bad := range []storage.Job{{Payload: json.RawMessage(`{"a":`)}, {RunAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, {Attempts: []storage.Attempt{{StartedAt: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}}}} {
		if _, err := marshalJob(bad); err == nil {
			t.Fatalf("marshalJob(%+v) did not fail", bad)
		}
		if _, err := json.Marshal(bad); err == nil {
			t.Fatalf("json.Marshal(%+v) did not fail", bad)
		}
	}
}

func FuzzMarshalJob(f *testing.F) {
	f.Add("job_1", "idem", "payload", `{"a":"<&>"}`, "excerpt", "K", "V", int64(1700000000), int64(5))
	f.Add("\xff\u2028", "\x00", "\"", `[1, 2 ,3]`, "\\", "", "\t", int64(-1), int64(-7))
	f.Fuzz(func(t *testing.T, id, idem, status, payload, excerpt, hk, hv string, sec, n int64) {
		at := time.Unix(sec%(1<<36), n%1e9)
		j := storage.Job{ID: id, IdempotencyKey: idem, Status: status, Payload: json.RawMessage(payload), RunAt: at, LeaseToken: uint64(n), Leases: int(n % 1000),
			Attempts: []storage.Attempt{{N: int(n), StartedAt: at, Duration: time.Duration(n), ResponseExcerpt: excerpt, RequestHeaders: map[string]string{hk: hv, hv: hk}}}}
		want, werr := json.Marshal(j)
		got, gerr := marshalJob(j)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("\n got %s (%v)\nwant %s (%v)", got, gerr, want, werr)
		}
	})
}
