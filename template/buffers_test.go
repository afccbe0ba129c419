package template

import (
	"io"
	"strings"
	"testing"
)

// The Rewriter's buffers: a pending buffer with room enough is reused, one
// without grows to hold a whole readChunk plus a reference's look-ahead, and
// the fast path feeds the JSON lexer what it skipped. Mutation testing
// (issue 13) showed these sizes could drift without a test noticing.

func TestFastPathKeepsRoomyBuffer(t *testing.T) {
	body := strings.Repeat("x", 3*fastPathMin) + "${{ secrets.A }}" + strings.Repeat("y", fastPathMin)
	for _, tc := range []struct {
		name   string
		capIn  int
		reused bool
	}{
		{"small buffer grows", 1, false},
		{"exactly enough is kept", fastPathMin + readChunk, true},
	} {
		rw := NewRewriter(strings.NewReader(body), ContextRaw, resolveTest)
		rw.in = make([]byte, 0, tc.capIn)
		p := make([]byte, 4*fastPathMin)
		if n, err := rw.Read(p); err != nil || n != 3*fastPathMin {
			t.Fatalf("%s: read up to '$': n %d, err %v", tc.name, n, err)
		}
		if len(rw.in) != fastPathMin {
			t.Fatalf("%s: %d bytes pending, want %d", tc.name, len(rw.in), fastPathMin)
		}
		if reused := cap(rw.in) == tc.capIn; reused != tc.reused {
			t.Errorf("%s: buffer of cap %d now cap %d", tc.name, tc.capIn, cap(rw.in))
		}
		if room := cap(rw.in) - len(rw.in); room < readChunk {
			t.Errorf("%s: room for %d bytes after the hand-over, want at least readChunk", tc.name, room)
		}
		rest, err := io.ReadAll(rw)
		if err != nil || string(p[:3*fastPathMin])+string(rest) != strings.Replace(body, "${{ secrets.A }}", "alpha", 1) {
			t.Fatalf("%s: rest %d bytes, %v", tc.name, len(rest), err)
		}
	}
}

func TestFillGrowsPendingBuffer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pending string
		capIn   int
		grows   bool
	}{
		{"exactly a chunk of room is kept", "", readChunk, false},
		{"less room grows", "ab", readChunk, true},
		{"no buffer grows", "", 0, true},
	} {
		rw := NewRewriter(strings.NewReader("cd"), ContextRaw, resolveTest)
		rw.in = append(make([]byte, 0, tc.capIn), tc.pending...)
		p := make([]byte, 16) // below fastPathMin: the general path
		n, err := rw.Read(p)
		if err != nil || string(p[:n]) != tc.pending+"cd" {
			t.Fatalf("%s: read %q, %v", tc.name, p[:n], err)
		}
		grew := cap(rw.in) != tc.capIn
		if grew != tc.grows {
			t.Errorf("%s: cap %d -> %d", tc.name, tc.capIn, cap(rw.in))
		}
		if grew && cap(rw.in)-len(tc.pending) < readChunk+maxRefBytes {
			t.Errorf("%s: grew to cap %d: no room for a chunk and a reference's look-ahead", tc.name, cap(rw.in))
		}
	}
}

// TestFastPathFeedsJSONLexer: a JSON string opened in a fast-path read is
// still open when the reference inside it is reached.
func TestFastPathFeedsJSONLexer(t *testing.T) {
	body := `{"k":"` + strings.Repeat("x", 2*fastPathMin) + `${{ secrets.A }}"}`
	rw := NewRewriter(strings.NewReader(body), ContextJSON, resolveTest)
	var got []byte
	var err error
	for range 100 {
		p := make([]byte, 4*fastPathMin)
		var n int
		n, err = rw.Read(p)
		got = append(got, p[:n]...)
		if err != nil {
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	if err != nil || string(got) != strings.Replace(body, "${{ secrets.A }}", "alpha", 1) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
}
