package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeTimeout bounds the whole README run; it takes well under a minute.
const readmeTimeout = 2 * time.Minute

// readmeBlock is one ```sh block of the README and where it starts.
type readmeBlock struct {
	line int
	text string
}

// readmeBlocks extracts the README's runnable blocks, in order: every ```sh
// fence, unless the line before it is a "<!-- readme-test: skip" comment.
// ```text and other fences are never run.
func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []readmeBlock
	var cur *readmeBlock
	prev := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && strings.HasPrefix(line, "```"):
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case strings.TrimSpace(line) == "```sh" && !strings.HasPrefix(prev, "<!-- readme-test: skip"):
			cur = &readmeBlock{line: n + 1}
		}
		if strings.TrimSpace(line) != "" {
			prev = strings.TrimSpace(line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("README: unterminated block at line %d", cur.line)
	}
	return blocks
}

// freePorts reserves n loopback ports and releases them for the caller.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, p, _ := net.SplitHostPort(ln.Addr().String())
		ports = append(ports, p)
	}
	return ports
}

// TestREADMERunsInOrder runs the README's shell blocks top to bottom against
// the built binary, as a new user would, and checks what they claim.
func TestREADMERunsInOrder(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README's steps need curl")
	}
	blocks := readmeBlocks(t, "../README.md")
	if len(blocks) < 8 {
		t.Fatalf("only %d runnable blocks in README.md", len(blocks))
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rotorBin, filepath.Join(dir, "bin", "rotor")); err != nil {
		t.Fatal(err)
	}
	// The README's fixed ports, moved to free ones so parallel runs and a
	// developer's own server do not collide.
	ports := freePorts(t, 4)
	moved := strings.NewReplacer("127.0.0.1:8080", "127.0.0.1:"+ports[0], "127.0.0.1:8081", "127.0.0.1:"+ports[1],
		"127.0.0.1:8082", "127.0.0.1:"+ports[2], "127.0.0.1:9999", "127.0.0.1:"+ports[3], "localhost:9999", "localhost:"+ports[3])
	var script strings.Builder
	script.WriteString("set -eo pipefail\n")
	for i, b := range blocks {
		fmt.Fprintf(&script, "echo \"+++ README block %d (line %d) at $(date +%%T.%%N)\"\n%s\n", i+1, b.line, moved.Replace(b.text))
	}
	ctx, cancel := context.WithTimeout(context.Background(), readmeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	// A clean environment: nothing of the developer's ROTOR_*, proxies or
	// tokens leaks in.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir, "LANG=C.UTF-8",
		"ROTOR_API_ADDR=127.0.0.1:" + ports[0], "ROTOR_PROXY_ADDR=127.0.0.1:" + ports[1],
		"ROTOR_OPS_ADDR=127.0.0.1:" + ports[2], "ROTOR_API_URL=http://127.0.0.1:" + ports[0],
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	// Whatever the outcome, no server or handler outlives the test.
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "rotor.log"))
	if err != nil {
		t.Fatalf("README steps failed: %v\n%s\n--- rotor.log (tail)\n%s", err, tail(out.String(), 60), tail(string(logs), 20))
	}
	got := out.String()
	claims := []string{
		`"name":"NOTIFY_TOKEN","value_hint":"your-t..."`, // create
		`{"ok":true`,                               // audit verify
		"POST /notify?token=new-value HTTP/1.1",    // dispatch, resolved in the URL
		"X-Api-Key: new-value",                     // and in the header
		"Authorization: Bearer ",                   // the callback secret
		"GET /notify?token=new-value HTTP/1.1",     // the proxy, resolved
		`"code":"invalid_reference"`,               // the near-miss refused
		`"code":"host_not_allowed"`,                // the host binding
		"[dry-run] NOTIFY_TOKEN would be skipped",  // import --dry-run
		"[ok] STRIPE_WEBHOOK_SECRET → hint: wh...", // import
		"[skip] GITHUB_TOKEN — not set",
		`"backoff_base_seconds"`,                                                // -o json queues list, whole
		"[ok]   a reference to STRIPE_WEBHOOK_SECRET arrived resolved (7 bytes", // rotor doctor
		"[ok]   HTTPS is intercepted",
		"GET /users/u_42 HTTP/1.1",               // workflow step 1, input substituted
		"Authorization: Bearer new-value",        // and its secret resolved by the proxy
		"POST /welcome?token=new-value HTTP/1.1", // step 3, after the signal
		`{"approved_by":"ann","user":"u_42"}`,    // signal data and input in the body
	}
	for _, c := range claims {
		if !strings.Contains(got, c) {
			t.Errorf("README output lacks %q", c)
		}
	}
	// Only the two refusals the README shows are errors; the handler never
	// saw template text.
	if n := strings.Count(got, `{"error":`); n != 2 {
		t.Errorf("%d error answers, want the 2 the README shows", n)
	}
	if strings.Contains(got, "X-Api-Key: ${{") || strings.Contains(got, "secret.NOTIFY_TOKEN }}\n") {
		t.Error("the handler received a reference as text")
	}
	// Issue 17: the running proxy picks the CA up, without a restart.
	if !strings.Contains(string(logs), `"tls_interception":true`) && !strings.Contains(string(logs), `"msg":"proxy CA loaded`) {
		t.Error("after `rotor ca init`, the proxy does not intercept HTTPS")
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
