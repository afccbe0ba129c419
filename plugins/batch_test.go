package plugins

import (
	"context"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "rotor.sh/rotor/plugins/proto"
)

// TestServerRefusesOversizedBatches: the plugin side holds the protocol's
// limits itself (a host, or a client in another language, that sends more
// than MAX_BATCH gets INVALID_ARGUMENT, typed, and nothing is written).
func TestServerRefusesOversizedBatches(t *testing.T) {
	ctx := context.Background()
	s := NewServer(OpenBackend)
	defer s.Close()
	if _, err := s.Configure(ctx, &pb.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}); err != nil {
		t.Fatal(err)
	}
	evs := make([]*pb.AuditEvent, MaxBatch+1)
	for i := range evs {
		evs[i] = &pb.AuditEvent{OccurredAt: 1, WorkspaceId: "ws", EventType: "e", Input: []byte(`{}`)}
	}
	over := int64(MaxBatch + 1)
	for name, call := range map[string]func() error{
		"AppendAudit": func() error { _, err := s.AppendAudit(ctx, &pb.AppendAuditRequest{Events: evs}); return err },
		"ListAuditAsc": func() error {
			_, err := s.ListAuditAsc(ctx, &pb.ListAuditAscRequest{WorkspaceId: "ws", Limit: over})
			return err
		},
		"LeaseJobs": func() error { _, err := s.LeaseJobs(ctx, &pb.LeaseJobsRequest{Now: 1, Limit: over}); return err },
		"EnqueueJobs": func() error {
			_, err := s.EnqueueJobs(ctx, &pb.EnqueueJobsRequest{Jobs: make([]*pb.Job, over)})
			return err
		},
		"CompleteAttempts": func() error {
			_, err := s.CompleteAttempts(ctx, &pb.CompleteAttemptsRequest{Results: make([]*pb.AttemptResult, over)})
			return err
		},
		"PruneJobs": func() error { _, err := s.PruneJobs(ctx, &pb.PruneJobsRequest{Before: 1, Limit: over}); return err },
	} {
		err := call()
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument {
			t.Errorf("%s above MAX_BATCH: got %v, want InvalidArgument", name, err)
			continue
		}
		if d := st.Details(); len(d) != 1 || d[0].(*pb.Error).Code != pb.ErrorCode_INVALID_ARGUMENT {
			t.Errorf("%s: details %v, want one Error INVALID_ARGUMENT", name, d)
		}
	}
	head, err := s.GetAuditHead(ctx, &pb.GetAuditHeadRequest{WorkspaceId: "ws"})
	if err != nil || head.Head.LastId != 0 {
		t.Fatalf("a refused batch wrote rows: head %v, %v", head, err)
	}
}
