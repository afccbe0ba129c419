package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
)

// Defaults of `rotor dev echo`.
const (
	DefaultEchoAddr = "127.0.0.1:9999"
	// echoBodyLimit bounds how much of a body the echo handler prints.
	echoBodyLimit = 64 << 10
	// echoShutdown bounds the echo server's graceful stop.
	echoShutdown = 2 * time.Second
)

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "development helpers (not for production)",
		Subcommands: []*cli.Command{{
			Name:  "echo",
			Usage: "a loopback HTTP handler that prints every request it gets (method, URL, headers, body) and answers 200",
			Description: "Stands in for a callback handler or an upstream API while trying Rotor: it shows what\n" +
				"arrived, including resolved secret values, so it only listens on loopback addresses.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "addr", Value: DefaultEchoAddr, Usage: "loopback address to listen on (port 0 picks a free one)"},
			},
			Action: func(c *cli.Context) error {
				ln, err := listenLoopback(c.String("addr"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "rotor dev echo: listening on http://%s (Ctrl-C to stop)\n", ln.Addr())
				return serveUntil(c.Context, ln, newEchoHandler(c.App.Writer, nil))
			},
		}},
	}
}

// listenLoopback listens on addr, refusing anything but a loopback IP: the
// echo handler prints what it receives, resolved secrets included.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--addr: %v", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--addr: %q is not a loopback IP address (127.0.0.1 or ::1)", host)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--addr: %w", err)
	}
	return ln, nil
}

// serveUntil serves h on ln until ctx ends, then stops gracefully.
func serveUntil(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), echoShutdown)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

// echoRequest is one request as the echo handler saw it.
type echoRequest struct {
	Method, URL string
	Header      http.Header
	Body        []byte
}

// newEchoHandler prints each request to w; seen, if set, also receives it.
func newEchoHandler(w io.Writer, seen func(echoRequest)) http.Handler {
	var mu sync.Mutex // one request's lines stay together
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, echoBodyLimit+1))
		truncated := len(body) > echoBodyLimit
		body = body[:min(len(body), echoBodyLimit)]
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %s\n", r.Method, r.URL.RequestURI(), r.Proto)
		fmt.Fprintf(&b, "Host: %s\n", r.Host)
		names := make([]string, 0, len(r.Header))
		for k := range r.Header {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			for _, v := range r.Header[k] {
				fmt.Fprintf(&b, "%s: %s\n", k, v)
			}
		}
		b.WriteString("\n")
		if len(body) > 0 {
			b.Write(body)
			if truncated {
				fmt.Fprintf(&b, "\n[... body truncated at %d bytes]", echoBodyLimit)
			}
			b.WriteString("\n")
		}
		b.WriteString("----\n")
		mu.Lock()
		io.WriteString(w, b.String())
		mu.Unlock()
		if seen != nil {
			seen(echoRequest{Method: r.Method, URL: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body})
		}
		rw.Header().Set("Content-Type", "application/json")
		io.WriteString(rw, `{"ok":true}`+"\n")
	})
}
