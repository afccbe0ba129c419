package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/internal/gctune"
	"rotor.sh/rotor/internal/logx"
	"rotor.sh/rotor/plugins"
	pluginproto "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/storage/postgres"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/web"
	"rotor.sh/rotor/workflow"
)

// File names inside the data dir.
const (
	dbFileName        = "rotor.db"
	devMasterKeyFile  = "master.key"
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
)

func serveCommand() *cli.Command {
	flags := append(serveFlags(), proxyFlags()...)
	return &cli.Command{
		Name:   "serve",
		Usage:  "run the Rotor server: control API, resolving proxy and ops listener",
		Flags:  flags,
		Before: altsrc.InitInputSourceWithContext(flags, altsrc.NewYamlSourceFromFlagFunc(flagConfig)),
		Action: func(c *cli.Context) error {
			cfg, err := loadNodeConfig(c, modeServe)
			if err != nil {
				return err
			}
			return serve(c.Context, cfg, c.App.ErrWriter)
		},
	}
}

// Node modes: what a command runs.
const (
	modeServe    = "serve"    // --components decides
	modeProxy    = "proxy"    // the proxy alone
	modeDispatch = "dispatch" // dispatch workers alone, through a remote proxy
)

// loadNodeConfig reads the settings of a node.
func loadNodeConfig(c *cli.Context, mode string) (serveConfig, error) {
	cfg, err := loadServeConfig(c)
	if err != nil {
		return cfg, err
	}
	withProxy := mode == modeProxy
	if mode == modeDispatch {
		cfg.Dispatch = true
		if cfg.DispatchProxyURL == "" {
			return cfg, settingErr(flagDispatchProxyURL, "rotor dispatch needs the address of a Rotor proxy")
		}
		if cfg.DispatchToken == "" {
			return cfg, settingErr(flagDispatchToken, "rotor dispatch needs the dispatch token its proxies were started with")
		}
		return cfg, checkDispatchProxyURL(cfg.DispatchProxyURL)
	}
	if mode == modeServe {
		// rotor serve: --components decides.
		cfg.API, withProxy = false, false
		for _, comp := range strings.Split(c.String(flagComponents), ",") {
			switch strings.TrimSpace(comp) {
			case "api":
				cfg.API = true
			case "proxy":
				withProxy = true
			case "dispatch":
				cfg.Dispatch = true
			case "":
			default:
				return cfg, settingErr(flagComponents, fmt.Sprintf("%q is not api, proxy or dispatch", comp))
			}
		}
		if cfg.Dispatch && !withProxy && cfg.DispatchProxyURL == "" {
			return cfg, settingErr(flagComponents, "dispatch without proxy needs --dispatch-proxy-url and ROTOR_DISPATCH_TOKEN (a remote Rotor proxy)")
		}
		if !cfg.API && !withProxy && !cfg.Dispatch {
			return cfg, settingErr(flagComponents, "nothing to run")
		}
		if cfg.Dispatch && !withProxy {
			if err := checkDispatchProxyURL(cfg.DispatchProxyURL); err != nil {
				return cfg, err
			}
		}
	}
	if withProxy {
		pc, err := loadProxyConfig(c, cfg.DataDir)
		if err != nil {
			return cfg, err
		}
		cfg.Proxy = &pc
	}
	return cfg, nil
}

func serve(ctx context.Context, cfg serveConfig, stderr io.Writer) error {
	// One write per flush instead of one per line (a line per proxied
	// request); everything held is written when serve returns, which a
	// SIGTERM reaches after the graceful shutdown.
	bw := logx.NewBufferedWriter(stderr, 0, 0)
	defer bw.Close()
	stderr = bw
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	hardenProcess(log)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	masterKey, err := loadMasterKey(cfg, log)
	if err != nil {
		return err
	}
	lockKey(log, "master key", masterKey)
	defer clear(masterKey)
	dropSecretEnv()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, storeReady, err := openStore(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer store.Close()
	v, err := vault.Open(ctx, vault.Options{Store: store, MasterKey: masterKey, Logger: log, Registerer: reg, CacheTTL: cfg.VaultCacheTTL,
		AuditBacklogMax: cfg.AuditBacklogMax, AuditAnchorPath: filepath.Join(cfg.DataDir, auditAnchorFile),
		AuditExport: cfg.AuditExport, AuditExportCursorPath: filepath.Join(cfg.DataDir, auditExportCursorFile)})
	if errors.Is(err, vault.ErrMasterKey) {
		return fmt.Errorf("refusing to start: the master key does not match the data in %s (%v); use the key this data dir was created with", cfg.DataDir, err)
	}
	if err != nil {
		return err
	}
	clear(masterKey)
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := v.Close(cctx); err != nil {
			log.Error("closing vault", "err", err)
		}
	}()

	boot, err := v.Bootstrap(ctx, cfg.BootstrapKey)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if boot.Created {
		log.Info("first start: created workspace and operator API key", "workspace", boot.Workspace.Name, "workspace_id", boot.Workspace.ID, "key_id", boot.KeyID)
		// Credentials go to stderr once, outside the structured log, so log
		// shipping does not carry them.
		// Built in one local buffer, written once and cleared: fmt's
		// pooled print buffers would keep a copy after use.
		msg := []byte("\n================================================================\n")
		if boot.Key != "" {
			msg = append(msg, " Rotor admin API key (shown once; only its hash is stored):\n\n   export ROTOR_API_KEY="...)
			msg = append(msg, boot.Key...)
			msg = append(msg, "\n\n Create more with: rotor keys create --name NAME\n\n"...)
		}
		msg = append(msg, " Callback secret: dispatched jobs carry Authorization: Bearer <it>;\n"+
			" your callback handler checks it (shown once; rotate with\n"+
			" POST /v1/workspace/callback-secret):\n\n   ROTOR_CALLBACK_SECRET="...)
		msg = append(msg, boot.Callback.CallbackSecret.Bytes()...)
		msg = append(msg, "\n   webhook signing secret: "...)
		msg = append(msg, boot.Callback.SigningSecret.Bytes()...)
		msg = append(msg, "\n================================================================\n\n"...)
		_, _ = stderr.Write(msg)
		clear(msg)
		// Out now, not at the log's next flush: whoever starts Rotor reads
		// the key as soon as it answers /readyz (the README does); and
		// gone from the log buffer.
		_ = bw.FlushClear()
	}
	// Workspaces from before dispatch existed get their credentials now.
	wss, err := store.ListWorkspaces(ctx)
	if err != nil {
		return err
	}
	for _, ws := range wss {
		if _, created, err := v.EnsureCallbackCredentials(ctx, ws.ID); err != nil {
			return err
		} else if created && !boot.Created {
			log.Info("created dispatch credentials for a workspace; get them with POST /v1/workspace/callback-secret", "workspace_id", ws.ID)
		}
	}

	// Ready while storage answers and the audit backlog is under its
	// threshold (a node about to refuse requests leaves the load balancer).
	ready := func(ctx context.Context) error {
		if err := v.AuditReady(ctx); err != nil {
			return err // no I/O: checked first, and named even when storage hangs
		}
		return storeReady(ctx)
	}
	var servers []*namedServer
	reloadCA := func() {}
	// Other nodes' rotations and deletions drop this node's cached values.
	tasks := []func(context.Context) error{v.WatchChanges, func(ctx context.Context) error {
		// SIGHUP reopens the audit export file (logrotate).
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				v.ReopenAuditExport()
				reloadCA() // the proxy's CA files, if they changed
			}
		}
	}}
	notify := func() {}
	var disp *dispatch.Dispatcher
	// The dispatcher's credential at the proxy: shared with remote dispatch
	// nodes when configured, otherwise random for this process.
	internalToken := cfg.DispatchToken
	if internalToken == "" && cfg.Dispatch {
		tok := make([]byte, 32)
		_, _ = rand.Read(tok)
		internalToken = hex.EncodeToString(tok)
	}
	queues := dispatch.NewService(store, v, nil, func() { notify() })
	// Workflows (issue 14): the engine runs beside the dispatcher, through
	// the same proxy listener and token.
	var engine *workflow.Engine
	notifyRuns := func() {}
	workflows := workflow.NewService(store, v, reg, nil, func() { notifyRuns() })
	if cfg.API {
		dash, err := web.New(web.Options{Vault: v, Queues: queues, Logger: log, Metrics: reg, Workflows: workflows})
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/dashboard/", dash)
		mux.Handle("GET /dashboard", http.RedirectHandler("/dashboard/", http.StatusSeeOther))
		mux.Handle("/", api.New(api.Options{Vault: v, Queues: queues, Logger: log, Registerer: reg, Quotas: cfg.Quotas, Usage: store,
			Workflows: workflows}))
		servers = append(servers, &namedServer{name: "api", addr: cfg.APIAddr, handler: mux})
	}
	if cfg.Proxy != nil {
		opts, listenTLS, err := buildProxyOptions(ctx, *cfg.Proxy, store)
		if err != nil {
			return err
		}
		opts.Vault, opts.Logger, opts.Registerer = v, log, reg
		opts.InternalToken = internalToken
		p, err := proxy.New(opts)
		if err != nil {
			return err
		}
		defer p.CloseIdleConnections()
		reloadCA = p.ReloadCA
		log.Info("proxy configured", "mode", opts.Mode, "tls_interception", opts.CA != nil, "ssrf_guard", opts.SSRFGuard,
			"require_allowed_hosts", opts.RequireAllowedHosts, "listener_tls", listenTLS != nil)
		if opts.Mode == proxy.ModeGateway && listenTLS == nil && !isLoopbackAddr(cfg.Proxy.Addr) {
			log.Warn("gateway proxy listens in clear on a non-loopback address: API keys and secret values would cross the network unencrypted; set --proxy-tls-cert", "addr", cfg.Proxy.Addr)
		}
		var lane func(*http.Server) httpServer
		if cfg.Proxy.Engine == proxy.EngineLane {
			lane = func(s *http.Server) httpServer { return p.NewLaneServer(s) }
		}
		log.Info("proxy engine", "engine", cfg.Proxy.Engine, "lane", lane != nil && listenTLS == nil)
		servers = append(servers, &namedServer{name: "proxy", addr: cfg.Proxy.Addr, handler: p, tls: listenTLS, drain: p.Drain, lane: lane})
		if cfg.Dispatch {
			// The dispatcher and the workflow engine hand their requests to
			// the proxy in this process (issue 16): the proxy's own request
			// handling, internal token included, without a loopback socket,
			// whatever the public proxy listener is.
			tr := p.InternalTransport()
			disp, err = dispatch.New(dispatch.Options{Store: store, Actors: v, Transport: tr, InternalToken: internalToken,
				Logger: log, Registerer: reg, DrainTimeout: cfg.ShutdownTimeout, Visibility: cfg.DispatchLease})
			if err != nil {
				return err
			}
			if engine, err = workflow.NewEngine(workflow.Options{Store: store, Actors: v, Transport: tr, InternalToken: internalToken,
				Logger: log, Registerer: reg, SignAudit: v.SignAudit}); err != nil {
				return err
			}
		}
	}
	if cfg.Dispatch && disp == nil {
		// Dispatch workers alone, delivering through a remote proxy.
		disp, err = dispatch.New(dispatch.Options{Store: store, Actors: v, ProxyURL: cfg.DispatchProxyURL, InternalToken: internalToken,
			Logger: log, Registerer: reg, DrainTimeout: cfg.ShutdownTimeout, Visibility: cfg.DispatchLease})
		if err != nil {
			return err
		}
		if engine, err = workflow.NewEngine(workflow.Options{Store: store, Actors: v, ProxyURL: cfg.DispatchProxyURL, InternalToken: internalToken,
			Logger: log, Registerer: reg, SignAudit: v.SignAudit}); err != nil {
			return err
		}
	}
	if disp != nil {
		notify = disp.Notify
		tasks = append(tasks, disp.Run, func(ctx context.Context) error {
			// Jobs enqueued through other nodes wake this dispatcher.
			return store.Changes(ctx, func(c storage.Change) {
				if c.Kind == storage.ChangeJobs {
					disp.Notify()
				}
			})
		})
	}
	if engine != nil {
		notifyRuns = engine.Notify
		tasks = append(tasks, workflowEngineTasks(engine, store)...)
	}
	if cfg.API || cfg.Dispatch {
		// Issue 11: finished jobs are deleted after --jobs-retention.
		tasks = append(tasks, jobsRetention(store, cfg.JobsRetention, log, reg))
		// Issue 14: and so are finished workflow runs.
		tasks = append(tasks, runsRetention(store, cfg.JobsRetention, log, reg))
	}
	// Issue 11: audit rows are pruned after --audit-retention.
	tasks = append(tasks, auditRetention(v, cfg.AuditRetention, log))
	// Issue 15: the GC target follows the live heap (internal/gctune).
	tasks = append(tasks, gctune.Run)
	ops, err := withPprof(log, cfg.OpsAddr, api.Ops(reg, ready))
	if err != nil {
		return err
	}
	servers = append(servers, &namedServer{name: "ops", addr: cfg.OpsAddr, handler: ops})
	// Start-up lines are out before the first request can be answered (the
	// log's buffer would hold them for up to its interval).
	started := func() { _ = bw.Flush() }
	return runServers(ctx, log, cfg.ShutdownTimeout, servers, started, tasks...)
}

// auditAnchorFile, in the data dir, keeps the newest audit seal outside
// the database (vault.Options.AuditAnchorPath).
const auditAnchorFile = "audit-anchor.json"

// auditExportCursorFile, in the data dir, is how far --audit-export got.
const auditExportCursorFile = "audit-export.cursor"

// openStore opens the configured storage backend: by default in a plugin
// process (this binary, re-executed as `rotor plugin storage`), which
// receives its settings over RPC and none of Rotor's environment.
func openStore(ctx context.Context, cfg serveConfig, log *slog.Logger, reg prometheus.Registerer) (storage.Store, func(context.Context) error, error) {
	dbPath, err := filepath.Abs(filepath.Join(cfg.DataDir, dbFileName))
	if err != nil {
		return nil, nil, err
	}
	if cfg.StoragePlugin == "in-process" {
		var st storage.Store
		if cfg.Storage == "postgres" {
			st, err = postgres.Open(ctx, cfg.PostgresDSN)
		} else {
			st, err = bolt.Open(dbPath, bolt.Options{})
		}
		if err != nil {
			return nil, nil, err
		}
		return st, func(ctx context.Context) error { _, err := st.ListWorkspaces(ctx); return err }, nil
	}
	path, args := cfg.StoragePlugin, []string{}
	if path == "" {
		if path, err = os.Executable(); err != nil {
			return nil, nil, err
		}
		args = []string{"plugin", "storage", cfg.Storage}
	}
	env, err := pluginPprofEnv()
	if err != nil {
		return nil, nil, err
	}
	sup, err := plugins.Launch(ctx, plugins.LaunchOptions{Path: path, Args: args, Env: env, SHA256: cfg.PluginSHA256, Logger: log, Registerer: reg,
		CallTimeout: cfg.StorageCallTimeout,
		Config:      &pluginproto.ConfigureRequest{Backend: cfg.Storage, Path: dbPath, Dsn: cfg.PostgresDSN}})
	if err != nil {
		return nil, nil, err
	}
	log.Info("storage plugin started", "backend", cfg.Storage, "plugin", path, "pid", sup.Pid())
	return sup, sup.Ready, nil
}

type namedServer struct {
	name    string
	addr    string
	handler http.Handler
	tls     *tls.Config
	// drain, if set, waits for work Shutdown does not see (hijacked
	// connections) after Shutdown returns.
	drain func(context.Context) error
	// lane, if set, serves a listener in clear with the proxy's lane
	// (proxy.LaneServer) around the net/http server, which then serves
	// only the connections the lane hands over.
	lane func(*http.Server) httpServer
	srv  httpServer
}

// httpServer is what runServers runs: an *http.Server or a
// *proxy.LaneServer.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// runServers listens on every address first (so a taken port fails start-up
// before anything serves), serves until ctx ends or one server fails, then
// shuts all down gracefully, draining in-flight requests.
//
// started, if set, runs once every listener is open, before any serves.
// tasks run beside the servers until ctx ends (the dispatcher); shutdown
// waits for them too.
func runServers(ctx context.Context, log *slog.Logger, drain time.Duration, servers []*namedServer, started func(), tasks ...func(context.Context) error) error {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, s := range servers {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("%s listener: %w", s.name, err)
		}
		if s.tls != nil {
			ln = tls.NewListener(ln, s.tls)
		}
		lns = append(lns, ln)
		hs := &http.Server{
			Handler:           s.handler,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		}
		s.srv = hs
		if s.lane != nil && s.tls == nil {
			// The lane reads clear text only; a proxy served over TLS
			// stays on net/http (ALPN, Request.TLS).
			s.srv = s.lane(hs)
		}
	}
	for i, s := range servers {
		log.Info(s.name+" listening", "addr", lns[i].Addr().String())
	}
	if started != nil {
		started()
	}
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() {
			if err := s.srv.Serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server: %w", s.name, err)
				return
			}
			errc <- nil
		}()
	}
	taskCtx, stopTasks := context.WithCancel(ctx)
	defer stopTasks()
	var taskWG sync.WaitGroup
	for _, task := range tasks {
		taskWG.Go(func() {
			if err := task(taskCtx); err != nil {
				log.Error("background task failed", "err", err)
			}
		})
	}
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "drain_timeout", drain.String())
	case runErr = <-errc:
	}
	// Tasks stop starting work and finish what runs (through the servers,
	// which drain their in-flight requests).
	stopTasks()
	defer taskWG.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	for _, s := range servers {
		if err := s.srv.Shutdown(sctx); err != nil {
			log.Error("shutdown", "server", s.name, "err", err)
			s.srv.Close()
		}
		if s.drain != nil {
			if err := s.drain(sctx); err != nil {
				log.Error("drain", "server", s.name, "err", err)
			}
		}
	}
	// Every Serve goroutine has returned once Shutdown/Close returned; collect them.
	for range len(servers) - boolInt(runErr != nil) {
		<-errc
	}
	log.Info("stopped")
	return runErr
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// loadMasterKey finds the master key: ROTOR_MASTER_KEY, then
// --master-key-file, then the development key file in the data dir, which is
// generated when the data dir holds no data yet.
func loadMasterKey(cfg serveConfig, log *slog.Logger) ([]byte, error) {
	switch {
	case cfg.MasterKey != "":
		k, err := decodeMasterKey(cfg.MasterKey)
		if err != nil {
			return nil, settingErr(flagMasterKey, err.Error())
		}
		return k, nil
	case cfg.MasterKeyFile != "":
		return readMasterKeyFile(cfg.MasterKeyFile, flagMasterKeyFile, log)
	}
	if cfg.Storage == "postgres" {
		// Every node must use the same key; a generated one would differ.
		return nil, settingErr(flagMasterKey, "with --storage postgres, give every node the same master key (ROTOR_MASTER_KEY or --master-key-file)")
	}
	devPath := filepath.Join(cfg.DataDir, devMasterKeyFile)
	if _, err := os.Stat(devPath); err == nil {
		log.Warn("DEVELOPMENT SETUP: using the generated master key file next to the data; set ROTOR_MASTER_KEY or --master-key-file in production", "path", devPath)
		return readMasterKeyFile(devPath, flagMasterKeyFile, log)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, dbFileName)); err == nil {
		return nil, fmt.Errorf("refusing to start: %s holds data but no master key was given; set ROTOR_MASTER_KEY or --master-key-file to the key it was created with", cfg.DataDir)
	}
	key := vault.GenerateMasterKey()
	f, err := os.OpenFile(devPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write development master key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write development master key: %w", err)
	}
	log.Warn("DEVELOPMENT SETUP: generated a master key and stored it next to the data; anyone who can read the data dir can decrypt it. Set ROTOR_MASTER_KEY or --master-key-file in production", "path", devPath)
	return key, nil
}

func readMasterKeyFile(path, flag string, log *slog.Logger) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, settingErr(flag, err.Error())
	}
	if st.Mode().Perm()&0o077 != 0 {
		log.Warn("master key file is readable by group or others; chmod 600 it", "path", path, "mode", st.Mode().Perm().String())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, settingErr(flag, err.Error())
	}
	defer clear(data)
	k, err := decodeMasterKey(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, settingErr(flag, fmt.Sprintf("%s: %v", path, err))
	}
	return k, nil
}

func decodeMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != vault.MasterKeySize {
				return nil, fmt.Errorf("must be base64 of %d bytes, got %d bytes (generate one with: openssl rand -base64 32)", vault.MasterKeySize, len(k))
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("is not base64 (generate one with: openssl rand -base64 32)")
}
