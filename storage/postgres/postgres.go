package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"rotor.sh/rotor/storage"
)

var _ storage.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key that serializes migrations across
// nodes starting together.
const migrationLock = 0x526f746f72 // "Rotor"

// Store is a storage.Store on PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	fair storage.Fair // turns among workspaces and queues when leasing (per node)
	// channel is this schema's NOTIFY channel (see channelSQL).
	channel string
}

// Open connects to dsn and applies pending migrations.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w: %v", storage.ErrUnavailable, err)
	}
	s := &Store{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := pool.QueryRow(ctx, `SELECT `+channelSQL).Scan(&s.channel); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: change channel: %w", err)
	}
	return s, nil
}

// Close closes the pool.
func (s *Store) Close() error { s.pool.Close(); return nil }

func (s *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return err
		}
		// Checked first: a role limited to DML (docs/security.md) may not
		// even run CREATE TABLE IF NOT EXISTS on a migrated schema.
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, `CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
				return err
			}
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		names, err := fs.Glob(migrations, "migrations/*.sql")
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, name := range names {
			v, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, "migrations/"), "_", 2)[0])
			if err != nil {
				return fmt.Errorf("postgres: bad migration name %s", name)
			}
			if v <= current {
				continue
			}
			sql, err := migrations.ReadFile(name)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return fmt.Errorf("postgres: migration %s: %w", name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Migrations is how many migrations the binary carries (for rotor migrate).
func Migrations() int {
	names, _ := fs.Glob(migrations, "migrations/*.sql")
	return len(names)
}

// mapErr turns driver errors into storage sentinels.
func mapErr(err error, what string) error {
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%s: %w", what, storage.ErrNotFound)
	case errors.As(err, &pe) && pe.Code == "23505":
		return fmt.Errorf("%s: %w", what, storage.ErrExists)
	case errors.As(err, &pe) && pe.Code == "23503":
		return fmt.Errorf("%s (missing parent): %w", what, storage.ErrNotFound)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case pgconn.SafeToRetry(err), isConnErr(err):
		return fmt.Errorf("%s: %w: %v", what, storage.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isConnErr reports errors that mean the database is (for now) out of
// reach rather than that the request was wrong: the client should retry.
// A restart ends sessions with 57P01 and refuses new ones with 57P03 while
// it starts; a broken socket surfaces as a net or EOF error.
func isConnErr(err error) bool {
	var ce *pgconn.ConnectError
	var pe *pgconn.PgError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne):
		return true
	case errors.As(err, &pe):
		class := pe.Code[:min(2, len(pe.Code))]
		return class == "08" || class == "57" || class == "53"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return true
	}
	return false
}

type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// appendAudit inserts events and chains them. Per workspace it locks the
// chain head (so appends from every node serialize), takes ids from the
// sequence while holding the lock (so id order is chain order), and asks
// PostgreSQL for the jsonb form of input and output, because the chain
// covers the row exactly as it will be read back.
func appendAudit(ctx context.Context, q querier, events []storage.AuditEvent) error {
	_, err := appendAuditHeads(ctx, q, events, false)
	return err
}

// appendAuditHeads is appendAudit reporting each workspace's heads. retry:
// each workspace's rows already stored are skipped (RetryAppendAudit).
func appendAuditHeads(ctx context.Context, q querier, events []storage.AuditEvent, retry bool) ([]storage.AuditAppended, error) {
	if len(events) == 0 {
		return nil, nil
	}
	groups := map[string][]storage.AuditEvent{}
	for _, e := range events {
		groups[e.WorkspaceID] = append(groups[e.WorkspaceID], e)
	}
	out := make([]storage.AuditAppended, 0, len(groups))
	// A fixed lock order keeps two nodes' batches from deadlocking.
	for _, ws := range slices.Sorted(maps.Keys(groups)) {
		a, err := appendAuditWorkspace(ctx, q, ws, groups[ws], retry)
		if err != nil {
			return nil, err
		}
		if a.Rows > 0 {
			out = append(out, a)
		}
	}
	return out, nil
}

func appendAuditWorkspace(ctx context.Context, q querier, ws string, evs []storage.AuditEvent, retry bool) (storage.AuditAppended, error) {
	var head storage.AuditHead
	if err := q.QueryRow(ctx, `INSERT INTO audit_head (workspace_id, last_id, chain) VALUES ($1, 0, '')
		ON CONFLICT (workspace_id) DO UPDATE SET workspace_id = EXCLUDED.workspace_id
		RETURNING last_id, chain`, ws).Scan(&head.LastID, &head.Chain); err != nil {
		return storage.AuditAppended{}, err
	}
	if retry {
		// Under the head's lock: no other node can append (or commit
		// this batch's earlier attempt) between the check and the insert.
		n, err := retriedRows(ctx, q, ws, evs)
		if err != nil {
			return storage.AuditAppended{}, err
		}
		if evs = evs[n:]; len(evs) == 0 {
			return storage.AuditAppended{WorkspaceID: ws}, nil
		}
	}
	res := storage.AuditAppended{WorkspaceID: ws, Prev: head, Rows: len(evs)}
	if len(res.Prev.Chain) == 0 {
		res.Prev.Chain = nil // the new head row's '' is "no chain yet"
	}
	ins := make([]*string, len(evs))
	outs := make([]*string, len(evs))
	for i, e := range evs {
		ins[i], outs[i] = textOrNil(e.Input), textOrNil(e.Output)
	}
	rows, err := q.Query(ctx, `SELECT nextval('audit_event_id_seq'), i::jsonb::text, o::jsonb::text
		FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(i, o, n) ORDER BY n`, ins, outs)
	if err != nil {
		return storage.AuditAppended{}, err
	}
	i := 0
	ids := make([]int64, 0, len(evs))
	for rows.Next() {
		var in, out *string
		var id int64
		if err := rows.Scan(&id, &in, &out); err != nil {
			rows.Close()
			return storage.AuditAppended{}, err
		}
		if i < len(evs) {
			// The normalised text goes into the row as scanned (the
			// insert below takes ins and outs), and into the chain.
			evs[i].Input, evs[i].Output = rawOrEmpty(in), rawOrEmpty(out)
			ins[i], outs[i] = in, out
		}
		ids = append(ids, id)
		i++
	}
	if err := rows.Err(); err != nil {
		return storage.AuditAppended{}, err
	}
	if len(ids) != len(evs) {
		return storage.AuditAppended{}, fmt.Errorf("postgres: audit: got %d ids for %d rows", len(ids), len(evs))
	}
	// nextval within one statement increases, but sort to depend on nothing.
	slices.Sort(ids)
	// One statement of one text whatever the batch size (arrays, not a
	// VALUES list of 12 parameters a row: one prepared statement, no
	// per-row formatting or boxing), moving the head in the same round trip.
	n := len(evs)
	at := make([]time.Time, n)
	strs := make([][]string, 5)
	for k := range strs {
		strs[k] = make([]string, n)
	}
	chains, nonces, macs := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	for i := range evs {
		e := &evs[i]
		e.ID = ids[i]
		// timestamptz keeps microseconds.
		e.OccurredAt = e.OccurredAt.UTC().Truncate(time.Microsecond)
		e.Chain = storage.NextChain(head.Chain, *e)
		head = storage.AuditHead{LastID: e.ID, Chain: e.Chain}
		at[i] = e.OccurredAt
		strs[0][i], strs[1][i], strs[2][i], strs[3][i], strs[4][i] = e.WorkspaceID, e.ActorID, e.EventType, e.ResourceType, e.ResourceID
		chains[i], nonces[i], macs[i] = e.Chain, e.Nonce, e.MAC
	}
	if _, err := q.Exec(ctx, `WITH ins AS (
		INSERT INTO audit_event (id, occurred_at, workspace_id, actor_id, event_type, resource_type, resource_id, input, output, chain, row_nonce, row_mac)
		SELECT id, at, ws, actor, et, rt, rid, i::jsonb, o::jsonb, chain, nonce, mac
		FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[], $11::bytea[], $12::bytea[])
			AS x(id, at, ws, actor, et, rt, rid, i, o, chain, nonce, mac))
		UPDATE audit_head SET last_id=$14, chain=$15 WHERE workspace_id=$13`,
		ids, at, strs[0], strs[1], strs[2], strs[3], strs[4], ins, outs, chains, nonces, macs, ws, head.LastID, head.Chain); err != nil {
		return storage.AuditAppended{}, err
	}
	res.Head = head
	return res, nil
}

// retriedRows is how many of evs' leading rows the workspace already
// holds: evs[0]'s nonce is looked for among its newest
// storage.AuditRetryWindow rows (the (workspace_id, id) index, no nonce
// index to keep every append's cost), and the rows from there on are
// matched by nonce and MAC (storage.RetriedRows).
func retriedRows(ctx context.Context, q querier, ws string, evs []storage.AuditEvent) (int, error) {
	if len(evs[0].Nonce) == 0 {
		return 0, nil
	}
	// The search walks back from the head (pipelined: the LIMIT 1 stops it
	// at the first match), so a retry whose rows are near the head reads
	// few rows; a miss reads the window. The found id is a scalar, so the
	// rows from it on are an index range, not a join over the workspace.
	rows, err := q.Query(ctx, `SELECT row_nonce, row_mac FROM audit_event WHERE workspace_id=$1 AND id >= (
		SELECT id FROM (SELECT id, row_nonce FROM audit_event WHERE workspace_id=$1 ORDER BY id DESC LIMIT $2) w
		WHERE row_nonce=$3 LIMIT 1)
	ORDER BY id LIMIT $4`,
		ws, storage.AuditRetryWindow, evs[0].Nonce, len(evs))
	if err != nil {
		return 0, err
	}
	var stored []storage.StoredRow
	for rows.Next() {
		var r storage.StoredRow
		if err := rows.Scan(&r.Nonce, &r.MAC); err != nil {
			rows.Close()
			return 0, err
		}
		stored = append(stored, r)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return storage.RetriedRows(stored, evs), nil
}

func textOrNil(m json.RawMessage) *string {
	if len(m) == 0 {
		return nil
	}
	s := string(m)
	return &s
}

func rawOrEmpty(s *string) json.RawMessage {
	if s == nil {
		return nil
	}
	return json.RawMessage(*s)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// --- workspaces ---

func (s *Store) CreateWorkspace(ctx context.Context, args storage.CreateWorkspaceArgs) error {
	ws := args.Workspace
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO workspaces (id, name, created_at) VALUES ($1,$2,$3)`, ws.ID, ws.Name, ws.CreatedAt); err != nil {
			return err
		}
		if k := args.AdminKey; k != nil {
			if err := insertKey(ctx, tx, *k); err != nil {
				return err
			}
		}
		return appendAudit(ctx, tx, args.Audit)
	}), "workspace "+strconv.Quote(ws.Name))
}

func scanWorkspace(row pgx.Row) (storage.Workspace, error) {
	var ws storage.Workspace
	err := row.Scan(&ws.ID, &ws.Name, &ws.CreatedAt)
	ws.CreatedAt = ws.CreatedAt.UTC()
	return ws, err
}

func (s *Store) GetWorkspace(ctx context.Context, id string) (storage.Workspace, error) {
	ws, err := scanWorkspace(s.pool.QueryRow(ctx, `SELECT id, name, created_at FROM workspaces WHERE id=$1`, id))
	return ws, mapErr(err, "workspace "+strconv.Quote(id))
}

func (s *Store) GetWorkspaceByName(ctx context.Context, name string) (storage.Workspace, error) {
	ws, err := scanWorkspace(s.pool.QueryRow(ctx, `SELECT id, name, created_at FROM workspaces WHERE name=$1`, name))
	return ws, mapErr(err, "workspace "+strconv.Quote(name))
}

func (s *Store) ListWorkspaces(ctx context.Context) ([]storage.Workspace, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, created_at FROM workspaces ORDER BY created_at, id`)
	if err != nil {
		return nil, mapErr(err, "workspaces")
	}
	return collect(rows, scanWorkspace)
}

func collect[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, mapErr(rows.Err(), "query")
}

// --- API keys ---

func insertKey(ctx context.Context, q querier, k storage.APIKey) error {
	_, err := q.Exec(ctx, `INSERT INTO api_keys (id, workspace_id, name, role, hash, created_at) VALUES ($1,$2,$3,$4,$5,$6)`,
		k.ID, k.WorkspaceID, k.Name, k.Role, nonNil(k.Hash), k.CreatedAt)
	return err
}

func (s *Store) CreateAPIKey(ctx context.Context, args storage.CreateAPIKeyArgs) error {
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		if err := insertKey(ctx, tx, args.Key); err != nil {
			return err
		}
		return appendAudit(ctx, tx, args.Audit)
	}), "api key "+args.Key.ID)
}

const keyCols = `id, workspace_id, name, role, hash, created_at, revoked_at`

func scanKey(row pgx.Row) (storage.APIKey, error) {
	var k storage.APIKey
	err := row.Scan(&k.ID, &k.WorkspaceID, &k.Name, &k.Role, &k.Hash, &k.CreatedAt, &k.RevokedAt)
	k.CreatedAt = k.CreatedAt.UTC()
	if k.RevokedAt != nil {
		t := k.RevokedAt.UTC()
		k.RevokedAt = &t
	}
	return k, err
}

func (s *Store) GetAPIKey(ctx context.Context, id string) (storage.APIKey, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyCols+` FROM api_keys WHERE id=$1`, id))
	return k, mapErr(err, "api key "+id)
}

func (s *Store) ListAPIKeys(ctx context.Context, workspaceID string) ([]storage.APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyCols+` FROM api_keys WHERE workspace_id=$1 ORDER BY created_at, id`, workspaceID)
	if err != nil {
		return nil, mapErr(err, "api keys")
	}
	return collect(rows, scanKey)
}

func (s *Store) RevokeAPIKey(ctx context.Context, args storage.RevokeAPIKeyArgs) error {
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at=$3 WHERE id=$1 AND workspace_id=$2 AND revoked_at IS NULL`, args.ID, args.WorkspaceID, args.At.UTC())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return appendAudit(ctx, tx, args.Audit)
	}), "api key "+args.ID)
}

// --- keyring ---

func (s *Store) ListKEKs(ctx context.Context) ([]storage.KEK, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, wrapped, active, created_at FROM keks ORDER BY created_at, id`)
	if err != nil {
		return nil, mapErr(err, "keyring")
	}
	return collect(rows, func(r pgx.Row) (storage.KEK, error) {
		var k storage.KEK
		err := r.Scan(&k.ID, &k.Wrapped, &k.Active, &k.CreatedAt)
		k.CreatedAt = k.CreatedAt.UTC()
		return k, err
	})
}

func (s *Store) AddKEK(ctx context.Context, args storage.AddKEKArgs) error {
	k := args.KEK
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE keks SET active=false WHERE active`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO keks (id, wrapped, active, created_at) VALUES ($1,$2,true,$3)`, k.ID, nonNil(k.Wrapped), k.CreatedAt); err != nil {
			return err
		}
		return notify(ctx, tx, storage.Change{Kind: storage.ChangeKeyring})
	}), "kek "+k.ID)
}

func (s *Store) DeleteKEK(ctx context.Context, id string) error {
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		var active bool
		if err := tx.QueryRow(ctx, `SELECT active FROM keks WHERE id=$1 FOR UPDATE`, id).Scan(&active); err != nil {
			return err
		}
		if active {
			return fmt.Errorf("kek %q is the active key: %w", id, storage.ErrInUse)
		}
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM secrets WHERE kek_id=$1)`, id).Scan(&used); err != nil {
			return err
		}
		if used {
			return fmt.Errorf("kek %q still seals secrets: %w", id, storage.ErrInUse)
		}
		_, err := tx.Exec(ctx, `DELETE FROM keks WHERE id=$1`, id)
		return err
	}), "kek "+id)
}

// --- secrets ---

const secretCols = `workspace_id, name, version, revision, hint, allowed_hosts, kek_id, sealed, created_at, updated_at`

func scanSecret(row pgx.Row) (storage.SecretRecord, error) {
	var r storage.SecretRecord
	err := row.Scan(&r.WorkspaceID, &r.Name, &r.Version, &r.Revision, &r.Hint, &r.AllowedHosts, &r.KEKID, &r.Sealed, &r.CreatedAt, &r.UpdatedAt)
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	if len(r.AllowedHosts) == 0 {
		r.AllowedHosts = nil
	}
	return r, err
}

func hosts(h []string) []string {
	if h == nil {
		return []string{}
	}
	return h
}

// kekExists locks the KEK row (key share) so a concurrent rotation cannot
// delete it before this write commits.
func kekExists(ctx context.Context, tx pgx.Tx, id string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM keks WHERE id=$1 FOR KEY SHARE`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("secret sealed under unknown key %q: %w", id, storage.ErrConflict)
	}
	return err
}

// channelSQL names the channel that carries storage.Change JSON to every
// node of one deployment (NOTIFY inside the writing transaction is
// delivered when it commits). Channels are per database, not per schema,
// so the name is derived from the schema the tables live in: deployments
// (and test schemas) sharing a database in different schemas never see
// each other's changes. The public schema keeps the historical name, so
// nodes of the previous release interoperate during a rolling upgrade.
// One SQL expression serves both sides: the notifying transaction
// evaluates it, and Open evaluates it once for LISTEN and enqueueOne.
const channelSQL = `CASE WHEN current_schema() = 'public' THEN 'rotor_changes'
	ELSE 'rotor_changes_' || left(md5(coalesce(current_schema(), '')), 16) END`

func notify(ctx context.Context, tx pgx.Tx, c storage.Change) error {
	b, _ := json.Marshal(c)
	_, err := tx.Exec(ctx, `SELECT pg_notify(`+channelSQL+`, $1)`, string(b))
	return err
}

// Changes listens for change notifications on a dedicated connection,
// reconnecting (with a full-invalidation signal) when it drops.
func (s *Store) Changes(ctx context.Context, fn func(storage.Change)) error {
	for ctx.Err() == nil {
		err := s.listen(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		// Changes may have been missed while disconnected: tell the
		// caller to drop everything (Kind keyring, no name).
		fn(storage.Change{Kind: storage.ChangeKeyring})
		_ = err
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

func (s *Store) listen(ctx context.Context, fn func(storage.Change)) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	ident := pgx.Identifier{s.channel}.Sanitize()
	if _, err := conn.Exec(ctx, "LISTEN "+ident); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), "UNLISTEN "+ident)
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var c storage.Change
		if json.Unmarshal([]byte(n.Payload), &c) == nil {
			fn(c)
		}
	}
}

func (s *Store) CreateSecret(ctx context.Context, args storage.CreateSecretArgs) error {
	r := args.Secret
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		if err := kekExists(ctx, tx, r.KEKID); err != nil {
			return err
		}
		if err := notify(ctx, tx, storage.Change{Kind: storage.ChangeSecret, WorkspaceID: r.WorkspaceID, Name: r.Name}); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO secrets (`+secretCols+`) VALUES ($1,$2,$3,1,$4,$5,$6,$7,$8,$9)`,
			r.WorkspaceID, r.Name, r.Version, r.Hint, hosts(r.AllowedHosts), r.KEKID, nonNil(r.Sealed), r.CreatedAt, r.UpdatedAt)
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, args.Audit)
	}), "secret "+strconv.Quote(r.Name))
}

func (s *Store) UpdateSecret(ctx context.Context, args storage.UpdateSecretArgs) error {
	r := args.Secret
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		var rev int64
		if err := tx.QueryRow(ctx, `SELECT revision FROM secrets WHERE workspace_id=$1 AND name=$2 FOR UPDATE`, r.WorkspaceID, r.Name).Scan(&rev); err != nil {
			return err
		}
		if rev != args.ExpectedRevision {
			return fmt.Errorf("secret %q at revision %d, expected %d: %w", r.Name, rev, args.ExpectedRevision, storage.ErrConflict)
		}
		if err := kekExists(ctx, tx, r.KEKID); err != nil {
			return err
		}
		if err := notify(ctx, tx, storage.Change{Kind: storage.ChangeSecret, WorkspaceID: r.WorkspaceID, Name: r.Name}); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE secrets SET version=$3, revision=revision+1, hint=$4, allowed_hosts=$5, kek_id=$6, sealed=$7, created_at=$8, updated_at=$9
			WHERE workspace_id=$1 AND name=$2`, r.WorkspaceID, r.Name, r.Version, r.Hint, hosts(r.AllowedHosts), r.KEKID, r.Sealed, r.CreatedAt, r.UpdatedAt)
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, args.Audit)
	}), "secret "+strconv.Quote(r.Name))
}

func (s *Store) DeleteSecret(ctx context.Context, args storage.DeleteSecretArgs) error {
	return mapErr(s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM secrets WHERE workspace_id=$1 AND name=$2`, args.WorkspaceID, args.Name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		if err := notify(ctx, tx, storage.Change{Kind: storage.ChangeSecret, WorkspaceID: args.WorkspaceID, Name: args.Name}); err != nil {
			return err
		}
		return appendAudit(ctx, tx, args.Audit)
	}), "secret "+strconv.Quote(args.Name))
}

func (s *Store) GetSecret(ctx context.Context, workspaceID, name string) (storage.SecretRecord, error) {
	r, err := scanSecret(s.pool.QueryRow(ctx, `SELECT `+secretCols+` FROM secrets WHERE workspace_id=$1 AND name=$2`, workspaceID, name))
	return r, mapErr(err, "secret "+strconv.Quote(name))
}

func (s *Store) ListSecrets(ctx context.Context, args storage.ListSecretsArgs) ([]storage.SecretMeta, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+secretCols+` FROM secrets WHERE workspace_id=$1 ORDER BY name`, args.WorkspaceID)
	if err != nil {
		return nil, mapErr(err, "secrets")
	}
	recs, err := collect(rows, scanSecret)
	out := make([]storage.SecretMeta, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.SecretMeta)
	}
	return out, err
}

func (s *Store) ListSecretsByKEK(ctx context.Context, kekID string, limit int) ([]storage.SecretRecord, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	rows, err := s.pool.Query(ctx, `SELECT `+secretCols+` FROM secrets WHERE kek_id=$1 LIMIT $2`, kekID, limit)
	if err != nil {
		return nil, mapErr(err, "secrets")
	}
	return collect(rows, scanSecret)
}

// --- audit ---

func (s *Store) AppendAudit(ctx context.Context, events []storage.AuditEvent) ([]storage.AuditAppended, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var out []storage.AuditAppended
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = appendAuditHeads(ctx, tx, events, false)
		return err
	})
	if err != nil {
		return nil, mapErr(err, "audit")
	}
	return out, nil
}

func (s *Store) RetryAppendAudit(ctx context.Context, events []storage.AuditEvent) ([]storage.AuditAppended, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var out []storage.AuditAppended
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = appendAuditHeads(ctx, tx, events, true)
		return err
	})
	if err != nil {
		return nil, mapErr(err, "audit")
	}
	return out, nil
}

func (s *Store) ListAudit(ctx context.Context, q storage.AuditQuery) (storage.AuditPage, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	where := []string{"workspace_id=$1"}
	args := []any{q.WorkspaceID}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.ResourceType != "" {
		add("resource_type=$%d", q.ResourceType)
	}
	if q.EventType != "" {
		add("event_type=$%d", q.EventType)
	}
	if q.ResourceID != "" {
		add("resource_id=$%d", q.ResourceID)
	}
	if !q.Since.IsZero() {
		add("occurred_at>=$%d", q.Since)
	}
	if q.Before > 0 {
		add("id<$%d", q.Before)
	}
	args = append(args, limit+1)
	rows, err := s.pool.Query(ctx, `SELECT `+auditCols+`
		FROM audit_event WHERE `+strings.Join(where, " AND ")+fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return storage.AuditPage{}, mapErr(err, "audit")
	}
	evs, err := collect(rows, scanAudit)
	if err != nil {
		return storage.AuditPage{}, err
	}
	page := storage.AuditPage{Events: evs}
	if len(evs) > limit {
		page.Events = evs[:limit]
		page.Next = evs[limit-1].ID
	}
	return page, nil
}

const auditCols = `id, occurred_at, workspace_id, actor_id, event_type, resource_type, resource_id, input::text, output::text, chain, row_nonce, row_mac`

func scanAudit(r pgx.Row) (storage.AuditEvent, error) {
	var e storage.AuditEvent
	var in, out *string
	err := r.Scan(&e.ID, &e.OccurredAt, &e.WorkspaceID, &e.ActorID, &e.EventType, &e.ResourceType, &e.ResourceID, &in, &out, &e.Chain, &e.Nonce, &e.MAC)
	e.OccurredAt = e.OccurredAt.UTC()
	e.Input, e.Output = rawOrEmpty(in), rawOrEmpty(out)
	return e, err
}

func (s *Store) ListAuditAsc(ctx context.Context, r storage.AuditRange) ([]storage.AuditEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+auditCols+` FROM audit_event WHERE workspace_id=$1 AND id>$2 ORDER BY id LIMIT $3`, r.WorkspaceID, r.AfterID, r.Limit)
	if err != nil {
		return nil, mapErr(err, "audit")
	}
	evs, err := collect(rows, scanAudit)
	return evs, mapErr(err, "audit")
}

func (s *Store) GetAuditHead(ctx context.Context, workspaceID string) (storage.AuditHead, error) {
	var h storage.AuditHead
	err := s.pool.QueryRow(ctx, `SELECT last_id, chain FROM audit_head WHERE workspace_id=$1`, workspaceID).Scan(&h.LastID, &h.Chain)
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.AuditHead{}, nil
	}
	if len(h.Chain) == 0 {
		h.Chain = nil
	}
	return h, mapErr(err, "audit")
}

func (s *Store) PutAuditCheckpoint(ctx context.Context, c storage.AuditCheckpoint) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO audit_checkpoint (workspace_id, last_id, chain, mac, sealed_at, row_mac_from) VALUES ($1,$2,$3,$4,$5,$6)
		ON CONFLICT (workspace_id) DO UPDATE SET last_id=EXCLUDED.last_id, chain=EXCLUDED.chain, mac=EXCLUDED.mac, sealed_at=EXCLUDED.sealed_at, row_mac_from=EXCLUDED.row_mac_from
		WHERE audit_checkpoint.last_id <= EXCLUDED.last_id`, // nodes seal concurrently: never move back
		c.WorkspaceID, c.LastID, c.Chain, c.MAC, c.SealedAt, c.RowMACFrom)
	return mapErr(err, "audit")
}

func (s *Store) GetAuditCheckpoint(ctx context.Context, workspaceID string) (storage.AuditCheckpoint, error) {
	c := storage.AuditCheckpoint{WorkspaceID: workspaceID}
	err := s.pool.QueryRow(ctx, `SELECT last_id, chain, mac, sealed_at, row_mac_from FROM audit_checkpoint WHERE workspace_id=$1`, workspaceID).Scan(&c.LastID, &c.Chain, &c.MAC, &c.SealedAt, &c.RowMACFrom)
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.AuditCheckpoint{}, fmt.Errorf("audit checkpoint: %w", storage.ErrNotFound)
	}
	c.SealedAt = c.SealedAt.UTC()
	return c, mapErr(err, "audit")
}
