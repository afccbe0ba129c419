package plugins

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

// hangingStore blocks GetWorkspace until the call's context ends and
// reports that it ended; everything else is bbolt.
type hangingStore struct {
	storage.Store
	entered chan struct{}
	ended   chan error
}

func (h *hangingStore) GetWorkspace(ctx context.Context, id string) (storage.Workspace, error) {
	h.entered <- struct{}{}
	<-ctx.Done()
	h.ended <- ctx.Err()
	return storage.Workspace{}, ctx.Err()
}

// fastPair serves a Server over a fast-call socket in this process and
// returns a Client whose calls go over it (no gRPC fallback: a call that
// fell back would fail).
func fastPair(t *testing.T, timeout time.Duration, wrap func(storage.Store) storage.Store) (*Server, *Client) {
	t.Helper()
	srv := NewServer(func(ctx context.Context, cfg *pb.ConfigureRequest) (storage.Store, error) {
		st, err := bolt.Open(cfg.Path, bolt.Options{})
		if err != nil || wrap == nil {
			return st, err
		}
		return wrap(st), nil
	})
	t.Cleanup(srv.Close)
	if _, err := srv.Configure(context.Background(), &pb.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}); err != nil {
		t.Fatal(err)
	}
	if err := srv.listenFast(spinWindow); err != nil {
		t.Fatal(err)
	}
	d, err := srv.Describe(context.Background(), &pb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := dialFast(context.Background(), d.FastSocket, d.FastToken, nil, spinWindow)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(timeout)
	c.setConn(newConn(f))
	t.Cleanup(func() { c.setConn(nil) })
	return srv, c
}

// TestFastSocketAdmitsOnlyTheHost: the socket's directory is the plugin
// user's alone; a connection without the token Describe reported is
// dropped; once the host has connected the socket is gone, so nobody else
// can reach the plugin that way.
func TestFastSocketAdmitsOnlyTheHost(t *testing.T) {
	srv := NewServer(OpenBackend)
	defer srv.Close()
	if _, err := srv.Configure(context.Background(), &pb.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}); err != nil {
		t.Fatal(err)
	}
	if err := srv.listenFast(spinWindow); err != nil {
		t.Fatal(err)
	}
	d, err := srv.Describe(context.Background(), &pb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.FastToken) != fastTokenLen || d.FastSocket == "" {
		t.Fatalf("describe: socket %q, token of %d bytes", d.FastSocket, len(d.FastToken))
	}
	fi, err := os.Stat(filepath.Dir(d.FastSocket))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory mode %v, want 0700", fi.Mode().Perm())
	}
	// A stranger with a wrong token: dropped without an answer.
	wrong := append([]byte(nil), d.FastToken...)
	wrong[0] ^= 1
	stranger, err := dialFast(context.Background(), d.FastSocket, wrong, nil, spinWindow)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = stranger.Invoke(ctx, "/rotor.storage.v2.Workspaces/ListWorkspaces", &pb.ListWorkspacesRequest{}, &pb.ListWorkspacesResponse{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a call with a wrong token: %v, want the connection dropped (unavailable)", err)
	}
	// The host, with the token.
	host, err := dialFast(context.Background(), d.FastSocket, d.FastToken, nil, spinWindow)
	if err != nil {
		t.Fatal(err)
	}
	defer host.close()
	if err := host.Invoke(ctx, "/rotor.storage.v2.Workspaces/ListWorkspaces", &pb.ListWorkspacesRequest{}, &pb.ListWorkspacesResponse{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.FastSocket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket outlived the host's connection: %v", err)
	}
	if c, err := net.Dial("unix", d.FastSocket); err == nil {
		c.Close()
		t.Fatal("a second connection was accepted")
	}
}

// TestFastOversizedFrameEndsConnection: a frame longer than the protocol's
// message limit is not read (nor allocated): the plugin drops the
// connection.
func TestFastOversizedFrameEndsConnection(t *testing.T) {
	srv, c := fastPair(t, 10*time.Second, nil)
	f := c.conn.Load().grpc.(*fastConn)
	b := appendHeader(nil, frameCall, 1)
	binary.LittleEndian.PutUint32(b, maxFrame+1)
	if err := f.c.write(b, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := f.Invoke(ctx, "/rotor.storage.v2.Workspaces/ListWorkspaces", &pb.ListWorkspacesRequest{}, &pb.ListWorkspacesResponse{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a call after an oversized frame: %v, want the connection dropped (unavailable)", err)
	}
	_ = srv
}

// TestFastCallDeadlineAndCancel: a call the backend does not answer fails
// within the call timeout as unavailable, the backend's context ends (the
// deadline travels in the frame, the host's cancel follows), and other
// calls are answered meanwhile.
func TestFastCallDeadlineAndCancel(t *testing.T) {
	h := &hangingStore{entered: make(chan struct{}, 1), ended: make(chan error, 1)}
	_, c := fastPair(t, 300*time.Millisecond, func(st storage.Store) storage.Store { h.Store = st; return h })
	ctx := context.Background()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.GetWorkspace(ctx, "ws")
		done <- err
	}()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not reach the backend")
	}
	// Meanwhile, another call is answered.
	if _, err := c.GetSecret(ctx, "ws", "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a call beside a hung one: %v, want ErrNotFound", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("hung call: %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("hung call failed after %s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a hung call did not fail within 10s")
	}
	select {
	case err := <-h.ended:
		if err == nil {
			t.Fatal("backend context ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the backend's context did not end")
	}
	// The caller's own cancellation stays itself.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		<-h.entered
		cancel()
	}()
	if _, err := c.GetWorkspace(cctx, "ws"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}
	select {
	case err := <-h.ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("backend saw %v, want the host's cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the host's cancel did not reach the backend")
	}
}

// TestLaunchUsesFastCalls: a plugin that offers FAST_CALLS gets every
// unary call over the socket, unless NoFastCalls.
func TestLaunchUsesFastCalls(t *testing.T) {
	for _, noFast := range []bool{false, true} {
		s, err := Launch(context.Background(), LaunchOptions{Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"}, NoFastCalls: noFast,
			Config: &pb.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}})
		if err != nil {
			t.Fatal(err)
		}
		_, fast := s.Client.conn.Load().grpc.(*fastConn)
		if fast == noFast {
			t.Errorf("NoFastCalls %v: fast connection %v", noFast, fast)
		}
		if _, err := s.GetWorkspace(context.Background(), "nope"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("NoFastCalls %v: %v, want ErrNotFound", noFast, err)
		}
		s.Close()
	}
}

// TestFastCallsConcurrent: calls from many goroutines at once each get
// their own reply (replies are matched by call id, whoever reads them).
func TestFastCallsConcurrent(t *testing.T) {
	_, c := fastPair(t, 30*time.Second, nil)
	ctx := context.Background()
	const n = 8
	for i := range n {
		id := "ws" + strconv.Itoa(i)
		if err := c.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: id, Name: id, CreatedAt: time.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			for j := range 100 {
				id := "ws" + strconv.Itoa((i+j)%n)
				w, err := c.GetWorkspace(ctx, id)
				if err == nil && w.Name != id {
					err = fmt.Errorf("asked for %s, got %s", id, w.Name)
				}
				if err == nil && j%10 == 0 {
					if _, err = c.GetWorkspace(ctx, "missing"); errors.Is(err, storage.ErrNotFound) {
						err = nil
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
