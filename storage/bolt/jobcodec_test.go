package bolt

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"rotor.sh/rotor/storage"
)

func codecJobs() []storage.Job {
	at := time.Date(2026, 11, 29, 23, 1, 2, 345678901, time.UTC)
	return []storage.Job{
		{},
		{ID: "job_1", WorkspaceID: "ws_1", Queue: "q", Payload: json.RawMessage(`{"a":1}`), Status: storage.JobQueued, RunAt: at, CreatedAt: at, UpdatedAt: at, EnqueuedBy: "key_1"},
		{
			ID: "job_2", WorkspaceID: "ws_1", Queue: "q", IdempotencyKey: "idem-é",
			// Whitespace, HTML characters and a template: stored as
			// encoding/json stores a RawMessage (compact, \u003c).
			Payload: json.RawMessage("{ \"html\" : \"<a href='x'>&</a>\",\n \"t\": \"${{ secrets.TOKEN }}\", \"u\": \"\u2028\" }"),
			Status:  storage.JobLeased, RunAt: at, LeaseUntil: at.Add(time.Minute), LeaseToken: 1<<63 + 5, Leases: 3, RetryFrom: 1,
			EnqueuedBy: "key_1", CreatedAt: at.Add(-time.Hour), UpdatedAt: at, DeliveredAt: time.Time{},
			Attempts: []storage.Attempt{
				{N: 1, StartedAt: at, Duration: 1500 * time.Millisecond, StatusCode: 500, ErrorCode: "http_status",
					RequestURL: "https://x.example/${{ secrets.TOKEN }}", RequestHeaders: map[string]string{"X-Key": "${{ secrets.TOKEN }}", "Content-Type": "application/json"},
					Error: "the callback answered 500", ResponseHeaders: map[string]string{"Server": "x"}, ResponseExcerpt: "bad \xff\xfe bytes"},
				{N: 2, StartedAt: at.Add(time.Second), ErrorCode: "timeout", RequestHeaders: map[string]string{}, ResponseHeaders: nil},
			},
		},
		// Times in other zones (named, local, a minute offset), before 1970
		// and the zero time. (An offset with seconds, as in LMT zones before
		// 1900, is where the two differ: RFC 3339 drops the seconds and
		// JSON moved the instant; the binary encoding keeps the instant.)
		{ID: "job_3", Payload: nil, RunAt: time.Date(1960, 1, 1, 0, 0, 0, 1, time.FixedZone("x", 3600)), CreatedAt: time.Unix(0, 0), UpdatedAt: time.Unix(1e9, 5),
			LeaseUntil: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("y", -(5*3600+30*60))), DeliveredAt: time.Date(2026, 7, 1, 12, 0, 0, 0, time.FixedZone("z", 5*60)), Attempts: []storage.Attempt{}},
	}
}

// TestJobCodecMatchesJSON: a job read back from the binary encoding is
// what it was when job values were JSON, zones of times included.
func TestJobCodecMatchesJSON(t *testing.T) {
	for i, j := range codecJobs() {
		raw, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		var viaJSON storage.Job
		if err := json.Unmarshal(raw, &viaJSON); err != nil {
			t.Fatal(err)
		}
		data, err := encodeJob(j)
		if err != nil {
			t.Fatal(err)
		}
		if data[0] != jobCodecV1 {
			t.Fatalf("%d: version byte %#x", i, data[0])
		}
		got, err := decodeJob(data)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !reflect.DeepEqual(got, viaJSON) {
			t.Fatalf("%d: binary round trip\n%+v\nJSON round trip\n%+v", i, got, viaJSON)
		}
		// Old JSON values still decode.
		old, err := decodeJob(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(old, viaJSON) {
			t.Fatalf("%d: JSON value decoded as %+v", i, old)
		}
		// Decoding copies: nothing refers to the stored bytes.
		for k := range data {
			data[k] = 0xAA
		}
		if !reflect.DeepEqual(got, viaJSON) {
			t.Fatalf("%d: decoded job changed with the bytes it came from", i)
		}
	}
	if _, err := encodeJob(storage.Job{Payload: json.RawMessage(`{"a":`)}); err == nil {
		t.Fatal("an invalid payload was stored")
	}
	if _, err := encodeJob(storage.Job{Payload: json.RawMessage(`{}`), RunAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 25*3600))}); err == nil {
		t.Fatal("a zone offset of a day was stored")
	}
}

// TestJobCodecRejectsMalformed: cut, padded, unknown and empty values fail
// with errJobCodec, never a panic.
func TestJobCodecRejectsMalformed(t *testing.T) {
	data, err := encodeJob(codecJobs()[2])
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{nil, {}, {0x02}, {0xff, 1, 2}, data[:len(data)-1], data[:10], append(append([]byte{}, data...), 0)} {
		if _, err := decodeJob(bad); err == nil {
			t.Fatalf("decoded %x", bad)
		}
	}
	// A huge count in a short value does not allocate it.
	if _, err := decodeJob([]byte{jobCodecV1, 0xff, 0xff, 0xff, 0xff, 0x0f}); err == nil {
		t.Fatal("decoded a huge length")
	}
}

func FuzzJobCodec(f *testing.F) {
	for _, j := range codecJobs() {
		data, _ := encodeJob(j)
		f.Add(data)
		raw, _ := json.Marshal(j)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := decodeJob(data)
		if err != nil || len(data) == 0 || data[0] != jobCodecV1 {
			return
		}
		// What decodes re-encodes to a value that decodes the same.
		again, err := encodeJob(j)
		if err != nil {
			return // a payload that is not JSON: refused on write
		}
		j2, err := decodeJob(again)
		if err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalizePayload(j), j2) {
			t.Fatalf("round trip changed the job:\n%+v\n%+v", j, j2)
		}
	})
}

func normalizePayload(j storage.Job) storage.Job {
	p, _ := json.Marshal(json.RawMessage(j.Payload))
	j.Payload = p
	for i := range j.Attempts {
		a := &j.Attempts[i]
		a.ErrorCode, a.RequestURL, a.Error, a.ResponseExcerpt = jsonString(a.ErrorCode), jsonString(a.RequestURL), jsonString(a.Error), jsonString(a.ResponseExcerpt)
		a.RequestHeaders, a.ResponseHeaders = jsonMap(a.RequestHeaders), jsonMap(a.ResponseHeaders)
	}
	j.ID, j.WorkspaceID, j.Queue, j.IdempotencyKey, j.Status, j.EnqueuedBy = jsonString(j.ID), jsonString(j.WorkspaceID), jsonString(j.Queue), jsonString(j.IdempotencyKey), jsonString(j.Status), jsonString(j.EnqueuedBy)
	return j
}

func jsonMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[jsonString(k)] = jsonString(v)
	}
	return out
}

// TestJobsWrittenAsJSONStillWork: a file whose job values are JSON (written
// before the binary encoding) is read, leased and completed, and the job is
// rewritten in binary when it changes.
func TestJobsWrittenAsJSONStillWork(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "rotor.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	if err := s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws_1", Name: "one", CreatedAt: now}}); err != nil {
		t.Fatal(err)
	}
	q := storage.Queue{WorkspaceID: "ws_1", Name: "q", CallbackURL: "http://x.example/", MaxAttempts: 3, Timeout: time.Second, Concurrency: 4, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateQueue(ctx, storage.CreateQueueArgs{Queue: q}); err != nil {
		t.Fatal(err)
	}
	j := storage.Job{ID: "job_00000001", WorkspaceID: "ws_1", Queue: "q", Payload: json.RawMessage(`{"a":1}`), Status: storage.JobQueued, RunAt: now, EnqueuedBy: "k", CreatedAt: now, UpdatedAt: now}
	if _, err := s.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: []storage.Job{j}, Now: now}); err != nil {
		t.Fatal(err)
	}
	// Put the value back as the JSON an older Rotor wrote.
	raw, _ := json.Marshal(j)
	if err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketJobs).Put([]byte(j.ID), raw) }); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, "ws_1", j.ID)
	if err != nil || string(got.Payload) != `{"a":1}` || got.Status != storage.JobQueued {
		t.Fatalf("%+v %v", got, err)
	}
	leased, err := s.LeaseJobs(ctx, storage.LeaseJobsArgs{Now: now.Add(time.Second), Limit: 10, Visibility: time.Minute})
	if err != nil || len(leased) != 1 {
		t.Fatalf("%d leased, %v", len(leased), err)
	}
	if err := s.CompleteAttempts(ctx, []storage.AttemptResult{{WorkspaceID: "ws_1", JobID: j.ID, LeaseToken: leased[0].LeaseToken, Status: storage.JobDelivered,
		At: now.Add(2 * time.Second), Attempt: storage.Attempt{N: 1, StartedAt: now, StatusCode: 200}}}); err != nil {
		t.Fatal(err)
	}
	if got, err = s.GetJob(ctx, "ws_1", j.ID); err != nil || got.Status != storage.JobDelivered || len(got.Attempts) != 1 {
		t.Fatalf("%+v %v", got, err)
	}
	var first byte
	s.db.View(func(tx *bbolt.Tx) error { first = tx.Bucket(bucketJobs).Get([]byte(j.ID))[0]; return nil })
	if first != jobCodecV1 {
		t.Fatalf("the changed job was written as %q", first)
	}
}
