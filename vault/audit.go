package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"rotor.sh/rotor/internal/jsonx"
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
// Close. Nothing accepted is dropped: while storage fails, the writer keeps
// the backlog and retries with backoff, in chunks of at most
// auditChunkRows rows and auditChunkBytes bytes, each call bounded by
// auditWriteTimeout. When the backlog reaches its bound (Options.
// AuditBacklogMax), a request that needs a new access row is refused at once
// with ErrAuditUnavailable (fail closed), never served without its row. A crash can lose the accepted rows not yet written (at
// most one flush interval's worth while storage is healthy); create, rotate
// and delete rows are written in the same transaction as the change.
const (
	auditFlushInterval = 100 * time.Millisecond
	// auditMaxBatch is auditChunkRows: under load a batch fills before the
	// flush interval, and every batch is one storage commit (an fdatasync
	// for bbolt), so bigger batches mean fewer commits per row; the flush
	// interval, not the batch size, bounds how long a row waits.
	auditMaxBatch = auditChunkRows
	// auditChunkRows and auditChunkBytes bound one AppendAudit call, far
	// below the plugin's message limit (plugins.MaxMessageSize, 64 MiB),
	// its batch limit (plugins.MaxBatch, 10,000 rows) and the retry window
	// (storage.AuditRetryWindow, 100,000 rows). 4096 rows, not 2000: an
	// access row is ~340 bytes by chunkLen's estimate, ~260 on the wire, and
	// the load (25-30k rows/s) queues 2,500-3,000 rows per flush interval,
	// which a 2000-row bound split into two commits, each with its fixed
	// cost (fdatasyncs, meta page, spill, a plugin call). Now the interval
	// decides up to ~40k rows/s; 2 MiB keeps the byte bound above such a
	// batch (~1.4 MiB estimated, ~1 MiB on the wire: within the plugin
	// client's pooled buffers, plugins.maxPooledRows and maxPooledFrame).
	auditChunkRows  = 4096
	auditChunkBytes = 2 << 20
	// auditWriteTimeout bounds one AppendAudit call (a hung backend).
	auditWriteTimeout = 15 * time.Second
	// Backoff between failed writes.
	auditRetryMin = 100 * time.Millisecond
	auditRetryMax = 5 * time.Second
	// DefaultAuditBacklogMax bounds the rows accepted but not yet written
	// (about 0.5 KiB of memory each): 50 s of an outage at 10,000 accesses/s.
	DefaultAuditBacklogMax = 500_000
	// auditReadyFraction: /readyz reports not ready once the backlog is over
	// this fraction of its bound, well before requests are refused.
	auditReadyFraction = 10
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

// accessRecord is an access row as the request path queues it: fixed-size
// fields, no encoding. The writer's goroutine turns it into the row
// (event), so JSON encoding and sorting stay off the request goroutine.
type accessRecord struct {
	at                               time.Time
	ws, actor, eventType, name, host string
	resType                          string // "" for ResourceSecret
	requestID, reason                string
	version                          int64
	hasVersion                       bool
	// hit: a Resolve served from the cache. The writer counts these
	// (rotor_vault_resolutions_total{result="cache_hit"}) as it takes
	// them, a batch at a time: an increment per resolve was one more
	// write per access to a cache line every request on every core writes.
	hit   bool
	extra map[string]string // job id, attempt...: never values; not modified after queueing
}

// prevRow is the writer's copy of the last row it encoded (eventIn's
// last), with that row's encoded input and output. They are not fields of
// accessRecord: every request copies its records into the queue, and the
// 48 bytes were a fifth of each copy.
type prevRow struct {
	accessRecord
	in, out []byte
}

// event encodes the row: input {"host", "request_id"?, extra keys sorted},
// output {"reason"?, "version"?}.
func (r *accessRecord) event() storage.AuditEvent { e, _ := r.eventIn(nil, nil); return e }

// eventIn is event with the JSON carved from ar (nil: allocated), and the
// input and output shared with the previous row when they are the same
// (last; nil: never): a request that resolves several secrets queues rows
// that differ only in the name. The slices are never written again, so
// sharing them is safe. canon reports that the input and output are
// already in the row MAC's sorted form: no extra keys ("host" <
// "request_id", "reason" < "version") and strings that encoding/json
// writes as jsonx does (canonString), so the MAC need not parse them
// again (every proxy row).
func (r *accessRecord) eventIn(ar *rowArena, last *prevRow) (e storage.AuditEvent, canon bool) {
	e = storage.AuditEvent{
		OccurredAt: r.at, WorkspaceID: r.ws, ActorID: r.actor,
		EventType: r.eventType, ResourceType: ResourceSecret, ResourceID: r.name,
	}
	if r.resType != "" {
		e.ResourceType = r.resType
	}
	plainIn := len(r.extra) == 0 && canonString(r.host) && canonString(r.requestID)
	canon = plainIn && canonString(r.reason)
	if last != nil && last.in != nil && last.host == r.host && last.requestID == r.requestID && maps.Equal(last.extra, r.extra) {
		e.Input = last.in
	} else if plainIn {
		// Nothing to escape: the bytes jsonx writes, without its escaping
		// loop (FuzzCanonAccessJSON compares them).
		in := append(ar.room(len(`{"host":"","request_id":""}`)+len(r.host)+len(r.requestID)), `{"host":"`...)
		in = append(in, r.host...)
		if r.requestID != "" {
			in = append(in, `","request_id":"`...)
			in = append(in, r.requestID...)
		}
		e.Input = ar.keep(append(in, `"}`...))
	} else {
		n := 16 + 6*(len("request_id")+len(r.host)+len(r.requestID))
		for k, v := range r.extra {
			n += 8 + 6*(len(k)+len(v))
		}
		in := accessInputIn(ar.room(n), r.host, r.requestID, r.extra)
		e.Input = ar.keep(in.Bytes())
	}
	if last != nil && last.out != nil && last.reason == r.reason && last.hasVersion == r.hasVersion && last.version == r.version {
		e.Output = last.out
	} else {
		out := jsonx.Reuse(ar.room(48 + 6*len(r.reason)))
		if r.reason != "" {
			out.Str("reason", r.reason)
		}
		if r.hasVersion {
			out.Int("version", r.version)
		}
		e.Output = ar.keep(out.Bytes())
	}
	if last != nil {
		last.accessRecord = *r
		last.in, last.out = e.Input, e.Output
	}
	return e, canon
}

// rowArena carves the writer's per-row byte slices (input, output, nonce,
// MAC) out of shared chunks: four small allocations per access row became
// one per few hundred rows. A chunk is never reused, so a row's slices stay
// valid for as long as anything (a store, a test) holds them. A nil
// *rowArena allocates each slice on its own.
type rowArena struct{ b []byte }

const rowArenaChunk = 64 << 10

// room returns an empty slice with capacity for n bytes at the arena's end:
// build at most n bytes on it, then pass the result to keep.
func (r *rowArena) room(n int) []byte {
	if r == nil {
		return make([]byte, 0, n)
	}
	if cap(r.b)-len(r.b) < n {
		r.b = make([]byte, 0, max(n, rowArenaChunk))
	}
	return r.b[len(r.b):len(r.b)]
}

// keep claims p, built on room's slice, and caps its capacity so no later
// append writes into the next row's bytes. A p that outgrew its room (an
// underestimate) is its own allocation and claims nothing.
func (r *rowArena) keep(p []byte) []byte {
	p = p[:len(p):len(p)]
	if r == nil || len(p) == 0 {
		return p
	}
	tail := r.b[len(r.b):cap(r.b)]
	if len(p) <= len(tail) && &tail[0] == &p[0] {
		r.b = r.b[:len(r.b)+len(p)]
	}
	return p
}

// auditAppender is what the writer needs of the store.
type auditAppender interface {
	AppendAudit(ctx context.Context, events []storage.AuditEvent) ([]storage.AuditAppended, error)
	RetryAppendAudit(ctx context.Context, events []storage.AuditEvent) ([]storage.AuditAppended, error)
}

// auditWriter batches access events into few storage transactions. Its one
// goroutine is owned by the Vault and stopped by Close.
type auditWriter struct {
	store auditAppender
	// appended is told what each successful write appended (the sealer
	// seals from it; nil: nobody listens).
	appended func([]storage.AuditAppended)
	// signer MACs each row in this goroutine, off the request path (nil: none).
	signer  *rowSigner
	log     *slog.Logger
	metrics *metrics
	max     int64

	// qmu guards q and closed. Requests append to q under it; the writer
	// swaps q for its spare array and encodes outside the lock. A channel
	// send per access woke the writer goroutine once per request (a
	// futex wake-up and a scheduling round each, ~5% of the proxy's CPU
	// when resolving); now a request wakes it only when q goes from empty
	// to one row (the writer then arms its flush timer) and when q reaches
	// auditMaxBatch.
	//
	// q is a list of blocks of auditQBlock records, so a queue that grows
	// past what the writer took last time (a slow commit under load) adds
	// a block instead of copying every queued row into a bigger array
	// (growslice was a microsecond per request under load). n counts the
	// rows in q; free holds cleared blocks for reuse.
	//
	// The backlog, rows accepted by record and not yet written, is n plus
	// held, the rows take handed the writer that it has not written yet;
	// both under qmu, which record takes anyway. An atomic counter beside
	// the lock, and a gauge set on every row, were two more writes per
	// access to cache lines every request on every core writes;
	// rotor_audit_backlog_rows reads backlogRows when scraped.
	qmu     sync.Mutex
	q       [][]accessRecord
	n       int
	held    int
	spare   [][]accessRecord // the writer's block list; swapped with q by take
	free    [][]accessRecord
	closed  bool          // the writer took its last rows: record refuses
	wake    chan struct{} // capacity 1
	flushCh chan chan error
	stop    chan struct{}
	// abort ends retries at shutdown (close's context ended).
	abort     chan struct{}
	done      chan struct{}
	once      sync.Once
	abortOnce sync.Once
}

// signed sets e's row nonce and MAC, carved from ar, hashed with ms
// (canon: see eventIn).
func (a *auditWriter) signed(e storage.AuditEvent, canon bool, ar *rowArena, ms *macState) storage.AuditEvent {
	if a.signer != nil {
		a.signer.signIn(&e, nonceAccess, ar, ms, canon)
	}
	return e
}

func newAuditWriter(store auditAppender, log *slog.Logger, m *metrics, max int, signer *rowSigner, appended func([]storage.AuditAppended)) *auditWriter {
	if max <= 0 {
		max = DefaultAuditBacklogMax
	}
	a := &auditWriter{
		store:    store,
		appended: appended,
		signer:   signer,
		log:      log,
		metrics:  m,
		max:      int64(max),
		wake:     make(chan struct{}, 1),
		flushCh:  make(chan chan error),
		stop:     make(chan struct{}),
		abort:    make(chan struct{}),
		done:     make(chan struct{}),
	}
	m.auditWriter.Store(a)
	go a.run()
	return a
}

// record queues an event, or refuses it (ErrAuditUnavailable) when the
// backlog is at its bound: the caller then must not release what the row
// would have recorded. It never waits on the writer: the backlog bound
// (Options.AuditBacklogMax) is the queue's only bound, and a hung store
// makes requests fail closed as soon as it is reached.
func (a *auditWriter) record(_ context.Context, ev *accessRecord) error {
	a.qmu.Lock()
	if b := int64(a.n + a.held); b >= a.max {
		a.qmu.Unlock()
		a.metrics.auditRefused.Inc()
		return fmt.Errorf("%w: %d access rows are waiting to be written (storage failing or slow)", ErrAuditUnavailable, b)
	}
	if a.closed {
		// The writer has taken its last rows: this one would never be
		// written, so it is refused (the old channel could lose it).
		a.qmu.Unlock()
		return ErrClosed
	}
	if len(a.q) == 0 || len(a.q[len(a.q)-1]) == auditQBlock {
		a.q = append(a.q, a.block())
	}
	last := &a.q[len(a.q)-1]
	*last = append(*last, *ev)
	a.n++
	n := a.n
	a.qmu.Unlock()
	if n == 1 || n == auditMaxBatch {
		select {
		case a.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	return nil
}

// auditQBlock is the queue's block size, in records; auditQFree bounds the
// cleared blocks kept for reuse (two full batches' worth).
const (
	auditQBlock = 256
	auditQFree  = 2 * auditMaxBatch / auditQBlock
)

// block returns an empty block (under qmu).
func (a *auditWriter) block() []accessRecord {
	if n := len(a.free); n > 0 {
		b := a.free[n-1]
		a.free[n-1] = nil
		a.free = a.free[:n-1]
		return b
	}
	return make([]accessRecord, 0, auditQBlock)
}

// take hands the writer the queued records, in blocks (nil: none), leaving
// the queue empty; last marks the queue closed. Only the writer calls it,
// and the blocks are its own until it calls give.
func (a *auditWriter) take(last bool) [][]accessRecord {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	a.closed = a.closed || last
	if a.n == 0 {
		return nil
	}
	got := a.q
	a.held += a.n
	a.q, a.spare, a.n = a.spare[:0], nil, 0
	return got
}

// written notes that the writer wrote n of the rows take handed it.
func (a *auditWriter) written(n int) {
	a.qmu.Lock()
	a.held -= n
	a.qmu.Unlock()
}

// backlogRows is the backlog: rows accepted and not yet written.
func (a *auditWriter) backlogRows() int64 {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	return int64(a.n + a.held)
}

// give returns take's blocks for reuse, cleared (records hold strings and a
// map), and its list to be the next spare.
func (a *auditWriter) give(blocks [][]accessRecord) {
	for i := range blocks {
		clear(blocks[i])
		blocks[i] = blocks[i][:0]
	}
	a.qmu.Lock()
	for i, b := range blocks {
		if len(a.free) < auditQFree {
			a.free = append(a.free, b)
		}
		blocks[i] = nil
	}
	if a.spare == nil {
		a.spare = blocks[:0]
	}
	a.qmu.Unlock()
}

// queued is how many records wait in the queue.
func (a *auditWriter) queued() int {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	return a.n
}

// ready reports whether the backlog is under the readiness threshold.
func (a *auditWriter) ready() error {
	if n, limit := a.backlogRows(), a.max/auditReadyFraction; n > limit {
		return fmt.Errorf("%w: audit backlog of %d rows is over %d", ErrAuditUnavailable, n, limit)
	}
	return nil
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

// close stops the writer after writing what is queued, retrying until ctx
// ends.
func (a *auditWriter) close(ctx context.Context) error {
	a.once.Do(func() { close(a.stop) })
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		a.abortOnce.Do(func() { close(a.abort) })
		<-a.done
		return ctx.Err()
	}
}

// chunkLen is how many of evs one AppendAudit call takes: at most
// auditChunkRows rows and, past the first row, auditChunkBytes bytes.
func chunkLen(evs []storage.AuditEvent) int {
	size := 0
	for i, e := range evs {
		if i == auditChunkRows {
			return i
		}
		size += 160 + len(e.Nonce) + len(e.MAC) + len(e.WorkspaceID) + len(e.ActorID) + len(e.EventType) + len(e.ResourceType) + len(e.ResourceID) + len(e.Input) + len(e.Output)
		if i > 0 && size > auditChunkBytes {
			return i
		}
	}
	return len(evs)
}

func (a *auditWriter) run() {
	defer close(a.done)
	// base is the batch's array, reused from batch to batch (allocating
	// and growing a new one per batch showed in the profile); a backlog
	// that outgrows it gets its own, and base comes back once it is written.
	base := make([]storage.AuditEvent, 0, auditMaxBatch)
	pending := base
	// arena and prev are drain's: where rows' bytes come from, and the
	// previous row, whose input and output the next may share.
	var arena rowArena
	var prev prevRow
	var mac macState // the writer's HMAC and MAC input buffer
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	var deadline time.Time    // when the armed timer fires
	retry := time.Duration(0) // >0: the last write failed; wait this long
	arm := func(d time.Duration) {
		if armed {
			timer.Stop()
		}
		timer.Reset(d)
		armed, deadline = true, time.Now().Add(d)
	}
	// armBy makes the timer fire by t at the latest.
	armBy := func(t time.Time) {
		if !armed || deadline.After(t) {
			arm(time.Until(t))
		}
	}
	// lastDrain is when drain last took the queue: every row queued since
	// was queued after it, so it is flushed in time at lastDrain plus the
	// flush interval. pendingSince is a time every pending row was queued
	// after (the drain before the one that found pending empty).
	lastDrain := time.Now()
	var pendingSince time.Time
	// drain encodes and signs what is queued into pending (last: and
	// closes the queue).
	drain := func(last bool) {
		if len(pending) == 0 {
			pendingSince = lastDrain
		}
		lastDrain = time.Now()
		blocks := a.take(last)
		if blocks == nil {
			return
		}
		hits := 0
		for _, recs := range blocks {
			for i := range recs {
				if recs[i].hit {
					hits++
				}
				e, canon := recs[i].eventIn(&arena, &prev)
				pending = append(pending, a.signed(e, canon, &arena, &mac))
			}
		}
		a.give(blocks)
		if hits > 0 {
			a.metrics.resolvedHit.Add(float64(hits))
		}
	}
	writeChunk := func() error {
		n := chunkLen(pending)
		ctx, cancel := context.WithTimeout(context.Background(), auditWriteTimeout)
		start := time.Now()
		// Not the caller's context: a row accepted is written even while
		// shutting down.
		appendFn := a.store.AppendAudit
		if retry > 0 {
			// The last write failed, and pending still starts with its
			// rows: it may have committed and lost its reply (connection
			// dropped after COMMIT, our deadline fired after the backend
			// wrote), so the store skips the rows already there instead
			// of writing them twice.
			appendFn = a.store.RetryAppendAudit
		}
		heads, err := appendFn(ctx, pending[:n])
		cancel()
		a.metrics.auditFlushSeconds.Observe(time.Since(start).Seconds())
		if err != nil {
			return err
		}
		if a.appended != nil {
			a.appended(heads)
		}
		a.metrics.auditEventsWritten.Add(float64(n))
		clear(pending[:n])
		pending = pending[n:]
		if len(pending) == 0 {
			// base may have been outgrown, and still hold rows: drop them.
			clear(base[:cap(base)])
			pending = base[:0]
		}
		a.written(n)
		return nil
	}
	// write writes the backlog chunk by chunk, taking newly queued rows in
	// between so the queue never fills behind a long backlog. Unless all
	// (a flush, Close), once what is pending is less than a batch and
	// still within its flush interval (from pendingSince), it is left for
	// the timer instead of going out at once: under a steady load, writing
	// the rows queued during a commit at once made a commit every few
	// hundred rows, each a bbolt transaction with two fdatasyncs in the
	// plugin, three times the commits the flush interval calls for (issue
	// 15: most of the plugin's CPU per row). all writes every row pending
	// when it is called.
	write := func(all bool) error {
		for len(pending) > 0 {
			if err := writeChunk(); err != nil {
				a.metrics.auditWriteErrors.Inc()
				retry = min(max(2*retry, auditRetryMin), auditRetryMax)
				a.log.Error("audit write failed; will retry", "backlog", len(pending), "retry_in", retry.String(), "err", err)
				arm(retry)
				return err
			}
			retry = 0
			older := len(pending) // rows pending before the chunk
			// Past Close, the queue is closed here: a flood of new rows
			// would otherwise keep this loop, and Close, going.
			select {
			case <-a.stop:
				drain(true)
				continue
			default:
				drain(false)
			}
			if all && older > 0 {
				continue
			}
			if due := pendingSince.Add(auditFlushInterval); len(pending) < auditMaxBatch && time.Now().Before(due) {
				if len(pending) > 0 {
					armBy(due)
				}
				return nil
			}
		}
		return nil
	}

	for {
		select {
		case <-a.wake:
			switch n := a.queued(); {
			case retry > 0 || n == 0:
				// Failing: the retry timer is armed; keep collecting.
			case n >= auditMaxBatch:
				drain(false)
				_ = write(false)
				if a.queued() > 0 && retry == 0 {
					// Rows queued while writing sent no wake-up.
					armBy(lastDrain.Add(auditFlushInterval))
				}
			case !armed:
				arm(auditFlushInterval)
			}
		case <-timer.C:
			armed = false
			drain(false)
			_ = write(false)
			if retry == 0 && a.queued() > 0 {
				armBy(lastDrain.Add(auditFlushInterval))
			}
		case reply := <-a.flushCh:
			drain(false)
			reply <- write(true)
		case <-a.stop:
			drain(true)
			for {
				if write(true) == nil {
					timer.Stop()
					return
				}
				select {
				case <-timer.C:
					armed = false
				case <-a.abort:
					a.metrics.auditDropped.Add(float64(len(pending)))
					a.log.Error("audit rows lost at shutdown: storage failed until the shutdown timeout", "rows", len(pending))
					timer.Stop()
					return
				}
			}
		}
	}
}
