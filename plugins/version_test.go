package plugins_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"rotor.sh/rotor/plugins"
	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

// oldPlugin is a storage plugin of protocol version 1 (the JSON tunnel
// this protocol replaced): it passes the magic cookie, serves gRPC, and
// speaks a version this host does not.
type oldPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (oldPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (oldPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

// serveOldProtocol runs the test binary as that version-1 plugin.
func serveOldProtocol() {
	hs := plugins.Handshake
	hs.ProtocolVersion = 1
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: hs,
		Plugins:         plugin.PluginSet{"storage": oldPlugin{}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Error}),
	})
}

// TestIncompatiblePluginRefused: a plugin of another protocol version is
// refused at start, with one line that names the versions.
func TestIncompatiblePluginRefused(t *testing.T) {
	_, err := plugins.Launch(context.Background(), plugins.LaunchOptions{
		Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=v1"},
		Config: &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")},
	})
	if err == nil {
		t.Fatal("a protocol version 1 plugin was accepted")
	}
	msg := err.Error()
	t.Log(msg)
	if strings.Contains(msg, "\n") {
		t.Fatalf("error is not one line: %q", msg)
	}
	if !strings.Contains(msg, "speaks protocol version 1, this rotor speaks version 2") {
		t.Fatalf("error does not say which versions disagree: %q", msg)
	}
}

// describing is a real storage plugin whose Describe reports caps.
type describing struct {
	*plugins.Server
	caps []proto.Capability
}

func (d describing) Describe(context.Context, *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	return &proto.DescribeResponse{ProtocolVersion: plugins.ProtocolVersion, Capabilities: d.caps}, nil
}

type describingPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	d describing
}

func (p describingPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterPluginServer(s, p.d)
	proto.RegisterWorkspacesServer(s, p.d.Server)
	proto.RegisterSecretsServer(s, p.d.Server)
	proto.RegisterAuditServer(s, p.d.Server)
	proto.RegisterJobsServer(s, p.d.Server)
	proto.RegisterRetentionServer(s, p.d.Server)
	proto.RegisterChangesServer(s, p.d.Server)
	proto.RegisterWorkflowsServer(s, p.d.Server)
	return nil
}

func (describingPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

// serveDescribing runs the test binary as a plugin of this version that
// reports only caps (a backend without some services).
func serveDescribing(caps ...proto.Capability) {
	srv := plugins.NewServer(plugins.OpenBackend)
	defer srv.Close()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  plugins.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{plugins.ProtocolVersion: {"storage": describingPlugin{d: describing{srv, caps}}}},
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Error}),
	})
}

var baseCaps = []proto.Capability{proto.Capability_WORKSPACES, proto.Capability_SECRETS, proto.Capability_AUDIT, proto.Capability_JOBS,
	proto.Capability_CHANGES, proto.Capability_WORKFLOWS}

// TestPluginMissingCapability: a plugin of the right version that lacks a
// required service is refused at start; one that lacks the optional
// RETENTION starts, and pruning through it answers errors.ErrUnsupported
// without a call (the host never calls an RPC the plugin did not report).
func TestPluginMissingCapability(t *testing.T) {
	cfg := &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}
	_, err := plugins.Launch(context.Background(), plugins.LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=nojobs"}, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "lacks the required capability JOBS") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a plugin without JOBS: got %v, want a one-line refusal naming JOBS", err)
	}
	s, err := plugins.Launch(context.Background(), plugins.LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=noretention"}, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.PruneJobs(context.Background(), storage.PruneJobsArgs{Before: time.Now(), Limit: 10}); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("PruneJobs without RETENTION: got %v, want errors.ErrUnsupported", err)
	}
	if _, err := s.GetAuditRetention(context.Background(), "ws"); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("GetAuditRetention without RETENTION: got %v, want errors.ErrUnsupported", err)
	}
	// The rest works.
	if _, err := s.GetWorkspace(context.Background(), "ws"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetWorkspace: got %v, want ErrNotFound", err)
	}
}
