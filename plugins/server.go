package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

// ProtocolVersion is the version of plugins/proto/storage.proto this
// package speaks, carried by the go-plugin handshake and by Describe.
const ProtocolVersion = 2

// MaxBatch bounds every batch and page of the protocol on both sides
// (pb.Limit_MAX_BATCH): the host splits or clamps, the plugin refuses more.
const MaxBatch = int(pb.Limit_MAX_BATCH)

// Opener opens a backend from its Configure settings.
type Opener func(ctx context.Context, cfg *pb.ConfigureRequest) (storage.Store, error)

// Server is the plugin side: it serves a storage.Store over the protocol,
// one gRPC service per concern. Only Configure and Describe work before
// the backend is open; every other call then answers UNAVAILABLE.
type Server struct {
	pb.UnimplementedPluginServer
	pb.UnimplementedWorkspacesServer
	pb.UnimplementedSecretsServer
	pb.UnimplementedAuditServer
	pb.UnimplementedJobsServer
	pb.UnimplementedRetentionServer
	pb.UnimplementedChangesServer
	pb.UnimplementedWorkflowsServer
	open Opener

	mu    sync.RWMutex
	store storage.Store
	name  string
	// fast is the fast-call socket (nil: FAST_CALLS not offered).
	fast *fastServer
}

// NewServer returns a Server that opens its backend with open on Configure.
func NewServer(open Opener) *Server { return &Server{open: open} }

func (s *Server) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return nil, toStatus(errors.New("storage plugin: already configured"))
	}
	st, err := s.open(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	s.store, s.name = st, req.GetBackend()
	return &pb.ConfigureResponse{}, nil
}

// Describe reports the protocol version and what the open backend
// implements (every required capability; RETENTION when it is a
// storage.Retainer; AUDIT_ROWS and, with its socket, FAST_CALLS).
func (s *Server) Describe(context.Context, *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	caps := append([]pb.Capability(nil), requiredCapabilities...)
	caps = append(caps, pb.Capability_AUDIT_ROWS) // for every backend: it is this server's decoding
	if _, ok := s.store.(storage.Retainer); ok {
		caps = append(caps, pb.Capability_RETENTION)
	}
	d := &pb.DescribeResponse{ProtocolVersion: ProtocolVersion, Capabilities: caps, Backend: s.name, MaxBatch: uint32(MaxBatch)}
	if s.fast != nil {
		d.Capabilities = append(d.Capabilities, pb.Capability_FAST_CALLS)
		d.FastSocket, d.FastToken = s.fast.path, s.fast.token
	}
	return d, nil
}

func (s *Server) backend() (storage.Store, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.store == nil {
		return nil, toStatus(fmt.Errorf("storage plugin not configured: %w", storage.ErrUnavailable))
	}
	return s.store, nil
}

// Close closes the backend (when the plugin exits).
func (s *Server) Close() {
	s.mu.Lock()
	f := s.fast
	s.fast = nil
	s.mu.Unlock()
	if f != nil {
		// Outside the lock: running calls hold it for reading.
		f.close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		s.store.Close()
		s.store = nil
	}
}

// serve runs f on the open backend and turns its error into a status.
func serve[R any](s *Server, f func(st storage.Store) (*R, error)) (*R, error) {
	st, err := s.backend()
	if err != nil {
		return nil, err
	}
	r, err := f(st)
	if err != nil {
		return nil, toStatus(err)
	}
	return r, nil
}

// checkBatch refuses a batch or page above the protocol's limit.
func checkBatch(what string, n int64) error {
	if n > int64(MaxBatch) {
		return fmt.Errorf("storage plugin: %s of %d exceeds the limit of %d: %w", what, n, MaxBatch, errInvalid)
	}
	return nil
}

// --- Workspaces

func (s *Server) CreateWorkspace(ctx context.Context, r *pb.CreateWorkspaceRequest) (*pb.CreateWorkspaceResponse, error) {
	return serve(s, func(st storage.Store) (*pb.CreateWorkspaceResponse, error) {
		args := storage.CreateWorkspaceArgs{Workspace: workspaceFromPB(r.Workspace), Audit: eventsFromPB(r.Audit)}
		if r.AdminKey != nil {
			k := apiKeyFromPB(r.AdminKey)
			args.AdminKey = &k
		}
		return &pb.CreateWorkspaceResponse{}, st.CreateWorkspace(ctx, args)
	})
}

func (s *Server) GetWorkspace(ctx context.Context, r *pb.GetWorkspaceRequest) (*pb.GetWorkspaceResponse, error) {
	return serve(s, func(st storage.Store) (*pb.GetWorkspaceResponse, error) {
		w, err := st.GetWorkspace(ctx, r.Id)
		return &pb.GetWorkspaceResponse{Workspace: workspaceToPB(w)}, err
	})
}

func (s *Server) GetWorkspaceByName(ctx context.Context, r *pb.GetWorkspaceByNameRequest) (*pb.GetWorkspaceResponse, error) {
	return serve(s, func(st storage.Store) (*pb.GetWorkspaceResponse, error) {
		w, err := st.GetWorkspaceByName(ctx, r.Name)
		return &pb.GetWorkspaceResponse{Workspace: workspaceToPB(w)}, err
	})
}

func (s *Server) ListWorkspaces(ctx context.Context, _ *pb.ListWorkspacesRequest) (*pb.ListWorkspacesResponse, error) {
	return serve(s, func(st storage.Store) (*pb.ListWorkspacesResponse, error) {
		ws, err := st.ListWorkspaces(ctx)
		out := &pb.ListWorkspacesResponse{Workspaces: make([]*pb.Workspace, len(ws))}
		for i, w := range ws {
			out.Workspaces[i] = workspaceToPB(w)
		}
		return out, err
	})
}

func (s *Server) CreateAPIKey(ctx context.Context, r *pb.CreateAPIKeyRequest) (*pb.CreateAPIKeyResponse, error) {
	return serve(s, func(st storage.Store) (*pb.CreateAPIKeyResponse, error) {
		return &pb.CreateAPIKeyResponse{}, st.CreateAPIKey(ctx, storage.CreateAPIKeyArgs{Key: apiKeyFromPB(r.Key), Audit: eventsFromPB(r.Audit)})
	})
}

func (s *Server) GetAPIKey(ctx context.Context, r *pb.GetAPIKeyRequest) (*pb.GetAPIKeyResponse, error) {
	return serve(s, func(st storage.Store) (*pb.GetAPIKeyResponse, error) {
		k, err := st.GetAPIKey(ctx, r.Id)
		return &pb.GetAPIKeyResponse{Key: apiKeyToPB(k)}, err
	})
}

func (s *Server) ListAPIKeys(ctx context.Context, r *pb.ListAPIKeysRequest) (*pb.ListAPIKeysResponse, error) {
	return serve(s, func(st storage.Store) (*pb.ListAPIKeysResponse, error) {
		ks, err := st.ListAPIKeys(ctx, r.WorkspaceId)
		out := &pb.ListAPIKeysResponse{Keys: make([]*pb.APIKey, len(ks))}
		for i, k := range ks {
			out.Keys[i] = apiKeyToPB(k)
		}
		return out, err
	})
}

func (s *Server) RevokeAPIKey(ctx context.Context, r *pb.RevokeAPIKeyRequest) (*pb.RevokeAPIKeyResponse, error) {
	return serve(s, func(st storage.Store) (*pb.RevokeAPIKeyResponse, error) {
		return &pb.RevokeAPIKeyResponse{}, st.RevokeAPIKey(ctx, storage.RevokeAPIKeyArgs{WorkspaceID: r.WorkspaceId, ID: r.Id, At: tm(r.At), Audit: eventsFromPB(r.Audit)})
	})
}

// --- Secrets

func (s *Server) ListKEKs(ctx context.Context, _ *pb.ListKEKsRequest) (*pb.ListKEKsResponse, error) {
	return serve(s, func(st storage.Store) (*pb.ListKEKsResponse, error) {
		ks, err := st.ListKEKs(ctx)
		out := &pb.ListKEKsResponse{Keks: make([]*pb.KEK, len(ks))}
		for i, k := range ks {
			out.Keks[i] = kekToPB(k)
		}
		return out, err
	})
}

func (s *Server) AddKEK(ctx context.Context, r *pb.AddKEKRequest) (*pb.AddKEKResponse, error) {
	return serve(s, func(st storage.Store) (*pb.AddKEKResponse, error) {
		return &pb.AddKEKResponse{}, st.AddKEK(ctx, storage.AddKEKArgs{KEK: kekFromPB(r.Kek)})
	})
}

func (s *Server) DeleteKEK(ctx context.Context, r *pb.DeleteKEKRequest) (*pb.DeleteKEKResponse, error) {
	return serve(s, func(st storage.Store) (*pb.DeleteKEKResponse, error) {
		return &pb.DeleteKEKResponse{}, st.DeleteKEK(ctx, r.Id)
	})
}

func (s *Server) CreateSecret(ctx context.Context, r *pb.CreateSecretRequest) (*pb.CreateSecretResponse, error) {
	return serve(s, func(st storage.Store) (*pb.CreateSecretResponse, error) {
		return &pb.CreateSecretResponse{}, st.CreateSecret(ctx, storage.CreateSecretArgs{Secret: secretFromPB(r.Secret), Audit: eventsFromPB(r.Audit)})
	})
}

func (s *Server) UpdateSecret(ctx context.Context, r *pb.UpdateSecretRequest) (*pb.UpdateSecretResponse, error) {
	return serve(s, func(st storage.Store) (*pb.UpdateSecretResponse, error) {
		return &pb.UpdateSecretResponse{}, st.UpdateSecret(ctx, storage.UpdateSecretArgs{Secret: secretFromPB(r.Secret),
			ExpectedRevision: r.ExpectedRevision, Audit: eventsFromPB(r.Audit)})
	})
}

func (s *Server) DeleteSecret(ctx context.Context, r *pb.DeleteSecretRequest) (*pb.DeleteSecretResponse, error) {
	return serve(s, func(st storage.Store) (*pb.DeleteSecretResponse, error) {
		return &pb.DeleteSecretResponse{}, st.DeleteSecret(ctx, storage.DeleteSecretArgs{WorkspaceID: r.WorkspaceId, Name: r.Name, Audit: eventsFromPB(r.Audit)})
	})
}

func (s *Server) GetSecret(ctx context.Context, r *pb.GetSecretRequest) (*pb.GetSecretResponse, error) {
	return serve(s, func(st storage.Store) (*pb.GetSecretResponse, error) {
		rec, err := st.GetSecret(ctx, r.WorkspaceId, r.Name)
		return &pb.GetSecretResponse{Secret: secretToPB(rec)}, err
	})
}

func (s *Server) ListSecrets(ctx context.Context, r *pb.ListSecretsRequest) (*pb.ListSecretsResponse, error) {
	return serve(s, func(st storage.Store) (*pb.ListSecretsResponse, error) {
		ms, err := st.ListSecrets(ctx, storage.ListSecretsArgs{WorkspaceID: r.WorkspaceId})
		out := &pb.ListSecretsResponse{Secrets: make([]*pb.SecretMeta, len(ms))}
		for i, m := range ms {
			out.Secrets[i] = metaToPB(m)
		}
		return out, err
	})
}

func (s *Server) ListSecretsByKEK(ctx context.Context, r *pb.ListSecretsByKEKRequest) (*pb.ListSecretsByKEKResponse, error) {
	return serve(s, func(st storage.Store) (*pb.ListSecretsByKEKResponse, error) {
		if err := checkBatch("limit", r.Limit); err != nil {
			return nil, err
		}
		rs, err := st.ListSecretsByKEK(ctx, r.KekId, int(r.Limit))
		out := &pb.ListSecretsByKEKResponse{Secrets: make([]*pb.SecretRecord, len(rs))}
		for i, rec := range rs {
			out.Secrets[i] = secretToPB(rec)
		}
		return out, err
	})
}

// --- Audit

func (s *Server) AppendAudit(ctx context.Context, r *pb.AppendAuditRequest) (*pb.AppendAuditResponse, error) {
	return serve(s, func(st storage.Store) (*pb.AppendAuditResponse, error) {
		if err := checkBatch("audit batch", int64(len(r.Events))); err != nil {
			return nil, err
		}
		evs := eventsFromPB(r.Events)
		if len(r.Rows) > 0 {
			if len(r.Events) > 0 {
				return nil, fmt.Errorf("storage plugin: AppendAudit with both events and rows: %w", errInvalid)
			}
			var err error
			if evs, err = decodeAuditRows(r.Rows); err != nil {
				return nil, err
			}
		}
		appendFn := st.AppendAudit
		if r.Retry {
			appendFn = st.RetryAppendAudit
		}
		a, err := appendFn(ctx, evs)
		return &pb.AppendAuditResponse{Appended: appendedToPB(a)}, err
	})
}

func (s *Server) ListAudit(ctx context.Context, r *pb.ListAuditRequest) (*pb.ListAuditResponse, error) {
	return serve(s, func(st storage.Store) (*pb.ListAuditResponse, error) {
		if err := checkBatch("limit", r.Limit); err != nil {
			return nil, err
		}
		p, err := st.ListAudit(ctx, storage.AuditQuery{WorkspaceID: r.WorkspaceId, ResourceType: r.ResourceType, EventType: r.EventType,
			ResourceID: r.ResourceId, Since: tm(r.Since), Before: r.Before, Limit: int(r.Limit)})
		return &pb.ListAuditResponse{Events: eventsToPB(p.Events), Next: p.Next}, err
	})
}

func (s *Server) ListAuditAsc(ctx context.Context, r *pb.ListAuditAscRequest) (*pb.ListAuditAscResponse, error) {
	return serve(s, func(st storage.Store) (*pb.ListAuditAscResponse, error) {
		if err := checkBatch("limit", r.Limit); err != nil {
			return nil, err
		}
		evs, err := st.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: r.WorkspaceId, AfterID: r.AfterId, Limit: int(r.Limit)})
		return &pb.ListAuditAscResponse{Events: eventsToPB(evs)}, err
	})
}

func (s *Server) GetAuditHead(ctx context.Context, r *pb.GetAuditHeadRequest) (*pb.GetAuditHeadResponse, error) {
	return serve(s, func(st storage.Store) (*pb.GetAuditHeadResponse, error) {
		h, err := st.GetAuditHead(ctx, r.WorkspaceId)
		return &pb.GetAuditHeadResponse{Head: headToPB(r.WorkspaceId, h)}, err
	})
}

func (s *Server) PutAuditCheckpoint(ctx context.Context, r *pb.PutAuditCheckpointRequest) (*pb.PutAuditCheckpointResponse, error) {
	return serve(s, func(st storage.Store) (*pb.PutAuditCheckpointResponse, error) {
		return &pb.PutAuditCheckpointResponse{}, st.PutAuditCheckpoint(ctx, checkpointFromPB(r.Checkpoint))
	})
}

func (s *Server) GetAuditCheckpoint(ctx context.Context, r *pb.GetAuditCheckpointRequest) (*pb.GetAuditCheckpointResponse, error) {
	return serve(s, func(st storage.Store) (*pb.GetAuditCheckpointResponse, error) {
		c, err := st.GetAuditCheckpoint(ctx, r.WorkspaceId)
		return &pb.GetAuditCheckpointResponse{Checkpoint: checkpointToPB(c)}, err
	})
}

// --- Jobs

func (s *Server) CreateQueue(ctx context.Context, r *pb.CreateQueueRequest) (*pb.CreateQueueResponse, error) {
	return serve(s, func(st storage.Store) (*pb.CreateQueueResponse, error) {
		return &pb.CreateQueueResponse{}, st.CreateQueue(ctx, storage.CreateQueueArgs{Queue: queueFromPB(r.Queue), Audit: eventsFromPB(r.Audit)})
	})
}

func (s *Server) UpdateQueue(ctx context.Context, r *pb.UpdateQueueRequest) (*pb.UpdateQueueResponse, error) {
	return serve(s, func(st storage.Store) (*pb.UpdateQueueResponse, error) {
		return &pb.UpdateQueueResponse{}, st.UpdateQueue(ctx, storage.UpdateQueueArgs{Queue: queueFromPB(r.Queue),
			ExpectedRevision: r.ExpectedRevision, Audit: eventsFromPB(r.Audit)})
	})
}

func (s *Server) GetQueue(ctx context.Context, r *pb.GetQueueRequest) (*pb.GetQueueResponse, error) {
	return serve(s, func(st storage.Store) (*pb.GetQueueResponse, error) {
		q, err := st.GetQueue(ctx, r.WorkspaceId, r.Name)
		return &pb.GetQueueResponse{Queue: queueToPB(q)}, err
	})
}

func (s *Server) ListQueues(ctx context.Context, r *pb.ListQueuesRequest) (*pb.ListQueuesResponse, error) {
	return serve(s, func(st storage.Store) (*pb.ListQueuesResponse, error) {
		qs, err := st.ListQueues(ctx, r.WorkspaceId)
		out := &pb.ListQueuesResponse{Queues: make([]*pb.Queue, len(qs))}
		for i, q := range qs {
			out.Queues[i] = queueToPB(q)
		}
		return out, err
	})
}

func (s *Server) DeleteQueue(ctx context.Context, r *pb.DeleteQueueRequest) (*pb.DeleteQueueResponse, error) {
	return serve(s, func(st storage.Store) (*pb.DeleteQueueResponse, error) {
		return &pb.DeleteQueueResponse{}, st.DeleteQueue(ctx, storage.DeleteQueueArgs{WorkspaceID: r.WorkspaceId, Name: r.Name, At: tm(r.At), Audit: eventsFromPB(r.Audit)})
	})
}

func (s *Server) EnqueueJobs(ctx context.Context, r *pb.EnqueueJobsRequest) (*pb.EnqueueJobsResponse, error) {
	return serve(s, func(st storage.Store) (*pb.EnqueueJobsResponse, error) {
		if err := checkBatch("job batch", int64(len(r.Jobs))); err != nil {
			return nil, err
		}
		res, err := st.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: jobsFromPB(r.Jobs), Now: tm(r.Now)})
		out := &pb.EnqueueJobsResponse{Results: make([]*pb.EnqueueResult, len(res))}
		for i, e := range res {
			out.Results[i] = &pb.EnqueueResult{Job: jobToPB(e.Job), Existing: e.Existing}
		}
		return out, err
	})
}

func (s *Server) GetJob(ctx context.Context, r *pb.GetJobRequest) (*pb.GetJobResponse, error) {
	return serve(s, func(st storage.Store) (*pb.GetJobResponse, error) {
		j, err := st.GetJob(ctx, r.WorkspaceId, r.Id)
		return &pb.GetJobResponse{Job: jobToPB(j)}, err
	})
}

func (s *Server) ListJobs(ctx context.Context, r *pb.ListJobsRequest) (*pb.ListJobsResponse, error) {
	return serve(s, func(st storage.Store) (*pb.ListJobsResponse, error) {
		if err := checkBatch("limit", r.Limit); err != nil {
			return nil, err
		}
		p, err := st.ListJobs(ctx, storage.JobQuery{WorkspaceID: r.WorkspaceId, Queue: r.Queue, Status: r.Status, Before: r.Before, Limit: int(r.Limit)})
		return &pb.ListJobsResponse{Jobs: jobsToPB(p.Jobs), Next: p.Next}, err
	})
}

func (s *Server) LeaseJobs(ctx context.Context, r *pb.LeaseJobsRequest) (*pb.LeaseJobsResponse, error) {
	return serve(s, func(st storage.Store) (*pb.LeaseJobsResponse, error) {
		if err := checkBatch("limit", r.Limit); err != nil {
			return nil, err
		}
		js, err := st.LeaseJobs(ctx, storage.LeaseJobsArgs{Now: tm(r.Now), Limit: int(r.Limit), Visibility: time.Duration(r.Visibility),
			Slots: intMapFromPB(r.Slots), WorkspaceSlots: intMapFromPB(r.WorkspaceSlots)})
		return &pb.LeaseJobsResponse{Jobs: jobsToPB(js)}, err
	})
}

func (s *Server) CompleteAttempts(ctx context.Context, r *pb.CompleteAttemptsRequest) (*pb.CompleteAttemptsResponse, error) {
	return serve(s, func(st storage.Store) (*pb.CompleteAttemptsResponse, error) {
		if err := checkBatch("result batch", int64(len(r.Results))); err != nil {
			return nil, err
		}
		rs := make([]storage.AttemptResult, len(r.Results))
		for i, x := range r.Results {
			rs[i] = resultFromPB(x)
		}
		return &pb.CompleteAttemptsResponse{}, st.CompleteAttempts(ctx, rs)
	})
}

func (s *Server) CancelJob(ctx context.Context, r *pb.CancelJobRequest) (*pb.CancelJobResponse, error) {
	return serve(s, func(st storage.Store) (*pb.CancelJobResponse, error) {
		j, err := st.CancelJob(ctx, r.WorkspaceId, r.Id, tm(r.At))
		return &pb.CancelJobResponse{Job: jobToPB(j)}, err
	})
}

func (s *Server) RetryJobs(ctx context.Context, r *pb.RetryJobsRequest) (*pb.RetryJobsResponse, error) {
	return serve(s, func(st storage.Store) (*pb.RetryJobsResponse, error) {
		n, err := st.RetryJobs(ctx, storage.RetryJobsArgs{WorkspaceID: r.WorkspaceId, Queue: r.Queue, ID: r.Id, At: tm(r.At)})
		return &pb.RetryJobsResponse{Count: int64(n)}, err
	})
}

func (s *Server) CountJobs(ctx context.Context, _ *pb.CountJobsRequest) (*pb.CountJobsResponse, error) {
	return serve(s, func(st storage.Store) (*pb.CountJobsResponse, error) {
		m, err := st.CountJobs(ctx)
		return &pb.CountJobsResponse{ByStatus: intMapToPB(m)}, err
	})
}

func (s *Server) JobUsage(ctx context.Context, r *pb.JobUsageRequest) (*pb.JobUsageResponse, error) {
	return serve(s, func(st storage.Store) (*pb.JobUsageResponse, error) {
		u, err := st.JobUsage(ctx, r.WorkspaceId)
		return &pb.JobUsageResponse{OpenJobs: int64(u.OpenJobs), PayloadBytes: u.PayloadBytes}, err
	})
}

func (s *Server) QueueStats(ctx context.Context, r *pb.QueueStatsRequest) (*pb.QueueStatsResponse, error) {
	return serve(s, func(st storage.Store) (*pb.QueueStatsResponse, error) {
		qs, err := st.QueueStats(ctx, tm(r.Now))
		out := &pb.QueueStatsResponse{Stats: make([]*pb.QueueStat, len(qs))}
		for i, q := range qs {
			out.Stats[i] = &pb.QueueStat{WorkspaceId: q.WorkspaceID, Queue: q.Queue, Ready: int64(q.Ready), OldestReady: ts(q.OldestReady), Running: int64(q.Running)}
		}
		return out, err
	})
}

// --- Changes

func (s *Server) Watch(_ *pb.WatchRequest, stream pb.Changes_WatchServer) error {
	st, err := s.backend()
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var sendErr error
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	err = st.Changes(ctx, func(c storage.Change) {
		mu.Lock()
		defer mu.Unlock()
		if sendErr != nil {
			return
		}
		if sendErr = stream.Send(&pb.Change{Kind: c.Kind, WorkspaceId: c.WorkspaceID, Name: c.Name}); sendErr != nil {
			cancel()
		}
	})
	if sendErr != nil {
		return sendErr
	}
	if err != nil {
		return toStatus(err)
	}
	return nil
}
