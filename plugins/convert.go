package plugins

import (
	"encoding/json"
	"time"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

// Conversions between the storage package's types and the protocol's
// messages. Times travel as Unix nanoseconds, 0 for the zero time (so a
// zero time survives the round trip; the protocol documents the range).

func ts(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// raw keeps an absent JSON value absent (nil, not an empty slice).
func raw(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

func bs(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func workspaceToPB(w storage.Workspace) *pb.Workspace {
	return &pb.Workspace{Id: w.ID, Name: w.Name, CreatedAt: ts(w.CreatedAt)}
}

func workspaceFromPB(w *pb.Workspace) storage.Workspace {
	if w == nil {
		return storage.Workspace{}
	}
	return storage.Workspace{ID: w.Id, Name: w.Name, CreatedAt: tm(w.CreatedAt)}
}

func apiKeyToPB(k storage.APIKey) *pb.APIKey {
	m := &pb.APIKey{Id: k.ID, WorkspaceId: k.WorkspaceID, Name: k.Name, Role: k.Role, Hash: k.Hash, CreatedAt: ts(k.CreatedAt)}
	if k.RevokedAt != nil {
		m.RevokedAt = ts(*k.RevokedAt)
	}
	return m
}

func apiKeyFromPB(k *pb.APIKey) storage.APIKey {
	if k == nil {
		return storage.APIKey{}
	}
	out := storage.APIKey{ID: k.Id, WorkspaceID: k.WorkspaceId, Name: k.Name, Role: k.Role, Hash: bs(k.Hash), CreatedAt: tm(k.CreatedAt)}
	if k.RevokedAt != 0 {
		at := tm(k.RevokedAt)
		out.RevokedAt = &at
	}
	return out
}

func kekToPB(k storage.KEK) *pb.KEK {
	return &pb.KEK{Id: k.ID, Wrapped: k.Wrapped, Active: k.Active, CreatedAt: ts(k.CreatedAt)}
}

func kekFromPB(k *pb.KEK) storage.KEK {
	if k == nil {
		return storage.KEK{}
	}
	return storage.KEK{ID: k.Id, Wrapped: bs(k.Wrapped), Active: k.Active, CreatedAt: tm(k.CreatedAt)}
}

func metaToPB(m storage.SecretMeta) *pb.SecretMeta {
	return &pb.SecretMeta{WorkspaceId: m.WorkspaceID, Name: m.Name, Version: m.Version, Revision: m.Revision, Hint: m.Hint,
		AllowedHosts: m.AllowedHosts, KekId: m.KEKID, CreatedAt: ts(m.CreatedAt), UpdatedAt: ts(m.UpdatedAt)}
}

func metaFromPB(m *pb.SecretMeta) storage.SecretMeta {
	if m == nil {
		return storage.SecretMeta{}
	}
	return storage.SecretMeta{WorkspaceID: m.WorkspaceId, Name: m.Name, Version: m.Version, Revision: m.Revision, Hint: m.Hint,
		AllowedHosts: m.AllowedHosts, KEKID: m.KekId, CreatedAt: tm(m.CreatedAt), UpdatedAt: tm(m.UpdatedAt)}
}

func secretToPB(r storage.SecretRecord) *pb.SecretRecord {
	return &pb.SecretRecord{WorkspaceId: r.WorkspaceID, Name: r.Name, Version: r.Version, Revision: r.Revision, Hint: r.Hint,
		AllowedHosts: r.AllowedHosts, KekId: r.KEKID, CreatedAt: ts(r.CreatedAt), UpdatedAt: ts(r.UpdatedAt), Sealed: r.Sealed}
}

func secretFromPB(r *pb.SecretRecord) storage.SecretRecord {
	if r == nil {
		return storage.SecretRecord{}
	}
	return storage.SecretRecord{SecretMeta: storage.SecretMeta{WorkspaceID: r.WorkspaceId, Name: r.Name, Version: r.Version,
		Revision: r.Revision, Hint: r.Hint, AllowedHosts: r.AllowedHosts, KEKID: r.KekId, CreatedAt: tm(r.CreatedAt), UpdatedAt: tm(r.UpdatedAt)},
		Sealed: bs(r.Sealed)}
}

func eventToPB(e storage.AuditEvent) *pb.AuditEvent {
	out := new(pb.AuditEvent)
	fillEventPB(out, e)
	return out
}

// fillEventPB sets the fields of a zero message (not a copy: messages hold
// a lock-like state and must not be copied).
func fillEventPB(out *pb.AuditEvent, e storage.AuditEvent) {
	out.Id, out.OccurredAt, out.WorkspaceId, out.ActorId, out.EventType = e.ID, ts(e.OccurredAt), e.WorkspaceID, e.ActorID, e.EventType
	out.ResourceType, out.ResourceId, out.Input, out.Output, out.Chain = e.ResourceType, e.ResourceID, e.Input, e.Output, e.Chain
	out.Nonce, out.Mac = e.Nonce, e.MAC
}

func eventFromPB(e *pb.AuditEvent) storage.AuditEvent {
	if e == nil {
		return storage.AuditEvent{}
	}
	return storage.AuditEvent{ID: e.Id, OccurredAt: tm(e.OccurredAt), WorkspaceID: e.WorkspaceId, ActorID: e.ActorId, EventType: e.EventType,
		ResourceType: e.ResourceType, ResourceID: e.ResourceId, Input: raw(e.Input), Output: raw(e.Output), Chain: bs(e.Chain),
		Nonce: bs(e.Nonce), MAC: bs(e.Mac)}
}

func eventsToPB(evs []storage.AuditEvent) []*pb.AuditEvent {
	if len(evs) == 0 {
		return nil
	}
	out := make([]*pb.AuditEvent, len(evs))
	// One array for the batch's messages: the audit writer sends up to
	// 2000 access rows a call, one allocation each showed in its profile.
	msgs := make([]pb.AuditEvent, len(evs))
	for i := range evs {
		fillEventPB(&msgs[i], evs[i])
		out[i] = &msgs[i]
	}
	return out
}

func eventsFromPB(evs []*pb.AuditEvent) []storage.AuditEvent {
	if len(evs) == 0 {
		return nil
	}
	out := make([]storage.AuditEvent, len(evs))
	for i, e := range evs {
		out[i] = eventFromPB(e)
	}
	return out
}

func headToPB(ws string, h storage.AuditHead) *pb.AuditHead {
	return &pb.AuditHead{WorkspaceId: ws, LastId: h.LastID, Chain: h.Chain}
}

func headFromPB(h *pb.AuditHead) storage.AuditHead {
	if h == nil {
		return storage.AuditHead{}
	}
	return storage.AuditHead{LastID: h.LastId, Chain: bs(h.Chain)}
}

func appendedToPB(a []storage.AuditAppended) []*pb.AuditAppended {
	if len(a) == 0 {
		return nil
	}
	out := make([]*pb.AuditAppended, len(a))
	for i, x := range a {
		out[i] = &pb.AuditAppended{WorkspaceId: x.WorkspaceID, Prev: headToPB(x.WorkspaceID, x.Prev), Head: headToPB(x.WorkspaceID, x.Head), Rows: int64(x.Rows)}
	}
	return out
}

func appendedFromPB(a []*pb.AuditAppended) []storage.AuditAppended {
	if len(a) == 0 {
		return nil
	}
	out := make([]storage.AuditAppended, len(a))
	for i, x := range a {
		out[i] = storage.AuditAppended{WorkspaceID: x.WorkspaceId, Prev: headFromPB(x.Prev), Head: headFromPB(x.Head), Rows: int(x.Rows)}
	}
	return out
}

func checkpointToPB(c storage.AuditCheckpoint) *pb.AuditCheckpoint {
	return &pb.AuditCheckpoint{WorkspaceId: c.WorkspaceID, LastId: c.LastID, Chain: c.Chain, Mac: c.MAC, SealedAt: ts(c.SealedAt), RowMacFrom: c.RowMACFrom}
}

func checkpointFromPB(c *pb.AuditCheckpoint) storage.AuditCheckpoint {
	if c == nil {
		return storage.AuditCheckpoint{}
	}
	return storage.AuditCheckpoint{WorkspaceID: c.WorkspaceId, LastID: c.LastId, Chain: bs(c.Chain), MAC: bs(c.Mac), SealedAt: tm(c.SealedAt), RowMACFrom: c.RowMacFrom}
}

func retentionToPB(r storage.AuditRetention) *pb.AuditRetention {
	return &pb.AuditRetention{WorkspaceId: r.WorkspaceID, ThroughId: r.ThroughID, Chain: r.Chain, Rows: r.Rows, PrunedAt: ts(r.PrunedAt), Mac: r.MAC}
}

func retentionFromPB(r *pb.AuditRetention) storage.AuditRetention {
	if r == nil {
		return storage.AuditRetention{}
	}
	return storage.AuditRetention{WorkspaceID: r.WorkspaceId, ThroughID: r.ThroughId, Chain: bs(r.Chain), Rows: r.Rows, PrunedAt: tm(r.PrunedAt), MAC: bs(r.Mac)}
}

func queueToPB(q storage.Queue) *pb.Queue {
	return &pb.Queue{WorkspaceId: q.WorkspaceID, Name: q.Name, CallbackUrl: q.CallbackURL, CallbackHeaders: q.CallbackHeaders,
		MaxAttempts: int64(q.MaxAttempts), BackoffBase: int64(q.BackoffBase), BackoffCap: int64(q.BackoffCap), Timeout: int64(q.Timeout),
		Concurrency: int64(q.Concurrency), RatePerSecond: q.RatePerSecond, Revision: q.Revision, CreatedAt: ts(q.CreatedAt), UpdatedAt: ts(q.UpdatedAt)}
}

func queueFromPB(q *pb.Queue) storage.Queue {
	if q == nil {
		return storage.Queue{}
	}
	return storage.Queue{WorkspaceID: q.WorkspaceId, Name: q.Name, CallbackURL: q.CallbackUrl, CallbackHeaders: strMap(q.CallbackHeaders),
		MaxAttempts: int(q.MaxAttempts), BackoffBase: time.Duration(q.BackoffBase), BackoffCap: time.Duration(q.BackoffCap), Timeout: time.Duration(q.Timeout),
		Concurrency: int(q.Concurrency), RatePerSecond: q.RatePerSecond, Revision: q.Revision, CreatedAt: tm(q.CreatedAt), UpdatedAt: tm(q.UpdatedAt)}
}

func attemptToPB(a storage.Attempt) *pb.Attempt {
	return &pb.Attempt{N: int64(a.N), StartedAt: ts(a.StartedAt), Duration: int64(a.Duration), StatusCode: int64(a.StatusCode), ErrorCode: a.ErrorCode,
		RequestUrl: a.RequestURL, RequestHeaders: a.RequestHeaders, Error: a.Error, ResponseHeaders: a.ResponseHeaders, ResponseExcerpt: a.ResponseExcerpt}
}

func attemptFromPB(a *pb.Attempt) storage.Attempt {
	if a == nil {
		return storage.Attempt{}
	}
	return storage.Attempt{N: int(a.N), StartedAt: tm(a.StartedAt), Duration: time.Duration(a.Duration), StatusCode: int(a.StatusCode), ErrorCode: a.ErrorCode,
		RequestURL: a.RequestUrl, RequestHeaders: strMap(a.RequestHeaders), Error: a.Error, ResponseHeaders: strMap(a.ResponseHeaders), ResponseExcerpt: a.ResponseExcerpt}
}

// strMap keeps an empty map absent (nil), as the in-process stores return it.
func strMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func jobToPB(j storage.Job) *pb.Job {
	m := &pb.Job{Id: j.ID, WorkspaceId: j.WorkspaceID, Queue: j.Queue, Payload: j.Payload, IdempotencyKey: j.IdempotencyKey, Status: j.Status,
		RunAt: ts(j.RunAt), LeaseUntil: ts(j.LeaseUntil), LeaseToken: j.LeaseToken, Leases: int64(j.Leases), RetryFrom: int64(j.RetryFrom),
		EnqueuedBy: j.EnqueuedBy, CreatedAt: ts(j.CreatedAt), UpdatedAt: ts(j.UpdatedAt), DeliveredAt: ts(j.DeliveredAt)}
	if len(j.Attempts) > 0 {
		m.Attempts = make([]*pb.Attempt, len(j.Attempts))
		for i, a := range j.Attempts {
			m.Attempts[i] = attemptToPB(a)
		}
	}
	return m
}

func jobFromPB(j *pb.Job) storage.Job {
	if j == nil {
		return storage.Job{}
	}
	out := storage.Job{ID: j.Id, WorkspaceID: j.WorkspaceId, Queue: j.Queue, Payload: raw(j.Payload), IdempotencyKey: j.IdempotencyKey, Status: j.Status,
		RunAt: tm(j.RunAt), LeaseUntil: tm(j.LeaseUntil), LeaseToken: j.LeaseToken, Leases: int(j.Leases), RetryFrom: int(j.RetryFrom),
		EnqueuedBy: j.EnqueuedBy, CreatedAt: tm(j.CreatedAt), UpdatedAt: tm(j.UpdatedAt), DeliveredAt: tm(j.DeliveredAt)}
	if len(j.Attempts) > 0 {
		out.Attempts = make([]storage.Attempt, len(j.Attempts))
		for i, a := range j.Attempts {
			out.Attempts[i] = attemptFromPB(a)
		}
	}
	return out
}

func jobsToPB(js []storage.Job) []*pb.Job {
	if len(js) == 0 {
		return nil
	}
	out := make([]*pb.Job, len(js))
	for i, j := range js {
		out[i] = jobToPB(j)
	}
	return out
}

func jobsFromPB(js []*pb.Job) []storage.Job {
	if len(js) == 0 {
		return nil
	}
	out := make([]storage.Job, len(js))
	for i, j := range js {
		out[i] = jobFromPB(j)
	}
	return out
}

func resultToPB(r storage.AttemptResult) *pb.AttemptResult {
	return &pb.AttemptResult{WorkspaceId: r.WorkspaceID, JobId: r.JobID, LeaseToken: r.LeaseToken, Attempt: attemptToPB(r.Attempt),
		Status: r.Status, RunAt: ts(r.RunAt), At: ts(r.At), Release: r.Release}
}

func resultFromPB(r *pb.AttemptResult) storage.AttemptResult {
	if r == nil {
		return storage.AttemptResult{}
	}
	return storage.AttemptResult{WorkspaceID: r.WorkspaceId, JobID: r.JobId, LeaseToken: r.LeaseToken, Attempt: attemptFromPB(r.Attempt),
		Status: r.Status, RunAt: tm(r.RunAt), At: tm(r.At), Release: r.Release}
}

func intMapToPB(m map[string]int) map[string]int64 {
	if m == nil {
		return nil
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = int64(v)
	}
	return out
}

func intMapFromPB(m map[string]int64) map[string]int {
	if m == nil {
		return nil
	}
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = int(v)
	}
	return out
}
