package cli

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"rotor.sh/rotor/proxy"
)

// doctorTimeout bounds each network step of `rotor doctor`.
const doctorTimeout = 10 * time.Second

// doctorHeader carries the test reference to the local echo.
const doctorHeader = "X-Rotor-Doctor"

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check a worker's setup: proxy variables, the proxy and its key, the HTTPS CA, a reference resolved end to end",
		Description: "Run it where the worker runs, with the worker's environment. It starts a handler on 127.0.0.1:0,\n" +
			"sends it one request through the proxy in HTTP_PROXY with a reference to --secret, and checks that\n" +
			"the value arrived resolved (never printing it). Each finding is one line with its fix; the exit\n" +
			"status is 1 if anything failed.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "secret", Usage: "a secret NAME the worker's key may use (and send to 127.0.0.1): the test request references it"},
			&cli.StringFlag{Name: "proxy-url", Usage: "the proxy to check (default: HTTPS_PROXY, else HTTP_PROXY, as the worker sees them)"},
		},
		Action: func(c *cli.Context) error {
			d := &doctor{out: c.App.Writer}
			d.run(c.Context, c.String("proxy-url"), c.String("secret"))
			if d.failed > 0 {
				return fmt.Errorf("doctor: %d problem(s) found", d.failed)
			}
			return nil
		},
	}
}

type doctor struct {
	out    io.Writer
	failed int
}

func (d *doctor) ok(format string, args ...any)   { fmt.Fprintf(d.out, "[ok]   "+format+"\n", args...) }
func (d *doctor) note(format string, args ...any) { fmt.Fprintf(d.out, "[note] "+format+"\n", args...) }
func (d *doctor) fail(format string, args ...any) {
	d.failed++
	fmt.Fprintf(d.out, "[fail] "+format+"\n", args...)
}

// envAny is the first of names set in the environment (the upper- and
// lower-case spellings clients read).
func envAny(names ...string) (name, value string) {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return n, v
		}
	}
	return "", ""
}

const proxyFix = "export HTTP_PROXY=http://worker:$ROTOR_API_KEY@127.0.0.1:8081 HTTPS_PROXY=$HTTP_PROXY (the API key is the proxy password)"

func (d *doctor) run(ctx context.Context, proxyFlag, secret string) {
	// 1. The variables clients read.
	httpName, httpVal := envAny("HTTP_PROXY", "http_proxy")
	httpsName, httpsVal := envAny("HTTPS_PROXY", "https_proxy")
	switch {
	case httpVal == "" && httpsVal == "":
		d.fail("HTTP_PROXY and HTTPS_PROXY are not set: requests go straight out, references unresolved — fix: %s", proxyFix)
	case httpVal == "":
		d.fail("HTTP_PROXY is not set (only %s): plain-http requests bypass Rotor — fix: export HTTP_PROXY=$%s", httpsName, httpsName)
	case httpsVal == "":
		d.fail("HTTPS_PROXY is not set (only %s): https requests bypass Rotor — fix: export HTTPS_PROXY=$%s", httpName, httpName)
	case httpVal != httpsVal:
		d.note("%s and %s differ; the checks below use %s", httpName, httpsName, map[bool]string{true: httpsName, false: httpName}[httpsVal != ""])
	default:
		d.ok("%s and %s are set", httpName, httpsName)
	}
	if name, v := envAny("NO_PROXY", "no_proxy"); v != "" {
		entries := strings.Split(v, ",")
		for _, e := range entries {
			if strings.TrimSpace(e) == "*" {
				d.fail("%s contains '*': every request bypasses Rotor — fix: list only hosts that must bypass it", name)
			}
		}
		d.note("%s=%s: requests to these hosts bypass Rotor and carry references unresolved", name, v)
	}
	d.note("Go's http.ProxyFromEnvironment never proxies localhost, 127.0.0.0/8 or ::1: a Go worker calling a loopback upstream bypasses Rotor (set Transport.Proxy to http.ProxyURL for such tests)")

	raw := proxyFlag
	if raw == "" {
		raw = httpsVal
		if raw == "" {
			raw = httpVal
		}
	}
	if raw == "" {
		d.fail("no proxy to check — fix: set HTTP_PROXY/HTTPS_PROXY, or pass --proxy-url")
		return
	}
	pu, err := url.Parse(raw)
	if err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
		d.fail("the proxy URL is not an http:// or https:// URL — fix: %s", proxyFix)
		return
	}
	shown := pu.Redacted()
	key, hasKey := pu.User.Password()
	if !hasKey || key == "" {
		d.fail("%s carries no API key (the proxy password) — fix: %s", shown, proxyFix)
		return
	}

	// 2. A local handler, and one request through the proxy.
	var mu sync.Mutex
	var got []echoRequest
	h := newEchoHandler(io.Discard, func(r echoRequest) { mu.Lock(); got = append(got, r); mu.Unlock() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.fail("cannot listen on 127.0.0.1 for the test handler: %v", err)
		return
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); _ = serveUntil(sctx, ln, h) }()
	defer func() { stop(); <-done }()

	client := &http.Client{Timeout: doctorTimeout, Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: proxyTLSConfig(pu)}}
	ref := "${{ secrets." + secret + " }}"
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ln.Addr().String()+"/rotor-doctor", nil)
	if secret != "" {
		req.Header.Set(doctorHeader, ref)
	}
	res, err := client.Do(req)
	if err != nil {
		d.fail("the proxy at %s does not answer: %v — fix: start it (rotor serve or rotor proxy) or correct the address", shown, oneLine(err))
		return
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	res.Body.Close()
	code := res.Header.Get(proxy.HeaderError)
	if code == "" {
		var eb struct {
			Error struct{ Code string } `json:"error"`
		}
		if json.Unmarshal(body, &eb) == nil {
			code = eb.Error.Code
		}
	}
	switch {
	case res.StatusCode == http.StatusProxyAuthRequired:
		d.fail("the proxy at %s refused the key (407 %s) — fix: put a valid, unrevoked API key in the proxy URL's password", shown, code)
		return
	case code == proxy.CodeSecretNotFound:
		d.ok("the proxy at %s answers and the key authenticates", shown)
		d.fail("secret %s is not in this key's workspace (422) — fix: create it, or pass --secret with an existing name", secret)
		return
	case code == proxy.CodeHostNotAllowed:
		d.ok("the proxy at %s answers and the key authenticates", shown)
		d.fail("secret %s may not be sent to 127.0.0.1 on the check's random port (403 host_not_allowed) — fix: pass --secret with a secret that has no allowed_hosts (an entry without a port allows ports 80 and 443 only)", secret)
		return
	case code != "":
		d.fail("the proxy at %s refused the test request: %d %s — see docs/proxy.md for the code", shown, res.StatusCode, code)
		return
	case res.StatusCode != http.StatusOK:
		d.fail("the test request through %s got HTTP %d — fix: check that %s is Rotor's proxy", shown, res.StatusCode, shown)
		return
	}
	d.ok("the proxy at %s answers and the key authenticates", shown)
	mu.Lock()
	var arrived *echoRequest
	if len(got) > 0 {
		arrived = &got[len(got)-1]
	}
	mu.Unlock()
	switch {
	case arrived == nil:
		d.fail("the test request did not reach the local handler — fix: check the proxy's logs")
	case secret == "":
		d.note("no --secret given: resolution not checked — rerun with --secret NAME (a secret this key may send to 127.0.0.1)")
	case arrived.Header.Get(doctorHeader) == ref || strings.Contains(arrived.Header.Get(doctorHeader), "${{"):
		d.fail("the reference to %s arrived unresolved — fix: make sure requests go through Rotor's proxy", secret)
	case arrived.Header.Get(doctorHeader) == "":
		d.fail("the reference to %s arrived empty", secret)
	default:
		d.ok("a reference to %s arrived resolved (%d bytes; the value is not shown)", secret, len(arrived.Header.Get(doctorHeader)))
	}

	// 3. HTTPS: is CONNECT intercepted, with a certificate this machine trusts?
	d.checkInterception(ctx, pu, key)
}

// proxyTLSConfig verifies an https:// proxy listener with the system roots
// (SSL_CERT_FILE included).
func proxyTLSConfig(pu *url.URL) *tls.Config {
	return &tls.Config{ServerName: pu.Hostname(), MinVersion: tls.VersionTLS12}
}

// checkInterception sends CONNECT to a local TLS listener through the proxy
// and looks at the certificate that comes back: the listener's own (the
// proxy only tunnels: no CA), one this machine does not trust, or a trusted
// one minted by the proxy's CA.
func (d *doctor) checkInterception(ctx context.Context, pu *url.URL, key string) {
	own, err := ephemeralCert()
	if err != nil {
		d.fail("cannot make a test certificate: %v", err)
		return
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{own}})
	if err != nil {
		d.fail("cannot listen on 127.0.0.1 for the HTTPS check: %v", err)
		return
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = serveUntil(sctx, ln, newEchoHandler(io.Discard, nil)) }()
	defer func() { stop(); <-done }()

	dctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(dctx, "tcp", pu.Host)
	if err != nil {
		d.fail("HTTPS check: cannot reach the proxy: %v", oneLine(err))
		return
	}
	defer conn.Close()
	if dl, ok := dctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if pu.Scheme == "https" {
		tc := tls.Client(conn, proxyTLSConfig(pu))
		if err := tc.HandshakeContext(dctx); err != nil {
			d.fail("HTTPS check: TLS to the proxy listener failed: %v", oneLine(err))
			return
		}
		conn = tc
	}
	target := ln.Addr().String()
	auth := base64.StdEncoding.EncodeToString([]byte(pu.User.Username() + ":" + key))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", target, target, auth)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		d.fail("HTTPS check: no answer to CONNECT: %v", oneLine(err))
		return
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		d.fail("HTTPS check: the proxy answered CONNECT with %d %s", res.StatusCode, res.Header.Get(proxy.HeaderError))
		return
	}
	tc := tls.Client(&bufConn{Conn: conn, r: br}, &tls.Config{ServerName: "127.0.0.1", InsecureSkipVerify: true}) //nolint:gosec // verified below, by hand, to tell the cases apart
	if err := tc.HandshakeContext(dctx); err != nil {
		d.fail("HTTPS check: TLS through the proxy failed: %v", oneLine(err))
		return
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		d.fail("HTTPS check: no certificate through the proxy")
		return
	}
	if certs[0].Equal(own.Leaf) {
		d.fail("CONNECT is tunneled, not intercepted: references inside HTTPS reach upstreams unresolved — fix: rotor ca init, then restart the proxy")
		return
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "127.0.0.1"}); err != nil {
		d.fail("HTTPS interception is on, but this machine does not trust the proxy's CA (%s) — fix: trust data/ca.crt: SSL_CERT_FILE (Go, curl, OpenSSL), NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, or the system store", certs[0].Issuer.CommonName)
		return
	}
	d.ok("HTTPS is intercepted with a certificate this machine trusts (issuer %q)", certs[0].Issuer.CommonName)
}

// bufConn reads what the CONNECT response reader buffered before the conn.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// ephemeralCert is a self-signed certificate for 127.0.0.1, for the HTTPS
// check's listener only.
func ephemeralCert() (tls.Certificate, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "rotor doctor"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf}, nil
}

// oneLine keeps an error on one line, without the proxy URL's password
// (url.Error quotes the URL it failed on).
func oneLine(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
