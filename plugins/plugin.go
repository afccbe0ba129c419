package plugins

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc"

	pb "rotor.sh/rotor/plugins/proto"
)

// Handshake is checked by host and plugin before anything else: a binary
// that is not a Rotor storage plugin refuses to start as one. The cookie
// stays the same across protocol versions, so that a plugin of another
// version gets as far as the version check and is refused with a clear
// error; the version itself is negotiated through versionedPlugins.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "ROTOR_STORAGE_PLUGIN",
	MagicCookieValue: "rotor-storage-v1-6d1f0a8e",
}

const pluginName = "storage"

// envFastSpin in a plugin's environment sets how long its fast-call reader
// polls before parking: a Go duration, or "off" (LaunchOptions.FastSpin
// sets it).
const envFastSpin = "ROTOR_FAST_SPIN"

// parseFastSpin reads envFastSpin's value: the default when empty or
// malformed (a plugin does not fail to start over a tuning knob).
func parseFastSpin(v string) time.Duration {
	if v == "off" {
		return 0
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 && d <= time.Second {
		return d
	}
	return spinWindow
}

// incompatibleRE matches go-plugin's version-mismatch error.
var incompatibleRE = regexp.MustCompile(`incompatible API version with plugin\. Plugin version: (\d+)`)

// versionedPlugins is the one protocol version this build speaks.
func versionedPlugins(p *storagePlugin) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{ProtocolVersion: {pluginName: p}}
}

// requiredCapabilities must all be reported by a plugin's Describe.
var requiredCapabilities = []pb.Capability{pb.Capability_WORKSPACES, pb.Capability_SECRETS, pb.Capability_AUDIT, pb.Capability_JOBS,
	pb.Capability_CHANGES, pb.Capability_WORKFLOWS}

type storagePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srv *Server
}

func (p *storagePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterPluginServer(s, p.srv)
	pb.RegisterWorkspacesServer(s, p.srv)
	pb.RegisterSecretsServer(s, p.srv)
	pb.RegisterAuditServer(s, p.srv)
	pb.RegisterJobsServer(s, p.srv)
	pb.RegisterRetentionServer(s, p.srv)
	pb.RegisterChangesServer(s, p.srv)
	pb.RegisterWorkflowsServer(s, p.srv)
	return nil
}

func (p *storagePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return newConn(cc), nil
}

// Serve runs this process as a storage plugin until the host goes away.
// It exits when its parent dies, so a plugin never outlives Rotor.
func Serve(open Opener) {
	if os.Getenv("GOGC") == "" {
		// The plugin's live heap is small (bbolt's pages are mapped, not
		// heap; rows are transient), so Go's default GOGC=100 collects
		// after every few MB of request garbage: many cycles a second
		// under dispatch load, about a sixth of the plugin's CPU (issue 16).
		// The plugin starts with an empty environment, so the host's GOGC
		// never reaches it; a GOGC in LaunchOptions.Env still wins.
		debug.SetGCPercent(pluginGCPercent)
	}
	srv := NewServer(open)
	defer srv.Close()
	if err := srv.listenFast(parseFastSpin(os.Getenv(envFastSpin))); err != nil {
		// The host falls back to gRPC for every call.
		fmt.Fprintf(os.Stderr, "storage plugin: no fast-call socket: %v\n", err)
	}
	go watchParent(os.Getppid())
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: versionedPlugins(&storagePlugin{srv: srv}),
		GRPCServer:       grpcServer,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn}),
	})
}

// pluginGCPercent is the plugin's GOGC unless its environment sets one.
const pluginGCPercent = 400

func watchParent(ppid int) {
	for {
		time.Sleep(500 * time.Millisecond)
		if os.Getppid() != ppid {
			os.Exit(0)
		}
	}
}

// LaunchOptions say which plugin to run and how to configure it.
type LaunchOptions struct {
	// Path and Args start the plugin (by default rotor itself:
	// "rotor plugin storage").
	Path string
	Args []string
	// SHA256, if set, pins the plugin binary.
	SHA256 []byte
	// Env is the plugin's whole environment (normally empty: nothing of the
	// host's, least of all the master key, reaches it).
	Env []string
	// Config is sent over the Configure RPC once the plugin is up.
	Config *pb.ConfigureRequest
	// CallTimeout bounds each storage call (DefaultCallTimeout when 0).
	CallTimeout time.Duration
	// NoFastCalls keeps every call on gRPC even when the plugin offers
	// FAST_CALLS (benchmarks and tests of the gRPC path).
	NoFastCalls bool
	// NoAuditRows sends audit rows as AuditEvent messages even when the
	// plugin offers AUDIT_ROWS (tests of the path an older plugin gets).
	NoAuditRows bool
	// FastSpin is how long each side of the fast-call socket polls for
	// a frame before it parks (spin.go): 0 for the default, negative for
	// never (every wait parks at once). Set, it adds ROTOR_FAST_SPIN to the
	// plugin's environment.
	FastSpin   time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Supervised is a storage.Store served by a plugin process that is
// restarted, with backoff, whenever it exits.
type Supervised struct {
	*Client
	o        LaunchOptions
	log      *slog.Logger
	restarts prometheus.Counter
	up       prometheus.Gauge

	mu sync.Mutex
	pc *plugin.Client
	// fastSocket is the running plugin's fast-call socket (as Describe
	// reported it), removed once the plugin has exited: a plugin killed
	// before the host connected (or whose socket the host never used)
	// cannot remove it itself.
	fastSocket string
	stop       chan struct{}
	done       chan struct{}
	closed     bool
}

// Launch starts the plugin and its supervisor. The first start must
// succeed; later crashes are restarted.
func Launch(ctx context.Context, o LaunchOptions) (*Supervised, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	f := promauto.With(o.Registerer)
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	s := &Supervised{Client: newClient(o.CallTimeout), o: o, log: o.Logger, stop: make(chan struct{}), done: make(chan struct{}),
		restarts: f.NewCounter(prometheus.CounterOpts{Name: "rotor_storage_plugin_restarts_total", Help: "Times the storage plugin process was restarted after it exited."}),
		up:       f.NewGauge(prometheus.GaugeOpts{Name: "rotor_storage_plugin_up", Help: "1 while the storage plugin process is serving."}),
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	s.Client.closer = s.close
	go s.supervise()
	return s, nil
}

// fastSpin is LaunchOptions.FastSpin as both sides use it: the default
// when unset, 0 (never poll) when negative, at most a second (what the
// plugin's parseFastSpin accepts).
func (s *Supervised) fastSpin() time.Duration {
	switch {
	case s.o.FastSpin < 0:
		return 0
	case s.o.FastSpin > 0:
		return min(s.o.FastSpin, time.Second)
	}
	return spinWindow
}

func (s *Supervised) start(ctx context.Context) error {
	cmd := exec.Command(s.o.Path, s.o.Args...)
	cmd.Env = append([]string{}, s.o.Env...)
	switch spin := s.fastSpin(); {
	case spin == 0:
		cmd.Env = append(cmd.Env, envFastSpin+"=off")
	case s.o.FastSpin > 0:
		cmd.Env = append(cmd.Env, envFastSpin+"="+spin.String())
	}
	setPdeathsig(cmd)
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: versionedPlugins(&storagePlugin{}),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Managed:          true,
		SkipHostEnv:      true,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Error}),
		StartTimeout:     30 * time.Second,
		GRPCDialOptions:  grpcDialOptions(),
	}
	if len(s.o.SHA256) > 0 {
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: s.o.SHA256, Hash: sha256.New()}
	}
	pc := plugin.NewClient(cfg)
	rpcClient, err := pc.Client()
	if err != nil {
		pc.Kill()
		if m := incompatibleRE.FindStringSubmatch(err.Error()); m != nil {
			// go-plugin's own words list the versions in Go syntax; say it
			// in one line an operator can act on.
			return fmt.Errorf("storage plugin %s speaks protocol version %s, this rotor speaks version %d: rebuild the plugin against this rotor's plugins/proto", s.o.Path, m[1], ProtocolVersion)
		}
		return fmt.Errorf("start storage plugin %s: %w", s.o.Path, err)
	}
	raw, err := rpcClient.Dispense(pluginName)
	if err != nil {
		pc.Kill()
		return fmt.Errorf("storage plugin: %w", err)
	}
	cc := raw.(*conn)
	cctx, cancel := withCallTimeout(ctx, s.o.CallTimeout)
	defer cancel()
	if _, err = cc.plugin.Configure(cctx, s.o.Config); err != nil {
		pc.Kill()
		return fmt.Errorf("configure storage plugin: %w", fromStatus("Configure", err))
	}
	d, err := cc.plugin.Describe(cctx, &pb.DescribeRequest{})
	if err != nil {
		pc.Kill()
		return fmt.Errorf("storage plugin %s: describe: %w", s.o.Path, fromStatus("Describe", err))
	}
	if err := checkDescribe(d); err != nil {
		pc.Kill()
		return fmt.Errorf("storage plugin %s: %w", s.o.Path, err)
	}
	caps := make(map[pb.Capability]bool, len(d.Capabilities))
	for _, c := range d.Capabilities {
		caps[c] = true
	}
	if caps[pb.Capability_FAST_CALLS] && !s.o.NoFastCalls {
		f, err := dialFast(cctx, d.FastSocket, d.FastToken, cc.grpc, s.fastSpin())
		if err != nil {
			s.log.Warn("storage plugin: fast calls unavailable, using gRPC", "err", err)
		} else {
			cc = newConn(f)
		}
	}
	if s.o.NoAuditRows {
		delete(caps, pb.Capability_AUDIT_ROWS)
	}
	cc.caps = caps
	s.mu.Lock()
	s.pc, s.fastSocket = pc, d.FastSocket
	s.mu.Unlock()
	s.Client.setConn(cc)
	s.up.Set(1)
	return nil
}

// supervise restarts the plugin whenever it exits, with backoff.
func (s *Supervised) supervise() {
	defer close(s.done)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		exited := s.pc != nil && s.pc.Exited()
		sock := s.fastSocket
		s.mu.Unlock()
		if !exited {
			continue
		}
		s.Client.setConn(nil)
		removeFastSocket(sock)
		s.up.Set(0)
		s.log.Error("storage plugin exited; restarting (storage calls answer unavailable meanwhile)")
		backoff := 100 * time.Millisecond
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := s.start(ctx)
			cancel()
			if err == nil {
				s.restarts.Inc()
				s.log.Info("storage plugin restarted")
				break
			}
			s.log.Error("storage plugin restart failed", "err", err, "retry_in", backoff.String())
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

// Ready reports whether the plugin is serving (for /readyz).
func (s *Supervised) Ready(ctx context.Context) error {
	if _, err := s.Client.rpc(); err != nil {
		return err
	}
	_, err := s.Client.ListWorkspaces(ctx)
	return err
}

// Pid is the plugin process's id, or 0 (tests).
func (s *Supervised) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil || s.pc.ReattachConfig() == nil {
		return 0
	}
	return s.pc.ReattachConfig().Pid
}

func (s *Supervised) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.Client.setConn(nil)
	s.mu.Lock()
	if s.pc != nil {
		s.pc.Kill()
		removeFastSocket(s.fastSocket)
	}
	s.mu.Unlock()
}

// checkDescribe refuses a plugin whose Describe reports another protocol
// version or lacks a required capability.
func checkDescribe(d *pb.DescribeResponse) error {
	if d.ProtocolVersion != ProtocolVersion {
		return fmt.Errorf("reports protocol version %d, this rotor speaks %d", d.ProtocolVersion, ProtocolVersion)
	}
	have := map[pb.Capability]bool{}
	for _, c := range d.Capabilities {
		have[c] = true
	}
	for _, c := range requiredCapabilities {
		if !have[c] {
			return fmt.Errorf("lacks the required capability %s", c)
		}
	}
	if d.MaxBatch != 0 && d.MaxBatch < uint32(MaxBatch) {
		return fmt.Errorf("accepts batches of %d, fewer than the protocol's %d", d.MaxBatch, MaxBatch)
	}
	return nil
}
