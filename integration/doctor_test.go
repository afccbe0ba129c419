package integration

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// TestDoctor runs `rotor doctor` beside a real server, misconfigured in
// each way it diagnoses and then correctly: every finding is one line with
// its fix, the exit status says whether anything failed, and neither the
// key nor the secret's value is printed.
func TestDoctor(t *testing.T) {
	dir := t.TempDir()
	if code, out, errOut := rotor(t, nil, "ca", "init", "--dir", filepath.Join(dir, "data")); code != 0 {
		t.Fatalf("ca init: %s %s", out, errOut)
	}
	s := startServer(t, dir)
	key := s.adminKey()
	const value = "doctor-canary-value-4711"
	if st, body := call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"DOCTOR_TOKEN","value":"`+value+`"}`); st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	pu, _ := url.Parse(s.proxyURL)
	withKey := func(k string) string { return "http://worker:" + k + "@" + pu.Host }
	clean := []string{"HTTP_PROXY=", "HTTPS_PROXY=", "http_proxy=", "https_proxy=", "NO_PROXY=", "no_proxy=", "SSL_CERT_FILE=" + filepath.Join(dir, "none.pem")}
	good := append(append([]string{}, clean...), "HTTP_PROXY="+withKey(key), "HTTPS_PROXY="+withKey(key), "SSL_CERT_FILE="+filepath.Join(dir, "data", "ca.crt"))
	cases := []struct {
		name  string
		env   []string
		args  []string
		code  int
		wants []string
	}{
		{"no proxy variables", clean, []string{"--secret", "DOCTOR_TOKEN"}, 1,
			[]string{"[fail] HTTP_PROXY and HTTPS_PROXY are not set", "fix: export HTTP_PROXY="}},
		{"wrong key", append(append([]string{}, clean...), "HTTP_PROXY="+withKey("rtr_wrong_key_0123456789"), "HTTPS_PROXY="+withKey("rtr_wrong_key_0123456789")),
			[]string{"--secret", "DOCTOR_TOKEN"}, 1, []string{"[ok]   HTTP_PROXY and HTTPS_PROXY are set", "[fail] the proxy at", "refused the key (407"}},
		{"nothing listening", append(append([]string{}, clean...), "HTTP_PROXY=http://w:k@127.0.0.1:1", "HTTPS_PROXY=http://w:k@127.0.0.1:1"),
			nil, 1, []string{"does not answer", "fix: start it"}},
		{"NO_PROXY everything", append(append([]string{}, good...), "NO_PROXY=*"), []string{"--secret", "DOCTOR_TOKEN"}, 1,
			[]string{"[fail] NO_PROXY contains '*'"}},
		{"unknown secret", good, []string{"--secret", "NO_SUCH_SECRET"}, 1,
			[]string{"[ok]   the proxy at", "[fail] secret NO_SUCH_SECRET is not in this key's workspace"}},
		{"CA not trusted", append(append([]string{}, good...), "SSL_CERT_FILE="+filepath.Join(dir, "none.pem")), []string{"--secret", "DOCTOR_TOKEN"}, 1,
			[]string{"[ok]   a reference to DOCTOR_TOKEN arrived resolved", "[fail] HTTPS interception is on, but this machine does not trust the proxy's CA"}},
		{"no secret named", good, nil, 0,
			[]string{"[note] no --secret given", "[ok]   HTTPS is intercepted"}},
		{"correct", good, []string{"--secret", "DOCTOR_TOKEN"}, 0,
			[]string{"[ok]   HTTP_PROXY and HTTPS_PROXY are set", "[ok]   the proxy at", "[ok]   a reference to DOCTOR_TOKEN arrived resolved (24 bytes", "[ok]   HTTPS is intercepted", "Go's http.ProxyFromEnvironment"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := rotor(t, c.env, append([]string{"doctor"}, c.args...)...)
			if code != c.code {
				t.Errorf("exit %d, want %d", code, c.code)
			}
			for _, w := range c.wants {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q", w)
				}
			}
			if strings.Contains(out+errOut, value) || strings.Contains(out+errOut, key) {
				t.Error("doctor printed the secret's value or the API key")
			}
			if c.code != 0 && (strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "problem")) {
				t.Errorf("stderr is not one line: %q", errOut)
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
			}
		})
	}
}
