package vault

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"rotor.sh/rotor/storage"
)

// Audit event types. Each is an audit_event row's event_type.
const (
	EventSecretCreated      = "secret.created"
	EventSecretRotated      = "secret.rotated"
	EventSecretUpdated      = "secret.updated" // allowed_hosts changed, value unchanged
	EventSecretDeleted      = "secret.deleted"
	EventSecretAccessed     = "secret.accessed"
	EventSecretAccessDenied = "secret.access_denied"
	EventAPIKeyCreated      = "api_key.created"
	EventAPIKeyRevoked      = "api_key.revoked"
	EventWorkspaceCreated   = "workspace.created"
	EventKeyringRotated     = "keyring.rotated"
)

// Audit resource types (audit_event.resource_type).
const (
	ResourceSecret    = "secret"
	ResourceAPIKey    = "api_key"
	ResourceWorkspace = "workspace"
	ResourceKeyring   = "keyring"
)

// Group commit of access events: resolution hands events to a background
// writer and never waits on storage. A batch is written when it reaches
// auditMaxBatch events or auditFlushInterval after its first event, and on
// Close. A crash can lose at most the access events of the last interval
// (and whatever a failing store could not take); create, rotate and delete
// rows are written in the same transaction as the change and are never lost.
const (
	auditFlushInterval = 100 * time.Millisecond
	auditMaxBatch      = 512
	auditQueueSize     = 16384
	// auditMaxPending bounds what is kept for retry while storage fails.
	auditMaxPending = 100_000
)

// auditJSON marshals an audit input/output object. Values in it are
// metadata only (names, hints, versions, hosts), never a secret value.
func auditJSON(v map[string]any) json.RawMessage {
	if len(v) == 0 {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`{"error":"unencodable audit field"}`)
	}
	return b
}

// auditWriter batches access events into few storage transactions. Its one
// goroutine is owned by the Vault and stopped by Close.
type auditWriter struct {
	store   storage.Store
	log     *slog.Logger
	metrics *metrics

	ch      chan storage.AuditEvent
	flushCh chan chan error
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newAuditWriter(store storage.Store, log *slog.Logger, m *metrics) *auditWriter {
	a := &auditWriter{
		store:   store,
		log:     log,
		metrics: m,
		ch:      make(chan storage.AuditEvent, auditQueueSize),
		flushCh: make(chan chan error),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go a.run()
	return a
}

// record queues an event. It blocks only when the queue is full, which
// means storage is slower than resolution: back-pressure rather than loss.
func (a *auditWriter) record(ctx context.Context, ev storage.AuditEvent) error {
	select {
	case <-a.stop:
		return ErrClosed
	default:
	}
	select {
	case a.ch <- ev:
		return nil
	case <-a.stop:
		return ErrClosed
	case <-ctx.Done():
		a.metrics.auditDropped.Inc()
		a.log.Error("audit event dropped: request cancelled while the audit queue was full",
			"event_type", ev.EventType, "resource_id", ev.ResourceID)
		return ctx.Err()
	}
}

// flush writes everything queued so far.
func (a *auditWriter) flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case a.flushCh <- reply:
	case <-a.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops the writer after writing what is queued, or when ctx ends.
func (a *auditWriter) close(ctx context.Context) error {
	a.once.Do(func() { close(a.stop) })
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *auditWriter) run() {
	defer close(a.done)
	var pending []storage.AuditEvent
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false

	write := func() error {
		if len(pending) == 0 {
			return nil
		}
		start := time.Now()
		// Background context: a batch already accepted is written even while
		// shutting down.
		err := a.store.AppendAudit(context.Background(), pending)
		a.metrics.auditFlushSeconds.Observe(time.Since(start).Seconds())
		if err != nil {
			a.metrics.auditWriteErrors.Inc()
			a.log.Error("audit batch write failed; will retry", "events", len(pending), "err", err)
			if len(pending) > auditMaxPending {
				drop := len(pending) - auditMaxPending
				a.metrics.auditDropped.Add(float64(drop))
				a.log.Error("audit events dropped: storage has been failing too long", "dropped", drop)
				pending = append(pending[:0], pending[drop:]...)
			}
			return err
		}
		a.metrics.auditEventsWritten.Add(float64(len(pending)))
		pending = pending[:0]
		return nil
	}
	drain := func() {
		for {
			select {
			case ev := <-a.ch:
				pending = append(pending, ev)
			default:
				return
			}
		}
	}

	for {
		select {
		case ev := <-a.ch:
			pending = append(pending, ev)
			if len(pending) >= auditMaxBatch {
				_ = write()
			} else if !armed {
				timer.Reset(auditFlushInterval)
				armed = true
			}
		case <-timer.C:
			armed = false
			if write() != nil {
				timer.Reset(auditFlushInterval)
				armed = true
			}
		case reply := <-a.flushCh:
			drain()
			reply <- write()
		case <-a.stop:
			drain()
			if err := write(); err != nil {
				a.log.Error("audit events lost at shutdown", "events", len(pending), "err", err)
			}
			timer.Stop()
			return
		}
	}
}
