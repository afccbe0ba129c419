package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"rotor.sh/rotor/vault/vaulttest"
)

// streamedReq returns a request whose body (fill, past BufferLimit) went
// through rewriteBody: its Body is the streamed-body wrapper, holding
// pooled buffers.
func streamedReq(t *testing.T, p *Proxy, fill byte) *http.Request {
	t.Helper()
	st := &reqState{p: p, ctx: context.Background(), id: "prx_bodypool"}
	st.rf = st.resolveName
	body := bytes.Repeat([]byte{fill}, BufferLimit+64<<10)
	out := httptest.NewRequest("POST", "http://upstream.test/", io.NopCloser(bytes.NewReader(body)))
	out.ContentLength = int64(len(body))
	if err := st.rewriteBody(out); err != nil {
		t.Fatal(err)
	}
	if _, ok := out.Body.(*pooledBody); !ok {
		t.Fatalf("body is %T, want the streamed wrapper", out.Body)
	}
	return out
}

// readsOnly reads r until it ends, fails or has given max bytes, and
// reports whether any byte differed from want.
func readsOnly(r io.Reader, want byte, chunk, max int) (foreign bool, err error) {
	buf := make([]byte, chunk)
	for n := 0; n < max; {
		k, err := r.Read(buf)
		if bytes.IndexFunc(buf[:k], func(c rune) bool { return c != rune(want) }) >= 0 {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		n += k
	}
	return false, nil
}

// TestStreamedBodyBuffersAfterClose: a transport may close a request body
// on one goroutine while another still reads it (net/http's RoundTrip
// after a failed round trip while its write loop copies the body; HTTP/2
// closes it on a goroutine of its own when the server ends the stream
// first). The streamed-body wrapper returned its buffers to the pool at
// Close without waiting for such a read: the next request's body, with
// the values it resolved, was written into the buffer the first request's
// transport went on reading. Now Close waits for a read in progress, and
// a read after Close gets an error, never a byte of another body.
func TestStreamedBodyBuffersAfterClose(t *testing.T) {
	ve := vaulttest.New(t)
	p, err := New(Options{Vault: ve.Vault, Logger: ve.Logger, Registerer: ve.Registry})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.CloseIdleConnections)

	// In order: read some, Close on another goroutine, the next request
	// takes the buffers, the first transport reads on. sync.Pool keeps a
	// freed buffer for the next Get on the same P, but drops some Puts at
	// random under the race detector: a few rounds.
	for round := range 8 {
		a := streamedReq(t, p, 'a')
		if foreign, err := readsOnly(a.Body, 'a', 16<<10, 64<<10); foreign || err != nil {
			t.Fatalf("round %d: before Close: foreign %v, %v", round, foreign, err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _ = a.Body.Close() })
		wg.Wait()
		b := streamedReq(t, p, 'b')
		foreign, err := readsOnly(a.Body, 'a', 16<<10, BufferLimit)
		if foreign {
			t.Fatalf("round %d: a read after Close returned bytes of another request's body", round)
		}
		if err == nil || !errors.Is(err, http.ErrBodyReadAfterClose) {
			t.Fatalf("round %d: a read after Close: %v, want ErrBodyReadAfterClose", round, err)
		}
		_ = b.Body.Close()
	}

	// Concurrently, with no other synchronisation than the body's own: the
	// race detector sees a read of a freed buffer against the next
	// request's write into it.
	for round := range 4 {
		a := streamedReq(t, p, 'a')
		started := make(chan struct{})
		var foreign bool
		var wg sync.WaitGroup
		wg.Go(func() {
			buf := make([]byte, 512)
			for i := 0; i < 4096; i++ {
				k, err := a.Body.Read(buf)
				if bytes.IndexFunc(buf[:k], func(c rune) bool { return c != 'a' }) >= 0 {
					foreign = true
				}
				if i == 0 {
					close(started)
				}
				if err != nil {
					return
				}
			}
		})
		<-started
		_ = a.Body.Close()
		b := streamedReq(t, p, 'b')
		wg.Wait()
		_ = b.Body.Close()
		if foreign {
			t.Fatalf("concurrent round %d: the transport read bytes of another request's body", round)
		}
	}
}
