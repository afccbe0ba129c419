package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostileCLI: bad input to the CLI gets exit status 1 and one readable
// line on stderr, never a panic or a stack trace, and changes nothing.
func TestHostileCLI(t *testing.T) {
	s := startServer(t, t.TempDir())
	defer s.stop()
	key := s.adminKey()
	env := []string{"ROTOR_API_URL=" + s.apiURL, "ROTOR_API_KEY=" + key}
	envFile := filepath.Join(t.TempDir(), "bad.env")
	os.WriteFile(envFile, []byte("GOOD=1\n'unterminated\nexport =x\n\xff\xfe=bad\n"), 0o600)

	cases := []struct {
		name  string
		env   []string
		stdin []byte
		args  []string
	}{
		{"bad secret name", env, []byte("v"), []string{"secrets", "create", "bad-name"}},
		{"name too long", env, []byte("v"), []string{"secrets", "create", strings.Repeat("A", 200)}},
		{"invalid UTF-8 name", env, []byte("v"), []string{"secrets", "create", "A\xff"}},
		{"empty value", env, nil, []string{"secrets", "create", "EMPTY"}},
		{"huge value", env, bytes.Repeat([]byte("A"), 1<<20), []string{"secrets", "create", "HUGE"}},
		{"invalid UTF-8 value", env, []byte("\xff\xfe"), []string{"secrets", "create", "BADUTF"}},
		{"missing argument", env, nil, []string{"secrets", "get"}},
		{"extra arguments", env, nil, []string{"secrets", "get", "A", "B"}},
		{"unknown flag", env, nil, []string{"secrets", "list", "--no-such-flag"}},
		{"unknown command", env, nil, []string{"no-such-command"}},
		{"rotate missing", env, []byte("v"), []string{"secrets", "rotate", "MISSING"}},
		{"bad payload JSON", env, nil, []string{"jobs", "enqueue", "q", "--payload", "{"}},
		{"absurd callback URL", env, nil, []string{"queues", "create", "q", "--callback-url", "http://" + strings.Repeat("a", 5000)}},
		{"header injection", env, nil, []string{"queues", "create", "q2", "--callback-url", "https://x.example/", "--header", "X-A=b\r\nX-Evil: 1"}},
		{"bad .env file", env, nil, []string{"secrets", "import", "--env-file", envFile, "--all", "--yes"}},
		{"bad API URL", []string{"ROTOR_API_URL=::not a url", "ROTOR_API_KEY=" + key}, nil, []string{"secrets", "list"}},
		{"garbage key", []string{"ROTOR_API_URL=" + s.apiURL, "ROTOR_API_KEY=\x01\x02garbage"}, nil, []string{"secrets", "list"}},
		{"bad output format", env, nil, []string{"secrets", "list", "-o", "yaml-ish"}},
	}
	for _, c := range cases {
		code, _, errOut := rotorStdin(t, c.env, c.stdin, c.args...)
		line := strings.TrimSpace(errOut)
		if code != 1 || line == "" || strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine ") {
			t.Errorf("%s: exit %d, stderr %q", c.name, code, errOut)
			continue
		}
		if c.name != "unknown flag" && c.name != "unknown command" && strings.Count(line, "\n") != 0 {
			t.Errorf("%s: more than one line on stderr: %q", c.name, errOut)
		}
	}
	// Nothing was created by the refused commands.
	code, out, _ := rotor(t, env, "secrets", "list", "-o", "json")
	if code != 0 || strings.Contains(out, `"name"`) {
		t.Fatalf("refused commands left secrets behind: %s", out)
	}
	t.Logf("%d hostile CLI cases: exit 1 with a readable error, nothing changed", len(cases))
}
