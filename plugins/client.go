package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

var _ storage.Store = (*Client)(nil)

// Client is the host side: a storage.Store whose calls go to a plugin. Its
// connection is swapped by the supervisor when the plugin is restarted, and
// is nil (every call fails with storage.ErrUnavailable) while it is down.
type Client struct {
	conn atomic.Pointer[rpcConn]
	// closer ends the plugin process (Close).
	closer func()
	// timeout bounds each call (see DefaultCallTimeout).
	timeout time.Duration
	// up is signalled when a new connection is installed.
	upMu sync.Mutex
	upCh chan struct{}
}

type rpcConn struct{ proto.StorageClient }

func newClient(timeout time.Duration) *Client {
	return &Client{upCh: make(chan struct{}), timeout: timeout}
}

// setConn installs (or, with nil, removes) the plugin connection.
func (c *Client) setConn(rpc proto.StorageClient) {
	if rpc == nil {
		c.conn.Store(nil)
		return
	}
	c.conn.Store(&rpcConn{rpc})
	c.upMu.Lock()
	close(c.upCh)
	c.upCh = make(chan struct{})
	c.upMu.Unlock()
}

func (c *Client) rpc() (proto.StorageClient, error) {
	if r := c.conn.Load(); r != nil {
		return r.StorageClient, nil
	}
	return nil, fmt.Errorf("storage plugin is down (restarting): %w", storage.ErrUnavailable)
}

// call invokes method with args, decoding the result into out (if not nil).
func (c *Client) call(ctx context.Context, method string, args, out any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rpc, err := c.rpc()
	if err != nil {
		return err
	}
	b, err := json.Marshal(args)
	if err != nil {
		return err
	}
	cctx, cancel := withCallTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := rpc.Call(cctx, &proto.CallRequest{Method: method, Args: b})
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case cctx.Err() != nil && (err != nil || resp.ErrorKind != ""):
		// Our own deadline, not the caller's: the plugin or its backend is
		// hung. Unavailable (fail closed, retry), not a client timeout.
		return fmt.Errorf("storage plugin: %s did not answer within %s: %w", method, c.timeout, storage.ErrUnavailable)
	case err != nil:
		return fmt.Errorf("storage plugin: %w: %v", storage.ErrUnavailable, err)
	}
	if resp.ErrorKind != "" {
		return fromWire(resp.ErrorKind, resp.ErrorMessage)
	}
	if out != nil {
		return json.Unmarshal(resp.Result, out)
	}
	return nil
}

func (c *Client) CreateWorkspace(ctx context.Context, args storage.CreateWorkspaceArgs) error {
	return c.call(ctx, "CreateWorkspace", args, nil)
}

func (c *Client) GetWorkspace(ctx context.Context, id string) (ws storage.Workspace, err error) {
	err = c.call(ctx, "GetWorkspace", idArgs{id}, &ws)
	return
}

func (c *Client) GetWorkspaceByName(ctx context.Context, name string) (ws storage.Workspace, err error) {
	err = c.call(ctx, "GetWorkspaceByName", idArgs{name}, &ws)
	return
}

func (c *Client) ListWorkspaces(ctx context.Context) (out []storage.Workspace, err error) {
	err = c.call(ctx, "ListWorkspaces", struct{}{}, &out)
	return
}

func (c *Client) CreateAPIKey(ctx context.Context, args storage.CreateAPIKeyArgs) error {
	return c.call(ctx, "CreateAPIKey", args, nil)
}

func (c *Client) GetAPIKey(ctx context.Context, id string) (k storage.APIKey, err error) {
	err = c.call(ctx, "GetAPIKey", idArgs{id}, &k)
	return
}

func (c *Client) ListAPIKeys(ctx context.Context, workspaceID string) (out []storage.APIKey, err error) {
	err = c.call(ctx, "ListAPIKeys", idArgs{workspaceID}, &out)
	return
}

func (c *Client) RevokeAPIKey(ctx context.Context, args storage.RevokeAPIKeyArgs) error {
	return c.call(ctx, "RevokeAPIKey", args, nil)
}

func (c *Client) ListKEKs(ctx context.Context) (out []storage.KEK, err error) {
	err = c.call(ctx, "ListKEKs", struct{}{}, &out)
	return
}

func (c *Client) AddKEK(ctx context.Context, args storage.AddKEKArgs) error {
	return c.call(ctx, "AddKEK", args, nil)
}

func (c *Client) DeleteKEK(ctx context.Context, id string) error {
	return c.call(ctx, "DeleteKEK", idArgs{id}, nil)
}

func (c *Client) CreateSecret(ctx context.Context, args storage.CreateSecretArgs) error {
	return c.call(ctx, "CreateSecret", args, nil)
}

func (c *Client) UpdateSecret(ctx context.Context, args storage.UpdateSecretArgs) error {
	return c.call(ctx, "UpdateSecret", args, nil)
}

func (c *Client) DeleteSecret(ctx context.Context, args storage.DeleteSecretArgs) error {
	return c.call(ctx, "DeleteSecret", args, nil)
}

func (c *Client) GetSecret(ctx context.Context, workspaceID, name string) (r storage.SecretRecord, err error) {
	err = c.call(ctx, "GetSecret", wsNameArgs{workspaceID, name}, &r)
	return
}

func (c *Client) ListSecrets(ctx context.Context, args storage.ListSecretsArgs) (out []storage.SecretMeta, err error) {
	err = c.call(ctx, "ListSecrets", args, &out)
	return
}

func (c *Client) ListSecretsByKEK(ctx context.Context, kekID string, limit int) (out []storage.SecretRecord, err error) {
	err = c.call(ctx, "ListSecretsByKEK", kekListArgs{kekID, limit}, &out)
	return
}

func (c *Client) AppendAudit(ctx context.Context, events []storage.AuditEvent) (out []storage.AuditAppended, err error) {
	err = c.call(ctx, "AppendAudit", events, &out)
	return
}

func (c *Client) ListAudit(ctx context.Context, q storage.AuditQuery) (p storage.AuditPage, err error) {
	err = c.call(ctx, "ListAudit", q, &p)
	return
}

func (c *Client) ListAuditAsc(ctx context.Context, r storage.AuditRange) (evs []storage.AuditEvent, err error) {
	err = c.call(ctx, "ListAuditAsc", r, &evs)
	return
}

func (c *Client) GetAuditHead(ctx context.Context, workspaceID string) (h storage.AuditHead, err error) {
	err = c.call(ctx, "GetAuditHead", idArgs{ID: workspaceID}, &h)
	return
}

func (c *Client) PutAuditCheckpoint(ctx context.Context, cp storage.AuditCheckpoint) error {
	return c.call(ctx, "PutAuditCheckpoint", cp, nil)
}

func (c *Client) GetAuditCheckpoint(ctx context.Context, workspaceID string) (cp storage.AuditCheckpoint, err error) {
	err = c.call(ctx, "GetAuditCheckpoint", idArgs{ID: workspaceID}, &cp)
	return
}

func (c *Client) CreateQueue(ctx context.Context, args storage.CreateQueueArgs) error {
	return c.call(ctx, "CreateQueue", args, nil)
}

func (c *Client) UpdateQueue(ctx context.Context, args storage.UpdateQueueArgs) error {
	return c.call(ctx, "UpdateQueue", args, nil)
}

func (c *Client) GetQueue(ctx context.Context, workspaceID, name string) (q storage.Queue, err error) {
	err = c.call(ctx, "GetQueue", wsNameArgs{workspaceID, name}, &q)
	return
}

func (c *Client) ListQueues(ctx context.Context, workspaceID string) (out []storage.Queue, err error) {
	err = c.call(ctx, "ListQueues", idArgs{workspaceID}, &out)
	return
}

func (c *Client) DeleteQueue(ctx context.Context, args storage.DeleteQueueArgs) error {
	return c.call(ctx, "DeleteQueue", args, nil)
}

func (c *Client) EnqueueJobs(ctx context.Context, args storage.EnqueueJobsArgs) (out []storage.EnqueueResult, err error) {
	err = c.call(ctx, "EnqueueJobs", args, &out)
	return
}

func (c *Client) GetJob(ctx context.Context, workspaceID, id string) (j storage.Job, err error) {
	err = c.call(ctx, "GetJob", wsIDArgs{workspaceID, id}, &j)
	return
}

func (c *Client) ListJobs(ctx context.Context, q storage.JobQuery) (p storage.JobPage, err error) {
	err = c.call(ctx, "ListJobs", q, &p)
	return
}

func (c *Client) LeaseJobs(ctx context.Context, args storage.LeaseJobsArgs) (out []storage.Job, err error) {
	err = c.call(ctx, "LeaseJobs", args, &out)
	return
}

func (c *Client) CompleteAttempts(ctx context.Context, results []storage.AttemptResult) error {
	return c.call(ctx, "CompleteAttempts", results, nil)
}

func (c *Client) CancelJob(ctx context.Context, workspaceID, id string, at time.Time) (j storage.Job, err error) {
	err = c.call(ctx, "CancelJob", cancelArgs{workspaceID, id, at}, &j)
	return
}

func (c *Client) RetryJobs(ctx context.Context, args storage.RetryJobsArgs) (n int, err error) {
	err = c.call(ctx, "RetryJobs", args, &n)
	return
}

func (c *Client) CountJobs(ctx context.Context) (out map[string]int, err error) {
	err = c.call(ctx, "CountJobs", struct{}{}, &out)
	return
}

// QueueStats (issue #12: metrics).
func (c *Client) QueueStats(ctx context.Context, now time.Time) (out []storage.QueueStat, err error) {
	err = c.call(ctx, "QueueStats", now, &out)
	return
}

// JobUsage (issue #12: quotas).
func (c *Client) JobUsage(ctx context.Context, workspaceID string) (u storage.JobUsage, err error) {
	err = c.call(ctx, "JobUsage", idArgs{workspaceID}, &u)
	return
}

// Changes streams the plugin's change notifications until ctx ends. When
// the plugin dies it waits for the restart, reports a keyring change (so
// caches drop everything they may have missed), and streams again.
func (c *Client) Changes(ctx context.Context, fn func(storage.Change)) error {
	for ctx.Err() == nil {
		c.upMu.Lock()
		up := c.upCh
		c.upMu.Unlock()
		rpc, err := c.rpc()
		if err != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-up:
				fn(storage.Change{Kind: storage.ChangeKeyring})
				continue
			}
		}
		err = c.stream(ctx, rpc, fn)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// The stream broke: the plugin died, or a backend reconnect.
			fn(storage.Change{Kind: storage.ChangeKeyring})
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func (c *Client) stream(ctx context.Context, rpc proto.StorageClient, fn func(storage.Change)) error {
	stream, err := rpc.Changes(ctx, &proto.ChangesRequest{})
	if err != nil {
		return err
	}
	for {
		ch, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		fn(storage.Change{Kind: ch.Kind, WorkspaceID: ch.WorkspaceId, Name: ch.Name})
	}
}

// Close ends the plugin process.
func (c *Client) Close() error {
	if c.closer != nil {
		c.closer()
	}
	return nil
}
