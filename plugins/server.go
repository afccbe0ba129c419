package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

// Opener opens a backend from its Configure settings.
type Opener func(ctx context.Context, cfg *proto.ConfigureRequest) (storage.Store, error)

// Server is the plugin side: it serves a storage.Store over the protocol.
type Server struct {
	proto.UnimplementedStorageServer
	open Opener

	mu    sync.RWMutex
	store storage.Store
}

// NewServer returns a Server that opens its backend with open on Configure.
func NewServer(open Opener) *Server { return &Server{open: open} }

func (s *Server) Configure(ctx context.Context, req *proto.ConfigureRequest) (*proto.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return nil, errors.New("storage plugin: already configured")
	}
	st, err := s.open(ctx, req)
	if err != nil {
		return nil, err
	}
	s.store = st
	return &proto.ConfigureResponse{}, nil
}

func (s *Server) backend() (storage.Store, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.store == nil {
		return nil, fmt.Errorf("storage plugin not configured: %w", storage.ErrUnavailable)
	}
	return s.store, nil
}

// Close closes the backend (when the plugin exits).
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		s.store.Close()
		s.store = nil
	}
}

// handler decodes args, calls the store, and returns the result to encode.
type handler func(ctx context.Context, st storage.Store, args []byte) (any, error)

func decode[T any](args []byte) (T, error) {
	var v T
	err := json.Unmarshal(args, &v)
	return v, err
}

// h adapts a method taking one argument value.
func h[A, R any](f func(storage.Store, context.Context, A) (R, error)) handler {
	return func(ctx context.Context, st storage.Store, args []byte) (any, error) {
		a, err := decode[A](args)
		if err != nil {
			return nil, err
		}
		return f(st, ctx, a)
	}
}

// e adapts a method taking one argument value and returning only an error.
func e[A any](f func(storage.Store, context.Context, A) error) handler {
	return func(ctx context.Context, st storage.Store, args []byte) (any, error) {
		a, err := decode[A](args)
		if err != nil {
			return nil, err
		}
		return nil, f(st, ctx, a)
	}
}

var handlers = map[string]handler{
	"CreateWorkspace": e(storage.Store.CreateWorkspace),
	"GetWorkspace": h(func(st storage.Store, ctx context.Context, a idArgs) (storage.Workspace, error) {
		return st.GetWorkspace(ctx, a.ID)
	}),
	"GetWorkspaceByName": h(func(st storage.Store, ctx context.Context, a idArgs) (storage.Workspace, error) {
		return st.GetWorkspaceByName(ctx, a.ID)
	}),
	"ListWorkspaces": h(func(st storage.Store, ctx context.Context, _ struct{}) ([]storage.Workspace, error) {
		return st.ListWorkspaces(ctx)
	}),
	"CreateAPIKey": e(storage.Store.CreateAPIKey),
	"GetAPIKey": h(func(st storage.Store, ctx context.Context, a idArgs) (storage.APIKey, error) {
		return st.GetAPIKey(ctx, a.ID)
	}),
	"ListAPIKeys": h(func(st storage.Store, ctx context.Context, a idArgs) ([]storage.APIKey, error) {
		return st.ListAPIKeys(ctx, a.ID)
	}),
	"RevokeAPIKey": e(storage.Store.RevokeAPIKey),
	"ListKEKs": h(func(st storage.Store, ctx context.Context, _ struct{}) ([]storage.KEK, error) {
		return st.ListKEKs(ctx)
	}),
	"AddKEK": e(storage.Store.AddKEK),
	"DeleteKEK": e(func(st storage.Store, ctx context.Context, a idArgs) error {
		return st.DeleteKEK(ctx, a.ID)
	}),
	"CreateSecret": e(storage.Store.CreateSecret),
	"UpdateSecret": e(storage.Store.UpdateSecret),
	"DeleteSecret": e(storage.Store.DeleteSecret),
	"GetSecret": h(func(st storage.Store, ctx context.Context, a wsNameArgs) (storage.SecretRecord, error) {
		return st.GetSecret(ctx, a.WorkspaceID, a.Name)
	}),
	"ListSecrets": h(storage.Store.ListSecrets),
	"ListSecretsByKEK": h(func(st storage.Store, ctx context.Context, a kekListArgs) ([]storage.SecretRecord, error) {
		return st.ListSecretsByKEK(ctx, a.KEKID, a.Limit)
	}),
	"AppendAudit":  h(storage.Store.AppendAudit),
	"ListAudit":    h(storage.Store.ListAudit),
	"ListAuditAsc": h(storage.Store.ListAuditAsc),
	"GetAuditHead": h(func(st storage.Store, ctx context.Context, a idArgs) (storage.AuditHead, error) {
		return st.GetAuditHead(ctx, a.ID)
	}),
	"PutAuditCheckpoint": e(storage.Store.PutAuditCheckpoint),
	"GetAuditCheckpoint": h(func(st storage.Store, ctx context.Context, a idArgs) (storage.AuditCheckpoint, error) {
		return st.GetAuditCheckpoint(ctx, a.ID)
	}),
	"CreateQueue": e(storage.Store.CreateQueue),
	"UpdateQueue": e(storage.Store.UpdateQueue),
	"GetQueue": h(func(st storage.Store, ctx context.Context, a wsNameArgs) (storage.Queue, error) {
		return st.GetQueue(ctx, a.WorkspaceID, a.Name)
	}),
	"ListQueues": h(func(st storage.Store, ctx context.Context, a idArgs) ([]storage.Queue, error) {
		return st.ListQueues(ctx, a.ID)
	}),
	"DeleteQueue": e(storage.Store.DeleteQueue),
	"EnqueueJobs": h(storage.Store.EnqueueJobs),
	"GetJob": h(func(st storage.Store, ctx context.Context, a wsIDArgs) (storage.Job, error) {
		return st.GetJob(ctx, a.WorkspaceID, a.ID)
	}),
	"ListJobs":         h(storage.Store.ListJobs),
	"LeaseJobs":        h(storage.Store.LeaseJobs),
	"CompleteAttempts": e(storage.Store.CompleteAttempts),
	"CancelJob": h(func(st storage.Store, ctx context.Context, a cancelArgs) (storage.Job, error) {
		return st.CancelJob(ctx, a.WorkspaceID, a.ID, a.At)
	}),
	"RetryJobs": h(storage.Store.RetryJobs),
	"CountJobs": h(func(st storage.Store, ctx context.Context, _ struct{}) (map[string]int, error) {
		return st.CountJobs(ctx)
	}),
	// Issue 11 (plugins/retention.go).
	"PruneJobs":         h(pruneJobs),
	"PruneAudit":        h(pruneAudit),
	"GetAuditRetention": h(getAuditRetention),
	// issue #12: quotas.
	"JobUsage": h(func(st storage.Store, ctx context.Context, a idArgs) (storage.JobUsage, error) {
		return st.JobUsage(ctx, a.ID)
	}),
	"QueueStats": h(func(st storage.Store, ctx context.Context, now time.Time) ([]storage.QueueStat, error) {
		return st.QueueStats(ctx, now)
	}),
}

func (s *Server) Call(ctx context.Context, req *proto.CallRequest) (*proto.CallResponse, error) {
	st, err := s.backend()
	if err != nil {
		return &proto.CallResponse{ErrorKind: errorKind(err), ErrorMessage: err.Error()}, nil
	}
	hd, ok := handlers[req.Method]
	if !ok {
		return &proto.CallResponse{ErrorKind: "error", ErrorMessage: "storage plugin: unknown method " + req.Method}, nil
	}
	res, err := hd(ctx, st, req.Args)
	if err != nil {
		return &proto.CallResponse{ErrorKind: errorKind(err), ErrorMessage: err.Error()}, nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	return &proto.CallResponse{Result: b}, nil
}

func (s *Server) Changes(_ *proto.ChangesRequest, stream proto.Storage_ChangesServer) error {
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
		if sendErr = stream.Send(&proto.Change{Kind: c.Kind, WorkspaceId: c.WorkspaceID, Name: c.Name}); sendErr != nil {
			cancel()
		}
	})
	if sendErr != nil {
		return sendErr
	}
	return err
}
