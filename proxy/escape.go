package proxy

import "rotor.sh/rotor/template"

// The response scrubber looks for each resolved value in the encodings the
// rewriter put it in, so it uses the template package's escapers; these
// names keep scrub.go and response.go as they were before the move.
func appendQueryEscape(dst, v []byte) []byte { return template.AppendQueryEscape(dst, v) }

func appendPathEscape(dst, v []byte) []byte { return template.AppendPathEscape(dst, v) }

// readChunk is the scrubber's largest read (the rewriter's is the same).
const readChunk = 32 << 10

// canonicalRef is how a resolved reference is written back (response scrubbing).
func canonicalRef(name string) string { return "${{ secrets." + name + " }}" }
