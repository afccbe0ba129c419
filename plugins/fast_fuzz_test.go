package plugins

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "rotor.sh/rotor/plugins/proto"
)

// fuzzFrames are seeds: a call, a cancel, a reply and an error frame.
func fuzzFrames(f *testing.F) {
	req, _ := proto.Marshal(&pb.GetWorkspaceRequest{Id: "ws"})
	m := "/rotor.storage.v2.Workspaces/GetWorkspace"
	call := appendHeader(nil, frameCall, 1)
	call = binary.LittleEndian.AppendUint64(call, uint64(time.Now().Add(time.Minute).UnixNano()))
	call = binary.LittleEndian.AppendUint16(call, uint16(len(m)))
	call = finish(append(append(call, m...), req...))
	f.Add(call)
	f.Add(append(append([]byte(nil), call...), finish(appendHeader(nil, frameCancel, 1))...))
	resp, _ := proto.Marshal(&pb.GetWorkspaceResponse{Workspace: &pb.Workspace{Id: "ws"}})
	f.Add(finish(append(appendHeader(nil, frameReply, 1), resp...)))
	f.Add(finish(append(appendHeader(nil, frameError, 1), 8, 5)))
}

// FuzzFastPluginFrames: whatever a connection sends after its hello, the
// plugin's side answers or drops it, and never panics or hangs.
func FuzzFastPluginFrames(f *testing.F) {
	fuzzFrames(f)
	srv := NewServer(OpenBackend) // not configured: calls answer UNAVAILABLE
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		fs := &fastServer{methods: fastMethods(srv), ctx: ctx, stop: stop}
		a, p := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			fs.serve(&netSock{c: p})
		}()
		go io.Copy(io.Discard, a)
		a.SetWriteDeadline(time.Now().Add(2 * time.Second))
		a.Write(b)
		a.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the plugin's side did not end with its connection")
		}
	})
}

// FuzzFastHostFrames: whatever a plugin answers on the fast socket, a
// host call returns (a reply, an error or unavailable), without a panic
// and within its deadline.
func FuzzFastHostFrames(f *testing.F) {
	fuzzFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, p := net.Pipe()
		defer a.Close()
		fc, err := newFastConn(a, nil, spinWindow)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer p.Close()
			// The host's call frame first, then the answer.
			if _, _, _, err := readOneFrame(p); err != nil {
				return
			}
			p.SetWriteDeadline(time.Now().Add(2 * time.Second))
			p.Write(b)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_ = fc.Invoke(ctx, "/rotor.storage.v2.Workspaces/GetWorkspace", &pb.GetWorkspaceRequest{Id: "ws"}, &pb.GetWorkspaceResponse{})
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a call took %s", d)
		}
	})
}

// readOneFrame reads one whole frame from c.
func readOneFrame(c net.Conn) (kind byte, id uint64, body []byte, err error) {
	fr := newFrameReader(&netSock{c: c})
	for range 1 << 20 {
		kind, id, body, ok, err := fr.next()
		if err != nil || ok {
			return kind, id, body, err
		}
		if err := fr.fill(); err != nil {
			return 0, 0, nil, err
		}
	}
	return 0, 0, nil, io.ErrNoProgress
}
