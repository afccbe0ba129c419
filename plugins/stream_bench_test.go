package plugins_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"rotor.sh/rotor/plugins"
	"rotor.sh/rotor/plugins/proto"
)

// A measurement for the open item of docs/benchmarks.md (the 30 us store
// call): the same GetSecret carried as messages on one long-lived gRPC
// stream instead of one unary RPC each, over the same go-plugin connection
// (AutoMTLS). It is not part of the protocol; it bounds what moving hot
// calls onto a stream could gain.

var pipeDesc = grpc.ServiceDesc{
	ServiceName: "rotor.storage.experiment.Pipe",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "GetSecrets", ServerStreams: true, ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			s := srv.(*plugins.Server)
			for {
				req := new(proto.GetSecretRequest)
				if err := stream.RecvMsg(req); err != nil {
					return nil
				}
				resp, err := s.GetSecret(stream.Context(), req)
				if err != nil {
					return err
				}
				if err := stream.SendMsg(resp); err != nil {
					return err
				}
			}
		},
	}},
}

type pipePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv *plugins.Server
}

func (p pipePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterPluginServer(s, p.srv)
	proto.RegisterWorkspacesServer(s, p.srv)
	proto.RegisterSecretsServer(s, p.srv)
	s.RegisterService(&pipeDesc, p.srv)
	return nil
}

func (pipePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return cc, nil
}

// servePipe runs the test binary as the experiment's plugin.
func servePipe() {
	srv := plugins.NewServer(plugins.OpenBackend)
	defer srv.Close()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  plugins.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{plugins.ProtocolVersion: {"storage": pipePlugin{srv: srv}}},
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Error}),
	})
}

func BenchmarkStoreCallStream(b *testing.B) {
	hs := plugins.Handshake
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  hs,
		VersionedPlugins: map[int]plugin.PluginSet{plugins.ProtocolVersion: {"storage": pipePlugin{}}},
		Cmd:              cmdWithEnv(os.Args[0], "ROTOR_TEST_AS_PLUGIN=pipe"),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Error}),
	})
	defer pc.Kill()
	rc, err := pc.Client()
	if err != nil {
		b.Fatal(err)
	}
	raw, err := rc.Dispense("storage")
	if err != nil {
		b.Fatal(err)
	}
	cc := raw.(*grpc.ClientConn)
	ctx := context.Background()
	if _, err := proto.NewPluginClient(cc).Configure(ctx, &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(b.TempDir(), "rotor.db")}); err != nil {
		b.Fatal(err)
	}
	ws, sec := proto.NewWorkspacesClient(cc), proto.NewSecretsClient(cc)
	ws.CreateWorkspace(ctx, &proto.CreateWorkspaceRequest{Workspace: &proto.Workspace{Id: "ws", Name: "ws", CreatedAt: 1}})
	sec.AddKEK(ctx, &proto.AddKEKRequest{Kek: &proto.KEK{Id: "kek", Wrapped: []byte("w"), CreatedAt: 1}})
	if _, err := sec.CreateSecret(ctx, &proto.CreateSecretRequest{Secret: &proto.SecretRecord{WorkspaceId: "ws", Name: "TOKEN", Version: 1, KekId: "kek", Sealed: make([]byte, 120)}}); err != nil {
		b.Fatal(err)
	}
	stream, err := cc.NewStream(ctx, &pipeDesc.Streams[0], "/"+pipeDesc.ServiceName+"/GetSecrets")
	if err != nil {
		b.Fatal(err)
	}
	pid := pc.ReattachConfig().Pid
	b.ReportAllocs()
	cpu0 := cpuTime(b, pid)
	for b.Loop() {
		if err := stream.SendMsg(&proto.GetSecretRequest{WorkspaceId: "ws", Name: "TOKEN"}); err != nil {
			b.Fatal(err)
		}
		resp := new(proto.GetSecretResponse)
		if err := stream.RecvMsg(resp); err != nil {
			b.Fatal(err)
		}
		if resp.Secret.GetName() != "TOKEN" {
			b.Fatal("wrong secret")
		}
	}
	b.ReportMetric(float64(cpuTime(b, pid)-cpu0)/float64(b.N), "cpu-ns/op")
	stream.CloseSend()
}
