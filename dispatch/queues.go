package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/template"
	"rotor.sh/rotor/vault"
)

// Queue policy defaults and bounds.
const (
	DefaultMaxAttempts = 10
	DefaultBackoffBase = time.Second
	DefaultBackoffCap  = time.Hour
	DefaultTimeout     = 30 * time.Second
	DefaultConcurrency = 10
	MaxAttemptsLimit   = 100
	MaxTimeout         = 90 * time.Second
	MaxConcurrency     = 1000
	MaxDelay           = 30 * 24 * time.Hour
	MaxIdempotencyKey  = 255
	MaxHeaders         = 50
	MaxURLLen          = 8 << 10
	MaxHeaderValueLen  = 8 << 10
)

var queueNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Audit event types of queues.
const (
	EventQueueCreated = "queue.created"
	EventQueueUpdated = "queue.updated"
	EventQueueDeleted = "queue.deleted"
	ResourceQueue     = "queue"
)

// QueueSpec is a queue's settable fields; nil fields are left alone on
// update and take defaults on create.
type QueueSpec struct {
	CallbackURL     *string
	CallbackHeaders *map[string]string
	MaxAttempts     *int
	BackoffBase     *time.Duration
	BackoffCap      *time.Duration
	Timeout         *time.Duration
	Concurrency     *int
	RatePerSecond   *float64
}

// Service is the queue and job API's domain logic.
type Service struct {
	store storage.Store
	vault *vault.Vault
	now   func() time.Time
	// notify wakes the dispatcher after an enqueue or retry.
	notify func()
	// enqueues groups concurrent enqueues into one storage call.
	enqueues *enqueueGroup
}

// NewService returns a Service; notify may be nil.
func NewService(store storage.Store, v *vault.Vault, now func() time.Time, notify func()) *Service {
	if now == nil {
		now = time.Now
	}
	if notify == nil {
		notify = func() {}
	}
	return &Service{store: store, vault: v, now: now, notify: notify, enqueues: &enqueueGroup{store: store}}
}

func (s *Service) apply(q *storage.Queue, spec QueueSpec) {
	if spec.CallbackURL != nil {
		q.CallbackURL = *spec.CallbackURL
	}
	if spec.CallbackHeaders != nil {
		q.CallbackHeaders = *spec.CallbackHeaders
	}
	if spec.MaxAttempts != nil {
		q.MaxAttempts = *spec.MaxAttempts
	}
	if spec.BackoffBase != nil {
		q.BackoffBase = *spec.BackoffBase
	}
	if spec.BackoffCap != nil {
		q.BackoffCap = *spec.BackoffCap
	}
	if spec.Timeout != nil {
		q.Timeout = *spec.Timeout
	}
	if spec.Concurrency != nil {
		q.Concurrency = *spec.Concurrency
	}
	if spec.RatePerSecond != nil {
		q.RatePerSecond = *spec.RatePerSecond
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidQueue, fmt.Sprintf(format, args...))
}

// validate checks a queue's fields and that every secret its templates
// reference exists in the workspace.
func (s *Service) validate(ctx context.Context, q storage.Queue) error {
	if !queueNameRE.MatchString(q.Name) {
		return invalid("name must be lower-case letters, digits, '-' and '_' (at most 64, starting with a letter or digit)")
	}
	if q.CallbackURL == "" {
		return invalid("callback_url is required")
	}
	if len(q.CallbackURL) > MaxURLLen {
		return invalid("callback_url is longer than %d bytes", MaxURLLen)
	}
	refs, err := template.References(q.CallbackURL, template.ContextQuery)
	if err != nil {
		return invalid("callback_url: %v", err)
	}
	// Parse the URL with the references replaced, to check its shape.
	u, err := url.Parse(template.URLShape(q.CallbackURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("callback_url must be an absolute http:// or https:// URL")
	}
	if !validHostname(u.Hostname()) {
		return invalid("callback_url: the host is not a valid host name (at most 253 characters, labels of at most 63)")
	}
	if hostRefs, _ := template.References(template.HostPart(q.CallbackURL), template.ContextQuery); len(hostRefs) > 0 {
		return invalid("callback_url: secret references are not allowed in the host")
	}
	if len(q.CallbackHeaders) > MaxHeaders {
		return invalid("at most %d callback_headers", MaxHeaders)
	}
	for k, v := range q.CallbackHeaders {
		if !httpguts.ValidHeaderFieldName(k) || strings.HasPrefix(http.CanonicalHeaderKey(k), "Rotor-Internal-") {
			return invalid("callback_headers: %q is not a valid header name", k)
		}
		if len(v) > MaxHeaderValueLen {
			return invalid("callback_headers: the value of %s is longer than %d bytes", k, MaxHeaderValueLen)
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return invalid("callback_headers: the value of %s holds a control character", k)
		}
		r, err := template.References(v, template.ContextHeader)
		if err != nil {
			return invalid("callback_headers[%s]: %v", k, err)
		}
		refs = append(refs, r...)
	}
	switch {
	case q.MaxAttempts < 1 || q.MaxAttempts > MaxAttemptsLimit:
		return invalid("max_attempts must be 1 to %d", MaxAttemptsLimit)
	case q.BackoffBase < 100*time.Millisecond || q.BackoffBase > time.Hour:
		return invalid("backoff_base_seconds must be 0.1 to 3600")
	case q.BackoffCap < q.BackoffBase || q.BackoffCap > 7*24*time.Hour:
		return invalid("backoff_cap_seconds must be at least backoff_base_seconds and at most 7 days")
	case q.Timeout < time.Second || q.Timeout > MaxTimeout:
		return invalid("timeout_seconds must be 1 to %d", int(MaxTimeout.Seconds()))
	case q.Concurrency < 1 || q.Concurrency > MaxConcurrency:
		return invalid("concurrency must be 1 to %d", MaxConcurrency)
	case q.RatePerSecond < 0 || q.RatePerSecond > 10000:
		return invalid("rate_per_second must be 0 (no limit) to 10000")
	}
	var missing []string
	for _, name := range refs {
		if slices.Contains(missing, name) {
			continue
		}
		_, err := s.vault.GetSecret(ctx, vault.Actor{WorkspaceID: q.WorkspaceID}, name)
		if errors.Is(err, vault.ErrNotFound) {
			missing = append(missing, name)
		} else if err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		return &MissingSecretsError{Names: missing}
	}
	return nil
}

// signed is e as a batch, with the vault's row nonce and MAC.
func (s *Service) signed(e storage.AuditEvent) []storage.AuditEvent {
	evs := []storage.AuditEvent{e}
	if s.vault != nil {
		s.vault.SignAudit(evs)
	}
	return evs
}

func queueAudit(actor vault.Actor, typ string, q storage.Queue, now time.Time) storage.AuditEvent {
	in, _ := json.Marshal(map[string]any{"name": q.Name, "callback_url": q.CallbackURL, "callback_headers": q.CallbackHeaders})
	return storage.AuditEvent{OccurredAt: now.UTC(), WorkspaceID: actor.WorkspaceID, ActorID: actor.KeyID, EventType: typ,
		ResourceType: ResourceQueue, ResourceID: q.Name, Input: in}
}

// CreateQueue creates a queue with defaults for unset policy fields.
func (s *Service) CreateQueue(ctx context.Context, actor vault.Actor, name string, spec QueueSpec) (storage.Queue, error) {
	now := s.now().UTC()
	q := storage.Queue{WorkspaceID: actor.WorkspaceID, Name: name, MaxAttempts: DefaultMaxAttempts, BackoffBase: DefaultBackoffBase,
		BackoffCap: DefaultBackoffCap, Timeout: DefaultTimeout, Concurrency: DefaultConcurrency, CreatedAt: now, UpdatedAt: now}
	s.apply(&q, spec)
	if err := s.validate(ctx, q); err != nil {
		return storage.Queue{}, err
	}
	if err := s.checkCallbackDestination(ctx, actor, nil, q); err != nil {
		return storage.Queue{}, err
	}
	err := s.store.CreateQueue(ctx, storage.CreateQueueArgs{Queue: q, Audit: s.signed(queueAudit(actor, EventQueueCreated, q, now))})
	if errors.Is(err, storage.ErrExists) {
		return storage.Queue{}, fmt.Errorf("%w: queue %q already exists", vault.ErrExists, name)
	}
	q.Revision = 1
	return q, err
}

// UpdateQueue changes the given fields. A queue that does not exist is
// created when the patch sets callback_url, so the product guide's
// "PATCH /v1/queues/notifications" works on a fresh install.
func (s *Service) UpdateQueue(ctx context.Context, actor vault.Actor, name string, spec QueueSpec) (storage.Queue, bool, error) {
	for range 8 {
		cur, err := s.store.GetQueue(ctx, actor.WorkspaceID, name)
		if errors.Is(err, storage.ErrNotFound) {
			if spec.CallbackURL == nil {
				return storage.Queue{}, false, fmt.Errorf("%w: queue %q does not exist; create it with a callback_url", vault.ErrNotFound, name)
			}
			q, err := s.CreateQueue(ctx, actor, name, spec)
			if errors.Is(err, vault.ErrExists) {
				continue
			}
			return q, err == nil, err
		}
		if err != nil {
			return storage.Queue{}, false, err
		}
		next := cur
		s.apply(&next, spec)
		next.UpdatedAt = s.now().UTC()
		if err := s.validate(ctx, next); err != nil {
			return storage.Queue{}, false, err
		}
		if err := s.checkCallbackDestination(ctx, actor, &cur, next); err != nil {
			return storage.Queue{}, false, err
		}
		err = s.store.UpdateQueue(ctx, storage.UpdateQueueArgs{Queue: next, ExpectedRevision: cur.Revision,
			Audit: s.signed(queueAudit(actor, EventQueueUpdated, next, next.UpdatedAt))})
		if errors.Is(err, storage.ErrConflict) {
			continue
		}
		next.Revision = cur.Revision + 1
		return next, false, err
	}
	return storage.Queue{}, false, vault.ErrBusy
}

func notFoundQueue(err error, name string) error {
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: queue %q does not exist", vault.ErrNotFound, name)
	}
	return err
}

func (s *Service) GetQueue(ctx context.Context, actor vault.Actor, name string) (storage.Queue, error) {
	q, err := s.store.GetQueue(ctx, actor.WorkspaceID, name)
	return q, notFoundQueue(err, name)
}

func (s *Service) ListQueues(ctx context.Context, actor vault.Actor) ([]storage.Queue, error) {
	qs, err := s.store.ListQueues(ctx, actor.WorkspaceID)
	slices.SortFunc(qs, func(a, b storage.Queue) int { return strings.Compare(a.Name, b.Name) })
	return qs, err
}

// DeleteQueue deletes a queue; its undelivered jobs are canceled.
func (s *Service) DeleteQueue(ctx context.Context, actor vault.Actor, name string) error {
	now := s.now().UTC()
	err := s.store.DeleteQueue(ctx, storage.DeleteQueueArgs{WorkspaceID: actor.WorkspaceID, Name: name, At: now,
		Audit: s.signed(queueAudit(actor, EventQueueDeleted, storage.Queue{Name: name}, now))})
	return notFoundQueue(err, name)
}

// QueuesReferencing lists the workspace's queues whose templates reference
// the secret.
func (s *Service) QueuesReferencing(ctx context.Context, workspaceID, secret string) ([]string, error) {
	qs, err := s.store.ListQueues(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, q := range qs {
		refs, _ := template.References(q.CallbackURL, template.ContextQuery)
		for _, v := range q.CallbackHeaders {
			r, _ := template.References(v, template.ContextHeader)
			refs = append(refs, r...)
		}
		if slices.Contains(refs, secret) {
			out = append(out, q.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// EnqueueRequest is a job to enqueue.
type EnqueueRequest struct {
	Payload        json.RawMessage
	Delay          time.Duration
	IdempotencyKey string
}

// NewJobID returns a time-ordered job id, so listings by id are by age.
func NewJobID(now time.Time) string {
	var b [14]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli()))
	_, _ = rand.Read(b[8:])
	return "job_" + hex.EncodeToString(b[2:])
}

// Enqueue stores a job; with an idempotency key seen in the last 24 hours
// it returns the first job instead (existing=true).
func (s *Service) Enqueue(ctx context.Context, actor vault.Actor, queue string, req EnqueueRequest) (storage.Job, bool, error) {
	if len(req.Payload) == 0 {
		req.Payload = json.RawMessage("null")
	}
	if !json.Valid(req.Payload) {
		return storage.Job{}, false, fmt.Errorf("%w: payload is not JSON", ErrInvalidJob)
	}
	if req.Delay < 0 || req.Delay > MaxDelay {
		return storage.Job{}, false, fmt.Errorf("%w: delay_seconds must be 0 to %d", ErrInvalidJob, int(MaxDelay.Seconds()))
	}
	if len(req.IdempotencyKey) > MaxIdempotencyKey {
		return storage.Job{}, false, fmt.Errorf("%w: idempotency_key is longer than %d", ErrInvalidJob, MaxIdempotencyKey)
	}
	if _, err := template.References(string(req.Payload), template.ContextJSON); err != nil {
		return storage.Job{}, false, fmt.Errorf("%w: payload: %v", ErrInvalidJob, err)
	}
	now := s.now().UTC()
	j := storage.Job{ID: NewJobID(now), WorkspaceID: actor.WorkspaceID, Queue: queue, Payload: req.Payload, IdempotencyKey: req.IdempotencyKey,
		RunAt: now.Add(req.Delay), EnqueuedBy: actor.KeyID, CreatedAt: now, UpdatedAt: now}
	var res storage.EnqueueResult
	var err error
	if j.IdempotencyKey == "" {
		res, err = s.enqueues.enqueue(ctx, j, now)
	} else {
		// A key is looked up and claimed alone, as it always was.
		var rs []storage.EnqueueResult
		if rs, err = s.store.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: []storage.Job{j}, Now: now}); err == nil {
			res = rs[0]
		}
	}
	if err != nil {
		return storage.Job{}, false, notFoundQueue(err, queue)
	}
	if !res.Existing {
		s.notify()
	}
	return res.Job, res.Existing, nil
}

func notFoundJob(err error, id string) error {
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: job %q does not exist", vault.ErrNotFound, id)
	}
	if errors.Is(err, storage.ErrConflict) {
		return fmt.Errorf("%w: %v", ErrJobState, err)
	}
	return err
}

func (s *Service) GetJob(ctx context.Context, actor vault.Actor, id string) (storage.Job, error) {
	j, err := s.store.GetJob(ctx, actor.WorkspaceID, id)
	return j, notFoundJob(err, id)
}

func (s *Service) ListJobs(ctx context.Context, actor vault.Actor, q storage.JobQuery) (storage.JobPage, error) {
	if _, err := s.GetQueue(ctx, actor, q.Queue); err != nil {
		return storage.JobPage{}, err
	}
	q.WorkspaceID = actor.WorkspaceID
	return s.store.ListJobs(ctx, q)
}

func (s *Service) CancelJob(ctx context.Context, actor vault.Actor, id string) (storage.Job, error) {
	j, err := s.store.CancelJob(ctx, actor.WorkspaceID, id, s.now().UTC())
	return j, notFoundJob(err, id)
}

// RetryJob makes a dead or canceled job due now, with a fresh attempt budget.
func (s *Service) RetryJob(ctx context.Context, actor vault.Actor, id string) (storage.Job, error) {
	if _, err := s.store.RetryJobs(ctx, storage.RetryJobsArgs{WorkspaceID: actor.WorkspaceID, ID: id, At: s.now().UTC()}); err != nil {
		return storage.Job{}, notFoundJob(err, id)
	}
	s.notify()
	return s.GetJob(ctx, actor, id)
}

// RetryDead retries every dead job of a queue.
func (s *Service) RetryDead(ctx context.Context, actor vault.Actor, queue string) (int, error) {
	n, err := s.store.RetryJobs(ctx, storage.RetryJobsArgs{WorkspaceID: actor.WorkspaceID, Queue: queue, At: s.now().UTC()})
	if err != nil {
		return 0, notFoundQueue(err, queue)
	}
	if n > 0 {
		s.notify()
	}
	return n, nil
}

// validHostname: an IP literal, or a DNS name within DNS's limits.
func validHostname(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
	}
	return true
}
