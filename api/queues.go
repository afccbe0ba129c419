package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

// queueJSON is a queue as the API shows it. Templates are shown as stored.
type queueJSON struct {
	Name               string            `json:"name"`
	CallbackURL        string            `json:"callback_url"`
	CallbackHeaders    map[string]string `json:"callback_headers"`
	MaxAttempts        int               `json:"max_attempts"`
	BackoffBaseSeconds float64           `json:"backoff_base_seconds"`
	BackoffCapSeconds  float64           `json:"backoff_cap_seconds"`
	TimeoutSeconds     float64           `json:"timeout_seconds"`
	Concurrency        int               `json:"concurrency"`
	RatePerSecond      float64           `json:"rate_per_second"`
	CreatedAt          time.Time         `json:"created_at"`
	UpdatedAt          time.Time         `json:"updated_at"`
}

func toQueueJSON(q storage.Queue) queueJSON {
	h := q.CallbackHeaders
	if h == nil {
		h = map[string]string{}
	}
	return queueJSON{Name: q.Name, CallbackURL: q.CallbackURL, CallbackHeaders: h, MaxAttempts: q.MaxAttempts,
		BackoffBaseSeconds: q.BackoffBase.Seconds(), BackoffCapSeconds: q.BackoffCap.Seconds(), TimeoutSeconds: q.Timeout.Seconds(),
		Concurrency: q.Concurrency, RatePerSecond: q.RatePerSecond, CreatedAt: q.CreatedAt, UpdatedAt: q.UpdatedAt}
}

// queueBody is the settable part of a queue; absent fields are nil.
type queueBody struct {
	Name               *string            `json:"name"`
	CallbackURL        *string            `json:"callback_url"`
	CallbackHeaders    *map[string]string `json:"callback_headers"`
	MaxAttempts        *int               `json:"max_attempts"`
	BackoffBaseSeconds *float64           `json:"backoff_base_seconds"`
	BackoffCapSeconds  *float64           `json:"backoff_cap_seconds"`
	TimeoutSeconds     *float64           `json:"timeout_seconds"`
	Concurrency        *int               `json:"concurrency"`
	RatePerSecond      *float64           `json:"rate_per_second"`
}

func seconds(f *float64) *time.Duration {
	if f == nil {
		return nil
	}
	d := time.Duration(*f * float64(time.Second))
	return &d
}

func (b queueBody) spec() dispatch.QueueSpec {
	return dispatch.QueueSpec{CallbackURL: b.CallbackURL, CallbackHeaders: b.CallbackHeaders, MaxAttempts: b.MaxAttempts,
		BackoffBase: seconds(b.BackoffBaseSeconds), BackoffCap: seconds(b.BackoffCapSeconds), Timeout: seconds(b.TimeoutSeconds),
		Concurrency: b.Concurrency, RatePerSecond: b.RatePerSecond}
}

func (s *Server) createQueue(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body queueBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.Name == nil {
		return badRequest(CodeInvalidQueue, `field "name" is required`)
	}
	q, err := s.queues.CreateQueue(r.Context(), actor, *body.Name, body.spec())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/queues/"+q.Name)
	writeJSON(w, http.StatusCreated, toQueueJSON(q))
	return nil
}

func (s *Server) listQueues(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	qs, err := s.queues.ListQueues(r.Context(), actor)
	if err != nil {
		return err
	}
	out := make([]queueJSON, 0, len(qs))
	for _, q := range qs {
		out = append(out, toQueueJSON(q))
	}
	writeJSON(w, http.StatusOK, map[string]any{"queues": out})
	return nil
}

func (s *Server) getQueue(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	q, err := s.queues.GetQueue(r.Context(), actor, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toQueueJSON(q))
	return nil
}

func (s *Server) patchQueue(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body queueBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.Name != nil && *body.Name != r.PathValue("name") {
		return badRequest(CodeInvalidQueue, "a queue cannot be renamed")
	}
	q, created, err := s.queues.UpdateQueue(r.Context(), actor, r.PathValue("name"), body.spec())
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, toQueueJSON(q))
	return nil
}

func (s *Server) deleteQueue(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	if err := s.queues.DeleteQueue(r.Context(), actor, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type attemptJSON struct {
	N          int       `json:"n"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS float64   `json:"duration_ms"`
	StatusCode int       `json:"status_code,omitempty"`
	ErrorCode  string    `json:"error_code,omitempty"`
	// The exchange, for people (storage.Attempt): templates as sent,
	// the failure in words, the callback's answer scrubbed and bounded.
	RequestURL      string            `json:"request_url,omitempty"`
	RequestHeaders  map[string]string `json:"request_headers,omitempty"`
	Error           string            `json:"error,omitempty"`
	ResponseHeaders map[string]string `json:"response_headers,omitempty"`
	ResponseExcerpt string            `json:"response_excerpt,omitempty"`
}

type jobJSON struct {
	ID             string          `json:"id"`
	Queue          string          `json:"queue"`
	Status         string          `json:"status"`
	Payload        json.RawMessage `json:"payload"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	RunAt          time.Time       `json:"run_at"`
	Attempts       []attemptJSON   `json:"attempts"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	DeliveredAt    *time.Time      `json:"delivered_at"`
}

func toJobJSON(j storage.Job) jobJSON {
	out := jobJSON{ID: j.ID, Queue: j.Queue, Status: j.Status, Payload: j.Payload, IdempotencyKey: j.IdempotencyKey,
		RunAt: j.RunAt, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, Attempts: []attemptJSON{}}
	if !j.DeliveredAt.IsZero() {
		d := j.DeliveredAt
		out.DeliveredAt = &d
	}
	for _, a := range j.Attempts {
		out.Attempts = append(out.Attempts, attemptJSON{N: a.N, StartedAt: a.StartedAt, DurationMS: float64(a.Duration.Microseconds()) / 1000,
			StatusCode: a.StatusCode, ErrorCode: a.ErrorCode, RequestURL: a.RequestURL, RequestHeaders: a.RequestHeaders,
			Error: a.Error, ResponseHeaders: a.ResponseHeaders, ResponseExcerpt: a.ResponseExcerpt})
	}
	return out
}

type enqueueBody struct {
	Payload        json.RawMessage `json:"payload"`
	DelaySeconds   *float64        `json:"delay_seconds"`
	IdempotencyKey string          `json:"idempotency_key"`
}

func (s *Server) enqueue(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	var body enqueueBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	key, err := idempotencyKey(r.Header, body.IdempotencyKey)
	if err != nil {
		return err
	}
	if err := s.checkQuota(r.Context(), w, actor, len(body.Payload)); err != nil {
		return err
	}
	req := dispatch.EnqueueRequest{Payload: body.Payload, IdempotencyKey: key}
	if d := seconds(body.DelaySeconds); d != nil {
		req.Delay = *d
	}
	j, existing, err := s.queues.Enqueue(r.Context(), actor, r.PathValue("name"), req)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if existing {
		// The idempotency key was used in the last 24 hours: the first job.
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	writeJSON(w, status, toJobJSON(j))
	return nil
}

// HeaderIdempotencyKey is the IETF draft's request header
// (draft-ietf-httpapi-idempotency-key-header), the same key as the body's
// idempotency_key.
const HeaderIdempotencyKey = "Idempotency-Key"

// idempotencyKey merges the Idempotency-Key header with the body field: the
// body wins when only it is set or both agree; both set and different is a
// client mistake (422), since one of the two would be silently ignored. The
// draft makes the header a structured-field string ("..."); a bare token is
// taken as is, since most clients send one.
func idempotencyKey(h http.Header, fromBody string) (string, error) {
	vals := h.Values(HeaderIdempotencyKey)
	if len(vals) == 0 {
		return fromBody, nil
	}
	if len(vals) > 1 {
		return "", fmt.Errorf("%w: more than one Idempotency-Key header", dispatch.ErrInvalidJob)
	}
	v := strings.TrimSpace(vals[0])
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		if strings.ContainsAny(v, "\\\"") {
			return "", fmt.Errorf("%w: the Idempotency-Key header is not a valid string", dispatch.ErrInvalidJob)
		}
	}
	if v == "" {
		return "", fmt.Errorf("%w: the Idempotency-Key header is empty", dispatch.ErrInvalidJob)
	}
	if fromBody != "" && fromBody != v {
		return "", fmt.Errorf("%w: the Idempotency-Key header and idempotency_key differ; send one, or the same in both", dispatch.ErrInvalidJob)
	}
	return v, nil
}

var jobListParams = map[string]bool{"status": true, "cursor": true, "limit": true}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	q := r.URL.Query()
	for k := range q {
		if !jobListParams[k] {
			return badRequest(CodeInvalidQuery, "unknown query parameter "+strconv.Quote(truncate(k, 40))+" (allowed: status, cursor, limit)")
		}
	}
	jq := storage.JobQuery{Queue: r.PathValue("name"), Status: q.Get("status"), Before: q.Get("cursor")}
	switch jq.Status {
	case "", storage.JobQueued, storage.JobLeased, storage.JobDelivered, storage.JobDead, storage.JobCanceled:
	default:
		return badRequest(CodeInvalidQuery, "status must be queued, leased, delivered, dead or canceled")
	}
	var err error
	if jq.Limit, err = pageLimit(q); err != nil {
		return err
	}
	page, err := s.queues.ListJobs(r.Context(), actor, jq)
	if err != nil {
		return err
	}
	writePage(w, "jobs", page.Jobs, page.Next, toJobJSON)
	return nil
}

func (s *Server) retryDead(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	n, err := s.queues.RetryDead(r.Context(), actor, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int{"retried": n})
	return nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	j, err := s.queues.GetJob(r.Context(), actor, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toJobJSON(j))
	return nil
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	j, err := s.queues.CancelJob(r.Context(), actor, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toJobJSON(j))
	return nil
}

func (s *Server) retryJob(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	j, err := s.queues.RetryJob(r.Context(), actor, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toJobJSON(j))
	return nil
}
