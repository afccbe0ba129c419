package plugins

import (
	"context"

	"rotor.sh/rotor/storage"
)

// The workflow methods go through the JSON tunnel (Call) until the typed
// protocol covers them: one method name each, args as their Go structs.

type createRunResult struct {
	Run      storage.WorkflowRun `json:"run"`
	Existing bool                `json:"existing"`
}

func (c *Client) PutWorkflow(ctx context.Context, args storage.PutWorkflowArgs) error {
	return c.call(ctx, "PutWorkflow", args, nil)
}

func (c *Client) GetWorkflow(ctx context.Context, workspaceID, name string) (w storage.Workflow, err error) {
	err = c.call(ctx, "GetWorkflow", wsNameArgs{workspaceID, name}, &w)
	return
}

func (c *Client) ListWorkflows(ctx context.Context, workspaceID string) (out []storage.Workflow, err error) {
	err = c.call(ctx, "ListWorkflows", idArgs{workspaceID}, &out)
	return
}

func (c *Client) DeleteWorkflow(ctx context.Context, args storage.DeleteWorkflowArgs) error {
	return c.call(ctx, "DeleteWorkflow", args, nil)
}

func (c *Client) CreateRun(ctx context.Context, args storage.CreateRunArgs) (storage.WorkflowRun, bool, error) {
	var res createRunResult
	err := c.call(ctx, "CreateRun", args, &res)
	return res.Run, res.Existing, err
}

func (c *Client) GetRun(ctx context.Context, workspaceID, id string) (r storage.WorkflowRun, err error) {
	err = c.call(ctx, "GetRun", wsIDArgs{workspaceID, id}, &r)
	return
}

func (c *Client) ListRuns(ctx context.Context, q storage.RunQuery) (p storage.RunPage, err error) {
	err = c.call(ctx, "ListRuns", q, &p)
	return
}

func (c *Client) LeaseRuns(ctx context.Context, args storage.LeaseRunsArgs) (out []storage.WorkflowRun, err error) {
	err = c.call(ctx, "LeaseRuns", args, &out)
	return
}

func (c *Client) CheckpointRun(ctx context.Context, args storage.CheckpointRunArgs) (r storage.WorkflowRun, err error) {
	err = c.call(ctx, "CheckpointRun", args, &r)
	return
}

func (c *Client) SignalRun(ctx context.Context, args storage.SignalRunArgs) (r storage.WorkflowRun, err error) {
	err = c.call(ctx, "SignalRun", args, &r)
	return
}

func (c *Client) CancelRun(ctx context.Context, args storage.CancelRunArgs) (r storage.WorkflowRun, err error) {
	err = c.call(ctx, "CancelRun", args, &r)
	return
}

func (c *Client) RetryRun(ctx context.Context, args storage.RetryRunArgs) (r storage.WorkflowRun, err error) {
	err = c.call(ctx, "RetryRun", args, &r)
	return
}

func (c *Client) CountRuns(ctx context.Context) (out map[string]int, err error) {
	err = c.call(ctx, "CountRuns", struct{}{}, &out)
	return
}

func (c *Client) PruneRuns(ctx context.Context, args storage.PruneRunsArgs) (n int, err error) {
	err = c.call(ctx, "PruneRuns", args, &n)
	return
}

// workflowHandlers are the plugin side, merged into handlers by init.
var workflowHandlers = map[string]handler{
	"PutWorkflow": e(storage.Store.PutWorkflow),
	"GetWorkflow": h(func(st storage.Store, ctx context.Context, a wsNameArgs) (storage.Workflow, error) {
		return st.GetWorkflow(ctx, a.WorkspaceID, a.Name)
	}),
	"ListWorkflows": h(func(st storage.Store, ctx context.Context, a idArgs) ([]storage.Workflow, error) {
		return st.ListWorkflows(ctx, a.ID)
	}),
	"DeleteWorkflow": e(storage.Store.DeleteWorkflow),
	"CreateRun": h(func(st storage.Store, ctx context.Context, a storage.CreateRunArgs) (createRunResult, error) {
		r, ex, err := st.CreateRun(ctx, a)
		return createRunResult{Run: r, Existing: ex}, err
	}),
	"GetRun": h(func(st storage.Store, ctx context.Context, a wsIDArgs) (storage.WorkflowRun, error) {
		return st.GetRun(ctx, a.WorkspaceID, a.ID)
	}),
	"ListRuns":      h(storage.Store.ListRuns),
	"LeaseRuns":     h(storage.Store.LeaseRuns),
	"CheckpointRun": h(storage.Store.CheckpointRun),
	"SignalRun":     h(storage.Store.SignalRun),
	"CancelRun":     h(storage.Store.CancelRun),
	"RetryRun":      h(storage.Store.RetryRun),
	"CountRuns": h(func(st storage.Store, ctx context.Context, _ struct{}) (map[string]int, error) {
		return st.CountRuns(ctx)
	}),
	"PruneRuns": h(storage.Store.PruneRuns),
}

func init() {
	for k, v := range workflowHandlers {
		handlers[k] = v
	}
}
