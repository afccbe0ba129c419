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

	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
)

// streamedReq returns a request of actor's whose body (fill, then a
// reference to secret, past BufferLimit) went through rewriteBody: its Body
// is the streamed-body wrapper, holding pooled buffers, the first of them
// holding the resolved value.
func streamedReq(t testing.TB, p *Proxy, actor vault.Actor, fill byte, secret string) *http.Request {
	t.Helper()
	st := &reqState{p: p, ctx: context.Background(), id: "prx_bodypool", actor: actor, host: "upstream.test", scheme: "http"}
	st.rf = st.resolveName
	body := bytes.Repeat([]byte{fill}, BufferLimit+64<<10)
	if secret != "" {
		ref := "${{ secrets." + secret + " }}"
		for i := 0; i+len(ref) < BufferLimit; i += 4 << 10 {
			copy(body[i:], ref)
		}
	}
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

// readUpTo reads r in chunks until it ends, fails or gave max bytes.
func readUpTo(r io.Reader, chunk, max int) ([]byte, error) {
	var got []byte
	buf := make([]byte, chunk)
	for len(got) < max {
		k, err := r.Read(buf)
		got = append(got, buf[:k]...)
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// onlyA reports whether b holds nothing but workspace A's fill byte.
func onlyA(b []byte) bool { return len(bytes.Trim(b, "a")) == 0 }

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
	// Workspace A streams a body of its own; workspace B's body resolves
	// B's secret.
	const value = "vic_9b1f4e7a2c6d8053"
	ve.Secret(t, "VICTIM", value, "upstream.test")
	other, err := ve.Vault.CreateWorkspace(context.Background(), ve.Operator, "other")
	if err != nil {
		t.Fatal(err)
	}
	wsA := vault.Actor{KeyID: other.AdminKey.ID, WorkspaceID: other.Workspace.ID}
	wsB := ve.Operator

	// In order: read some, Close on another goroutine, the next request
	// takes the buffers, the first transport reads on. sync.Pool keeps a
	// freed buffer for the next Get on the same P, but drops some Puts at
	// random under the race detector: a few rounds.
	for round := range 8 {
		a := streamedReq(t, p, wsA, 'a', "")
		if got, err := readUpTo(a.Body, 16<<10, 64<<10); !onlyA(got) || err != nil {
			t.Fatalf("round %d: before Close: %d bytes, %v", round, len(got), err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _ = a.Body.Close() })
		wg.Wait()
		b := streamedReq(t, p, wsB, 'b', "VICTIM")
		got, err := readUpTo(a.Body, 16<<10, BufferLimit)
		if bytes.Contains(got, []byte(value)) {
			t.Fatalf("round %d: workspace A's transport, reading after Close, got workspace B's resolved secret", round)
		}
		if !onlyA(got) {
			t.Fatalf("round %d: workspace A's transport, reading after Close, got bytes of workspace B's body", round)
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
		a := streamedReq(t, p, wsA, 'a', "")
		started := make(chan struct{})
		var got []byte
		var wg sync.WaitGroup
		wg.Go(func() {
			buf := make([]byte, 512)
			for i := 0; i < 4096; i++ {
				k, err := a.Body.Read(buf)
				got = append(got, buf[:k]...)
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
		b := streamedReq(t, p, wsB, 'b', "VICTIM")
		wg.Wait()
		_ = b.Body.Close()
		if !onlyA(got) {
			t.Fatalf("concurrent round %d: workspace A's transport read bytes of workspace B's body (B's secret: %v)", round, bytes.Contains(got, []byte(value)))
		}
	}
}

// BenchmarkStreamedBody: a body past BufferLimit rewritten, read to its end
// in the transport's 32 KiB reads, and closed (the lock per Read is what
// the serialisation costs).
func BenchmarkStreamedBody(b *testing.B) {
	ve, p := benchProxy(b)
	buf := make([]byte, 32<<10)
	b.SetBytes(BufferLimit + 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		r := streamedReq(b, p, ve.Operator, 'a', "")
		for {
			if _, err := r.Body.Read(buf); err != nil {
				break
			}
		}
		_ = r.Body.Close()
	}
}
