package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"time"
)

// Store is the persistence boundary of Rotor. Every method takes a context
// first; methods that are expected to grow take an args struct. Every write
// that carries Audit events commits them in the same transaction as the change,
// so the audit trail never disagrees with the data.
type Store interface {
	// CreateWorkspace creates a workspace and, optionally, its first API key.
	// ErrExists if the name is taken.
	CreateWorkspace(ctx context.Context, args CreateWorkspaceArgs) error
	GetWorkspace(ctx context.Context, id string) (Workspace, error)
	GetWorkspaceByName(ctx context.Context, name string) (Workspace, error)
	ListWorkspaces(ctx context.Context) ([]Workspace, error)

	// CreateAPIKey stores a key record (only its hash). ErrExists if the id is taken.
	CreateAPIKey(ctx context.Context, args CreateAPIKeyArgs) error
	// GetAPIKey returns the key with that id, revoked or not.
	GetAPIKey(ctx context.Context, id string) (APIKey, error)
	ListAPIKeys(ctx context.Context, workspaceID string) ([]APIKey, error)
	// RevokeAPIKey marks a key of the workspace revoked. ErrNotFound if the key
	// does not exist in that workspace or is already revoked.
	RevokeAPIKey(ctx context.Context, args RevokeAPIKeyArgs) error

	// ListKEKs returns the keyring: every key-encryption key, wrapped under the
	// master key, oldest first.
	ListKEKs(ctx context.Context) ([]KEK, error)
	// AddKEK adds a key-encryption key and makes it the only active one.
	AddKEK(ctx context.Context, args AddKEKArgs) error
	// DeleteKEK removes a key-encryption key. ErrInUse while any secret is
	// sealed under it or it is the active key.
	DeleteKEK(ctx context.Context, id string) error

	// CreateSecret stores version 1 of a secret. ErrExists if the name is taken
	// in the workspace.
	CreateSecret(ctx context.Context, args CreateSecretArgs) error
	// UpdateSecret replaces a secret's record if its Revision still equals
	// ExpectedRevision (ErrConflict otherwise; ErrNotFound if it is gone). The
	// store assigns Revision = ExpectedRevision+1.
	UpdateSecret(ctx context.Context, args UpdateSecretArgs) error
	// DeleteSecret removes a secret and its sealed value, which holds the only
	// copy of its wrapped data key. ErrNotFound if absent.
	DeleteSecret(ctx context.Context, args DeleteSecretArgs) error
	GetSecret(ctx context.Context, workspaceID, name string) (SecretRecord, error)
	// ListSecrets returns the metadata of a workspace's secrets, by name.
	ListSecrets(ctx context.Context, args ListSecretsArgs) ([]SecretMeta, error)
	// ListSecretsByKEK returns up to limit secrets (any workspace) sealed under kekID.
	ListSecretsByKEK(ctx context.Context, kekID string, limit int) ([]SecretRecord, error)

	// AppendAudit writes events in one transaction (group commit) and
	// returns, per workspace it touched, the chain head before and after
	// (the vault seals from these without reading the rows back).
	AppendAudit(ctx context.Context, events []AuditEvent) ([]AuditAppended, error)
	// RetryAppendAudit is AppendAudit for a batch whose earlier AppendAudit
	// failed ambiguously: that call may have committed and lost its reply
	// (connection dropped after COMMIT, deadline fired after the backend
	// wrote). In the same transaction, each workspace's leading rows that are
	// already stored (see RetriedRows) are not appended again, so the retry
	// never writes a row twice; the rest are appended as AppendAudit would.
	// A workspace whose rows were all there already gets no AuditAppended
	// entry (its earlier heads were lost with the reply; the vault's sealer
	// then walks those rows), one whose rows were partly there gets an entry
	// for the rows appended now.
	RetryAppendAudit(ctx context.Context, events []AuditEvent) ([]AuditAppended, error)
	// ListAudit returns a workspace's events newest first.
	ListAudit(ctx context.Context, q AuditQuery) (AuditPage, error)
	// ListAuditAsc returns up to limit events with ID > afterID, oldest first
	// (for verifying the chain).
	ListAuditAsc(ctx context.Context, r AuditRange) ([]AuditEvent, error)
	// GetAuditHead returns the workspace's chain head.
	GetAuditHead(ctx context.Context, workspaceID string) (AuditHead, error)
	// PutAuditCheckpoint stores a checkpoint unless one with a larger LastID
	// is already stored (nodes seal concurrently); GetAuditCheckpoint returns the
	// newest (ErrNotFound when there is none).
	PutAuditCheckpoint(ctx context.Context, c AuditCheckpoint) error
	GetAuditCheckpoint(ctx context.Context, workspaceID string) (AuditCheckpoint, error)

	JobStore
	WorkflowStore

	// Changes calls fn for every change to secrets and the keyring made
	// through any node sharing this store, until ctx ends, so caches can
	// drop stale values. A single-process backend may only report its own
	// changes, or none (the vault invalidates its own cache itself).
	Changes(ctx context.Context, fn func(Change)) error

	Close() error
}

// Change kinds.
const (
	ChangeSecret  = "secret"
	ChangeKeyring = "keyring"
	// ChangeJobs: jobs were enqueued or made due (wakes dispatchers on
	// other nodes instead of waiting for their next poll).
	ChangeJobs = "jobs"
)

// Change says what changed: a secret (WorkspaceID, Name) or the keyring.
type Change struct {
	Kind        string `json:"kind"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	Name        string `json:"name,omitempty"`
}

// Workspace scopes every secret, key and audit row.
type Workspace struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// APIKey is a stored API key. The key itself is never stored, only Hash
// (SHA-256 of the key), compared in constant time by package vault.
type APIKey struct {
	ID          string     `json:"id"`
	WorkspaceID string     `json:"workspace_id"`
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	Hash        []byte     `json:"hash"`
	CreatedAt   time.Time  `json:"created_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
}

// KEK is a key-encryption key, itself wrapped (AES-256-GCM) under the master key.
type KEK struct {
	ID        string    `json:"id"`
	Wrapped   []byte    `json:"wrapped"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
}

// SecretMeta is what may be shown about a secret: never its value.
type SecretMeta struct {
	WorkspaceID  string    `json:"workspace_id"`
	Name         string    `json:"name"`
	Version      int64     `json:"version"`
	Revision     int64     `json:"revision"`
	Hint         string    `json:"hint"`
	AllowedHosts []string  `json:"allowed_hosts,omitempty"`
	KEKID        string    `json:"kek_id"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// SecretRecord is a secret's metadata with its sealed current version: a
// self-describing envelope (package vault) holding the wrapped data key and
// the ciphertext.
type SecretRecord struct {
	SecretMeta
	Sealed []byte `json:"sealed"`
}

// AuditEvent is one row of the audit trail (the product guide's audit_event).
// Input and Output are valid JSON objects (backends may store them without
// re-validating) that must never hold a secret value.
type AuditEvent struct {
	ID           int64           `json:"id"`
	OccurredAt   time.Time       `json:"occurred_at"`
	WorkspaceID  string          `json:"workspace_id"`
	ActorID      string          `json:"actor_id"`
	EventType    string          `json:"event_type"`
	ResourceType string          `json:"resource_type"`
	ResourceID   string          `json:"resource_id"`
	Input        json.RawMessage `json:"input,omitempty"`
	Output       json.RawMessage `json:"output,omitempty"`
	// Chain is SHA-256(previous row's Chain || AuditCanonical(row)), set by
	// the store when it appends the row, per workspace in id order. The
	// vault seals the chain head with keyed checkpoints (tamper evidence).
	Chain []byte `json:"chain,omitempty"`
	// Nonce and MAC are set by the host that holds the master key (the
	// vault), before the row reaches the store: MAC is a keyed hash over
	// Nonce and the row's content (not ID or Chain), so a database writer
	// cannot make a row that verifies (docs/security.md). Stores keep both
	// as given; rows written before they existed have neither.
	Nonce []byte `json:"nonce,omitempty"`
	MAC   []byte `json:"mac,omitempty"`
}

// AuditCanonical is the byte string a row's chain value covers: every
// column, length-prefixed (the row MAC's nonce and MAC when the row has them). Stores compute it over the values as they will
// read them back (a jsonb column normalizes JSON; PostgreSQL keeps
// microseconds).
func AuditCanonical(e AuditEvent) []byte {
	return appendCanonical(make([]byte, 0, 256), e)
}

func appendCanonical(b []byte, e AuditEvent) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(e.ID))
	b = binary.BigEndian.AppendUint64(b, uint64(e.OccurredAt.UnixNano()))
	for _, s := range [...]string{e.WorkspaceID, e.ActorID, e.EventType, e.ResourceType, e.ResourceID} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = appendCanonicalJSON(b, e.Input)
	b = appendCanonicalJSON(b, e.Output)
	if len(e.Nonce) > 0 || len(e.MAC) > 0 {
		// Only when present: rows from before row MACs chain as they did.
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.Nonce)))
		b = append(b, e.Nonce...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.MAC)))
		b = append(b, e.MAC...)
	}
	return b
}

// appendCanonicalJSON appends canonicalJSON(m), length-prefixed. JSON with
// no byte that compacting or HTML escaping could change is its own
// canonical form (every access row): no copy, no validation pass.
func appendCanonicalJSON(b []byte, m json.RawMessage) []byte {
	c := []byte(m)
	if len(m) > 0 && !canonicalAsIs(m) {
		c = canonicalJSON(m)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(c)))
	return append(b, c...)
}

// mayChange marks the bytes json.Compact or json.HTMLEscape may remove or
// rewrite: whitespace, <, >, & and 0xE2 (the first byte of U+2028 and
// U+2029).
var mayChange = [256]bool{' ': true, '\t': true, '\n': true, '\r': true, '<': true, '>': true, '&': true, 0xE2: true}

func canonicalAsIs(m []byte) bool {
	for _, c := range m {
		if mayChange[c] {
			return false
		}
	}
	return true
}

// canonicalJSON compacts and HTML-escapes JSON, as encoding/json does when
// it re-encodes a RawMessage (the plugin wire does), so whitespace and
// escaping are not part of what the chain covers. Key order is: a jsonb
// column reorders keys before the chain value is computed.
func canonicalJSON(m json.RawMessage) []byte {
	if len(m) == 0 {
		return nil
	}
	var c bytes.Buffer
	if json.Compact(&c, m) != nil {
		return m
	}
	// HTMLEscape changes only <, >, & and U+2028/U+2029: skip the second
	// copy for the common row, which has none.
	if cb := c.Bytes(); bytes.IndexAny(cb, "<>&") < 0 && !bytes.Contains(cb, []byte("\u2028")) && !bytes.Contains(cb, []byte("\u2029")) {
		return cb
	}
	var h bytes.Buffer
	json.HTMLEscape(&h, c.Bytes())
	return h.Bytes()
}

// NextChain is the chain value of a row after prev.
func NextChain(prev []byte, e AuditEvent) []byte {
	sum := NextChainSum(prev, &e)
	return sum[:]
}

// NextChainSum is NextChain as an array: a backend chaining a batch keeps
// each row's value on its stack instead of allocating 32 bytes a row.
func NextChainSum(prev []byte, e *AuditEvent) [sha256.Size]byte {
	// One buffer on the stack for the common row; one hash call.
	var arr [512]byte
	b := appendCanonical(append(arr[:0], prev...), *e)
	return sha256.Sum256(b)
}

// AuditCheckpoint seals a workspace's chain head: MAC is a keyed hash (the
// key never stored) over the workspace, LastID and Chain.
type AuditCheckpoint struct {
	WorkspaceID string    `json:"workspace_id"`
	LastID      int64     `json:"last_id"`
	Chain       []byte    `json:"chain"`
	MAC         []byte    `json:"mac"`
	SealedAt    time.Time `json:"sealed_at"`
	// RowMACFrom: every row from this id on carries a row MAC; rows below
	// it were written before row MACs existed. Covered by MAC when not 0.
	RowMACFrom int64 `json:"row_mac_from,omitempty"`
}

// AuditAppended is what one AppendAudit call added to one workspace's
// chain: Rows rows, the first chained onto Prev (the head the backend read in
// the same transaction), ending at Head. Prev and Head are what the backend
// stored, so a caller that knows Prev is authentic knows Head is too.
type AuditAppended struct {
	WorkspaceID string    `json:"workspace_id"`
	Prev        AuditHead `json:"prev"`
	Head        AuditHead `json:"head"`
	Rows        int       `json:"rows"`
}

// AuditRange selects up to Limit events with ID > AfterID, oldest first.
type AuditRange struct {
	WorkspaceID string `json:"workspace_id"`
	AfterID     int64  `json:"after_id"`
	Limit       int    `json:"limit"`
}

// AuditHead is a workspace's newest row id and chain value (0 and nil when
// it has none).
type AuditHead struct {
	LastID int64  `json:"last_id"`
	Chain  []byte `json:"chain"`
}

type CreateWorkspaceArgs struct {
	Workspace Workspace
	// AdminKey, if set, is created in the same transaction.
	AdminKey *APIKey
	Audit    []AuditEvent
}

type CreateAPIKeyArgs struct {
	Key   APIKey
	Audit []AuditEvent
}

type RevokeAPIKeyArgs struct {
	WorkspaceID string
	ID          string
	At          time.Time
	Audit       []AuditEvent
}

type AddKEKArgs struct {
	KEK KEK
}

type CreateSecretArgs struct {
	Secret SecretRecord
	Audit  []AuditEvent
}

type UpdateSecretArgs struct {
	Secret           SecretRecord
	ExpectedRevision int64
	Audit            []AuditEvent
}

type DeleteSecretArgs struct {
	WorkspaceID string
	Name        string
	Audit       []AuditEvent
}

type ListSecretsArgs struct {
	WorkspaceID string
}

// AuditQuery filters a workspace's audit trail. Empty fields do not filter.
type AuditQuery struct {
	WorkspaceID  string
	ResourceType string
	EventType    string
	ResourceID   string
	Since        time.Time
	// Before is the cursor: only events with ID < Before (0: from the newest).
	Before int64
	Limit  int
}

// AuditPage is one page of events, newest first. Next is the cursor for the
// following page, 0 when there is none.
type AuditPage struct {
	Events []AuditEvent
	Next   int64
}
