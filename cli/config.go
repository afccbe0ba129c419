package cli

import (
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"gopkg.in/yaml.v3"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/internal/logx"
	"rotor.sh/rotor/plugins"
	"rotor.sh/rotor/vault"
)

// Defaults of `rotor serve`.
const (
	DefaultDataDir         = "./data"
	DefaultAPIAddr         = "127.0.0.1:8080"
	DefaultOpsAddr         = "127.0.0.1:8082"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "json"
	DefaultShutdownTimeout = 15 * time.Second
	DefaultAPIURL          = "http://127.0.0.1:8080"
	DefaultStorage         = "bbolt"
)

// Flag names; each is also the YAML key in a --config file, and has a
// ROTOR_<NAME> environment variable (upper case, '-' as '_').
const (
	flagConfig           = "config"
	flagDataDir          = "data-dir"
	flagAPIAddr          = "api-addr"
	flagOpsAddr          = "ops-addr"
	flagMasterKey        = "master-key"
	flagMasterKeyFile    = "master-key-file"
	flagBootstrapKey     = "bootstrap-api-key"
	flagLogLevel         = "log-level"
	flagLogFormat        = "log-format"
	flagShutdownTimeout  = "shutdown-timeout"
	flagAPIURL           = "api-url"
	flagAPIKey           = "api-key"
	flagOutput           = "output"
	flagComponents       = "components"
	flagDispatchLease    = "dispatch-lease"
	flagStorage          = "storage"
	flagDispatchToken    = "dispatch-token"
	flagDispatchProxyURL = "dispatch-proxy-url"
	flagStoragePlugin    = "storage-plugin"
	flagPluginSHA256     = "storage-plugin-sha256"
	flagPostgresDSN      = "postgres-dsn"
	// Issue 10 (memory): the vault cache's lifetime.
	flagVaultCacheTTL = "vault-cache-ttl"
	// Issue 11.
	flagAuditBacklogMax    = "audit-backlog-max"
	flagStorageCallTimeout = "storage-call-timeout"
	flagAuditExport        = "audit-export"
	flagJobsRetention      = "jobs-retention"
	flagAuditRetention     = "audit-retention" // issue 11
)

func envName(flag string) string {
	return "ROTOR_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func serveFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: flagConfig, EnvVars: []string{envName(flagConfig)}, Usage: "YAML file with settings (keys are these flag names)"},
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagDataDir, EnvVars: []string{envName(flagDataDir)}, Value: DefaultDataDir, Usage: "directory for the bbolt file (and the generated development master key)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagStorage, EnvVars: []string{envName(flagStorage)}, Value: DefaultStorage, Usage: "bbolt (one node, in the data dir) or postgres (many nodes)"}),
		// Shared by proxies and remote dispatch nodes: environment or config file.
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagDispatchToken, EnvVars: []string{envName(flagDispatchToken)}, Hidden: true, Usage: "credential rotor dispatch nodes present to proxies"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagDispatchProxyURL, EnvVars: []string{envName(flagDispatchProxyURL)}, Usage: "the Rotor proxy that dispatch-only nodes deliver through (https:// across a network)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagStoragePlugin, EnvVars: []string{envName(flagStoragePlugin)}, Usage: "storage plugin binary (default: this rotor binary; \"in-process\" runs the backend inside rotor, for development)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagPluginSHA256, EnvVars: []string{envName(flagPluginSHA256)}, Usage: "pin the storage plugin binary to this SHA-256 (hex)"}),
		// The DSN can hold a password: environment or config file, not argv.
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagPostgresDSN, EnvVars: []string{envName(flagPostgresDSN)}, Hidden: true, Usage: "PostgreSQL connection string"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagAPIAddr, EnvVars: []string{envName(flagAPIAddr)}, Value: DefaultAPIAddr, Usage: "control API listen address"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagOpsAddr, EnvVars: []string{envName(flagOpsAddr)}, Value: DefaultOpsAddr, Usage: "ops listen address (/metrics, /healthz, /readyz)"}),
		// No command-line form is documented for the master key: argv is
		// visible in ps. It is read from the environment or the config file.
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagMasterKey, EnvVars: []string{envName(flagMasterKey)}, Hidden: true, Usage: "base64 of the 32-byte master key"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagMasterKeyFile, EnvVars: []string{envName(flagMasterKeyFile)}, Usage: "file holding the base64 master key"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagBootstrapKey, EnvVars: []string{envName(flagBootstrapKey)}, Hidden: true, Usage: "admin API key to install at first start"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagLogLevel, EnvVars: []string{envName(flagLogLevel)}, Value: DefaultLogLevel, Usage: "debug, info, warn or error"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagLogFormat, EnvVars: []string{envName(flagLogFormat)}, Value: DefaultLogFormat, Usage: "json or text"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagComponents, EnvVars: []string{envName(flagComponents)}, Value: "api,proxy,dispatch", Usage: "what `rotor serve` runs: any of api, proxy, dispatch (dispatch needs proxy)"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: flagDispatchLease, EnvVars: []string{envName(flagDispatchLease)}, Value: dispatch.DefaultVisibility, Usage: "how long a dispatcher holds a job before another may deliver it (after a crash)"}),
		// Issue 11: audit backlog bound and storage call deadline.
		altsrc.NewIntFlag(&cli.IntFlag{Name: flagAuditBacklogMax, EnvVars: []string{envName(flagAuditBacklogMax)}, Value: vault.DefaultAuditBacklogMax, Usage: "access rows kept while storage is failing; at the bound, requests needing a new row are refused (503 audit_unavailable); /readyz fails past a tenth of it"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: flagStorageCallTimeout, EnvVars: []string{envName(flagStorageCallTimeout)}, Value: plugins.DefaultCallTimeout, Usage: "deadline of each call to the storage plugin (a hung plugin answers unavailable after it)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: flagAuditExport, EnvVars: []string{envName(flagAuditExport)}, Usage: "export the audit trail and its seals as JSON Lines: stdout or file:PATH (reopened on SIGHUP)"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: flagJobsRetention, EnvVars: []string{envName(flagJobsRetention)}, Value: DefaultJobsRetention, Usage: "delete delivered, dead and canceled jobs (with attempts and idempotency records) older than this; 0 keeps them"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: flagAuditRetention, EnvVars: []string{envName(flagAuditRetention)}, Value: DefaultAuditRetention, Usage: "delete audit rows older than this (sealed and, with --audit-export, exported ones; a sealed marker keeps the rest verifiable); 0 keeps them"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: flagShutdownTimeout, EnvVars: []string{envName(flagShutdownTimeout)}, Value: DefaultShutdownTimeout, Usage: "how long to drain requests on SIGTERM"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: flagVaultCacheTTL, EnvVars: []string{envName(flagVaultCacheTTL)}, Value: vault.DefaultCacheTTL, Usage: "how long an opened secret stays in memory (rotation and deletion drop it at once)"}),
	}, quotaFlags()...) // issue #12: cli/quotas.go
}

// serveConfig is the validated configuration of `rotor serve`.
type serveConfig struct {
	DataDir          string
	APIAddr          string
	OpsAddr          string
	MasterKey        string
	MasterKeyFile    string
	BootstrapKey     string
	LogLevel         slog.Level
	LogFormat        string
	ShutdownTimeout  time.Duration
	DispatchLease    time.Duration
	Storage          string
	PostgresDSN      string
	StoragePlugin    string
	DispatchToken    string
	DispatchProxyURL string
	PluginSHA256     []byte
	VaultCacheTTL    time.Duration
	// Issue 11.
	AuditBacklogMax    int
	StorageCallTimeout time.Duration
	AuditExport        string
	JobsRetention      time.Duration
	AuditRetention     time.Duration
	Quotas             api.Quotas // issue #12: cli/quotas.go
	// Components: the API server, the dispatcher, and the proxy when Proxy
	// is set.
	API      bool
	Dispatch bool
	Proxy    *proxyConfig
}

// loadServeConfig reads and validates the settings; every error names the
// setting (flag, environment variable and config key alike).
func loadServeConfig(c *cli.Context) (serveConfig, error) {
	if path := c.String(flagConfig); path != "" {
		if err := checkConfigKeys(path, append(serveFlags(), proxyFlags()...)); err != nil {
			return serveConfig{}, err
		}
	}
	cfg := serveConfig{
		DataDir:          c.String(flagDataDir),
		APIAddr:          c.String(flagAPIAddr),
		OpsAddr:          c.String(flagOpsAddr),
		MasterKey:        c.String(flagMasterKey),
		MasterKeyFile:    c.String(flagMasterKeyFile),
		BootstrapKey:     c.String(flagBootstrapKey),
		LogFormat:        c.String(flagLogFormat),
		ShutdownTimeout:  c.Duration(flagShutdownTimeout),
		DispatchLease:    c.Duration(flagDispatchLease),
		Storage:          c.String(flagStorage),
		PostgresDSN:      c.String(flagPostgresDSN),
		StoragePlugin:    c.String(flagStoragePlugin),
		DispatchToken:    c.String(flagDispatchToken),
		DispatchProxyURL: c.String(flagDispatchProxyURL),
		VaultCacheTTL:    c.Duration(flagVaultCacheTTL),
	}
	if cfg.VaultCacheTTL < time.Second || cfg.VaultCacheTTL > 24*time.Hour {
		return cfg, settingErr(flagVaultCacheTTL, "must be 1s to 24h")
	}
	cfg.AuditBacklogMax = c.Int(flagAuditBacklogMax)
	cfg.StorageCallTimeout = c.Duration(flagStorageCallTimeout)
	cfg.JobsRetention = c.Duration(flagJobsRetention)
	if cfg.JobsRetention < 0 {
		return cfg, settingErr(flagJobsRetention, "must not be negative")
	}
	cfg.AuditRetention = c.Duration(flagAuditRetention)
	if cfg.AuditRetention < 0 {
		return cfg, settingErr(flagAuditRetention, "must not be negative")
	}
	cfg.AuditExport = c.String(flagAuditExport)
	if cfg.AuditExport != "" {
		if _, err := vault.ParseExportTarget(cfg.AuditExport); err != nil {
			return cfg, settingErr(flagAuditExport, "must be stdout or file:PATH")
		}
	}
	if cfg.AuditBacklogMax < 1 {
		return cfg, settingErr(flagAuditBacklogMax, "must be at least 1")
	}
	if cfg.StorageCallTimeout < 100*time.Millisecond {
		return cfg, settingErr(flagStorageCallTimeout, "must be at least 100ms")
	}
	var err error
	if cfg.Quotas, err = loadQuotas(c); err != nil {
		return cfg, err
	}
	if cfg.DispatchToken != "" && len(cfg.DispatchToken) < 32 {
		return cfg, settingErr(flagDispatchToken, "must be at least 32 characters (openssl rand -hex 32)")
	}
	if h := c.String(flagPluginSHA256); h != "" {
		sum, err := hex.DecodeString(h)
		if err != nil || len(sum) != 32 {
			return cfg, settingErr(flagPluginSHA256, "must be 64 hex digits")
		}
		cfg.PluginSHA256 = sum
	}
	if cfg.DataDir == "" {
		return cfg, settingErr(flagDataDir, "must not be empty")
	}
	for name, addr := range map[string]string{flagAPIAddr: cfg.APIAddr, flagOpsAddr: cfg.OpsAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return cfg, settingErr(name, fmt.Sprintf("%q is not host:port", addr))
		}
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(c.String(flagLogLevel))); err != nil {
		return cfg, settingErr(flagLogLevel, fmt.Sprintf("%q is not one of debug, info, warn, error", c.String(flagLogLevel)))
	}
	if cfg.LogFormat != "json" && cfg.LogFormat != "text" {
		return cfg, settingErr(flagLogFormat, fmt.Sprintf("%q is not json or text", cfg.LogFormat))
	}
	if cfg.ShutdownTimeout <= 0 {
		return cfg, settingErr(flagShutdownTimeout, "must be positive")
	}
	switch {
	case cfg.Storage != "bbolt" && cfg.Storage != "postgres":
		return cfg, settingErr(flagStorage, fmt.Sprintf("%q is not bbolt or postgres", cfg.Storage))
	case cfg.Storage == "postgres" && cfg.PostgresDSN == "":
		return cfg, settingErr(flagPostgresDSN, "required with --storage postgres")
	}
	if cfg.DispatchLease < time.Second {
		return cfg, settingErr(flagDispatchLease, "must be at least 1s")
	}
	if cfg.MasterKey != "" && cfg.MasterKeyFile != "" {
		return cfg, settingErr(flagMasterKey, "set either the master key or the master key file, not both")
	}
	return cfg, nil
}

func settingErr(flag, msg string) error {
	return fmt.Errorf("invalid setting %s (--%s, %s): %s", flag, flag, envName(flag), msg)
}

// checkConfigKeys refuses unknown keys in a config file, so a typo does not
// silently fall back to a default.
func checkConfigKeys(path string, flags []cli.Flag) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var known []string
	for _, f := range flags {
		known = append(known, f.Names()...)
	}
	for k := range m {
		if !slices.Contains(known, k) || k == flagConfig {
			return fmt.Errorf("config file %s: unknown key %q (known keys: %s)", path, k, strings.Join(known[1:], ", "))
		}
	}
	return nil
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	// Same lines as slog.JSONHandler, cheaper: the proxy logs every request.
	return slog.New(logx.NewHandler(w, level))
}
