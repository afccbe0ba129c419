package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"
)

// The harness's own HTTP ends, lean (issue 16, session 4): its 32 clients
// and its upstream run on the same two cores as the node they measure, so
// what they spend is taken from Rotor. Both still speak HTTP/1.1 over
// loopback TCP, one keep-alive connection per client, as a user's client
// and a webhook receiver do; they only skip what net/http does for
// generality (header maps, per-request goroutines and timers).

// maxWireLine bounds a request or response line and each header line.
const maxWireLine = 8 << 10

var errWire = errors.New("dispatchload: malformed HTTP message")

// wireHead reads a message's start line and headers and returns the start
// line, the body length (-1: chunked) and the value of the header named
// want (lower case, with the colon), if any.
func wireHead(br *bufio.Reader, want []byte) (start []byte, length int64, value string, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, 0, "", err
	}
	start = bytes.Clone(bytes.TrimRight(line, "\r\n"))
	for range 200 {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return nil, 0, "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return start, length, value, nil
		}
		switch {
		case hasPrefixFold(line, "content-length:"):
			if length, err = strconv.ParseInt(string(bytes.TrimSpace(line[len("content-length:"):])), 10, 64); err != nil || length < 0 {
				return nil, 0, "", errWire
			}
		case hasPrefixFold(line, "transfer-encoding:"):
			if bytes.Contains(bytes.ToLower(line), []byte("chunked")) {
				length = -1
			}
		case want != nil && hasPrefixFold(line, string(want)):
			value = string(bytes.TrimSpace(line[len(want):]))
		}
	}
	return nil, 0, "", errWire
}

func hasPrefixFold(b []byte, p string) bool {
	if len(b) < len(p) {
		return false
	}
	for i := range len(p) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != p[i] {
			return false
		}
	}
	return true
}

// wireBody reads (and returns, when keep) a body of length (-1: chunked).
func wireBody(br *bufio.Reader, length int64, keep []byte) ([]byte, error) {
	if length < 0 {
		b, err := io.ReadAll(io.LimitReader(httputil.NewChunkedReader(br), 1<<20))
		if err == nil {
			// The trailer section: empty lines until the blank one.
			_, _, _, err = wireTrailer(br)
		}
		return b, err
	}
	if length > 1<<20 {
		return nil, errWire
	}
	if keep == nil {
		_, err := br.Discard(int(length))
		return nil, err
	}
	keep = keep[:0]
	if cap(keep) < int(length) {
		keep = make([]byte, 0, length)
	}
	keep = keep[:length]
	_, err := io.ReadFull(br, keep)
	return keep, err
}

func wireTrailer(br *bufio.Reader) ([]byte, int64, string, error) {
	for range 100 {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, 0, "", err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil, 0, "", nil
		}
	}
	return nil, 0, "", errWire
}

// serveUpstream is the webhook receiver: it reads each request, calls
// arrived with its webhook-id, and answers 200 "ok".
func serveUpstream(arrived func(id string)) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				br, bw := bufio.NewReaderSize(c, 16<<10), bufio.NewWriterSize(c, 512)
				for {
					_, n, id, err := wireHead(br, []byte("webhook-id:"))
					if err != nil {
						return
					}
					if _, err := wireBody(br, n, nil); err != nil {
						return
					}
					arrived(id)
					bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
					if bw.Flush() != nil {
						return
					}
				}
			})
		}
	})
	stop := func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// wireClient is one enqueuing client: a keep-alive connection to the API.
type wireClient struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	req  []byte
	body []byte
}

// post sends one POST with a JSON body and returns the status and body
// (valid until the next post). A broken connection is dialed again once.
func (w *wireClient) post(path, auth, body string) (int, []byte, error) {
	for try := 0; ; try++ {
		if w.c == nil {
			c, err := net.DialTimeout("tcp", w.addr, 10*time.Second)
			if err != nil {
				return 0, nil, err
			}
			w.c, w.br = c, bufio.NewReaderSize(c, 16<<10)
		}
		w.req = append(w.req[:0], "POST "...)
		w.req = append(w.req, path...)
		w.req = append(w.req, " HTTP/1.1\r\nHost: "...)
		w.req = append(w.req, w.addr...)
		w.req = append(w.req, "\r\nAuthorization: Bearer "...)
		w.req = append(w.req, auth...)
		w.req = append(w.req, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		w.req = strconv.AppendInt(w.req, int64(len(body)), 10)
		w.req = append(w.req, "\r\n\r\n"...)
		w.req = append(w.req, body...)
		status, out, err := w.exchange()
		if err == nil {
			return status, out, nil
		}
		w.close()
		if try > 0 {
			return 0, nil, err
		}
	}
}

func (w *wireClient) exchange() (int, []byte, error) {
	w.c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := w.c.Write(w.req); err != nil {
		return 0, nil, err
	}
	start, n, _, err := wireHead(w.br, nil)
	if err != nil {
		return 0, nil, err
	}
	// "HTTP/1.1 201 Created"
	if len(start) < 12 || !bytes.HasPrefix(start, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("%w: status line %q", errWire, start)
	}
	status, err := strconv.Atoi(string(start[9:12]))
	if err != nil {
		return 0, nil, errWire
	}
	if w.body == nil {
		w.body = make([]byte, 0, 2048)
	}
	w.body, err = wireBody(w.br, n, w.body)
	return status, w.body, err
}

func (w *wireClient) close() {
	if w.c != nil {
		w.c.Close()
		w.c = nil
	}
}
