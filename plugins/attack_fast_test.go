package plugins

import (
	"context"
	"encoding/binary"
	"net"
	"path/filepath"
	"testing"
	"time"

	pb "rotor.sh/rotor/plugins/proto"
)

// fastSocket opens a plugin's fast-call socket on a bbolt store and
// returns the server and what Describe reported.
func fastSocket(t *testing.T) (*Server, *pb.DescribeResponse) {
	t.Helper()
	srv := NewServer(OpenBackend)
	t.Cleanup(srv.Close)
	if _, err := srv.Configure(context.Background(), &pb.ConfigureRequest{Backend: "bbolt", Path: filepath.Join(t.TempDir(), "rotor.db")}); err != nil {
		t.Fatal(err)
	}
	if err := srv.listenFast(0); err != nil {
		t.Fatal(err)
	}
	d, err := srv.Describe(context.Background(), &pb.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return srv, d
}

// TestAttackFastHostilePreHello: before the host's hello, a process of the
// same user connects to the socket and sends hostile frames: a header
// claiming a 4 GiB frame, a hello with a short token, a call frame instead
// of a hello, a replay of the right token's header with the wrong bytes.
// None is answered or served; the plugin allocates nothing for the claimed
// length (the hello is read at its fixed size), and the host still gets
// in with its token afterwards.
func TestAttackFastHostilePreHello(t *testing.T) {
	_, d := fastSocket(t)
	hostile := [][]byte{
		func() []byte {
			b := appendHeader(nil, frameHello, 0)
			binary.LittleEndian.PutUint32(b, 1<<32-1)
			return b
		}(),
		finish(append(appendHeader(nil, frameHello, 0), d.FastToken[:16]...)),
		finish(append(appendHeader(nil, frameCall, 1), make([]byte, fastTokenLen)...)),
		finish(append(appendHeader(nil, frameHello, 0), make([]byte, fastTokenLen)...)),
	}
	for i, h := range hostile {
		c, err := net.Dial("unix", d.FastSocket)
		if err != nil {
			t.Fatalf("hostile %d: %v", i, err)
		}
		c.Write(h)
		c.(*net.UnixConn).CloseWrite() // no more bytes: the hello read ends now, not at its deadline
		c.SetReadDeadline(time.Now().Add(helloTimeout + 5*time.Second))
		var buf [1]byte
		if n, err := c.Read(buf[:]); n != 0 || err == nil {
			t.Fatalf("hostile %d: the plugin answered (%d bytes, %v)", i, n, err)
		}
		c.Close()
	}
	host, err := dialFast(context.Background(), d.FastSocket, d.FastToken, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer host.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := host.Invoke(ctx, "/rotor.storage.v2.Workspaces/ListWorkspaces", &pb.ListWorkspacesRequest{}, &pb.ListWorkspacesResponse{}); err != nil {
		t.Fatalf("the host after hostile connections: %v", err)
	}
}

// TestAttackFastSilentStrangerFirst: a stranger connects first and says
// nothing. The host, connecting next, must be served within a call
// timeout rather than wait out the stranger's hello deadline.
func TestAttackFastSilentStrangerFirst(t *testing.T) {
	_, d := fastSocket(t)
	stranger, err := net.Dial("unix", d.FastSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	time.Sleep(50 * time.Millisecond) // the plugin is reading its hello
	host, err := dialFast(context.Background(), d.FastSocket, d.FastToken, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer host.close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := host.Invoke(ctx, "/rotor.storage.v2.Workspaces/ListWorkspaces", &pb.ListWorkspacesRequest{}, &pb.ListWorkspacesResponse{}); err != nil {
		t.Fatalf("the host behind a silent stranger: %v after %v", err, time.Since(start))
	}
}
