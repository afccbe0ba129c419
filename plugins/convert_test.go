package plugins

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// allSet fails unless every field of v (recursively through structs, and
// the first element of slices) is non-zero: a field added to a storage
// type then fails here until the sample, and so the converter, covers it.
func allSet(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			if v.Interface().(time.Time).IsZero() {
				t.Errorf("%s is zero in the sample", path)
			}
			return
		}
		for i := range v.NumField() {
			allSet(t, path+"."+v.Type().Field(i).Name, v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Errorf("%s is empty in the sample", path)
			return
		}
		if v.Type().Elem().Kind() == reflect.Struct {
			allSet(t, path+"[0]", v.Index(0))
		}
	case reflect.Pointer:
		if v.IsNil() {
			t.Errorf("%s is nil in the sample", path)
			return
		}
		allSet(t, path, v.Elem())
	default:
		if v.IsZero() {
			t.Errorf("%s is zero in the sample", path)
		}
	}
}

// roundTrip checks that every field of a fully set sample survives the
// conversion to the protocol and back.
func roundTrip[T any](t *testing.T, name string, v T, to func(T) T) {
	t.Helper()
	allSet(t, name, reflect.ValueOf(v))
	if got := to(v); !reflect.DeepEqual(got, v) {
		t.Errorf("%s round trip:\n got %+v\nwant %+v", name, got, v)
	}
}

func TestConvertRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 890, time.UTC)
	at2 := at.Add(time.Hour)
	js := json.RawMessage(`{"a":1}`)
	ev := storage.AuditEvent{ID: 7, OccurredAt: at, WorkspaceID: "ws", ActorID: "key", EventType: "secret.created", ResourceType: "secret",
		ResourceID: "T", Input: js, Output: json.RawMessage(`{"b":2}`), Chain: []byte{1, 2},
		Nonce: []byte{3, 4}, MAC: []byte{5, 6}}
	att := storage.Attempt{N: 2, StartedAt: at, Duration: time.Second, StatusCode: 503, ErrorCode: "http_status",
		RequestURL: "https://cb.example/{{ secret \"T\" }}", RequestHeaders: map[string]string{"A": "b"}, Error: "refused",
		ResponseHeaders: map[string]string{"C": "d"}, ResponseExcerpt: "busy"}
	roundTrip(t, "Workspace", storage.Workspace{ID: "ws", Name: "n", CreatedAt: at}, func(v storage.Workspace) storage.Workspace { return workspaceFromPB(workspaceToPB(v)) })
	roundTrip(t, "APIKey", storage.APIKey{ID: "k", WorkspaceID: "ws", Name: "n", Role: "admin", Hash: []byte{9}, CreatedAt: at, RevokedAt: &at2},
		func(v storage.APIKey) storage.APIKey { return apiKeyFromPB(apiKeyToPB(v)) })
	roundTrip(t, "KEK", storage.KEK{ID: "kek", Wrapped: []byte{1}, Active: true, CreatedAt: at}, func(v storage.KEK) storage.KEK { return kekFromPB(kekToPB(v)) })
	meta := storage.SecretMeta{WorkspaceID: "ws", Name: "T", Version: 2, Revision: 3, Hint: "ab...", AllowedHosts: []string{"a.example"}, KEKID: "kek", CreatedAt: at, UpdatedAt: at2}
	roundTrip(t, "SecretMeta", meta, func(v storage.SecretMeta) storage.SecretMeta { return metaFromPB(metaToPB(v)) })
	roundTrip(t, "SecretRecord", storage.SecretRecord{SecretMeta: meta, Sealed: []byte{4}}, func(v storage.SecretRecord) storage.SecretRecord { return secretFromPB(secretToPB(v)) })
	roundTrip(t, "AuditEvent", ev, func(v storage.AuditEvent) storage.AuditEvent { return eventFromPB(eventToPB(v)) })
	roundTrip(t, "AuditCheckpoint", storage.AuditCheckpoint{WorkspaceID: "ws", LastID: 5, Chain: []byte{1}, MAC: []byte{2}, SealedAt: at, RowMACFrom: 3},
		func(v storage.AuditCheckpoint) storage.AuditCheckpoint { return checkpointFromPB(checkpointToPB(v)) })
	roundTrip(t, "AuditRetention", storage.AuditRetention{WorkspaceID: "ws", ThroughID: 5, Chain: []byte{1}, Rows: 9, PrunedAt: at, MAC: []byte{2}},
		func(v storage.AuditRetention) storage.AuditRetention { return retentionFromPB(retentionToPB(v)) })
	roundTrip(t, "Queue", storage.Queue{WorkspaceID: "ws", Name: "q", CallbackURL: "https://x", CallbackHeaders: map[string]string{"A": "b"}, MaxAttempts: 3,
		BackoffBase: time.Second, BackoffCap: time.Minute, Timeout: 5 * time.Second, Concurrency: 4, RatePerSecond: 1.5, Revision: 2, CreatedAt: at, UpdatedAt: at2},
		func(v storage.Queue) storage.Queue { return queueFromPB(queueToPB(v)) })
	roundTrip(t, "Job", storage.Job{ID: "j", WorkspaceID: "ws", Queue: "q", Payload: js, IdempotencyKey: "i", Status: storage.JobLeased, RunAt: at,
		LeaseUntil: at2, LeaseToken: 8, Leases: 2, Attempts: []storage.Attempt{att}, RetryFrom: 1, EnqueuedBy: "key", CreatedAt: at, UpdatedAt: at2, DeliveredAt: at2},
		func(v storage.Job) storage.Job { return jobFromPB(jobToPB(v)) })
	roundTrip(t, "AttemptResult", storage.AttemptResult{WorkspaceID: "ws", JobID: "j", LeaseToken: 8, Attempt: att, Status: storage.JobQueued, RunAt: at, At: at2, Release: true},
		func(v storage.AttemptResult) storage.AttemptResult { return resultFromPB(resultToPB(v)) })
	roundTrip(t, "Workflow", storage.Workflow{WorkspaceID: "ws", Name: "w", Version: 2, Definition: js, CreatedAt: at, UpdatedAt: at2},
		func(v storage.Workflow) storage.Workflow { return workflowFromPB(workflowToPB(v)) })
	roundTrip(t, "WorkflowRun", storage.WorkflowRun{ID: "r", WorkspaceID: "ws", Workflow: "w", Version: 2, Definition: js, Input: js, IdempotencyKey: "i",
		Status: storage.RunFailed, Step: 1,
		Steps: []storage.StepState{{ID: "s", Status: storage.StepFailed, Attempts: []storage.Attempt{att}, RetryFrom: 1, Output: js, OutputTruncated: true,
			ErrorCode: "timeout", StartedAt: at, FinishedAt: at2}},
		Signals: []storage.RunSignal{{Name: "go", Data: js, SentBy: "key", ReceivedAt: at, UsedBy: "s"}},
		WakeAt:  at, WaitingFor: "go", LeaseOwner: "node", LeaseUntil: at2, LeaseToken: 3, Leases: 2, ErrorCode: "timeout", StartedBy: "key",
		CreatedAt: at, UpdatedAt: at2, FinishedAt: at2},
		func(v storage.WorkflowRun) storage.WorkflowRun { return runFromPB(runToPB(v)) })
	roundTrip(t, "AuditAppended", []storage.AuditAppended{{WorkspaceID: "ws", Prev: storage.AuditHead{LastID: 4, Chain: []byte{1}},
		Head: storage.AuditHead{LastID: 9, Chain: []byte{2}}, Rows: 5}},
		func(v []storage.AuditAppended) []storage.AuditAppended { return appendedFromPB(appendedToPB(v)) })
	// The zero time survives as the zero time (0 on the wire).
	if got := workspaceFromPB(workspaceToPB(storage.Workspace{ID: "ws"})); !got.CreatedAt.IsZero() {
		t.Errorf("zero time came back as %v", got.CreatedAt)
	}
}
