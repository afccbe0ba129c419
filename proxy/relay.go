package proxy

import (
	"io"
	"net/http"
	"strings"
)

// relay writes a proxied response to the client: what goproxy's plain-HTTP
// path does with a handler's response (headers, announced and late
// trailers, flushing for event streams), without its per-request debug
// formatting, context and header copies (issue 15). The response's header
// maps are handed over, not copied: nothing else uses them.
func relay(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		// Announced before WriteHeader, so the server commits to a
		// framing that can carry trailers.
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	var dst io.Writer = w
	if strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") || strings.Contains(h.Get("Transfer-Encoding"), "chunked") {
		dst = flushWriter{w}
	}
	if _, err := io.Copy(dst, resp.Body); err != nil {
		// The upstream body failed mid-way (or a late value could not be
		// scrubbed, or the client left): abort, so the client sees the
		// response cut (no last chunk, or a short body and a close),
		// never complete, as the lane does. Returning would have net/http
		// end a chunked response cleanly. ErrAbortHandler is net/http's
		// way to do that, without a stack in the log.
		_ = resp.Body.Close()
		panic(http.ErrAbortHandler)
	}
	// Closing ends the body's summary line and cleans the trailers
	// (loggedBody.Close), before they are relayed.
	_ = resp.Body.Close()
	if len(resp.Trailer) == 0 {
		return
	}
	// Force chunking even for a body short enough to be sent with a
	// Content-Length, which would drop the trailers.
	_ = http.NewResponseController(w).Flush()
	if len(resp.Trailer) == announced {
		for k, vs := range resp.Trailer {
			h[k] = vs
		}
		return
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
}

// flushWriter flushes after every write (server-sent events).
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}
