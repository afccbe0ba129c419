package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

var _ storage.Store = (*Client)(nil)

// Client is the host side: a storage.Store whose calls go to a plugin. Its
// connection is swapped by the supervisor when the plugin is restarted, and
// is nil (every call fails with storage.ErrUnavailable) while it is down.
type Client struct {
	conn atomic.Pointer[conn]
	// closer ends the plugin process (Close).
	closer func()
	// timeout bounds each call (see DefaultCallTimeout).
	timeout time.Duration
	// up is signalled when a new connection is installed.
	upMu sync.Mutex
	upCh chan struct{}
	// calls counts round trips per method (CallCounts): what one job or
	// request costs in plugin calls is tested, so it cannot grow unseen.
	calls sync.Map // method -> *atomic.Uint64
}

// CallCounts is how many calls of each method this client has made to the
// plugin (each a round trip; a split batch counts each part).
func (c *Client) CallCounts() map[string]uint64 {
	out := map[string]uint64{}
	c.calls.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

func (c *Client) count(method string) {
	v, ok := c.calls.Load(method)
	if !ok {
		v, _ = c.calls.LoadOrStore(method, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

// conn is one plugin process's connection: a client per service over the
// same gRPC connection, and what the plugin reported in Describe.
type conn struct {
	plugin     pb.PluginClient
	workspaces pb.WorkspacesClient
	secrets    pb.SecretsClient
	audit      pb.AuditClient
	jobs       pb.JobsClient
	retention  pb.RetentionClient
	changes    pb.ChangesClient
	workflows  pb.WorkflowsClient
	caps       map[pb.Capability]bool
	// grpc is the connection the clients use: the gRPC connection itself,
	// or a fastConn (unary calls over the fast-call socket).
	grpc grpc.ClientConnInterface
}

func newConn(cc grpc.ClientConnInterface) *conn {
	return &conn{grpc: cc,
		plugin: pb.NewPluginClient(cc), workspaces: pb.NewWorkspacesClient(cc), secrets: pb.NewSecretsClient(cc),
		audit: pb.NewAuditClient(cc), jobs: pb.NewJobsClient(cc), retention: pb.NewRetentionClient(cc), changes: pb.NewChangesClient(cc),
		workflows: pb.NewWorkflowsClient(cc),
	}
}

func newClient(timeout time.Duration) *Client {
	return &Client{upCh: make(chan struct{}), timeout: timeout}
}

// setConn installs (or, with nil, removes) the plugin connection.
func (c *Client) setConn(cc *conn) {
	if old := c.conn.Swap(cc); old != nil && old != cc {
		if f, ok := old.grpc.(*fastConn); ok {
			f.close()
		}
	}
	if cc == nil {
		return
	}
	c.upMu.Lock()
	close(c.upCh)
	c.upCh = make(chan struct{})
	c.upMu.Unlock()
}

func (c *Client) rpc() (*conn, error) {
	if r := c.conn.Load(); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("storage plugin is down (restarting): %w", storage.ErrUnavailable)
}

// need fails with errors.ErrUnsupported when the running plugin did not
// report an optional capability.
func (c *Client) need(cp pb.Capability, method string) error {
	cc, err := c.rpc()
	if err != nil {
		return err
	}
	if !cc.caps[cp] {
		return fmt.Errorf("storage plugin: %s needs capability %s, which this plugin does not report: %w", method, cp, errors.ErrUnsupported)
	}
	return nil
}

// call runs one RPC under the call timeout and maps its failure: the
// caller's own cancellation stays itself, our deadline and transport
// failures become storage.ErrUnavailable, a backend error gets its sentinel.
func call[R any](ctx context.Context, c *Client, method string, f func(context.Context, *conn) (*R, error)) (*R, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cc, err := c.rpc()
	if err != nil {
		return nil, err
	}
	cctx, cancel := withCallTimeout(ctx, c.timeout)
	defer cancel()
	c.count(method)
	r, err := f(cctx, cc)
	switch {
	case err == nil:
		return r, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case cctx.Err() != nil || ourDeadline(cctx, err):
		// Our own deadline, not the caller's: the plugin or its backend is
		// hung. Unavailable (fail closed, retry), not a client timeout.
		return nil, fmt.Errorf("storage plugin: %s did not answer within %s: %w", method, c.timeout, storage.ErrUnavailable)
	}
	return nil, fromStatus(method, err)
}

// ourDeadline: the plugin answered DeadlineExceeded at the deadline we
// sent it (its timer for it can fire and its answer arrive before ours
// has marked cctx done).
func ourDeadline(cctx context.Context, err error) bool {
	dl, ok := cctx.Deadline()
	return ok && status.Code(err) == codes.DeadlineExceeded && time.Until(dl) < time.Millisecond
}

// chunks calls f on consecutive pieces of n items of at most MaxBatch each
// (the protocol's limit), in order, stopping at the first error.
func chunks(n int, f func(lo, hi int) error) error {
	for lo := 0; lo < n || lo == 0; lo += MaxBatch {
		if err := f(lo, min(lo+MaxBatch, n)); err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	return nil
}

func (c *Client) CreateWorkspace(ctx context.Context, args storage.CreateWorkspaceArgs) error {
	req := &pb.CreateWorkspaceRequest{Workspace: workspaceToPB(args.Workspace), Audit: eventsToPB(args.Audit)}
	if args.AdminKey != nil {
		req.AdminKey = apiKeyToPB(*args.AdminKey)
	}
	_, err := call(ctx, c, "CreateWorkspace", func(ctx context.Context, cc *conn) (*pb.CreateWorkspaceResponse, error) {
		return cc.workspaces.CreateWorkspace(ctx, req)
	})
	return err
}

func (c *Client) GetWorkspace(ctx context.Context, id string) (storage.Workspace, error) {
	r, err := call(ctx, c, "GetWorkspace", func(ctx context.Context, cc *conn) (*pb.GetWorkspaceResponse, error) {
		return cc.workspaces.GetWorkspace(ctx, &pb.GetWorkspaceRequest{Id: id})
	})
	if err != nil {
		return storage.Workspace{}, err
	}
	return workspaceFromPB(r.Workspace), nil
}

func (c *Client) GetWorkspaceByName(ctx context.Context, name string) (storage.Workspace, error) {
	r, err := call(ctx, c, "GetWorkspaceByName", func(ctx context.Context, cc *conn) (*pb.GetWorkspaceResponse, error) {
		return cc.workspaces.GetWorkspaceByName(ctx, &pb.GetWorkspaceByNameRequest{Name: name})
	})
	if err != nil {
		return storage.Workspace{}, err
	}
	return workspaceFromPB(r.Workspace), nil
}

func (c *Client) ListWorkspaces(ctx context.Context) ([]storage.Workspace, error) {
	r, err := call(ctx, c, "ListWorkspaces", func(ctx context.Context, cc *conn) (*pb.ListWorkspacesResponse, error) {
		return cc.workspaces.ListWorkspaces(ctx, &pb.ListWorkspacesRequest{})
	})
	if err != nil || len(r.Workspaces) == 0 {
		return nil, err
	}
	out := make([]storage.Workspace, len(r.Workspaces))
	for i, w := range r.Workspaces {
		out[i] = workspaceFromPB(w)
	}
	return out, nil
}

func (c *Client) CreateAPIKey(ctx context.Context, args storage.CreateAPIKeyArgs) error {
	_, err := call(ctx, c, "CreateAPIKey", func(ctx context.Context, cc *conn) (*pb.CreateAPIKeyResponse, error) {
		return cc.workspaces.CreateAPIKey(ctx, &pb.CreateAPIKeyRequest{Key: apiKeyToPB(args.Key), Audit: eventsToPB(args.Audit)})
	})
	return err
}

func (c *Client) GetAPIKey(ctx context.Context, id string) (storage.APIKey, error) {
	r, err := call(ctx, c, "GetAPIKey", func(ctx context.Context, cc *conn) (*pb.GetAPIKeyResponse, error) {
		return cc.workspaces.GetAPIKey(ctx, &pb.GetAPIKeyRequest{Id: id})
	})
	if err != nil {
		return storage.APIKey{}, err
	}
	return apiKeyFromPB(r.Key), nil
}

func (c *Client) ListAPIKeys(ctx context.Context, workspaceID string) ([]storage.APIKey, error) {
	r, err := call(ctx, c, "ListAPIKeys", func(ctx context.Context, cc *conn) (*pb.ListAPIKeysResponse, error) {
		return cc.workspaces.ListAPIKeys(ctx, &pb.ListAPIKeysRequest{WorkspaceId: workspaceID})
	})
	if err != nil || len(r.Keys) == 0 {
		return nil, err
	}
	out := make([]storage.APIKey, len(r.Keys))
	for i, k := range r.Keys {
		out[i] = apiKeyFromPB(k)
	}
	return out, nil
}

func (c *Client) RevokeAPIKey(ctx context.Context, args storage.RevokeAPIKeyArgs) error {
	_, err := call(ctx, c, "RevokeAPIKey", func(ctx context.Context, cc *conn) (*pb.RevokeAPIKeyResponse, error) {
		return cc.workspaces.RevokeAPIKey(ctx, &pb.RevokeAPIKeyRequest{WorkspaceId: args.WorkspaceID, Id: args.ID, At: ts(args.At), Audit: eventsToPB(args.Audit)})
	})
	return err
}

func (c *Client) ListKEKs(ctx context.Context) ([]storage.KEK, error) {
	r, err := call(ctx, c, "ListKEKs", func(ctx context.Context, cc *conn) (*pb.ListKEKsResponse, error) {
		return cc.secrets.ListKEKs(ctx, &pb.ListKEKsRequest{})
	})
	if err != nil || len(r.Keks) == 0 {
		return nil, err
	}
	out := make([]storage.KEK, len(r.Keks))
	for i, k := range r.Keks {
		out[i] = kekFromPB(k)
	}
	return out, nil
}

func (c *Client) AddKEK(ctx context.Context, args storage.AddKEKArgs) error {
	_, err := call(ctx, c, "AddKEK", func(ctx context.Context, cc *conn) (*pb.AddKEKResponse, error) {
		return cc.secrets.AddKEK(ctx, &pb.AddKEKRequest{Kek: kekToPB(args.KEK)})
	})
	return err
}

func (c *Client) DeleteKEK(ctx context.Context, id string) error {
	_, err := call(ctx, c, "DeleteKEK", func(ctx context.Context, cc *conn) (*pb.DeleteKEKResponse, error) {
		return cc.secrets.DeleteKEK(ctx, &pb.DeleteKEKRequest{Id: id})
	})
	return err
}

func (c *Client) CreateSecret(ctx context.Context, args storage.CreateSecretArgs) error {
	_, err := call(ctx, c, "CreateSecret", func(ctx context.Context, cc *conn) (*pb.CreateSecretResponse, error) {
		return cc.secrets.CreateSecret(ctx, &pb.CreateSecretRequest{Secret: secretToPB(args.Secret), Audit: eventsToPB(args.Audit)})
	})
	return err
}

func (c *Client) UpdateSecret(ctx context.Context, args storage.UpdateSecretArgs) error {
	_, err := call(ctx, c, "UpdateSecret", func(ctx context.Context, cc *conn) (*pb.UpdateSecretResponse, error) {
		return cc.secrets.UpdateSecret(ctx, &pb.UpdateSecretRequest{Secret: secretToPB(args.Secret), ExpectedRevision: args.ExpectedRevision, Audit: eventsToPB(args.Audit)})
	})
	return err
}

func (c *Client) DeleteSecret(ctx context.Context, args storage.DeleteSecretArgs) error {
	_, err := call(ctx, c, "DeleteSecret", func(ctx context.Context, cc *conn) (*pb.DeleteSecretResponse, error) {
		return cc.secrets.DeleteSecret(ctx, &pb.DeleteSecretRequest{WorkspaceId: args.WorkspaceID, Name: args.Name, Audit: eventsToPB(args.Audit)})
	})
	return err
}

func (c *Client) GetSecret(ctx context.Context, workspaceID, name string) (storage.SecretRecord, error) {
	r, err := call(ctx, c, "GetSecret", func(ctx context.Context, cc *conn) (*pb.GetSecretResponse, error) {
		return cc.secrets.GetSecret(ctx, &pb.GetSecretRequest{WorkspaceId: workspaceID, Name: name})
	})
	if err != nil {
		return storage.SecretRecord{}, err
	}
	return secretFromPB(r.Secret), nil
}

func (c *Client) ListSecrets(ctx context.Context, args storage.ListSecretsArgs) ([]storage.SecretMeta, error) {
	r, err := call(ctx, c, "ListSecrets", func(ctx context.Context, cc *conn) (*pb.ListSecretsResponse, error) {
		return cc.secrets.ListSecrets(ctx, &pb.ListSecretsRequest{WorkspaceId: args.WorkspaceID})
	})
	if err != nil || len(r.Secrets) == 0 {
		return nil, err
	}
	out := make([]storage.SecretMeta, len(r.Secrets))
	for i, m := range r.Secrets {
		out[i] = metaFromPB(m)
	}
	return out, nil
}

// ListSecretsByKEK asks for at most MaxBatch records, also when limit is
// 0 ("all" in-process): the caller (key rotation) re-seals what it got and
// asks again until none are left, so a smaller page is only a shorter step.
func (c *Client) ListSecretsByKEK(ctx context.Context, kekID string, limit int) ([]storage.SecretRecord, error) {
	if limit <= 0 || limit > MaxBatch {
		limit = MaxBatch
	}
	r, err := call(ctx, c, "ListSecretsByKEK", func(ctx context.Context, cc *conn) (*pb.ListSecretsByKEKResponse, error) {
		return cc.secrets.ListSecretsByKEK(ctx, &pb.ListSecretsByKEKRequest{KekId: kekID, Limit: int64(limit)})
	})
	if err != nil || len(r.Secrets) == 0 {
		return nil, err
	}
	out := make([]storage.SecretRecord, len(r.Secrets))
	for i, s := range r.Secrets {
		out[i] = secretFromPB(s)
	}
	return out, nil
}

// AppendAudit sends events in one call: one transaction, so a batch above
// MaxBatch rows is refused before it is sent (the vault's writer sends at
// most 4,096).
func (c *Client) AppendAudit(ctx context.Context, events []storage.AuditEvent) ([]storage.AuditAppended, error) {
	return c.appendAudit(ctx, events, false)
}

// RetryAppendAudit is AppendAudit with the request's retry flag set: the
// plugin skips the rows its earlier attempt already stored.
func (c *Client) RetryAppendAudit(ctx context.Context, events []storage.AuditEvent) ([]storage.AuditAppended, error) {
	return c.appendAudit(ctx, events, true)
}

func (c *Client) appendAudit(ctx context.Context, events []storage.AuditEvent, retry bool) ([]storage.AuditAppended, error) {
	if err := oneCall("AppendAudit", "audit events", len(events)); err != nil {
		return nil, err
	}
	r, err := call(ctx, c, "AppendAudit", func(ctx context.Context, cc *conn) (*pb.AppendAuditResponse, error) {
		req := &pb.AppendAuditRequest{Retry: retry}
		if cc.caps[pb.Capability_AUDIT_ROWS] && len(events) > 0 {
			// One bytes field instead of a message per row (auditrows.go),
			// in a pooled buffer: the request is marshaled by the time the
			// call returns.
			bp := rowsBufs.Get().(*[]byte)
			req.Rows = appendAuditRows(slices.Grow((*bp)[:0], auditRowsSize(events)), events)
			defer func() {
				if cap(req.Rows) <= maxPooledRows {
					*bp = req.Rows[:0]
					rowsBufs.Put(bp)
				}
			}()
		} else {
			req.Events = eventsToPB(events)
		}
		return cc.audit.AppendAudit(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	return appendedFromPB(r.Appended), nil
}

// rowsBufs holds AppendAudit's rows buffers (a batch of 2,000 access rows
// is about 500 KB); larger ones are not kept.
var rowsBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledRows = 2 << 20

// oneCall refuses a batch that must stay one transaction (all or nothing)
// but is above the protocol's limit.
func oneCall(method, what string, n int) error {
	if n > MaxBatch {
		return fmt.Errorf("storage plugin: %s of %d %s exceeds the protocol's limit of %d per call (one transaction); send it in parts: %w", method, n, what, MaxBatch, errInvalid)
	}
	return nil
}

func (c *Client) ListAudit(ctx context.Context, q storage.AuditQuery) (storage.AuditPage, error) {
	r, err := call(ctx, c, "ListAudit", func(ctx context.Context, cc *conn) (*pb.ListAuditResponse, error) {
		return cc.audit.ListAudit(ctx, &pb.ListAuditRequest{WorkspaceId: q.WorkspaceID, ResourceType: q.ResourceType, EventType: q.EventType,
			ResourceId: q.ResourceID, Since: ts(q.Since), Before: q.Before, Limit: int64(min(q.Limit, MaxBatch))})
	})
	if err != nil {
		return storage.AuditPage{}, err
	}
	return storage.AuditPage{Events: eventsFromPB(r.Events), Next: r.Next}, nil
}

// ListAuditAsc pages through the plugin in calls of at most MaxBatch rows
// until it has limit rows or the trail ends.
func (c *Client) ListAuditAsc(ctx context.Context, q storage.AuditRange) ([]storage.AuditEvent, error) {
	var out []storage.AuditEvent
	after := q.AfterID
	for want := q.Limit; want > 0; {
		n := min(want, MaxBatch)
		r, err := call(ctx, c, "ListAuditAsc", func(ctx context.Context, cc *conn) (*pb.ListAuditAscResponse, error) {
			return cc.audit.ListAuditAsc(ctx, &pb.ListAuditAscRequest{WorkspaceId: q.WorkspaceID, AfterId: after, Limit: int64(n)})
		})
		if err != nil {
			return nil, err
		}
		page := eventsFromPB(r.Events)
		if out == nil {
			out = page
		} else {
			out = append(out, page...)
		}
		if len(page) < n {
			break
		}
		want -= len(page)
		after = page[len(page)-1].ID
	}
	return out, nil
}

func (c *Client) GetAuditHead(ctx context.Context, workspaceID string) (storage.AuditHead, error) {
	r, err := call(ctx, c, "GetAuditHead", func(ctx context.Context, cc *conn) (*pb.GetAuditHeadResponse, error) {
		return cc.audit.GetAuditHead(ctx, &pb.GetAuditHeadRequest{WorkspaceId: workspaceID})
	})
	if err != nil {
		return storage.AuditHead{}, err
	}
	return headFromPB(r.Head), nil
}

func (c *Client) PutAuditCheckpoint(ctx context.Context, cp storage.AuditCheckpoint) error {
	_, err := call(ctx, c, "PutAuditCheckpoint", func(ctx context.Context, cc *conn) (*pb.PutAuditCheckpointResponse, error) {
		return cc.audit.PutAuditCheckpoint(ctx, &pb.PutAuditCheckpointRequest{Checkpoint: checkpointToPB(cp)})
	})
	return err
}

func (c *Client) GetAuditCheckpoint(ctx context.Context, workspaceID string) (storage.AuditCheckpoint, error) {
	r, err := call(ctx, c, "GetAuditCheckpoint", func(ctx context.Context, cc *conn) (*pb.GetAuditCheckpointResponse, error) {
		return cc.audit.GetAuditCheckpoint(ctx, &pb.GetAuditCheckpointRequest{WorkspaceId: workspaceID})
	})
	if err != nil {
		return storage.AuditCheckpoint{}, err
	}
	return checkpointFromPB(r.Checkpoint), nil
}

func (c *Client) CreateQueue(ctx context.Context, args storage.CreateQueueArgs) error {
	_, err := call(ctx, c, "CreateQueue", func(ctx context.Context, cc *conn) (*pb.CreateQueueResponse, error) {
		return cc.jobs.CreateQueue(ctx, &pb.CreateQueueRequest{Queue: queueToPB(args.Queue), Audit: eventsToPB(args.Audit)})
	})
	return err
}

func (c *Client) UpdateQueue(ctx context.Context, args storage.UpdateQueueArgs) error {
	_, err := call(ctx, c, "UpdateQueue", func(ctx context.Context, cc *conn) (*pb.UpdateQueueResponse, error) {
		return cc.jobs.UpdateQueue(ctx, &pb.UpdateQueueRequest{Queue: queueToPB(args.Queue), ExpectedRevision: args.ExpectedRevision, Audit: eventsToPB(args.Audit)})
	})
	return err
}

func (c *Client) GetQueue(ctx context.Context, workspaceID, name string) (storage.Queue, error) {
	r, err := call(ctx, c, "GetQueue", func(ctx context.Context, cc *conn) (*pb.GetQueueResponse, error) {
		return cc.jobs.GetQueue(ctx, &pb.GetQueueRequest{WorkspaceId: workspaceID, Name: name})
	})
	if err != nil {
		return storage.Queue{}, err
	}
	return queueFromPB(r.Queue), nil
}

func (c *Client) ListQueues(ctx context.Context, workspaceID string) ([]storage.Queue, error) {
	r, err := call(ctx, c, "ListQueues", func(ctx context.Context, cc *conn) (*pb.ListQueuesResponse, error) {
		return cc.jobs.ListQueues(ctx, &pb.ListQueuesRequest{WorkspaceId: workspaceID})
	})
	if err != nil || len(r.Queues) == 0 {
		return nil, err
	}
	out := make([]storage.Queue, len(r.Queues))
	for i, q := range r.Queues {
		out[i] = queueFromPB(q)
	}
	return out, nil
}

func (c *Client) DeleteQueue(ctx context.Context, args storage.DeleteQueueArgs) error {
	_, err := call(ctx, c, "DeleteQueue", func(ctx context.Context, cc *conn) (*pb.DeleteQueueResponse, error) {
		return cc.jobs.DeleteQueue(ctx, &pb.DeleteQueueRequest{WorkspaceId: args.WorkspaceID, Name: args.Name, At: ts(args.At), Audit: eventsToPB(args.Audit)})
	})
	return err
}

// EnqueueJobs sends the jobs in one call: all or nothing, so a batch above
// MaxBatch jobs is refused before it is sent (the dispatch service groups
// at most 256).
func (c *Client) EnqueueJobs(ctx context.Context, args storage.EnqueueJobsArgs) ([]storage.EnqueueResult, error) {
	if err := oneCall("EnqueueJobs", "jobs", len(args.Jobs)); err != nil {
		return nil, err
	}
	r, err := call(ctx, c, "EnqueueJobs", func(ctx context.Context, cc *conn) (*pb.EnqueueJobsResponse, error) {
		return cc.jobs.EnqueueJobs(ctx, &pb.EnqueueJobsRequest{Jobs: jobsToPB(args.Jobs), Now: ts(args.Now)})
	})
	if err != nil {
		return nil, err
	}
	out := make([]storage.EnqueueResult, len(r.Results))
	for i, e := range r.Results {
		out[i] = storage.EnqueueResult{Job: jobFromPB(e.Job), Existing: e.Existing}
	}
	return out, nil
}

func (c *Client) GetJob(ctx context.Context, workspaceID, id string) (storage.Job, error) {
	r, err := call(ctx, c, "GetJob", func(ctx context.Context, cc *conn) (*pb.GetJobResponse, error) {
		return cc.jobs.GetJob(ctx, &pb.GetJobRequest{WorkspaceId: workspaceID, Id: id})
	})
	if err != nil {
		return storage.Job{}, err
	}
	return jobFromPB(r.Job), nil
}

func (c *Client) ListJobs(ctx context.Context, q storage.JobQuery) (storage.JobPage, error) {
	r, err := call(ctx, c, "ListJobs", func(ctx context.Context, cc *conn) (*pb.ListJobsResponse, error) {
		return cc.jobs.ListJobs(ctx, &pb.ListJobsRequest{WorkspaceId: q.WorkspaceID, Queue: q.Queue, Status: q.Status, Before: q.Before, Limit: int64(min(q.Limit, MaxBatch))})
	})
	if err != nil {
		return storage.JobPage{}, err
	}
	return storage.JobPage{Jobs: jobsFromPB(r.Jobs), Next: r.Next}, nil
}

// LeaseJobs leases at most MaxBatch jobs per call ("up to Limit").
func (c *Client) LeaseJobs(ctx context.Context, args storage.LeaseJobsArgs) ([]storage.Job, error) {
	r, err := call(ctx, c, "LeaseJobs", func(ctx context.Context, cc *conn) (*pb.LeaseJobsResponse, error) {
		return cc.jobs.LeaseJobs(ctx, &pb.LeaseJobsRequest{Now: ts(args.Now), Limit: int64(min(args.Limit, MaxBatch)), Visibility: int64(args.Visibility),
			Slots: intMapToPB(args.Slots), WorkspaceSlots: intMapToPB(args.WorkspaceSlots)})
	})
	if err != nil {
		return nil, err
	}
	return jobsFromPB(r.Jobs), nil
}

// CompleteAttempts sends at most MaxBatch results per call: each result
// stands alone (fenced by its lease token), so a larger batch is split.
func (c *Client) CompleteAttempts(ctx context.Context, results []storage.AttemptResult) error {
	return chunks(len(results), func(lo, hi int) error {
		req := &pb.CompleteAttemptsRequest{Results: make([]*pb.AttemptResult, hi-lo)}
		for i, r := range results[lo:hi] {
			req.Results[i] = resultToPB(r)
		}
		_, err := call(ctx, c, "CompleteAttempts", func(ctx context.Context, cc *conn) (*pb.CompleteAttemptsResponse, error) {
			return cc.jobs.CompleteAttempts(ctx, req)
		})
		return err
	})
}

func (c *Client) CancelJob(ctx context.Context, workspaceID, id string, at time.Time) (storage.Job, error) {
	r, err := call(ctx, c, "CancelJob", func(ctx context.Context, cc *conn) (*pb.CancelJobResponse, error) {
		return cc.jobs.CancelJob(ctx, &pb.CancelJobRequest{WorkspaceId: workspaceID, Id: id, At: ts(at)})
	})
	if err != nil {
		return storage.Job{}, err
	}
	return jobFromPB(r.Job), nil
}

func (c *Client) RetryJobs(ctx context.Context, args storage.RetryJobsArgs) (int, error) {
	r, err := call(ctx, c, "RetryJobs", func(ctx context.Context, cc *conn) (*pb.RetryJobsResponse, error) {
		return cc.jobs.RetryJobs(ctx, &pb.RetryJobsRequest{WorkspaceId: args.WorkspaceID, Queue: args.Queue, Id: args.ID, At: ts(args.At)})
	})
	if err != nil {
		return 0, err
	}
	return int(r.Count), nil
}

func (c *Client) CountJobs(ctx context.Context) (map[string]int, error) {
	r, err := call(ctx, c, "CountJobs", func(ctx context.Context, cc *conn) (*pb.CountJobsResponse, error) {
		return cc.jobs.CountJobs(ctx, &pb.CountJobsRequest{})
	})
	if err != nil {
		return nil, err
	}
	out := intMapFromPB(r.ByStatus)
	if out == nil {
		out = map[string]int{}
	}
	return out, nil
}

// QueueStats (issue #12: metrics).
func (c *Client) QueueStats(ctx context.Context, now time.Time) ([]storage.QueueStat, error) {
	r, err := call(ctx, c, "QueueStats", func(ctx context.Context, cc *conn) (*pb.QueueStatsResponse, error) {
		return cc.jobs.QueueStats(ctx, &pb.QueueStatsRequest{Now: ts(now)})
	})
	if err != nil || len(r.Stats) == 0 {
		return nil, err
	}
	out := make([]storage.QueueStat, len(r.Stats))
	for i, q := range r.Stats {
		out[i] = storage.QueueStat{WorkspaceID: q.WorkspaceId, Queue: q.Queue, Ready: int(q.Ready), OldestReady: tm(q.OldestReady), Running: int(q.Running)}
	}
	return out, nil
}

// JobUsage (issue #12: quotas).
func (c *Client) JobUsage(ctx context.Context, workspaceID string) (storage.JobUsage, error) {
	r, err := call(ctx, c, "JobUsage", func(ctx context.Context, cc *conn) (*pb.JobUsageResponse, error) {
		return cc.jobs.JobUsage(ctx, &pb.JobUsageRequest{WorkspaceId: workspaceID})
	})
	if err != nil {
		return storage.JobUsage{}, err
	}
	return storage.JobUsage{OpenJobs: int(r.OpenJobs), PayloadBytes: r.PayloadBytes}, nil
}

// Changes streams the plugin's change notifications until ctx ends. When
// the plugin dies it waits for the restart, reports a keyring change (so
// caches drop everything they may have missed), and streams again.
func (c *Client) Changes(ctx context.Context, fn func(storage.Change)) error {
	for ctx.Err() == nil {
		c.upMu.Lock()
		up := c.upCh
		c.upMu.Unlock()
		cc, err := c.rpc()
		if err != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-up:
				fn(storage.Change{Kind: storage.ChangeKeyring})
				continue
			}
		}
		err = c.stream(ctx, cc, fn)
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

func (c *Client) stream(ctx context.Context, cc *conn, fn func(storage.Change)) error {
	stream, err := cc.changes.Watch(ctx, &pb.WatchRequest{})
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
