package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"rotor.sh/rotor/internal/leakcheck"
)

var (
	rotorBin string
	binDir   string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rotor-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	rotorBin = filepath.Join(dir, "rotor")
	build := exec.Command("go", "build", "-race", "-o", rotorBin, "rotor.sh/rotor/cmd/rotor")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building rotor:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type server struct {
	t        *testing.T
	cmd      *exec.Cmd
	out      output
	done     chan error
	apiURL   string
	opsURL   string
	proxyURL string
	dataDir  string
}

// startServer runs `rotor serve` on ephemeral ports in dataDir and waits
// until both listeners are up.
func startServer(t *testing.T, dataDir string, env ...string) *server {
	t.Helper()
	s := tryStart(t, dataDir, env...)
	if s.apiURL == "" {
		t.Fatalf("server did not start:\n%s", s.out.String())
	}
	return s
}

func tryStart(t *testing.T, dataDir string, env ...string) *server {
	t.Helper()
	return tryStartCmd(t, dataDir, []string{"serve"}, []string{"api listening", "ops listening", "proxy listening"}, env...)
}

// tryStartCmd runs rotor with args and waits for the listeners in need.
func tryStartCmd(t *testing.T, dataDir string, args, need []string, env ...string) *server {
	t.Helper()
	cmd := exec.Command(rotorBin, args...)
	cmd.Dir = dataDir
	cmd.Env = append(os.Environ(),
		"ROTOR_DATA_DIR="+filepath.Join(dataDir, "data"),
		"ROTOR_API_ADDR=127.0.0.1:0",
		"ROTOR_OPS_ADDR=127.0.0.1:0",
		"ROTOR_PROXY_ADDR=127.0.0.1:0",
		"ROTOR_LOG_FORMAT=json",
		"ROTOR_LOG_LEVEL=debug",
	)
	cmd.Env = append(cmd.Env, env...)
	out := newOutput()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, out: out, done: make(chan error, 1), dataDir: dataDir}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// One snapshot of the output for every address: a line logged
		// between two reads must not leave one of them empty.
		logs := out.String()
		s.apiURL, s.opsURL = listenAddr(logs, "api listening"), listenAddr(logs, "ops listening")
		s.proxyURL = listenAddr(logs, "proxy listening")
		up := true
		for _, msg := range need {
			if listenAddr(logs, msg) == "" {
				up = false
			}
		}
		if up {
			if s.apiURL == "" {
				s.apiURL = "up" // started, without an API listener
			}
			return s
		}
		select {
		case err := <-s.done:
			s.done <- err
			s.apiURL = ""
			return s
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.apiURL = ""
	return s
}

// output captures a process's stdout and stderr.
type output interface {
	io.Writer
	String() string
}

// newOutput makes the capture for the next server; tests that produce more
// log than fits in memory swap it (see the soak test).
var newOutput = func() output { return &leakcheck.Buffer{} }

func listenAddr(logs, msg string) string {
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			return "http://" + m["addr"].(string)
		}
	}
	return ""
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Fatalf("server exited with %v after SIGTERM:\n%s", err, s.out.String())
		}
	case <-time.After(30 * time.Second):
		s.t.Fatalf("server did not stop within 30s of SIGTERM")
	}
}

// exitErr waits for a server that must fail to start.
func (s *server) exitErr() string {
	s.t.Helper()
	select {
	case err := <-s.done:
		if err == nil {
			s.t.Fatalf("server exited 0, want failure:\n%s", s.out.String())
		}
	case <-time.After(30 * time.Second):
		s.t.Fatal("server kept running, want failure")
	}
	return s.out.String()
}

func (s *server) adminKey() string {
	for _, line := range strings.Split(s.out.String(), "\n") {
		if k, ok := strings.CutPrefix(strings.TrimSpace(line), "export ROTOR_API_KEY="); ok {
			return k
		}
	}
	s.t.Fatalf("no admin key printed:\n%s", s.out.String())
	return ""
}

func call(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// rotor runs a CLI command and returns its exit code, stdout and stderr.
func rotor(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	return rotorStdin(t, env, nil, args...)
}

// rotorStdin is rotor with standard input.
func rotorStdin(t *testing.T, env []string, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, rotorBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}
