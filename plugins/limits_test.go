package plugins_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"rotor.sh/rotor/plugins"
	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

// TestPluginLargeMessage: a request larger than gRPC's default 4 MiB
// receive limit crosses the plugin boundary (both sides set explicit limits;
// before, an audit backlog of about 15,000 rows was refused forever with
// ResourceExhausted). A cheap call carries the bytes, so the test is fast.
func TestPluginLargeMessage(t *testing.T) {
	// A generous timeout: this is about size, and -race on a busy machine is slow.
	s, err := plugins.Launch(context.Background(), plugins.LaunchOptions{
		Path: launchPath(), Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, CallTimeout: 2 * time.Minute,
		Config: &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.GetWorkspaceByName(context.Background(), strings.Repeat("w", 5<<20))
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a 5 MiB request: got %v, want ErrNotFound from the backend", err)
	}
}

// TestHungPluginCallsFailWithinBound: a plugin that stops answering
// (SIGSTOP) makes calls fail with ErrUnavailable within the call timeout
// instead of blocking their callers.
func TestHungPluginCallsFailWithinBound(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s, err := plugins.Launch(context.Background(), plugins.LaunchOptions{
		Path: launchPath(), Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, CallTimeout: timeout,
		Config: &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pid := s.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The signal is delivered asynchronously: wait until the process is stopped.
	for i := 0; ; i++ {
		st, err := os.ReadFile("/proc/" + itoa(pid) + "/status")
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		if strings.Contains(string(st), "State:\tT") {
			break
		}
		if i > 2000 {
			t.Fatal("the plugin did not stop")
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := s.GetWorkspace(context.Background(), "ws_1")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("hung plugin: got %v, want ErrUnavailable", err)
		}
		t.Logf("failed after %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("a call to a hung plugin did not return within 30s")
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Answers again once the plugin resumes.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := s.GetWorkspace(context.Background(), "ws_1")
		if errors.Is(err, storage.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin did not recover: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHostBatchLimits: above the protocol's MAX_BATCH the host refuses,
// before sending, a batch that must stay one transaction (an audit append,
// an enqueue: all or nothing), and pages an ascending audit listing, so
// callers keep the Store semantics (a listing of "up to limit" rows returns
// them all, in order, chained).
func TestHostBatchLimits(t *testing.T) {
	s, err := plugins.Launch(context.Background(), plugins.LaunchOptions{
		Path: launchPath(), Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, CallTimeout: 2 * time.Minute,
		Config: &proto.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws", Name: "ws", CreatedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	n := plugins.MaxBatch + 7
	evs := make([]storage.AuditEvent, n)
	for i := range evs {
		evs[i] = storage.AuditEvent{OccurredAt: time.Now(), WorkspaceID: "ws", ActorID: "a", EventType: "e", ResourceType: "r", ResourceID: strconv.Itoa(i), Input: json.RawMessage(`{}`)}
	}
	if _, err := s.AppendAudit(ctx, evs); err == nil || !strings.Contains(err.Error(), "exceeds the protocol's limit") {
		t.Fatalf("an append of %d rows: got %v, want a refusal", n, err)
	}
	if _, err := s.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: make([]storage.Job, n), Now: time.Now()}); err == nil || !strings.Contains(err.Error(), "exceeds the protocol's limit") {
		t.Fatalf("an enqueue of %d jobs: got %v, want a refusal", n, err)
	}
	if h, err := s.GetAuditHead(ctx, "ws"); err != nil || h.LastID != 0 {
		t.Fatalf("a refused append wrote rows: %+v, %v", h, err)
	}
	first, err := s.AppendAudit(ctx, evs[:plugins.MaxBatch])
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.AppendAudit(ctx, evs[plugins.MaxBatch:])
	if err != nil {
		t.Fatal(err)
	}
	// What each append reports crosses the protocol: the second call's
	// previous head is the first call's new head.
	if len(first) != 1 || len(second) != 1 || first[0].Rows != plugins.MaxBatch || second[0].Rows != 7 ||
		first[0].Prev.LastID != 0 || second[0].Prev.LastID != first[0].Head.LastID || !bytes.Equal(second[0].Prev.Chain, first[0].Head.Chain) {
		t.Fatalf("appended: %+v then %+v", first, second)
	}
	got, err := s.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: "ws", Limit: n + 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("listed %d rows, want %d", len(got), n)
	}
	var prev []byte
	for i, e := range got {
		if e.ResourceID != strconv.Itoa(i) || (i > 0 && e.ID <= got[i-1].ID) {
			t.Fatalf("row %d out of order: %+v", i, e)
		}
		if want := storage.NextChain(prev, e); !bytes.Equal(e.Chain, want) {
			t.Fatalf("row %d: chain broken", i)
		}
		prev = e.Chain
	}
	if last := got[len(got)-1]; second[0].Head.LastID != last.ID || !bytes.Equal(second[0].Head.Chain, last.Chain) {
		t.Fatalf("reported head %+v, stored last row id %d", second[0].Head, last.ID)
	}
}
