package plugins

import (
	"context"
	"time"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

// The Workflows service (capability WORKFLOWS, required since
// storage.Store includes storage.WorkflowStore): Client's methods on the
// host side, Server's on the plugin side.

var _ storage.WorkflowStore = (*Client)(nil)

func workflowToPB(w storage.Workflow) *pb.Workflow {
	return &pb.Workflow{WorkspaceId: w.WorkspaceID, Name: w.Name, Version: w.Version, Definition: w.Definition, CreatedAt: ts(w.CreatedAt), UpdatedAt: ts(w.UpdatedAt)}
}

func workflowFromPB(w *pb.Workflow) storage.Workflow {
	if w == nil {
		return storage.Workflow{}
	}
	return storage.Workflow{WorkspaceID: w.WorkspaceId, Name: w.Name, Version: w.Version, Definition: raw(w.Definition), CreatedAt: tm(w.CreatedAt), UpdatedAt: tm(w.UpdatedAt)}
}

func runToPB(r storage.WorkflowRun) *pb.WorkflowRun {
	m := &pb.WorkflowRun{Id: r.ID, WorkspaceId: r.WorkspaceID, Workflow: r.Workflow, Version: r.Version, Definition: r.Definition, Input: r.Input,
		IdempotencyKey: r.IdempotencyKey, Status: r.Status, Step: int64(r.Step), WakeAt: ts(r.WakeAt), WaitingFor: r.WaitingFor,
		LeaseOwner: r.LeaseOwner, LeaseUntil: ts(r.LeaseUntil), LeaseToken: r.LeaseToken, Leases: int64(r.Leases), ErrorCode: r.ErrorCode,
		StartedBy: r.StartedBy, CreatedAt: ts(r.CreatedAt), UpdatedAt: ts(r.UpdatedAt), FinishedAt: ts(r.FinishedAt)}
	if len(r.Steps) > 0 {
		m.Steps = make([]*pb.StepState, len(r.Steps))
		for i, s := range r.Steps {
			st := &pb.StepState{Id: s.ID, Status: s.Status, RetryFrom: int64(s.RetryFrom), Output: s.Output, OutputTruncated: s.OutputTruncated,
				ErrorCode: s.ErrorCode, StartedAt: ts(s.StartedAt), FinishedAt: ts(s.FinishedAt)}
			for _, a := range s.Attempts {
				st.Attempts = append(st.Attempts, attemptToPB(a))
			}
			m.Steps[i] = st
		}
	}
	if len(r.Signals) > 0 {
		m.Signals = make([]*pb.RunSignal, len(r.Signals))
		for i, s := range r.Signals {
			m.Signals[i] = signalToPB(s)
		}
	}
	return m
}

func signalToPB(s storage.RunSignal) *pb.RunSignal {
	return &pb.RunSignal{Name: s.Name, Data: s.Data, SentBy: s.SentBy, ReceivedAt: ts(s.ReceivedAt), UsedBy: s.UsedBy}
}

func signalFromPB(s *pb.RunSignal) storage.RunSignal {
	if s == nil {
		return storage.RunSignal{}
	}
	return storage.RunSignal{Name: s.Name, Data: raw(s.Data), SentBy: s.SentBy, ReceivedAt: tm(s.ReceivedAt), UsedBy: s.UsedBy}
}

func runFromPB(r *pb.WorkflowRun) storage.WorkflowRun {
	if r == nil {
		return storage.WorkflowRun{}
	}
	out := storage.WorkflowRun{ID: r.Id, WorkspaceID: r.WorkspaceId, Workflow: r.Workflow, Version: r.Version, Definition: raw(r.Definition), Input: raw(r.Input),
		IdempotencyKey: r.IdempotencyKey, Status: r.Status, Step: int(r.Step), WakeAt: tm(r.WakeAt), WaitingFor: r.WaitingFor,
		LeaseOwner: r.LeaseOwner, LeaseUntil: tm(r.LeaseUntil), LeaseToken: r.LeaseToken, Leases: int(r.Leases), ErrorCode: r.ErrorCode,
		StartedBy: r.StartedBy, CreatedAt: tm(r.CreatedAt), UpdatedAt: tm(r.UpdatedAt), FinishedAt: tm(r.FinishedAt)}
	if len(r.Steps) > 0 {
		out.Steps = make([]storage.StepState, len(r.Steps))
		for i, s := range r.Steps {
			st := storage.StepState{ID: s.Id, Status: s.Status, RetryFrom: int(s.RetryFrom), Output: raw(s.Output), OutputTruncated: s.OutputTruncated,
				ErrorCode: s.ErrorCode, StartedAt: tm(s.StartedAt), FinishedAt: tm(s.FinishedAt)}
			for _, a := range s.Attempts {
				st.Attempts = append(st.Attempts, attemptFromPB(a))
			}
			out.Steps[i] = st
		}
	}
	if len(r.Signals) > 0 {
		out.Signals = make([]storage.RunSignal, len(r.Signals))
		for i, s := range r.Signals {
			out.Signals[i] = signalFromPB(s)
		}
	}
	return out
}

func runsFromPB(rs []*pb.WorkflowRun) []storage.WorkflowRun {
	if len(rs) == 0 {
		return nil
	}
	out := make([]storage.WorkflowRun, len(rs))
	for i, r := range rs {
		out[i] = runFromPB(r)
	}
	return out
}

func runsToPB(rs []storage.WorkflowRun) []*pb.WorkflowRun {
	if len(rs) == 0 {
		return nil
	}
	out := make([]*pb.WorkflowRun, len(rs))
	for i, r := range rs {
		out[i] = runToPB(r)
	}
	return out
}

// wcall is call for a Workflows RPC.
func wcall[R any](ctx context.Context, c *Client, method string, f func(context.Context, pb.WorkflowsClient) (*R, error)) (*R, error) {
	return call(ctx, c, method, func(ctx context.Context, cc *conn) (*R, error) { return f(ctx, cc.workflows) })
}

func (c *Client) PutWorkflow(ctx context.Context, args storage.PutWorkflowArgs) error {
	_, err := wcall(ctx, c, "PutWorkflow", func(ctx context.Context, w pb.WorkflowsClient) (*pb.PutWorkflowResponse, error) {
		return w.PutWorkflow(ctx, &pb.PutWorkflowRequest{Workflow: workflowToPB(args.Workflow), ExpectedVersion: args.ExpectedVersion, Audit: eventsToPB(args.Audit)})
	})
	return err
}

func (c *Client) GetWorkflow(ctx context.Context, workspaceID, name string) (storage.Workflow, error) {
	r, err := wcall(ctx, c, "GetWorkflow", func(ctx context.Context, w pb.WorkflowsClient) (*pb.GetWorkflowResponse, error) {
		return w.GetWorkflow(ctx, &pb.GetWorkflowRequest{WorkspaceId: workspaceID, Name: name})
	})
	if err != nil {
		return storage.Workflow{}, err
	}
	return workflowFromPB(r.Workflow), nil
}

func (c *Client) ListWorkflows(ctx context.Context, workspaceID string) ([]storage.Workflow, error) {
	r, err := wcall(ctx, c, "ListWorkflows", func(ctx context.Context, w pb.WorkflowsClient) (*pb.ListWorkflowsResponse, error) {
		return w.ListWorkflows(ctx, &pb.ListWorkflowsRequest{WorkspaceId: workspaceID})
	})
	if err != nil {
		return nil, err
	}
	// Empty, not nil, as the backends answer (the protocol cannot tell
	// the two apart; the API lists them as []).
	out := make([]storage.Workflow, len(r.Workflows))
	for i, w := range r.Workflows {
		out[i] = workflowFromPB(w)
	}
	return out, nil
}

func (c *Client) DeleteWorkflow(ctx context.Context, args storage.DeleteWorkflowArgs) error {
	_, err := wcall(ctx, c, "DeleteWorkflow", func(ctx context.Context, w pb.WorkflowsClient) (*pb.DeleteWorkflowResponse, error) {
		return w.DeleteWorkflow(ctx, &pb.DeleteWorkflowRequest{WorkspaceId: args.WorkspaceID, Name: args.Name, At: ts(args.At), Audit: eventsToPB(args.Audit)})
	})
	return err
}

func (c *Client) CreateRun(ctx context.Context, args storage.CreateRunArgs) (storage.WorkflowRun, bool, error) {
	r, err := wcall(ctx, c, "CreateRun", func(ctx context.Context, w pb.WorkflowsClient) (*pb.CreateRunResponse, error) {
		return w.CreateRun(ctx, &pb.CreateRunRequest{Run: runToPB(args.Run), Now: ts(args.Now), Audit: eventsToPB(args.Audit)})
	})
	if err != nil {
		return storage.WorkflowRun{}, false, err
	}
	return runFromPB(r.Run), r.Existing, nil
}

func (c *Client) GetRun(ctx context.Context, workspaceID, id string) (storage.WorkflowRun, error) {
	r, err := wcall(ctx, c, "GetRun", func(ctx context.Context, w pb.WorkflowsClient) (*pb.GetRunResponse, error) {
		return w.GetRun(ctx, &pb.GetRunRequest{WorkspaceId: workspaceID, Id: id})
	})
	if err != nil {
		return storage.WorkflowRun{}, err
	}
	return runFromPB(r.Run), nil
}

func (c *Client) ListRuns(ctx context.Context, q storage.RunQuery) (storage.RunPage, error) {
	r, err := wcall(ctx, c, "ListRuns", func(ctx context.Context, w pb.WorkflowsClient) (*pb.ListRunsResponse, error) {
		return w.ListRuns(ctx, &pb.ListRunsRequest{WorkspaceId: q.WorkspaceID, Workflow: q.Workflow, Status: q.Status, Before: q.Before, Limit: int64(min(q.Limit, MaxBatch))})
	})
	if err != nil {
		return storage.RunPage{}, err
	}
	runs := runsFromPB(r.Runs)
	if runs == nil {
		runs = []storage.WorkflowRun{} // empty, not nil, as the backends answer
	}
	return storage.RunPage{Runs: runs, Next: r.Next}, nil
}

func (c *Client) LeaseRuns(ctx context.Context, args storage.LeaseRunsArgs) ([]storage.WorkflowRun, error) {
	r, err := wcall(ctx, c, "LeaseRuns", func(ctx context.Context, w pb.WorkflowsClient) (*pb.LeaseRunsResponse, error) {
		return w.LeaseRuns(ctx, &pb.LeaseRunsRequest{Owner: args.Owner, Now: ts(args.Now), Limit: int64(min(args.Limit, MaxBatch)),
			Visibility: int64(args.Visibility), WorkspaceSlots: intMapToPB(args.WorkspaceSlots)})
	})
	if err != nil {
		return nil, err
	}
	return runsFromPB(r.Runs), nil
}

func (c *Client) CheckpointRun(ctx context.Context, args storage.CheckpointRunArgs) (storage.WorkflowRun, error) {
	r, err := wcall(ctx, c, "CheckpointRun", func(ctx context.Context, w pb.WorkflowsClient) (*pb.CheckpointRunResponse, error) {
		return w.CheckpointRun(ctx, &pb.CheckpointRunRequest{Run: runToPB(args.Run), LeaseUntil: ts(args.LeaseUntil), Release: args.Release, At: ts(args.At), Audit: eventsToPB(args.Audit)})
	})
	if err != nil {
		return storage.WorkflowRun{}, err
	}
	return runFromPB(r.Run), nil
}

func (c *Client) SignalRun(ctx context.Context, args storage.SignalRunArgs) (storage.WorkflowRun, error) {
	r, err := wcall(ctx, c, "SignalRun", func(ctx context.Context, w pb.WorkflowsClient) (*pb.SignalRunResponse, error) {
		return w.SignalRun(ctx, &pb.SignalRunRequest{WorkspaceId: args.WorkspaceID, RunId: args.RunID, Signal: signalToPB(args.Signal), Now: ts(args.Now), Audit: eventsToPB(args.Audit)})
	})
	if err != nil {
		return storage.WorkflowRun{}, err
	}
	return runFromPB(r.Run), nil
}

func (c *Client) CancelRun(ctx context.Context, args storage.CancelRunArgs) (storage.WorkflowRun, error) {
	r, err := wcall(ctx, c, "CancelRun", func(ctx context.Context, w pb.WorkflowsClient) (*pb.CancelRunResponse, error) {
		return w.CancelRun(ctx, &pb.CancelRunRequest{WorkspaceId: args.WorkspaceID, RunId: args.RunID, At: ts(args.At), Audit: eventsToPB(args.Audit)})
	})
	if err != nil {
		return storage.WorkflowRun{}, err
	}
	return runFromPB(r.Run), nil
}

func (c *Client) RetryRun(ctx context.Context, args storage.RetryRunArgs) (storage.WorkflowRun, error) {
	r, err := wcall(ctx, c, "RetryRun", func(ctx context.Context, w pb.WorkflowsClient) (*pb.RetryRunResponse, error) {
		return w.RetryRun(ctx, &pb.RetryRunRequest{WorkspaceId: args.WorkspaceID, RunId: args.RunID, At: ts(args.At), Audit: eventsToPB(args.Audit)})
	})
	if err != nil {
		return storage.WorkflowRun{}, err
	}
	return runFromPB(r.Run), nil
}

func (c *Client) CountRuns(ctx context.Context) (map[string]int, error) {
	r, err := wcall(ctx, c, "CountRuns", func(ctx context.Context, w pb.WorkflowsClient) (*pb.CountRunsResponse, error) {
		return w.CountRuns(ctx, &pb.CountRunsRequest{})
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

// PruneRuns loops above MaxBatch, like PruneJobs.
func (c *Client) PruneRuns(ctx context.Context, args storage.PruneRunsArgs) (int, error) {
	total := 0
	for total < args.Limit {
		n := min(args.Limit-total, MaxBatch)
		r, err := wcall(ctx, c, "PruneRuns", func(ctx context.Context, w pb.WorkflowsClient) (*pb.PruneRunsResponse, error) {
			return w.PruneRuns(ctx, &pb.PruneRunsRequest{Before: ts(args.Before), Limit: int64(n)})
		})
		if err != nil {
			return total, err
		}
		total += int(r.Deleted)
		if int(r.Deleted) < n {
			break
		}
	}
	return total, nil
}

// --- plugin side

// wserve is serve for a Workflows RPC.
func wserve[R any](s *Server, f func(w storage.WorkflowStore) (*R, error)) (*R, error) {
	return serve(s, func(st storage.Store) (*R, error) { return f(st) })
}

func (s *Server) PutWorkflow(ctx context.Context, r *pb.PutWorkflowRequest) (*pb.PutWorkflowResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.PutWorkflowResponse, error) {
		return &pb.PutWorkflowResponse{}, w.PutWorkflow(ctx, storage.PutWorkflowArgs{Workflow: workflowFromPB(r.Workflow), ExpectedVersion: r.ExpectedVersion, Audit: eventsFromPB(r.Audit)})
	})
}

func (s *Server) GetWorkflow(ctx context.Context, r *pb.GetWorkflowRequest) (*pb.GetWorkflowResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.GetWorkflowResponse, error) {
		wf, err := w.GetWorkflow(ctx, r.WorkspaceId, r.Name)
		return &pb.GetWorkflowResponse{Workflow: workflowToPB(wf)}, err
	})
}

func (s *Server) ListWorkflows(ctx context.Context, r *pb.ListWorkflowsRequest) (*pb.ListWorkflowsResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.ListWorkflowsResponse, error) {
		ws, err := w.ListWorkflows(ctx, r.WorkspaceId)
		out := &pb.ListWorkflowsResponse{Workflows: make([]*pb.Workflow, len(ws))}
		for i, wf := range ws {
			out.Workflows[i] = workflowToPB(wf)
		}
		return out, err
	})
}

func (s *Server) DeleteWorkflow(ctx context.Context, r *pb.DeleteWorkflowRequest) (*pb.DeleteWorkflowResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.DeleteWorkflowResponse, error) {
		return &pb.DeleteWorkflowResponse{}, w.DeleteWorkflow(ctx, storage.DeleteWorkflowArgs{WorkspaceID: r.WorkspaceId, Name: r.Name, At: tm(r.At), Audit: eventsFromPB(r.Audit)})
	})
}

func (s *Server) CreateRun(ctx context.Context, r *pb.CreateRunRequest) (*pb.CreateRunResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.CreateRunResponse, error) {
		run, existing, err := w.CreateRun(ctx, storage.CreateRunArgs{Run: runFromPB(r.Run), Now: tm(r.Now), Audit: eventsFromPB(r.Audit)})
		return &pb.CreateRunResponse{Run: runToPB(run), Existing: existing}, err
	})
}

func (s *Server) GetRun(ctx context.Context, r *pb.GetRunRequest) (*pb.GetRunResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.GetRunResponse, error) {
		run, err := w.GetRun(ctx, r.WorkspaceId, r.Id)
		return &pb.GetRunResponse{Run: runToPB(run)}, err
	})
}

func (s *Server) ListRuns(ctx context.Context, r *pb.ListRunsRequest) (*pb.ListRunsResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.ListRunsResponse, error) {
		if err := checkBatch("limit", r.Limit); err != nil {
			return nil, err
		}
		p, err := w.ListRuns(ctx, storage.RunQuery{WorkspaceID: r.WorkspaceId, Workflow: r.Workflow, Status: r.Status, Before: r.Before, Limit: int(r.Limit)})
		return &pb.ListRunsResponse{Runs: runsToPB(p.Runs), Next: p.Next}, err
	})
}

func (s *Server) LeaseRuns(ctx context.Context, r *pb.LeaseRunsRequest) (*pb.LeaseRunsResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.LeaseRunsResponse, error) {
		if err := checkBatch("limit", r.Limit); err != nil {
			return nil, err
		}
		runs, err := w.LeaseRuns(ctx, storage.LeaseRunsArgs{Owner: r.Owner, Now: tm(r.Now), Limit: int(r.Limit), Visibility: time.Duration(r.Visibility),
			WorkspaceSlots: intMapFromPB(r.WorkspaceSlots)})
		return &pb.LeaseRunsResponse{Runs: runsToPB(runs)}, err
	})
}

func (s *Server) CheckpointRun(ctx context.Context, r *pb.CheckpointRunRequest) (*pb.CheckpointRunResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.CheckpointRunResponse, error) {
		run, err := w.CheckpointRun(ctx, storage.CheckpointRunArgs{Run: runFromPB(r.Run), LeaseUntil: tm(r.LeaseUntil), Release: r.Release, At: tm(r.At), Audit: eventsFromPB(r.Audit)})
		return &pb.CheckpointRunResponse{Run: runToPB(run)}, err
	})
}

func (s *Server) SignalRun(ctx context.Context, r *pb.SignalRunRequest) (*pb.SignalRunResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.SignalRunResponse, error) {
		run, err := w.SignalRun(ctx, storage.SignalRunArgs{WorkspaceID: r.WorkspaceId, RunID: r.RunId, Signal: signalFromPB(r.Signal), Now: tm(r.Now), Audit: eventsFromPB(r.Audit)})
		return &pb.SignalRunResponse{Run: runToPB(run)}, err
	})
}

func (s *Server) CancelRun(ctx context.Context, r *pb.CancelRunRequest) (*pb.CancelRunResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.CancelRunResponse, error) {
		run, err := w.CancelRun(ctx, storage.CancelRunArgs{WorkspaceID: r.WorkspaceId, RunID: r.RunId, At: tm(r.At), Audit: eventsFromPB(r.Audit)})
		return &pb.CancelRunResponse{Run: runToPB(run)}, err
	})
}

func (s *Server) RetryRun(ctx context.Context, r *pb.RetryRunRequest) (*pb.RetryRunResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.RetryRunResponse, error) {
		run, err := w.RetryRun(ctx, storage.RetryRunArgs{WorkspaceID: r.WorkspaceId, RunID: r.RunId, At: tm(r.At), Audit: eventsFromPB(r.Audit)})
		return &pb.RetryRunResponse{Run: runToPB(run)}, err
	})
}

func (s *Server) CountRuns(ctx context.Context, _ *pb.CountRunsRequest) (*pb.CountRunsResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.CountRunsResponse, error) {
		m, err := w.CountRuns(ctx)
		return &pb.CountRunsResponse{ByStatus: intMapToPB(m)}, err
	})
}

func (s *Server) PruneRuns(ctx context.Context, r *pb.PruneRunsRequest) (*pb.PruneRunsResponse, error) {
	return wserve(s, func(w storage.WorkflowStore) (*pb.PruneRunsResponse, error) {
		if err := checkBatch("limit", r.Limit); err != nil {
			return nil, err
		}
		n, err := w.PruneRuns(ctx, storage.PruneRunsArgs{Before: tm(r.Before), Limit: int(r.Limit)})
		return &pb.PruneRunsResponse{Deleted: int64(n)}, err
	})
}
