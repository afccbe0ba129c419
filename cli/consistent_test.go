package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/urfave/cli/v2"
)

// fakeAPI is a loopback API answering fixed JSON per "METHOD path" and
// recording the calls.
type fakeAPI struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string
}

func newFakeAPI(t *testing.T, answers map[string]string) *fakeAPI {
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := r.Method + " " + r.URL.Path
		f.mu.Lock()
		f.calls = append(f.calls, k)
		f.mu.Unlock()
		a, ok := answers[k]
		if !ok {
			w.WriteHeader(404)
			a = `{"error":{"code":"not_found","message":"not found: no such thing"}}`
		} else if strings.Contains(a, `"error"`) {
			w.WriteHeader(401)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(a))
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func runCLI(t *testing.T, api string, args ...string) (string, error) {
	t.Helper()
	t.Setenv("ROTOR_API_URL", api)
	t.Setenv("ROTOR_API_KEY", "rtr_test")
	var out, errb bytes.Buffer
	err := Run(context.Background(), append([]string{"rotor"}, args...), &out, &errb)
	return out.String(), err
}

// TestDestructiveNeedYes: without a terminal, destructive commands refuse
// in one line and call nothing; with --yes they act.
func TestDestructiveNeedYes(t *testing.T) {
	f := newFakeAPI(t, map[string]string{
		"DELETE /v1/keys/key_1":       ``,
		"DELETE /v1/jobs/job_1":       `{"id":"job_1","status":"canceled"}`,
		"POST /v1/vault/rotate-key":   `{"new_key_id":"kek_2","rewrapped":1}`,
		"DELETE /v1/secrets/A":        ``,
		"DELETE /v1/queues/q":         ``,
		"GET /v1/queues/q/jobs":       `{"jobs":[]}`,
		"GET /v1/secrets/A/reference": `{}`,
	})
	cmds := [][]string{
		{"keys", "revoke", "key_1"},
		{"jobs", "cancel", "job_1"},
		{"vault", "rotate-key"},
		{"secrets", "delete", "A"},
		{"queues", "delete", "q"},
	}
	for _, c := range cmds {
		_, err := runCLI(t, f.URL, c...)
		if err == nil || !strings.Contains(err.Error(), "--yes") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v without --yes: %v", c, err)
		}
	}
	if calls := f.called(); len(calls) != 0 {
		t.Fatalf("refused commands called the API: %v", calls)
	}
	for _, c := range cmds {
		if _, err := runCLI(t, f.URL, append(c, "--yes")...); err != nil {
			t.Errorf("%v --yes: %v", c, err)
		}
	}
	if calls := f.called(); len(calls) < len(cmds) {
		t.Fatalf("calls with --yes: %v", calls)
	}
}

// TestGlobalFlagsAnywhere: -o, --api-url and --api-key work before, between
// and after the command names.
func TestGlobalFlagsAnywhere(t *testing.T) {
	f := newFakeAPI(t, map[string]string{"GET /v1/secrets": `{"secrets":[{"name":"A","value_hint":"ab...","version":1,"allowed_hosts":[],"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}]}`})
	for _, args := range [][]string{
		{"-o", "json", "secrets", "list"},
		{"secrets", "-o", "json", "list"},
		{"secrets", "list", "-o", "json"},
		{"--output=json", "secrets", "list"},
		{"--api-url", f.URL, "-o", "json", "secrets", "list"},
	} {
		envURL := f.URL
		if args[0] == "--api-url" {
			envURL = "http://127.0.0.1:1" // the flag must win
		}
		out, err := runCLI(t, envURL, args...)
		var v map[string]any
		if err != nil || json.Unmarshal([]byte(out), &v) != nil {
			t.Errorf("%v: %v %q", args, err, out)
		}
	}
	app := newApp(nil, nil)
	for in, want := range map[string]string{
		"rotor -o json secrets list":             "rotor secrets list -o json",
		"rotor --api-key=k keys revoke key_1":    "rotor keys revoke --api-key=k key_1",
		"rotor -o json serve":                    "rotor -o json serve",
		"rotor secrets -o json create A --yes x": "rotor secrets create -o json --yes A x",
	} {
		if got := strings.Join(interspersed(app, strings.Fields(in)), " "); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

// TestJSONOutputIsTheAPIObject: -o json prints every field the API sent,
// not only the table's.
func TestJSONOutputIsTheAPIObject(t *testing.T) {
	job := `{"id":"job_1","queue":"q","status":"delivered","payload":{"event":"test"},"idempotency_key":"k","run_at":"2026-01-01T00:00:00Z","attempts":[],"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:01Z"}`
	queues := `{"queues":[{"name":"q","callback_url":"http://127.0.0.1:9/","callback_headers":{},"max_attempts":10,"backoff_base_seconds":1,"backoff_cap_seconds":3600,"timeout_seconds":30,"concurrency":10,"rate_per_second":5}]}`
	f := newFakeAPI(t, map[string]string{"GET /v1/jobs/job_1": job, "GET /v1/queues": queues})
	for args, want := range map[string]string{"jobs get job_1": job, "queues list": queues} {
		out, err := runCLI(t, f.URL, append(strings.Fields(args), "-o", "json")...)
		if err != nil {
			t.Fatal(err)
		}
		var got, exp any
		json.Unmarshal([]byte(out), &got)
		json.Unmarshal([]byte(want), &exp)
		gb, _ := json.Marshal(got)
		eb, _ := json.Marshal(exp)
		if !bytes.Equal(gb, eb) {
			t.Errorf("%s:\n got %s\nwant %s", args, gb, eb)
		}
	}
}

// TestErrorLineSaysItOnce: the API's sentinel prefix is not repeated after
// the code.
func TestErrorLineSaysItOnce(t *testing.T) {
	f := newFakeAPI(t, map[string]string{"GET /v1/secrets": `{"error":{"code":"unauthorized","message":"unauthenticated: unknown or revoked API key"}}`})
	_, err := runCLI(t, f.URL, "secrets", "list")
	if err == nil || err.Error() != "unauthorized: unknown or revoked API key (HTTP 401)" {
		t.Fatalf("error line: %v", err)
	}
	for in, want := range map[string]string{
		`already exists: queue "q" already exists`: `queue "q" already exists`,
		"callback_url: bad":                        "callback_url: bad",
		"plain message":                            "plain message",
		"invalid queue: callback_url: x":           "callback_url: x",
	} {
		if got := dropKind(in); got != want {
			t.Errorf("%q -> %q", in, got)
		}
	}
}

// TestQueueHelpShowsRealDefaults: `queues create --help` shows the server's
// defaults, `queues update --help` says unset flags leave values alone.
func TestQueueHelpShowsRealDefaults(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"rotor", "queues", "create", "--help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1-100 (default: 10)", "delay (default: 3600)", "delivery (default: 30)", "at once (default: 10)", "'Name: value'"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("create help lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "(default: 0) (default") || strings.Contains(out.String(), "at once (default: 0)") {
		t.Errorf("zero default shown:\n%s", out.String())
	}
	out.Reset()
	if err := Run(context.Background(), []string{"rotor", "queues", "update", "--help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "at once (default: unchanged)") {
		t.Errorf("update help:\n%s", out.String())
	}
}

// TestImportDryRunChecks: --dry-run says what the real run would do, with
// GET calls only: existing names skipped, invalid names failing.
func TestImportDryRunChecks(t *testing.T) {
	f := newFakeAPI(t, map[string]string{"GET /v1/secrets/EXISTING": `{"name":"EXISTING"}`})
	env := t.TempDir() + "/.env"
	if err := os.WriteFile(env, []byte("EXISTING=a\nNEW_ONE=b\nlower_bad=c\nEMPTY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, f.URL, "secrets", "import", "--env-file", env, "--all", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"EXISTING would be skipped — already exists", "NEW_ONE would be created", "lower_bad would fail", "[skip] EMPTY — not set"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	for _, c := range f.called() {
		if !strings.HasPrefix(c, "GET ") {
			t.Fatalf("dry run changed something: %v", f.called())
		}
	}
}

// TestCompletion: the script registers for the name rotor was invoked as,
// and NAME arguments complete from the API.
func TestCompletion(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"/opt/x/rtr", "completion", "bash"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "_rotor_complete rtr\n") {
		t.Fatalf("bash script:\n%s", out.String())
	}
	f := newFakeAPI(t, map[string]string{
		"GET /v1/secrets":   `{"secrets":[{"name":"NOTIFY_TOKEN"},{"name":"SLACK_BOT_TOKEN"}]}`,
		"GET /v1/queues":    `{"queues":[{"name":"notifications"},{"name":"bad name; rm -rf"}]}`,
		"GET /v1/workflows": `{"workflows":[{"name":"onboard","version":2},{"name":"$(reboot)"}]}`,
	})
	for args, want := range map[string]string{
		"secrets rotate": "NOTIFY_TOKEN\nSLACK_BOT_TOKEN\n",
		"queues update":  "notifications\n",
		"jobs enqueue":   "notifications\n",
		"workflows run":  "onboard\n",
		"workflows get":  "onboard\n",
	} {
		got, err := runCLI(t, f.URL, append(strings.Fields(args), "--generate-bash-completion")...)
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", args, got, err, want)
		}
	}
}

// TestEveryCommandAndFlagHasHelp walks the whole command tree.
func TestEveryCommandAndFlagHasHelp(t *testing.T) {
	app := newApp(nil, nil)
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Hidden {
				continue // not for people (rotor plugin)
			}
			p := path + " " + c.Name
			if c.Usage == "" {
				t.Errorf("%s: no usage text", p)
			}
			for _, f := range c.Flags {
				if df, ok := f.(cli.DocGenerationFlag); ok && df.GetUsage() == "" {
					t.Errorf("%s --%s: no usage text", p, f.Names()[0])
				}
			}
			walk(p, c.Subcommands)
		}
	}
	walk("rotor", app.Commands)
}

// TestUsageErrorsAreOneLine: an unknown flag is one error line naming the
// help to read, with no help dump.
func TestUsageErrorsAreOneLine(t *testing.T) {
	for _, args := range [][]string{{"keys", "list", "--bogus"}, {"--bogus"}, {"keys", "revoke", "--yes=maybe", "key_1"}} {
		var out, errb bytes.Buffer
		err := Run(context.Background(), append([]string{"rotor"}, args...), &out, &errb)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "--help)") || out.Len() != 0 || errb.Len() != 0 {
			t.Errorf("%v: err %v, stdout %q, stderr %q", args, err, out.String(), errb.String())
		}
	}
}
