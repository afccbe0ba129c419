package plugins

import (
	"bytes"
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

// chunkSock hands out a byte stream in the chunk sizes given, as reads
// that each return at most one chunk.
type chunkSock struct {
	data   []byte
	chunks []byte
}

func (s *chunkSock) read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := len(s.data)
	if len(s.chunks) > 0 {
		n = min(n, int(s.chunks[0])+1)
		s.chunks = s.chunks[1:]
	}
	n = copy(p, s.data[:n])
	s.data = s.data[n:]
	return n, nil
}
func (s *chunkSock) tryRead(p []byte) (int, error) { return s.read(p) }
func (s *chunkSock) canPoll() bool                 { return false }
func (s *chunkSock) peer() int                     { return 0 }
func (s *chunkSock) write([]byte, time.Time, <-chan struct{}) error {
	return nil
}
func (s *chunkSock) shutdown()    {}
func (s *chunkSock) Close() error { return nil }

// FuzzFrameReader: however a stream is cut into reads, the frame reader
// yields the same frames as reading it whole, in order, and fails on a
// malformed length the same way; it never panics.
func FuzzFrameReader(f *testing.F) {
	fuzzFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		type frame struct {
			kind byte
			id   uint64
			body string
		}
		collect := func(s fastSock) (out []frame, err error) {
			fr := newFrameReader(s)
			for range 1 << 16 {
				kind, id, body, ok, err := fr.next()
				if err != nil {
					return out, err
				}
				if ok {
					out = append(out, frame{kind, id, string(body)})
					continue
				}
				if err := fr.fill(); err != nil {
					return out, nil // end of the stream
				}
			}
			t.Fatal("frame reader made no progress")
			return nil, nil
		}
		whole, werr := collect(&chunkSock{data: b})
		// Cut the stream by its own bytes: deterministic per input.
		cut, cerr := collect(&chunkSock{data: b, chunks: b})
		if (werr == nil) != (cerr == nil) || len(whole) != len(cut) {
			t.Fatalf("whole: %d frames, %v; cut: %d frames, %v", len(whole), werr, len(cut), cerr)
		}
		for i := range whole {
			if whole[i] != cut[i] {
				t.Fatalf("frame %d differs: %+v, %+v", i, whole[i], cut[i])
			}
		}
	})
}

// TestFrameReaderLargeFrame: a frame larger than the read buffer grows it
// for that frame only; the frames around it come through intact.
func TestFrameReaderLargeFrame(t *testing.T) {
	big := make([]byte, 3*readBufSize+17)
	for i := range big {
		big[i] = byte(i)
	}
	var stream []byte
	stream = finish(append(appendHeader(stream, frameReply, 1), "a"...))
	stream = append(stream, finish(append(appendHeader(nil, frameReply, 2), big...))...)
	stream = append(stream, finish(append(appendHeader(nil, frameError, 3), "c"...))...)
	chunks := make([]byte, 1000)
	for i := range chunks {
		chunks[i] = byte(i * 37)
	}
	fr := newFrameReader(&chunkSock{data: stream, chunks: chunks})
	var got []uint64
	for len(got) < 3 {
		kind, id, body := mustNext(t, fr, len(got))
		switch id {
		case 1:
			if kind != frameReply || string(body) != "a" {
				t.Fatalf("frame 1: %d %q", kind, body)
			}
		case 2:
			if kind != frameReply || string(body) != string(big) {
				t.Fatalf("frame 2: kind %d, %d bytes", kind, len(body))
			}
		case 3:
			if kind != frameError || string(body) != "c" {
				t.Fatalf("frame 3: %d %q", kind, body)
			}
		}
		got = append(got, id)
	}
	if fr.fill() == nil {
		t.Fatal("bytes after the last frame")
	}
	if len(fr.buf) != readBufSize {
		t.Fatalf("the buffer kept %d bytes after the large frame", len(fr.buf))
	}
}

// TestFrameReaderOwn: a body taken with own stays intact while the reader
// goes on, whether it was copied (a small frame) or its grown buffer was
// given up (a large one, with more frames read in behind it).
func TestFrameReaderOwn(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i := range 24 {
		n := 5 + i
		if i%6 == 1 {
			n = readBufSize + 1000*i
		}
		body := make([]byte, n)
		for j := range body {
			body[j] = byte(i*31 + j)
		}
		want = append(want, body)
		stream = append(stream, finish(append(appendHeader(nil, frameCall, uint64(i)), body...))...)
	}
	for _, chunk := range []byte{0, 7, 255} {
		chunks := make([]byte, len(stream)) // every read cut short
		for i := range chunks {
			chunks[i] = byte(i)*chunk + chunk
		}
		fr := newFrameReader(&chunkSock{data: stream, chunks: chunks})
		var got [][]byte
		for len(got) < len(want) {
			_, _, body := mustNext(t, fr, len(got))
			got = append(got, fr.own(body))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("chunks %d: frame %d changed after own", chunk, i)
			}
		}
	}
}

// mustNext is fr's next whole frame, filling as often as it takes; read
// (the frames read so far) names the failure.
func mustNext(t *testing.T, fr *frameReader, read int) (kind byte, id uint64, body []byte) {
	t.Helper()
	for {
		kind, id, body, ok, err := fr.next()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return kind, id, body
		}
		if err := fr.fill(); err != nil {
			t.Fatalf("after %d frames: %v", read, err)
		}
	}
}
