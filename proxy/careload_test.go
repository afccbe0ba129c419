package proxy_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/proxy"
)

// TestCAReloadWithoutRestart (issue 17): a proxy started before `rotor ca
// init` tunnels CONNECT; once the CA files appear it intercepts with them
// (the reference is resolved) without a restart, and after a rotation it
// serves leaves of the new CA only.
func TestCAReloadWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, proxy.CACertFile), filepath.Join(dir, proxy.CAKeyFile)
	up := newUpstream(t, true)
	upRoots := x509.NewCertPool()
	upRoots.AddCert(up.Certificate())
	const interval = 50 * time.Millisecond
	e := newEnv(t, func(o *proxy.Options) {
		o.UpstreamRoots = upRoots
		o.CACertFile, o.CAKeyFile, o.CAReloadInterval = certPath, keyPath, interval
	})
	e.secret("TOKEN", tokenValue)
	roots := func() *x509.CertPool {
		p := x509.NewCertPool()
		b, err := os.ReadFile(certPath)
		if err != nil {
			t.Fatal(err)
		}
		p.AppendCertsFromPEM(b)
		return p
	}
	// Before the CA exists: tunneled, so the client sees the upstream's own
	// certificate (trusted here) and the upstream gets the literal reference.
	r := e.send(e.client(e.key, upRoots), "GET", up.URL+"/s", "", "", "X-Key", "${{ secrets.TOKEN }}")
	if r.status != 200 || up.last(t).Header.Get("X-Key") != "${{ secrets.TOKEN }}" {
		t.Fatalf("before ca init: %d, upstream saw %q", r.status, up.last(t).Header.Get("X-Key"))
	}
	// intercepted sends one request on a new connection, trusting only the
	// CA now in the files, until it is resolved (bounded).
	intercepted := func(what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c := e.client(e.key, roots())
			res, err := c.Get(up.URL + "/s?t=${{%20secrets.TOKEN%20}}")
			if err == nil {
				res.Body.Close()
				if res.StatusCode == 200 && up.last(t).RawQuery == "t="+tokenValue {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not intercepted with the CA in the files within 5s (err %v)", what, err)
			}
			time.Sleep(interval)
		}
	}
	if _, _, err := proxy.InitCA(dir); err != nil {
		t.Fatal(err)
	}
	intercepted("after ca init")
	// Rotate: a new CA in the same files.
	oldRoots := roots()
	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	if _, _, err := proxy.InitCA(dir); err != nil {
		t.Fatal(err)
	}
	intercepted("after rotation")
	// The old CA no longer verifies the proxy's leaves.
	if res, err := e.client(e.key, oldRoots).Get(up.URL + "/s"); err == nil {
		res.Body.Close()
		t.Fatal("a client trusting only the old CA still connected after rotation")
	}
}

// TestCAReloadKeepsCAOnBadFiles: files that cannot be loaded keep the
// current CA (interception never silently turns off).
func TestCAReloadKeepsCAOnBadFiles(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, err := proxy.InitCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := proxy.LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t, true)
	upRoots := x509.NewCertPool()
	upRoots.AddCert(up.Certificate())
	e := newEnv(t, func(o *proxy.Options) {
		o.UpstreamRoots, o.CA = upRoots, ca
		o.CACertFile, o.CAKeyFile, o.CAReloadInterval = certPath, keyPath, time.Millisecond
	})
	e.secret("TOKEN", tokenValue)
	b, _ := os.ReadFile(certPath)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b)
	if err := os.WriteFile(keyPath, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past the interval: this CONNECT checks
	r := e.send(e.client(e.key, roots), "GET", up.URL+"/s", "", "", "X-Key", "${{ secrets.TOKEN }}")
	if r.status != 200 || up.last(t).Header.Get("X-Key") != tokenValue {
		t.Fatalf("after a bad key file: %d, upstream saw %q", r.status, up.last(t).Header.Get("X-Key"))
	}
	if !strings.Contains(e.logs.String(), "cannot be loaded; keeping the previous CA") {
		t.Fatalf("no warning logged:\n%s", e.logs.String())
	}
}
