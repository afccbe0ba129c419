package bolt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"rotor.sh/rotor/storage"
)

var _ storage.Store = (*Store)(nil)

// DefaultOpenTimeout bounds how long Open waits for the file lock, so a second
// process on the same data dir fails with a clear error instead of hanging.
const DefaultOpenTimeout = 2 * time.Second

// schemaVersion is written to the meta bucket; a file written by a newer
// Rotor is refused rather than misread. 1: audit rows in segments (see
// appendAudit); 2: segments may be v1 binary (auditseg.go), which a Rotor
// understanding only 1 could not read, so opening a file raises its version;
// 3: segments may be v2 (a dictionary per segment), likewise.
const schemaVersion = 3

var (
	bucketMeta           = []byte("meta")
	bucketWorkspaces     = []byte("workspaces")
	bucketWorkspaceNames = []byte("workspace_names")
	bucketAPIKeys        = []byte("api_keys")
	bucketKeyring        = []byte("keyring")
	bucketSecrets        = []byte("secrets") // nested: workspace id -> name -> record
	bucketAudit          = []byte("audit")   // nested: workspace id -> be64 id -> event
	bucketAuditHeads     = []byte("audit_heads")
	bucketAuditChecks    = []byte("audit_checkpoints")
	keySchema            = []byte("schema")
)

// Options configure Open.
type Options struct {
	// Timeout for acquiring the file lock; DefaultOpenTimeout when zero.
	Timeout time.Duration
}

// Store is a storage.Store on one bbolt file.
type Store struct {
	db *bbolt.DB
	// group: concurrent job and audit writes share transactions (batch).
	group groupCommit
	fair  storage.Fair // turns among workspaces and queues when leasing
	// wfFair: turns among workspaces and workflows when leasing runs.
	wfFair storage.Fair
	// tails: each workspace's chain head as last written (see tailHead).
	tailsMu sync.Mutex
	tails   map[string]tailHead
}

// tailHead is a workspace's chain head as this process last stored it: raw
// is the stored value. An append uses head when the stored value still
// equals raw (a lookup, no decoding), so a rolled-back transaction or any
// other writer only costs one decode.
type tailHead struct {
	raw  []byte
	head storage.AuditHead
}

// chainHead returns the workspace's stored chain head.
func (s *Store) chainHead(heads *bbolt.Bucket, ws string) (storage.AuditHead, error) {
	raw := heads.Get([]byte(ws))
	if raw == nil {
		return storage.AuditHead{}, nil
	}
	s.tailsMu.Lock()
	t, ok := s.tails[ws]
	s.tailsMu.Unlock()
	if ok && bytes.Equal(t.raw, raw) {
		return t.head, nil
	}
	var h storage.AuditHead
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, fmt.Errorf("bolt: decode audit head %s: %w", ws, err)
	}
	return h, nil
}

// putChainHead stores the workspace's chain head (the JSON json.Marshal
// gives, without reflection) and remembers it.
func (s *Store) putChainHead(heads *bbolt.Bucket, ws string, h storage.AuditHead) error {
	raw := make([]byte, 0, 32+base64.StdEncoding.EncodedLen(len(h.Chain)))
	raw = append(raw, `{"last_id":`...)
	raw = strconv.AppendInt(raw, h.LastID, 10)
	if h.Chain == nil {
		raw = append(raw, `,"chain":null}`...)
	} else {
		raw = append(raw, `,"chain":"`...)
		raw = base64.StdEncoding.AppendEncode(raw, h.Chain)
		raw = append(raw, `"}`...)
	}
	if err := heads.Put([]byte(ws), raw); err != nil {
		return err
	}
	s.tailsMu.Lock()
	defer s.tailsMu.Unlock()
	if s.tails == nil {
		s.tails = map[string]tailHead{}
	}
	s.tails[ws] = tailHead{raw: raw, head: storage.AuditHead{LastID: h.LastID, Chain: bytes.Clone(h.Chain)}}
	return nil
}

// Open opens (creating if needed) the bbolt file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultOpenTimeout
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.Timeout})
	if err != nil {
		if errors.Is(err, bberrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: the file is locked by another process (is another rotor running on this data dir?): %w", path, storage.ErrUnavailable)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{db: db, group: groupCommit{db: db}}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range append([][]byte{bucketMeta, bucketWorkspaces, bucketWorkspaceNames, bucketAPIKeys, bucketKeyring, bucketSecrets, bucketAudit, bucketAuditHeads, bucketAuditChecks}, slices.Concat(jobBuckets, workflowBuckets)...) {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := migrateReadyIndex(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySchema); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("bolt: corrupt schema version")
			}
			switch got := binary.BigEndian.Uint64(v); {
			case got > schemaVersion:
				return fmt.Errorf("bolt: file has schema version %d, this rotor understands up to %d", got, schemaVersion)
			case got == schemaVersion:
				return nil
			}
		}
		return meta.Put(keySchema, be64(schemaVersion))
	})
}

// Changes blocks until ctx ends: a bbolt file has one process, whose vault
// invalidates its own cache.
func (s *Store) Changes(ctx context.Context, fn func(storage.Change)) error {
	<-ctx.Done()
	return nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

func (s *Store) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// batch is update through the group commit (groupcommit.go) for a write
// of n items (jobs, results, rows): concurrent callers share one
// transaction and one fsync, and each returns once it is durable. fn may
// run more than once, so it must start afresh.
func (s *Store) batch(ctx context.Context, n int, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.group.update(n, fn)
}

func (s *Store) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

func be64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func put(b *bbolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

// get decodes into v; json.Unmarshal copies, so nothing outlives the tx.
func get(b *bbolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("bolt: decode %s/%s: %w", "record", key, err)
	}
	return true, nil
}

// Audit rows are stored in segments: one bbolt value per workspace per
// write, keyed by its first event id, holding that write's events (which get
// consecutive ids) as length-prefixed records (formats: auditseg.go). A group-committed batch
// of hundreds of access rows thus costs one Put, not hundreds of B-tree
// inserts.
func (s *Store) appendAudit(tx *bbolt.Tx, events []storage.AuditEvent) error {
	_, err := s.appendAuditHeads(tx, events, false)
	return err
}

// appendAuditHeads is appendAudit reporting each workspace's heads. Rows
// are written in the v2 binary format (auditseg.go); nothing written before
// is decoded (the head comes from chainHead) unless retry is set: then each
// workspace's rows already stored are skipped (RetryAppendAudit). events
// is not modified (an id and chain value are set on a copy of each row), so
// a caller whose fn may run again passes the same slice each time.
//
// Per row it costs one hash and one in-place encoding, nothing allocated
// (issue 15): the chain value lives on the stack, each segment is one
// buffer sized exactly, and the ids come from one sequence update per
// call.
func (s *Store) appendAuditHeads(tx *bbolt.Tx, events []storage.AuditEvent, retry bool) ([]storage.AuditAppended, error) {
	if len(events) == 0 {
		return nil, nil
	}
	root := tx.Bucket(bucketAudit)
	heads := tx.Bucket(bucketAuditHeads)
	order, groups, err := groupByWorkspace(events)
	if err != nil {
		return nil, err
	}
	seq := root.Sequence()
	var enc segEncoderV2
	out := make([]storage.AuditAppended, 0, len(order))
	for gi, ws := range order {
		group := groups[gi]
		b, err := root.CreateBucketIfNotExists([]byte(ws))
		if err != nil {
			return nil, err
		}
		// Keys only ever grow: fill pages fully instead of splitting them in half.
		b.FillPercent = 1.0
		if retry {
			n, err := retriedRows(b, group)
			if err != nil {
				return nil, err
			}
			if group = group[n:]; len(group) == 0 {
				continue
			}
		}
		head, err := s.chainHead(heads, ws)
		if err != nil {
			return nil, err
		}
		prev := head
		var sum [sha256.Size]byte
		chain := head.Chain
		for evs := range slices.Chunk(group, auditSegmentEvents) {
			// Sized exactly (a chain value is 32 bytes): bbolt keeps the
			// value Put until the commit, so each segment is its own buffer.
			first := seq + 1
			buf := make([]byte, 0, enc.plan(evs, int64(first)))
			buf = enc.header(buf)
			for i, ev := range evs {
				seq++
				e := *ev
				e.ID = int64(seq)
				sum = storage.NextChainSum(chain, &e)
				e.Chain = sum[:]
				chain = e.Chain
				buf = appendFrameV2(buf, &e, &enc.refs[i])
			}
			if err := b.Put(be64(first), buf); err != nil {
				return nil, err
			}
		}
		head = storage.AuditHead{LastID: int64(seq), Chain: bytes.Clone(sum[:])}
		if err := s.putChainHead(heads, ws, head); err != nil {
			return nil, err
		}
		out = append(out, storage.AuditAppended{WorkspaceID: ws, Prev: prev, Head: head, Rows: len(group)})
	}
	if err := root.SetSequence(seq); err != nil {
		return nil, err
	}
	return out, nil
}

// groupByWorkspace splits events by workspace, in order of first
// appearance, keeping their order within each. A batch of access rows
// nearly always holds one workspace: that takes no map.
func groupByWorkspace(events []storage.AuditEvent) ([]string, [][]*storage.AuditEvent, error) {
	ptrs := make([]*storage.AuditEvent, len(events))
	one := true
	for i := range events {
		if events[i].WorkspaceID == "" {
			return nil, nil, fmt.Errorf("bolt: audit event without workspace")
		}
		one = one && events[i].WorkspaceID == events[0].WorkspaceID
		ptrs[i] = &events[i]
	}
	if one {
		return []string{events[0].WorkspaceID}, [][]*storage.AuditEvent{ptrs}, nil
	}
	var order []string
	idx := map[string]int{}
	counts := []int{}
	for i := range events {
		k, ok := idx[events[i].WorkspaceID]
		if !ok {
			k = len(order)
			idx[events[i].WorkspaceID] = k
			order = append(order, events[i].WorkspaceID)
			counts = append(counts, 0)
		}
		counts[k]++
	}
	groups := make([][]*storage.AuditEvent, len(order))
	at := 0
	for k, n := range counts {
		groups[k] = ptrs[at : at : at+n]
		at += n
	}
	// Refill ptrs workspace by workspace (read from events, not ptrs).
	for i := range events {
		k := idx[events[i].WorkspaceID]
		groups[k] = append(groups[k], &events[i])
	}
	return order, groups, nil
}

// retriedRows is how many of evs' leading rows the workspace bucket b
// already holds: it walks back over at most storage.AuditRetryWindow of
// the newest rows for evs[0]'s nonce, then matches the rows from there on
// by nonce and MAC (storage.RetriedRows). A binary segment (v1, v2) keeps
// nonces as raw bytes, so one that does not contain the nonce's bytes is only counted,
// not decoded (a miss over the whole window decoded 100,000 rows).
func retriedRows(b *bbolt.Bucket, evs []*storage.AuditEvent) (int, error) {
	nonce := evs[0].Nonce
	if len(nonce) == 0 {
		return 0, nil
	}
	c := b.Cursor()
	seen := 0
	for k, v := c.Last(); k != nil && seen < storage.AuditRetryWindow; k, v = c.Prev() {
		if len(v) > 0 && v[0] == segMarker && !bytes.Contains(v, nonce) {
			n, err := segmentRecords(v)
			if err != nil {
				return 0, err
			}
			seen += n
			continue
		}
		seg, err := decodeSegment(v, 0)
		if err != nil {
			return 0, err
		}
		i := slices.IndexFunc(seg, func(e storage.AuditEvent) bool { return bytes.Equal(e.Nonce, nonce) })
		if i < 0 {
			seen += len(seg)
			continue
		}
		// Found: the stored rows from it on, forward through the
		// following segments, as many as evs has.
		stored := make([]storage.StoredRow, 0, len(evs))
		for {
			for _, e := range seg[i:] {
				if len(stored) < len(evs) {
					stored = append(stored, storage.StoredRow{Nonce: e.Nonce, MAC: e.MAC})
				}
			}
			if len(stored) == len(evs) {
				break
			}
			if k, v = c.Next(); k == nil {
				break
			}
			if seg, err = decodeSegment(v, 0); err != nil {
				return 0, err
			}
			i = 0
		}
		want := make([]storage.AuditEvent, len(evs))
		for j, ev := range evs {
			want[j] = *ev
		}
		return storage.RetriedRows(stored, want), nil
	}
	return 0, nil
}

// auditSegmentEvents caps a segment: values much larger than a page become
// long runs of overflow pages, which bbolt allocates and writes badly.
const auditSegmentEvents = 64

// --- workspaces ---

func (s *Store) CreateWorkspace(ctx context.Context, args storage.CreateWorkspaceArgs) error {
	ws := args.Workspace
	return s.update(ctx, func(tx *bbolt.Tx) error {
		names := tx.Bucket(bucketWorkspaceNames)
		if names.Get([]byte(ws.Name)) != nil {
			return fmt.Errorf("workspace %q: %w", ws.Name, storage.ErrExists)
		}
		wss := tx.Bucket(bucketWorkspaces)
		if wss.Get([]byte(ws.ID)) != nil {
			return fmt.Errorf("workspace id %q: %w", ws.ID, storage.ErrExists)
		}
		if err := put(wss, []byte(ws.ID), ws); err != nil {
			return err
		}
		if err := names.Put([]byte(ws.Name), []byte(ws.ID)); err != nil {
			return err
		}
		if args.AdminKey != nil {
			if err := createKey(tx, *args.AdminKey); err != nil {
				return err
			}
		}
		return s.appendAudit(tx, slices.Clone(args.Audit))
	})
}

func (s *Store) GetWorkspace(ctx context.Context, id string) (storage.Workspace, error) {
	var ws storage.Workspace
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		ok, err := get(tx.Bucket(bucketWorkspaces), []byte(id), &ws)
		if err == nil && !ok {
			err = fmt.Errorf("workspace %q: %w", id, storage.ErrNotFound)
		}
		return err
	})
	return ws, err
}

func (s *Store) GetWorkspaceByName(ctx context.Context, name string) (storage.Workspace, error) {
	var ws storage.Workspace
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		id := tx.Bucket(bucketWorkspaceNames).Get([]byte(name))
		if id == nil {
			return fmt.Errorf("workspace %q: %w", name, storage.ErrNotFound)
		}
		ok, err := get(tx.Bucket(bucketWorkspaces), id, &ws)
		if err == nil && !ok {
			err = fmt.Errorf("workspace %q: %w", name, storage.ErrNotFound)
		}
		return err
	})
	return ws, err
}

func (s *Store) ListWorkspaces(ctx context.Context) ([]storage.Workspace, error) {
	var out []storage.Workspace
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketWorkspaces).ForEach(func(k, v []byte) error {
			var ws storage.Workspace
			if err := json.Unmarshal(v, &ws); err != nil {
				return err
			}
			out = append(out, ws)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b storage.Workspace) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, err
}

// --- API keys ---

func createKey(tx *bbolt.Tx, k storage.APIKey) error {
	if tx.Bucket(bucketWorkspaces).Get([]byte(k.WorkspaceID)) == nil {
		return fmt.Errorf("workspace %q: %w", k.WorkspaceID, storage.ErrNotFound)
	}
	keys := tx.Bucket(bucketAPIKeys)
	if keys.Get([]byte(k.ID)) != nil {
		return fmt.Errorf("api key %q: %w", k.ID, storage.ErrExists)
	}
	return put(keys, []byte(k.ID), k)
}

func (s *Store) CreateAPIKey(ctx context.Context, args storage.CreateAPIKeyArgs) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		if err := createKey(tx, args.Key); err != nil {
			return err
		}
		return s.appendAudit(tx, slices.Clone(args.Audit))
	})
}

func (s *Store) GetAPIKey(ctx context.Context, id string) (storage.APIKey, error) {
	var k storage.APIKey
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		ok, err := get(tx.Bucket(bucketAPIKeys), []byte(id), &k)
		if err == nil && !ok {
			err = fmt.Errorf("api key %q: %w", id, storage.ErrNotFound)
		}
		return err
	})
	return k, err
}

func (s *Store) ListAPIKeys(ctx context.Context, workspaceID string) ([]storage.APIKey, error) {
	var out []storage.APIKey
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAPIKeys).ForEach(func(_, v []byte) error {
			var k storage.APIKey
			if err := json.Unmarshal(v, &k); err != nil {
				return err
			}
			if k.WorkspaceID == workspaceID {
				out = append(out, k)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b storage.APIKey) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

func (s *Store) RevokeAPIKey(ctx context.Context, args storage.RevokeAPIKeyArgs) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		keys := tx.Bucket(bucketAPIKeys)
		var k storage.APIKey
		ok, err := get(keys, []byte(args.ID), &k)
		if err != nil {
			return err
		}
		if !ok || k.WorkspaceID != args.WorkspaceID || k.RevokedAt != nil {
			return fmt.Errorf("api key %q: %w", args.ID, storage.ErrNotFound)
		}
		at := args.At.UTC()
		k.RevokedAt = &at
		if err := put(keys, []byte(k.ID), k); err != nil {
			return err
		}
		return s.appendAudit(tx, slices.Clone(args.Audit))
	})
}

// --- keyring ---

func (s *Store) ListKEKs(ctx context.Context) ([]storage.KEK, error) {
	var out []storage.KEK
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketKeyring).ForEach(func(_, v []byte) error {
			var k storage.KEK
			if err := json.Unmarshal(v, &k); err != nil {
				return err
			}
			out = append(out, k)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b storage.KEK) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

func (s *Store) AddKEK(ctx context.Context, args storage.AddKEKArgs) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		ring := tx.Bucket(bucketKeyring)
		if ring.Get([]byte(args.KEK.ID)) != nil {
			return fmt.Errorf("kek %q: %w", args.KEK.ID, storage.ErrExists)
		}
		// Deactivate the others first; collect keys before writing, since
		// a bucket must not be modified while ForEach walks it.
		var others []storage.KEK
		if err := ring.ForEach(func(_, v []byte) error {
			var k storage.KEK
			if err := json.Unmarshal(v, &k); err != nil {
				return err
			}
			others = append(others, k)
			return nil
		}); err != nil {
			return err
		}
		for _, k := range others {
			if k.Active {
				k.Active = false
				if err := put(ring, []byte(k.ID), k); err != nil {
					return err
				}
			}
		}
		k := args.KEK
		k.Active = true
		return put(ring, []byte(k.ID), k)
	})
}

func (s *Store) DeleteKEK(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		ring := tx.Bucket(bucketKeyring)
		var k storage.KEK
		ok, err := get(ring, []byte(id), &k)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("kek %q: %w", id, storage.ErrNotFound)
		}
		if k.Active {
			return fmt.Errorf("kek %q is the active key: %w", id, storage.ErrInUse)
		}
		used := false
		err = forEachSecret(tx, func(r storage.SecretRecord) bool {
			used = r.KEKID == id
			return !used
		})
		if err != nil {
			return err
		}
		if used {
			return fmt.Errorf("kek %q still seals secrets: %w", id, storage.ErrInUse)
		}
		return ring.Delete([]byte(id))
	})
}

// --- secrets ---

// checkKEK refuses a write sealed under a key the keyring no longer has (a
// rotation retired it meanwhile): the writer reloads its keyring and reseals.
func checkKEK(tx *bbolt.Tx, id string) error {
	if tx.Bucket(bucketKeyring).Get([]byte(id)) == nil {
		return fmt.Errorf("secret sealed under unknown key %q: %w", id, storage.ErrConflict)
	}
	return nil
}

func forEachSecret(tx *bbolt.Tx, fn func(storage.SecretRecord) (more bool)) error {
	root := tx.Bucket(bucketSecrets)
	c := root.Cursor()
	for wsID, v := c.First(); wsID != nil; wsID, v = c.Next() {
		if v != nil {
			continue // not a nested bucket
		}
		sc := root.Bucket(wsID).Cursor()
		for k, v := sc.First(); k != nil; k, v = sc.Next() {
			var r storage.SecretRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if !fn(r) {
				return nil
			}
		}
	}
	return nil
}

func (s *Store) CreateSecret(ctx context.Context, args storage.CreateSecretArgs) error {
	r := args.Secret
	return s.update(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketWorkspaces).Get([]byte(r.WorkspaceID)) == nil {
			return fmt.Errorf("workspace %q: %w", r.WorkspaceID, storage.ErrNotFound)
		}
		b, err := tx.Bucket(bucketSecrets).CreateBucketIfNotExists([]byte(r.WorkspaceID))
		if err != nil {
			return err
		}
		if b.Get([]byte(r.Name)) != nil {
			return fmt.Errorf("secret %q: %w", r.Name, storage.ErrExists)
		}
		if err := checkKEK(tx, r.KEKID); err != nil {
			return err
		}
		r.Revision = 1
		if err := put(b, []byte(r.Name), r); err != nil {
			return err
		}
		return s.appendAudit(tx, slices.Clone(args.Audit))
	})
}

func (s *Store) UpdateSecret(ctx context.Context, args storage.UpdateSecretArgs) error {
	r := args.Secret
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSecrets).Bucket([]byte(r.WorkspaceID))
		var cur storage.SecretRecord
		ok := false
		if b != nil {
			var err error
			if ok, err = get(b, []byte(r.Name), &cur); err != nil {
				return err
			}
		}
		if !ok {
			return fmt.Errorf("secret %q: %w", r.Name, storage.ErrNotFound)
		}
		if cur.Revision != args.ExpectedRevision {
			return fmt.Errorf("secret %q at revision %d, expected %d: %w", r.Name, cur.Revision, args.ExpectedRevision, storage.ErrConflict)
		}
		if err := checkKEK(tx, r.KEKID); err != nil {
			return err
		}
		r.Revision = cur.Revision + 1
		if err := put(b, []byte(r.Name), r); err != nil {
			return err
		}
		return s.appendAudit(tx, slices.Clone(args.Audit))
	})
}

func (s *Store) DeleteSecret(ctx context.Context, args storage.DeleteSecretArgs) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSecrets).Bucket([]byte(args.WorkspaceID))
		if b == nil || b.Get([]byte(args.Name)) == nil {
			return fmt.Errorf("secret %q: %w", args.Name, storage.ErrNotFound)
		}
		if err := b.Delete([]byte(args.Name)); err != nil {
			return err
		}
		return s.appendAudit(tx, slices.Clone(args.Audit))
	})
}

func (s *Store) GetSecret(ctx context.Context, workspaceID, name string) (storage.SecretRecord, error) {
	var r storage.SecretRecord
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		ok := false
		if b := tx.Bucket(bucketSecrets).Bucket([]byte(workspaceID)); b != nil {
			var err error
			if ok, err = get(b, []byte(name), &r); err != nil {
				return err
			}
		}
		if !ok {
			return fmt.Errorf("secret %q: %w", name, storage.ErrNotFound)
		}
		return nil
	})
	return r, err
}

func (s *Store) ListSecrets(ctx context.Context, args storage.ListSecretsArgs) ([]storage.SecretMeta, error) {
	var out []storage.SecretMeta
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSecrets).Bucket([]byte(args.WorkspaceID))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var r storage.SecretRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r.SecretMeta)
			return nil
		})
	})
	return out, err
}

func (s *Store) ListSecretsByKEK(ctx context.Context, kekID string, limit int) ([]storage.SecretRecord, error) {
	var out []storage.SecretRecord
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return forEachSecret(tx, func(r storage.SecretRecord) bool {
			if r.KEKID == kekID {
				out = append(out, r)
			}
			return limit <= 0 || len(out) < limit
		})
	})
	return out, err
}

// --- audit ---

func (s *Store) AppendAudit(ctx context.Context, events []storage.AuditEvent) ([]storage.AuditAppended, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var out []storage.AuditAppended
	// Shared with concurrent job writes (one commit): fn may run again,
	// and appendAuditHeads leaves events as they were; a rolled-back chain
	// head only costs the tails cache a decode (tailHead).
	err := s.batch(ctx, len(events), func(tx *bbolt.Tx) error {
		var err error
		out, err = s.appendAuditHeads(tx, events, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) RetryAppendAudit(ctx context.Context, events []storage.AuditEvent) ([]storage.AuditAppended, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var out []storage.AuditAppended
	err := s.batch(ctx, len(events), func(tx *bbolt.Tx) error {
		var err error
		out, err = s.appendAuditHeads(tx, events, true)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sinceSlack: events are stored in commit order, and group-committed access
// events can commit a little after later-stamped events, so a scan by time
// stops only well past Since.
const sinceSlack = 10 * time.Second

func (s *Store) ListAudit(ctx context.Context, q storage.AuditQuery) (storage.AuditPage, error) {
	var page storage.AuditPage
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAudit).Bucket([]byte(q.WorkspaceID))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if q.Before > 0 {
			// The segment holding Before-1 is the last one keyed below Before.
			k, v = c.Seek(be64(uint64(q.Before)))
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		} else {
			k, v = c.Last()
		}
		for ; k != nil; k, v = c.Prev() {
			if err := ctx.Err(); err != nil {
				return err
			}
			evs, err := decodeSegment(v, 0)
			if err != nil {
				return err
			}
			for i := len(evs) - 1; i >= 0; i-- {
				ev := evs[i]
				if q.Before > 0 && ev.ID >= q.Before {
					continue
				}
				if !q.Since.IsZero() && ev.OccurredAt.Before(q.Since) {
					if ev.OccurredAt.Before(q.Since.Add(-sinceSlack)) {
						return nil
					}
					continue
				}
				if (q.ResourceType != "" && ev.ResourceType != q.ResourceType) ||
					(q.EventType != "" && ev.EventType != q.EventType) ||
					(q.ResourceID != "" && ev.ResourceID != q.ResourceID) {
					continue
				}
				if len(page.Events) == limit {
					page.Next = page.Events[len(page.Events)-1].ID
					return nil
				}
				page.Events = append(page.Events, ev)
			}
		}
		return nil
	})
	return page, err
}

func (s *Store) ListAuditAsc(ctx context.Context, r storage.AuditRange) ([]storage.AuditEvent, error) {
	var out []storage.AuditEvent
	afterID, limit := r.AfterID, r.Limit
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAudit).Bucket([]byte(r.WorkspaceID))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		// The segment holding afterID+1 may start before it.
		k, _ := c.Seek(be64(uint64(afterID + 1)))
		if k == nil {
			k, _ = c.Last()
		} else if binary.BigEndian.Uint64(k) > uint64(afterID+1) {
			if pk, _ := c.Prev(); pk == nil {
				k, _ = c.First()
			} else {
				k = pk
			}
		}
		for k, v := c.Seek(k); k != nil && len(out) < limit; k, v = c.Next() {
			evs, err := decodeSegment(v, afterID)
			if err != nil {
				return err
			}
			for _, ev := range evs {
				if ev.ID > afterID && len(out) < limit {
					out = append(out, ev)
				}
			}
		}
		return nil
	})
	return out, err
}

func (s *Store) GetAuditHead(ctx context.Context, workspaceID string) (storage.AuditHead, error) {
	var h storage.AuditHead
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		_, err := get(tx.Bucket(bucketAuditHeads), []byte(workspaceID), &h)
		return err
	})
	return h, err
}

func (s *Store) PutAuditCheckpoint(ctx context.Context, c storage.AuditCheckpoint) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAuditChecks)
		var cur storage.AuditCheckpoint
		if ok, err := get(b, []byte(c.WorkspaceID), &cur); err != nil || ok && cur.LastID > c.LastID {
			return err
		}
		return put(b, []byte(c.WorkspaceID), c)
	})
}

func (s *Store) GetAuditCheckpoint(ctx context.Context, workspaceID string) (storage.AuditCheckpoint, error) {
	var c storage.AuditCheckpoint
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		ok, err := get(tx.Bucket(bucketAuditChecks), []byte(workspaceID), &c)
		if err == nil && !ok {
			err = fmt.Errorf("audit checkpoint: %w", storage.ErrNotFound)
		}
		return err
	})
	return c, err
}
