package plugins

import (
	"errors"
	"testing"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

// FuzzHostDecode: whatever bytes a plugin answers with, the host decodes
// them into storage types or an error without panicking (a plugin is a
// separate, possibly faulty or hostile, program).
func FuzzHostDecode(f *testing.F) {
	seed := func(m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&pb.GetSecretResponse{Secret: secretToPB(storage.SecretRecord{SecretMeta: storage.SecretMeta{WorkspaceID: "ws", Name: "T", AllowedHosts: []string{"a"}}, Sealed: []byte{1}})})
	seed(&pb.LeaseJobsResponse{Jobs: []*pb.Job{jobToPB(storage.Job{ID: "j", Attempts: []storage.Attempt{{N: 1}}})}})
	seed(&pb.CheckpointRunResponse{Run: runToPB(storage.WorkflowRun{ID: "r", Steps: []storage.StepState{{ID: "s"}}, Signals: []storage.RunSignal{{Name: "go"}}})})
	st, _ := status.New(5, "not found").WithDetails(&pb.Error{Code: pb.ErrorCode_NOT_FOUND})
	seed(st.Proto())
	f.Fuzz(func(t *testing.T, b []byte) {
		if m := new(pb.GetSecretResponse); proto.Unmarshal(b, m) == nil {
			_ = secretFromPB(m.Secret)
		}
		if m := new(pb.LeaseJobsResponse); proto.Unmarshal(b, m) == nil {
			_ = jobsFromPB(m.Jobs)
		}
		if m := new(pb.EnqueueJobsResponse); proto.Unmarshal(b, m) == nil {
			for _, r := range m.Results {
				_ = jobFromPB(r.Job)
			}
		}
		if m := new(pb.ListAuditResponse); proto.Unmarshal(b, m) == nil {
			_ = eventsFromPB(m.Events)
		}
		if m := new(pb.GetQueueResponse); proto.Unmarshal(b, m) == nil {
			_ = queueFromPB(m.Queue)
		}
		if m := new(pb.GetAPIKeyResponse); proto.Unmarshal(b, m) == nil {
			_ = apiKeyFromPB(m.Key)
		}
		if m := new(pb.CheckpointRunResponse); proto.Unmarshal(b, m) == nil {
			_ = runFromPB(m.Run)
		}
		if m := new(pb.GetAuditRetentionResponse); proto.Unmarshal(b, m) == nil {
			_ = retentionFromPB(m.Marker)
		}
		if m := new(spb.Status); proto.Unmarshal(b, m) == nil && m.Code != 0 {
			err := fromStatus("Fuzz", status.ErrorProto(m))
			if err == nil {
				t.Fatal("a failed status decoded to no error")
			}
			var we *wireError
			if errors.As(err, &we) && we.sentinel == nil {
				t.Fatal("a typed error without its sentinel")
			}
		}
	})
}
