package plugins

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "rotor.sh/rotor/plugins/proto"
)

// Fast calls (Capability FAST_CALLS): every unary RPC of the protocol, the
// same request and response messages, carried as length-prefixed frames
// with a call id over one Unix socket instead of one HTTP/2 stream each.
// A gRPC unary call wakes several goroutines per side (the caller, the
// transport's reader and writer, a stream worker); here one reader per
// side hands a frame to the waiting caller (host) or to the handler
// (plugin). storage.proto documents the frame layout. How each side waits
// for frames (a socket outside the netpoller, polling before parking) is
// in fastsock.go, rawsock_linux.go and spin.go.

// Frame kinds.
const (
	frameCall   = 1
	frameReply  = 2
	frameError  = 3
	frameCancel = 4
	frameHello  = 5
)

// frameHeader is u32 length (of kind, id and body) | u8 kind | u64 id.
const frameHeader = 4 + 1 + 8

// maxFrame bounds a frame's length field: a message at the protocol's
// limit plus the call frame's own fields (deadline, method).
const maxFrame = MaxMessageSize + 1 + 8 + 8 + 2 + 1<<16

// fastTokenLen is the hello token's length in bytes.
const fastTokenLen = 32

// helloTimeout bounds how long the plugin waits for a connection's hello.
const helloTimeout = 10 * time.Second

var errFrame = errors.New("fast-call frame malformed")

// appendHeader starts a frame in b; finish sets its length.
func appendHeader(b []byte, kind byte, id uint64) []byte {
	b = append(b, 0, 0, 0, 0, kind)
	return binary.LittleEndian.AppendUint64(b, id)
}

func finish(b []byte) []byte {
	binary.LittleEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// bufPool holds frame buffers for writing.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// bigBufPool holds the frame buffers of requests over smallFrame bytes, up
// to maxPooledFrame: the audit writer's AppendAudit (about 0.5 MB for
// 2,000 rows) allocated and cleared a new one per batch, a tenth of the
// host's CPU per access row with the collections it caused. Apart from
// bufPool so that small calls do not carry megabyte buffers around.
var bigBufPool = sync.Pool{New: func() any { return new([]byte) }}

const (
	smallFrame     = 64 << 10
	maxPooledFrame = 4 << 20
)

// --- host side

// fastConn is the host's end: a grpc.ClientConnInterface whose unary calls
// go over the socket (streams, and every call once the socket has failed,
// go over the gRPC connection). There is no reader goroutine: a waiting
// caller takes the reading (rtok) and reads until its own reply has come,
// handing the others' replies to their callers on the way. A lone caller
// is thus woken by the socket itself (on Linux, by the kernel ending its
// blocking read), not by a reader that then wakes it: one scheduler
// hand-off less per call on a path that is mostly hand-offs.
type fastConn struct {
	c        fastSock
	fallback grpc.ClientConnInterface
	// wmu serialises writes, rtok reading; channels so that waiting
	// honours the call's context.
	wmu  chan struct{}
	rtok chan struct{}
	// The reading, owned by the holder of rtok: a read cut short (the
	// holder's call was cancelled or expired) resumes where it stopped, in
	// the next holder's hands; so does the spinner's learning.
	fr   *frameReader
	spin *spinner

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan fastResult
	err     error // set once the connection has failed
}

type fastResult struct {
	kind byte
	body []byte
}

// dialFast connects to the plugin's fast-call socket and presents token.
func dialFast(ctx context.Context, path string, token []byte, fallback grpc.ClientConnInterface, spin time.Duration) (*fastConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	hello := finish(append(appendHeader(nil, frameHello, 0), token...))
	if dl, ok := ctx.Deadline(); ok {
		c.SetWriteDeadline(dl)
	}
	if _, err := c.Write(hello); err != nil {
		c.Close()
		return nil, err
	}
	return newFastConn(c, fallback, spin)
}

// newFastConn takes over a connection that has said hello; spin bounds
// how long a waiting caller polls for its reply before parking (0: never).
func newFastConn(c net.Conn, fallback grpc.ClientConnInterface, spin time.Duration) (*fastConn, error) {
	s, err := newFastSock(c, true)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &fastConn{c: s, fallback: fallback, wmu: make(chan struct{}, 1), rtok: make(chan struct{}, 1),
		fr: newFrameReader(s), spin: newSpinner(spin, s.peer()), pending: map[uint64]chan fastResult{}}, nil
}

// errCut is a wait given up because the reader's own call was cancelled
// or expired.
var errCut = errors.New("read cut")

// readUntil reads, holding rtok, until call id's reply has come (or ctx
// ends: errCut), delivering other calls' replies.
func (f *fastConn) readUntil(ctx context.Context, id uint64, ch chan fastResult) (fastResult, error) {
	parked := false // a slice elapsed: park again, without polling
	for {
		select {
		case res := <-ch: // delivered before we took the reading
			return res, nil
		default:
		}
		kind, rid, frame, ok, err := f.fr.next()
		if err == nil && !ok {
			if parked {
				err = f.fr.fill()
			} else {
				err = f.fr.wait(f.spin, ctx.Done())
			}
			switch err {
			case nil:
				parked = false
				continue
			case errSlice:
				// The caller's cancellation or deadline (which
				// withCallTimeout always sets) is noticed here, within
				// a slice.
				if ctx.Err() != nil {
					return fastResult{}, errCut
				}
				parked = true
				continue
			}
		}
		if err != nil {
			f.fail(err)
			return fastResult{}, nil
		}
		if kind != frameReply && kind != frameError {
			f.fail(fmt.Errorf("%w: kind %d from the plugin", errFrame, kind))
			return fastResult{}, nil
		}
		// The frame lives in the read buffer until the next read; its
		// caller decodes it after passing the reading on.
		body := append([]byte(nil), frame...)
		if rid == id {
			f.forget(id)
			return fastResult{kind, body}, nil
		}
		f.mu.Lock()
		c := f.pending[rid]
		delete(f.pending, rid)
		f.mu.Unlock()
		if c != nil { // nil: the call gave up
			c <- fastResult{kind, body}
		}
	}
}

// fail marks the connection failed and fails every waiting call.
func (f *fastConn) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
	f.c.Close() // a blocked read or write ends at once
	for id, ch := range f.pending {
		delete(f.pending, id)
		ch <- fastResult{}
	}
}

func (f *fastConn) close() { f.fail(net.ErrClosed) }

func (f *fastConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return f.fallback.NewStream(ctx, desc, method, opts...)
}

// Invoke runs one unary call over the socket. Errors are gRPC statuses, as
// on the gRPC path, so the Client maps them the same way.
func (f *fastConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	f.mu.Lock()
	if f.err != nil {
		err := f.err
		f.mu.Unlock()
		if f.fallback == nil {
			return status.Errorf(codes.Unavailable, "fast call %s: connection lost: %v", method, err)
		}
		return f.fallback.Invoke(ctx, method, args, reply, opts...)
	}
	f.nextID++
	id := f.nextID
	ch := make(chan fastResult, 1)
	f.pending[id] = ch
	f.mu.Unlock()

	if err := f.send(ctx, id, method, args.(proto.Message)); err != nil {
		f.forget(id)
		return err
	}
	var res fastResult
	select {
	case res = <-ch:
	case f.rtok <- struct{}{}:
		var err error
		res, err = f.readUntil(ctx, id, ch)
		<-f.rtok
		if err != nil {
			if f.forget(id) {
				f.cancel(id)
			}
			return status.FromContextError(ctx.Err()).Err()
		}
	case <-ctx.Done():
		if f.forget(id) {
			f.cancel(id)
		}
		return status.FromContextError(ctx.Err()).Err()
	}
	switch res.kind {
	case frameReply:
		if err := proto.Unmarshal(res.body, reply.(proto.Message)); err != nil {
			return status.Errorf(codes.Internal, "fast call %s: decode reply: %v", method, err)
		}
		return nil
	case frameError:
		sp := new(spb.Status)
		if err := proto.Unmarshal(res.body, sp); err != nil {
			return status.Errorf(codes.Internal, "fast call %s: decode error: %v", method, err)
		}
		return status.ErrorProto(sp)
	}
	return status.Errorf(codes.Unavailable, "fast call %s: connection lost: %v", method, f.failure())
}

func (f *fastConn) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// forget drops a call's waiter; false when the reply came first.
func (f *fastConn) forget(id uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.pending[id]
	delete(f.pending, id)
	return ok
}

// send writes a call frame, bounded by the call's deadline: a plugin that
// stops reading fails the call (and the connection, whose stream a cut
// write has broken) instead of blocking the caller.
func (f *fastConn) send(ctx context.Context, id uint64, method string, m proto.Message) error {
	if len(method) > 1<<16-1 {
		return status.Errorf(codes.Internal, "fast call: method name too long")
	}
	pool := &bufPool
	if proto.Size(m) > smallFrame {
		pool = &bigBufPool
	}
	bp := pool.Get().(*[]byte)
	defer func() {
		if c := cap(*bp); pool == &bufPool && c <= smallFrame || pool == &bigBufPool && c <= maxPooledFrame {
			pool.Put(bp)
		}
	}()
	var dl int64
	deadline, hasDL := ctx.Deadline()
	if hasDL {
		dl = deadline.UnixNano()
	}
	b := appendHeader((*bp)[:0], frameCall, id)
	b = binary.LittleEndian.AppendUint64(b, uint64(dl))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(method)))
	b = append(b, method...)
	n := len(b)
	// The size was worked out above (proto.Size) and m is not changed
	// since: the cached size spares MarshalAppend a second pass.
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, m)
	if err != nil {
		return status.Errorf(codes.Internal, "fast call %s: encode: %v", method, err)
	}
	if len(b)-n > MaxMessageSize {
		return status.Errorf(codes.ResourceExhausted, "fast call %s: request of %d bytes exceeds the limit of %d", method, len(b)-n, MaxMessageSize)
	}
	*bp = b
	finish(b)
	select {
	case f.wmu <- struct{}{}:
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	defer func() { <-f.wmu }()
	if err := f.c.write(b, deadline, ctx.Done()); err != nil {
		f.fail(err)
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return status.Errorf(codes.Unavailable, "fast call %s: %v", method, err)
	}
	return nil
}

// cancel tells the plugin the host gave up on a call (best effort: a
// plugin that is not reading is not waited for).
func (f *fastConn) cancel(id uint64) {
	select {
	case f.wmu <- struct{}{}:
	default:
		return
	}
	defer func() { <-f.wmu }()
	if err := f.c.write(finish(appendHeader(make([]byte, 0, frameHeader), frameCancel, id)), time.Now().Add(100*time.Millisecond), nil); err != nil {
		f.fail(err)
	}
}

// --- plugin side

// fastHandler is one unary method of the protocol as generated for gRPC,
// with what its calls have cost lately.
type fastHandler struct {
	srv  any
	h    grpc.MethodHandler
	cost *callCost
}

// callCost tracks how long a method's calls take, so that the plugin's
// reader runs the cheap ones itself (inline) instead of handing them to a
// worker: a hand-off is a goroutine wake-up, as much as a cheap call
// costs. It rises fast (half-way to a slower call at once) and falls
// slowly (an eighth of the way), so one slow call is enough to move a
// method back to the workers. Written by whoever ran the call (reader or
// worker), read by the reader.
type callCost struct {
	ns    atomic.Int64 // smoothed duration; 0: never measured
	calls atomic.Int64
}

// inlineMax: a method whose calls have taken at most this long (smoothed,
// after inlineAfter calls on workers) runs on the reader. It also bounds
// how long a cheap call holds up the calls behind it.
const (
	inlineMax   = 20 * time.Microsecond
	inlineAfter = 8
)

func (c *callCost) cheap() bool {
	return c.calls.Load() >= inlineAfter && c.ns.Load() <= int64(inlineMax)
}

func (c *callCost) record(d time.Duration) {
	old := c.ns.Load()
	n := int64(d)
	switch {
	case c.calls.Add(1) == 1 || n > old:
		if old != 0 {
			n = (old + n) / 2
		}
	default:
		n = old - (old-n)/8
	}
	c.ns.Store(max(n, 1))
}

// fastMethods maps full method names to handlers: every unary method of
// every service the plugin registers on gRPC.
func fastMethods(s *Server) map[string]fastHandler {
	m := map[string]fastHandler{}
	for _, d := range []*grpc.ServiceDesc{&pb.Plugin_ServiceDesc, &pb.Workspaces_ServiceDesc, &pb.Secrets_ServiceDesc, &pb.Audit_ServiceDesc,
		&pb.Jobs_ServiceDesc, &pb.Retention_ServiceDesc, &pb.Changes_ServiceDesc, &pb.Workflows_ServiceDesc} {
		for _, md := range d.Methods {
			m["/"+d.ServiceName+"/"+md.MethodName] = fastHandler{s, md.Handler, new(callCost)}
		}
	}
	return m
}

// fastServer is the plugin's end: a socket in a fresh 0700 directory that
// accepts one connection, from whoever presents the token first (the host,
// which alone learnt it, over the AutoMTLS gRPC connection).
type fastServer struct {
	dir, path string
	token     []byte
	l         net.Listener
	methods   map[string]fastHandler
	// spin bounds how long the reader polls for the next frame before
	// parking (0: never).
	spin time.Duration

	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conn   fastSock
	closed bool
}

// listenFast opens the fast-call socket; Describe reports it.
func (s *Server) listenFast(spin time.Duration) error {
	dir, err := os.MkdirTemp("", fastDirPrefix) // 0700
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "fast.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	token := make([]byte, fastTokenLen)
	rand.Read(token)
	ctx, stop := context.WithCancel(context.Background())
	f := &fastServer{dir: dir, path: path, token: token, l: l, methods: fastMethods(s), spin: spin, ctx: ctx, stop: stop}
	f.wg.Add(1)
	go f.accept()
	s.mu.Lock()
	s.fast = f
	s.mu.Unlock()
	return nil
}

// fastDirPrefix starts the name of a fast-call socket's directory.
const fastDirPrefix = "rotor-plugin-"

// removeFastSocket removes a plugin's fast-call socket and its directory
// once the plugin has exited, if they are still there. The path comes from
// the plugin, so only what the plugin itself would have made is removed: a
// socket named fast.sock in a directory named rotor-plugin-*, and the
// directory only if that leaves it empty.
func removeFastSocket(path string) {
	dir := filepath.Dir(path)
	if path == "" || filepath.Base(path) != "fast.sock" || !strings.HasPrefix(filepath.Base(dir), fastDirPrefix) {
		return
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == os.ModeSocket {
		os.Remove(path)
	}
	os.Remove(dir) // fails, harmlessly, unless empty
}

// accept waits for the host's connection; once one has said hello the
// socket is removed and no other can connect. Each connection's hello is
// read on a goroutine of its own: a stranger that connected first and says
// nothing must not keep the host waiting for the hello deadline. The
// winner closes the listener and the other connections, so those
// goroutines end at once.
func (f *fastServer) accept() {
	defer f.wg.Done()
	defer os.RemoveAll(f.dir)
	var (
		hellos  sync.WaitGroup
		mu      sync.Mutex
		pending = map[net.Conn]struct{}{}
		won     net.Conn
	)
	for {
		c, err := f.l.Accept()
		if err != nil {
			break
		}
		mu.Lock()
		if won != nil {
			mu.Unlock()
			c.Close()
			continue
		}
		pending[c] = struct{}{}
		mu.Unlock()
		hellos.Add(1)
		go func() {
			defer hellos.Done()
			ok := f.hello(c)
			mu.Lock()
			defer mu.Unlock()
			delete(pending, c)
			if !ok || won != nil {
				c.Close()
				return
			}
			won = c
			f.l.Close()
			for o := range pending {
				o.Close()
			}
		}()
	}
	mu.Lock()
	for o := range pending {
		o.Close()
	}
	mu.Unlock()
	hellos.Wait()
	c := won
	if c == nil {
		return
	}
	os.RemoveAll(f.dir)
	s, err := newFastSock(c, false)
	if err != nil {
		c.Close()
		return
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		s.Close()
		return
	}
	f.conn = s
	f.mu.Unlock()
	f.serve(s)
}

func (f *fastServer) hello(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	defer c.SetReadDeadline(time.Time{})
	var h [frameHeader + fastTokenLen]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return false
	}
	return binary.LittleEndian.Uint32(h[:4]) == uint32(len(h)-4) && h[4] == frameHello &&
		subtle.ConstantTimeCompare(h[frameHeader:], f.token) == 1
}

// serve is the connection's one reader. A call to a method known to be
// cheap runs on the reader itself (no hand-off); any other goes to a
// worker goroutine (a slow call must not hold up the others), which the
// reader waits for before it returns. Between frames the reader polls
// before it parks (spin.go), since the host's next call usually follows
// its last reply closely.
func (f *fastServer) serve(c fastSock) {
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	var (
		calls sync.WaitGroup
		wmu   sync.Mutex
		cmu   sync.Mutex
	)
	cancels := map[uint64]context.CancelFunc{}
	work := make(chan func())
	defer calls.Wait()
	defer close(work)
	defer c.Close()
	for range fastWorkers {
		calls.Add(1)
		go func() {
			defer calls.Done()
			for job := range work {
				job()
			}
		}()
	}
	reply := func(out []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		if err := c.write(out, time.Now().Add(DefaultCallTimeout), ctx.Done()); err != nil {
			c.shutdown() // the reader then ends
		}
	}
	fr := newFrameReader(c)
	spin := newSpinner(f.spin, c.peer())
	for {
		kind, id, body, ok, err := fr.next()
		if err != nil {
			return
		}
		if !ok {
			if fr.wait(spin, ctx.Done()) != nil {
				return
			}
			continue
		}
		switch kind {
		case frameCancel:
			cmu.Lock()
			if cf := cancels[id]; cf != nil {
				cf()
			}
			cmu.Unlock()
			continue
		case frameCall:
		default:
			return
		}
		if len(body) < 10 {
			return
		}
		dl := int64(binary.LittleEndian.Uint64(body))
		ml := int(binary.LittleEndian.Uint16(body[8:]))
		if len(body) < 10+ml {
			return
		}
		h, known := f.methods[string(body[10:10+ml])]
		var cctx context.Context
		var ccancel context.CancelFunc
		if dl != 0 {
			cctx, ccancel = context.WithDeadline(ctx, time.Unix(0, dl))
		} else {
			cctx, ccancel = context.WithCancel(ctx)
		}
		if known && h.cost.cheap() {
			// Inline: the message is decoded before the next read reuses
			// the buffer; no cancel frame can arrive for it meanwhile
			// (nothing is read), so it is not registered.
			out := f.call(cctx, id, h, known, "", body[10+ml:])
			ccancel()
			reply(out)
			continue
		}
		method, msg := string(body[10:10+ml]), fr.own(body)[10+ml:]
		cmu.Lock()
		cancels[id] = ccancel
		cmu.Unlock()
		job := func() {
			out := f.call(cctx, id, h, known, method, msg)
			cmu.Lock()
			delete(cancels, id)
			cmu.Unlock()
			ccancel()
			reply(out)
		}
		select {
		case work <- job:
		default:
			calls.Add(1)
			go func() {
				defer calls.Done()
				job()
			}()
		}
	}
}

// fastWorkers is how many goroutines of the plugin wait for calls: they
// keep the stacks that calls have grown (a fresh goroutine per call spent
// a fifth of the plugin's CPU copying its stack as it grew), and more calls
// at once run in goroutines of their own.
const fastWorkers = 4

// call runs one method (h, when known) and returns its reply or error
// frame.
func (f *fastServer) call(ctx context.Context, id uint64, h fastHandler, known bool, method string, msg []byte) []byte {
	var resp any
	var err error
	if known {
		start := time.Now()
		resp, err = h.h(h.srv, ctx, func(v any) error { return proto.Unmarshal(msg, v.(proto.Message)) }, nil)
		h.cost.record(time.Since(start))
	} else {
		err = status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	if err == nil {
		b := appendHeader(make([]byte, 0, 256), frameReply, id)
		n := len(b)
		b, err = proto.MarshalOptions{}.MarshalAppend(b, resp.(proto.Message))
		if err == nil && len(b)-n > MaxMessageSize {
			err = status.Errorf(codes.ResourceExhausted, "reply of %d bytes exceeds the limit of %d", len(b)-n, MaxMessageSize)
		}
		if err == nil {
			return finish(b)
		}
	}
	sb, merr := proto.Marshal(status.Convert(err).Proto())
	if merr != nil {
		sb, _ = proto.Marshal(status.New(codes.Internal, "encode error").Proto())
	}
	return finish(append(appendHeader(make([]byte, 0, frameHeader+len(sb)), frameError, id), sb...))
}

// close stops accepting, ends the connection and waits for running calls.
func (f *fastServer) close() {
	f.mu.Lock()
	f.closed = true
	if f.conn != nil {
		f.conn.Close()
	}
	f.mu.Unlock()
	f.l.Close()
	f.stop()
	f.wg.Wait()
}
