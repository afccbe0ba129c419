package vault

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/storage"
)

// Options configure Open.
type Options struct {
	Store storage.Store
	// MasterKey is the 32-byte root key. Open does not keep a reference to it.
	MasterKey []byte
	Logger    *slog.Logger
	// Registerer receives the vault's metrics; nil means a private registry.
	Registerer prometheus.Registerer
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// AuditSealInterval is how often chain heads are sealed
	// (DefaultAuditSealInterval when 0; negative: never, SealAudit by hand).
	AuditSealInterval time.Duration
	// CacheTTL is how long an opened secret is kept (DefaultCacheTTL when 0).
	CacheTTL time.Duration
	// AuditBacklogMax bounds the access rows accepted but not yet written;
	// at the bound, requests needing a new row fail with ErrAuditUnavailable
	// (DefaultAuditBacklogMax when 0).
	AuditBacklogMax int
	// AuditAnchorPath is the file in the node's data dir that keeps the
	// newest audit seal outside the database ("": in memory only).
	AuditAnchorPath string
	// AuditExport is "", "stdout" or "file:PATH" (ParseExportTarget), and
	// AuditExportCursorPath the file keeping how far the export got.
	AuditExport           string
	AuditExportCursorPath string
}

// Vault is the domain service behind the API, the proxy and the dispatcher.
// It is safe for concurrent use.
type Vault struct {
	store   storage.Store
	keys    *keyring
	cache   *cache
	auth    authCache
	actors  actorCache // ActorActive (actorcheck.go)
	audit   *auditWriter
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	revokeMu sync.Mutex  // see RevokeAPIKey
	sessions cipher.AEAD // dashboard session tokens (sessions.go)

	auditKey []byte     // HMAC key for chain seals, derived from the master key
	rows     *rowSigner // row nonces and MACs (auditrowmac.go)
	sealMu   sync.Mutex
	chains   map[string]*chainState             // workspace -> what this node sealed and appended (auditseal.go)
	appends  map[string][]storage.AuditAppended // workspace -> appends not yet joined to its tip (noteAppended)
	sealRun  sync.Mutex                         // one seal round (or background check) at a time
	checkDue time.Time                          // next background check of sealed rows (sealLoop)
	sealStop chan struct{}
	sealDone chan struct{}
	sealOnce sync.Once
	anchor   *auditAnchor
	export   *auditExporter // nil without an export
	// staleAfter: rows older than this with no seal over them fail verify.
	staleAfter time.Duration
}

// Open loads (or, on an empty store, creates) the keyring under the master
// key and starts the audit writer. A master key that cannot open the keyring
// fails with ErrMasterKey: the vault never reads data it cannot authenticate.
func Open(ctx context.Context, opts Options) (*Vault, error) {
	if opts.Store == nil {
		return nil, errors.New("vault: no store")
	}
	if len(opts.MasterKey) != MasterKeySize {
		return nil, fmt.Errorf("vault: master key must be %d bytes, got %d", MasterKeySize, len(opts.MasterKey))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	kr, err := loadKeyring(ctx, opts.Store, opts.MasterKey, opts.Now)
	if err != nil {
		return nil, err
	}
	auditKey, err := deriveAuditKey(opts.MasterKey)
	if err != nil {
		return nil, err
	}
	lockKey(opts.Logger, "audit seal key", auditKey)
	rowKey, err := deriveAuditRowKey(opts.MasterKey)
	if err != nil {
		return nil, err
	}
	lockKey(opts.Logger, "audit row key", rowKey)
	sessions, err := newSessionAEAD(opts.MasterKey)
	if err != nil {
		return nil, err
	}
	m := newMetrics(opts.Registerer)
	v := &Vault{
		sessions: sessions,
		auditKey: auditKey,
		rows:     newRowSigner(rowKey),
		chains:   map[string]*chainState{},
		appends:  map[string][]storage.AuditAppended{},
		sealStop: make(chan struct{}),
		sealDone: make(chan struct{}),
		store:    opts.Store,
		keys:     kr,
		cache:    newCache(opts.CacheTTL, opts.Now),
		log:      opts.Logger,
		metrics:  m,
		now:      opts.Now,
	}
	interval := opts.AuditSealInterval
	if interval <= 0 {
		interval = DefaultAuditSealInterval
	}
	v.staleAfter = max(auditStaleSeals*interval, auditStaleMin)
	if v.anchor, err = v.loadAnchor(opts.AuditAnchorPath); err != nil {
		return nil, err
	}
	if opts.AuditExport != "" {
		if v.export, err = v.newExporter(opts.AuditExport, opts.AuditExportCursorPath); err != nil {
			return nil, err
		}
	}
	v.audit = newAuditWriter(opts.Store, opts.Logger, m, opts.AuditBacklogMax, v.rows, v.noteAppended)
	switch {
	case opts.AuditSealInterval == 0:
		go v.sealLoop(DefaultAuditSealInterval)
	case opts.AuditSealInterval > 0:
		go v.sealLoop(opts.AuditSealInterval)
	default:
		close(v.sealDone)
	}
	return v, nil
}

// Close writes queued audit events, seals them, and stops the background
// writer and sealer. It does not close the store, which the caller owns.
func (v *Vault) Close(ctx context.Context) error {
	err := v.audit.close(ctx)
	v.sealOnce.Do(func() { close(v.sealStop) })
	select {
	case <-v.sealDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err == nil {
		if serr := v.SealAudit(ctx); serr != nil {
			v.log.Error("audit seal at close failed", "err", serr)
		}
	}
	v.cache.clear()
	if v.export != nil {
		if xerr := v.export.close(ctx); xerr != nil {
			v.log.Error("audit export at close failed", "err", xerr)
		}
	}
	return err
}

// ReopenAuditExport reopens the export file (SIGHUP, after logrotate).
func (v *Vault) ReopenAuditExport() {
	if v.export != nil {
		v.export.Reopen()
	}
}

// AuditReady reports an error (ErrAuditUnavailable) while the audit
// backlog is over its readiness threshold, a tenth of its bound: /readyz
// turns a node away before it has to refuse requests.
func (v *Vault) AuditReady(ctx context.Context) error { return v.audit.ready() }

// FlushAudit writes every queued access event now.
func (v *Vault) FlushAudit(ctx context.Context) error { return v.audit.flush(ctx) }

// GenerateMasterKey returns a new random master key.
func GenerateMasterKey() []byte { return randomKey() }

func randomID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// mapStoreErr turns storage sentinels into vault sentinels with a message
// about what (e.g. `secret "X"`) was not found or already exists.
func mapStoreErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %s does not exist in this workspace", ErrNotFound, what)
	case errors.Is(err, storage.ErrExists):
		return fmt.Errorf("%w: %s already exists", ErrExists, what)
	default:
		return err
	}
}

func secretRef(name string) string { return fmt.Sprintf("secret %q", name) }

func (v *Vault) event(actor Actor, typ, resType, resID string, in, out map[string]any) storage.AuditEvent {
	e := storage.AuditEvent{
		OccurredAt:   v.now().UTC(),
		WorkspaceID:  actor.WorkspaceID,
		ActorID:      actor.KeyID,
		EventType:    typ,
		ResourceType: resType,
		ResourceID:   resID,
		Input:        auditJSON(in),
		Output:       auditJSON(out),
	}
	v.rows.sign(&e, nonceTx)
	return e
}

// SignAudit gives rows that services outside the vault build (queues,
// workflows, runs) a nonce and a MAC, as the vault's own rows get: from the
// row-MAC boundary on, verify refuses any row without one, since it may
// have been added by a database writer.
func (v *Vault) SignAudit(evs []storage.AuditEvent) {
	for i := range evs {
		v.rows.sign(&evs[i], nonceTx)
	}
}

// ListAudit returns a page of the actor's workspace audit trail, newest first.
func (v *Vault) ListAudit(ctx context.Context, actor Actor, q storage.AuditQuery) (storage.AuditPage, error) {
	q.WorkspaceID = actor.WorkspaceID
	return v.store.ListAudit(ctx, q)
}
