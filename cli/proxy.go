package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
)

// Proxy defaults.
const (
	DefaultProxyAddr = "127.0.0.1:8081"
	DefaultProxyMode = proxy.ModeSidecar
	DefaultSSRFGuard = "auto"
)

const (
	flagProxyAddr             = "proxy-addr"
	flagProxyMode             = "proxy-mode"
	flagProxyDefaultWorkspace = "proxy-default-workspace"
	flagProxyRequireHosts     = "proxy-require-allowed-hosts"
	flagProxySSRFGuard        = "proxy-ssrf-guard"
	flagProxyAllowCIDRs       = "proxy-allow-cidrs"
	flagProxyCACert           = "proxy-ca-cert"
	flagProxyCAKey            = "proxy-ca-key"
	flagProxyUpstreamCA       = "proxy-upstream-ca-file"
	flagProxyTLSCert          = "proxy-tls-cert"
	flagProxyTLSKey           = "proxy-tls-key"
	flagProxyNoScrub          = "proxy-no-scrub"
	flagProxyEngine           = "proxy-engine"
)

func proxyFlags() []cli.Flag {
	s := func(name, value, usage string) cli.Flag {
		return altsrc.NewStringFlag(&cli.StringFlag{Name: name, EnvVars: []string{envName(name)}, Value: value, Usage: usage})
	}
	b := func(name, usage string) cli.Flag {
		return altsrc.NewBoolFlag(&cli.BoolFlag{Name: name, EnvVars: []string{envName(name)}, Usage: usage})
	}
	return []cli.Flag{
		s(flagProxyAddr, DefaultProxyAddr, "resolving proxy listen address (workers set HTTP_PROXY/HTTPS_PROXY to it)"),
		s(flagProxyMode, DefaultProxyMode, "sidecar (beside workers) or gateway (in front of many; auth always required, SSRF guard on)"),
		s(flagProxyDefaultWorkspace, "", "sidecar only: serve unauthenticated loopback clients from this workspace (name)"),
		b(flagProxyRequireHosts, "refuse secrets that have no allowed_hosts"),
		s(flagProxySSRFGuard, DefaultSSRFGuard, "refuse private/loopback/link-local destinations: auto (on in gateway mode), on, off"),
		s(flagProxyAllowCIDRs, "", "comma-separated ranges allowed despite the SSRF guard (internal callbacks)"),
		s(flagProxyCACert, "", "CA certificate for TLS interception of CONNECT (default: <data-dir>/ca.crt if present; see rotor ca init)"),
		s(flagProxyCAKey, "", "CA private key (default: <data-dir>/ca.key if present)"),
		s(flagProxyUpstreamCA, "", "PEM file of extra roots for verifying upstream TLS"),
		s(flagProxyTLSCert, "", "serve the proxy itself over TLS (an HTTPS proxy) with this certificate"),
		s(flagProxyTLSKey, "", "key for --proxy-tls-cert"),
		b(flagProxyNoScrub, "do not replace echoed secret values in responses"),
		s(flagProxyEngine, proxy.DefaultEngine, "HTTP engine of the proxy listener: lane (lean HTTP/1.1 fast path, net/http and goproxy for the rest) or std (net/http and goproxy only)"),
	}
}

// proxyConfig is the validated proxy part of the configuration.
type proxyConfig struct {
	Addr             string
	Mode             string
	DefaultWorkspace string
	RequireHosts     bool
	SSRFGuard        bool
	AllowCIDRs       []netip.Prefix
	CACert, CAKey    string
	UpstreamCA       string
	TLSCert, TLSKey  string
	NoScrub          bool
	// Engine is proxy.EngineLane or proxy.EngineStd.
	Engine string

	// CAWatchCert and CAWatchKey are the CA files the running proxy
	// watches: the flags' files, or the data directory's even before
	// `rotor ca init` writes them (issue 17: no restart needed).
	CAWatchCert, CAWatchKey string
}

func loadProxyConfig(c *cli.Context, dataDir string) (proxyConfig, error) {
	pc := proxyConfig{
		Addr: c.String(flagProxyAddr), Mode: c.String(flagProxyMode), DefaultWorkspace: c.String(flagProxyDefaultWorkspace),
		RequireHosts: c.Bool(flagProxyRequireHosts), CACert: c.String(flagProxyCACert), CAKey: c.String(flagProxyCAKey),
		UpstreamCA: c.String(flagProxyUpstreamCA), TLSCert: c.String(flagProxyTLSCert), TLSKey: c.String(flagProxyTLSKey),
		NoScrub: c.Bool(flagProxyNoScrub), Engine: c.String(flagProxyEngine),
	}
	if pc.Engine != proxy.EngineLane && pc.Engine != proxy.EngineStd {
		return pc, settingErr(flagProxyEngine, fmt.Sprintf("%q is not %s or %s", pc.Engine, proxy.EngineLane, proxy.EngineStd))
	}
	if _, _, err := net.SplitHostPort(pc.Addr); err != nil {
		return pc, settingErr(flagProxyAddr, fmt.Sprintf("%q is not host:port", pc.Addr))
	}
	if pc.Mode != proxy.ModeSidecar && pc.Mode != proxy.ModeGateway {
		return pc, settingErr(flagProxyMode, fmt.Sprintf("%q is not sidecar or gateway", pc.Mode))
	}
	if pc.Mode == proxy.ModeGateway && pc.DefaultWorkspace != "" {
		return pc, settingErr(flagProxyDefaultWorkspace, "gateway mode always requires Proxy-Authorization")
	}
	switch g := c.String(flagProxySSRFGuard); g {
	case "auto":
		pc.SSRFGuard = pc.Mode == proxy.ModeGateway
	case "on":
		pc.SSRFGuard = true
	case "off":
	default:
		return pc, settingErr(flagProxySSRFGuard, fmt.Sprintf("%q is not auto, on or off", g))
	}
	for _, s := range strings.Split(c.String(flagProxyAllowCIDRs), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return pc, settingErr(flagProxyAllowCIDRs, fmt.Sprintf("%q is not a CIDR range", s))
		}
		pc.AllowCIDRs = append(pc.AllowCIDRs, p.Masked())
	}
	if (pc.CACert == "") != (pc.CAKey == "") {
		return pc, settingErr(flagProxyCACert, "give both the CA certificate and its key")
	}
	pc.CAWatchCert, pc.CAWatchKey = pc.CACert, pc.CAKey
	if pc.CACert == "" {
		cert, key := filepath.Join(dataDir, proxy.CACertFile), filepath.Join(dataDir, proxy.CAKeyFile)
		pc.CAWatchCert, pc.CAWatchKey = cert, key
		if fileExists(cert) && fileExists(key) {
			pc.CACert, pc.CAKey = cert, key
		}
	}
	if (pc.TLSCert == "") != (pc.TLSKey == "") {
		return pc, settingErr(flagProxyTLSCert, "give both the certificate and its key")
	}
	return pc, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// buildProxyOptions loads the files the proxy config names.
func buildProxyOptions(ctx context.Context, pc proxyConfig, store storage.Store) (proxy.Options, *tls.Config, error) {
	o := proxy.Options{Mode: pc.Mode, RequireAllowedHosts: pc.RequireHosts, SSRFGuard: pc.SSRFGuard, AllowCIDRs: pc.AllowCIDRs, NoScrub: pc.NoScrub, Engine: pc.Engine}
	if pc.DefaultWorkspace != "" {
		ws, err := store.GetWorkspaceByName(ctx, pc.DefaultWorkspace)
		if err != nil {
			return o, nil, settingErr(flagProxyDefaultWorkspace, fmt.Sprintf("workspace %q: %v", pc.DefaultWorkspace, err))
		}
		o.DefaultWorkspaceID = ws.ID
	}
	if pc.CACert != "" {
		ca, err := proxy.LoadCA(pc.CACert, pc.CAKey)
		if err != nil {
			return o, nil, settingErr(flagProxyCACert, err.Error())
		}
		o.CA = ca
	}
	o.CACertFile, o.CAKeyFile = pc.CAWatchCert, pc.CAWatchKey
	if pc.UpstreamCA != "" {
		data, err := os.ReadFile(pc.UpstreamCA)
		if err != nil {
			return o, nil, settingErr(flagProxyUpstreamCA, err.Error())
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(data) {
			return o, nil, settingErr(flagProxyUpstreamCA, "no PEM certificates in "+pc.UpstreamCA)
		}
		o.UpstreamRoots = pool
	}
	var listenTLS *tls.Config
	if pc.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(pc.TLSCert, pc.TLSKey)
		if err != nil {
			return o, nil, settingErr(flagProxyTLSCert, err.Error())
		}
		listenTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return o, listenTLS, nil
}

func dispatchCommand() *cli.Command {
	flags := serveFlags()
	return &cli.Command{
		Name:   "dispatch",
		Usage:  "run only dispatch workers, delivering through a Rotor proxy elsewhere (shared PostgreSQL storage)",
		Flags:  flags,
		Before: altsrc.InitInputSourceWithContext(flags, altsrc.NewYamlSourceFromFlagFunc(flagConfig)),
		Action: func(c *cli.Context) error {
			cfg, err := loadNodeConfig(c, modeDispatch)
			if err != nil {
				return err
			}
			return serve(c.Context, cfg, c.App.ErrWriter)
		},
	}
}

func proxyCommand() *cli.Command {
	flags := append(serveFlags(), proxyFlags()...)
	return &cli.Command{
		Name:   "proxy",
		Usage:  "run only the resolving proxy (and the ops listener) on the configured storage",
		Flags:  flags,
		Before: altsrc.InitInputSourceWithContext(flags, altsrc.NewYamlSourceFromFlagFunc(flagConfig)),
		Action: func(c *cli.Context) error {
			cfg, err := loadNodeConfig(c, modeProxy)
			if err != nil {
				return err
			}
			return serve(c.Context, cfg, c.App.ErrWriter)
		},
	}
}
