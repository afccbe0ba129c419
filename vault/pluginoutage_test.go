package vault

import (
	"context"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"rotor.sh/rotor/plugins"
	"rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage/postgres/pgtest"
)

// The vault's test binary doubles as the storage plugin: run with
// ROTOR_TEST_AS_PLUGIN=1 it serves, as `rotor plugin storage` does.
func TestMain(m *testing.M) {
	if os.Getenv("ROTOR_TEST_AS_PLUGIN") == "1" {
		plugins.Serve(plugins.OpenBackend)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// pgCutter forwards loopback TCP to PostgreSQL until cut: then it drops
// every open connection and refuses new ones (a database outage as the
// plugin sees it) until restored. Its goroutines end at cleanup.
type pgCutter struct {
	ln     net.Listener
	target string
	down   atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newPGCutter(t *testing.T, target string) *pgCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &pgCutter{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(func() {
		ln.Close()
		c.dropAll()
		c.wg.Wait()
	})
	return c
}

func (c *pgCutter) accept() {
	defer c.wg.Done()
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		if c.down.Load() {
			in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", c.target, 5*time.Second)
		if err != nil {
			in.Close()
			continue
		}
		c.mu.Lock()
		c.conns[in], c.conns[out] = struct{}{}, struct{}{}
		c.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer c.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			c.mu.Lock()
			delete(c.conns, dst)
			delete(c.conns, src)
			c.mu.Unlock()
		}
		c.wg.Add(2)
		go pipe(in, out)
		go pipe(out, in)
	}
}

func (c *pgCutter) dropAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.conns {
		conn.Close()
	}
}

func (c *pgCutter) cut() {
	c.down.Store(true)
	c.dropAll()
}

func (c *pgCutter) restore() { c.down.Store(false) }

// TestAuditOutageThroughPlugin (issue 11): the real storage plugin on
// PostgreSQL loses its database for auditOutage (1 s; 30 s with
// ROTOR_TEST_AUDIT_OUTAGE=30s) under resolutions paced at 12,000/s in
// process; every value served has its access row afterwards, the writer is
// healthy and the node ready.
func TestAuditOutageThroughPlugin(t *testing.T) {
	dsn, _ := pgtest.Schema(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cutter := newPGCutter(t, u.Host)
	u.Host = cutter.ln.Addr().String()
	plugin, err := plugins.Launch(context.Background(), plugins.LaunchOptions{
		Path: os.Args[0], Env: []string{"ROTOR_TEST_AS_PLUGIN=1"},
		Config: &proto.ConfigureRequest{Backend: "postgres", Dsn: u.String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plugin.Close() })
	v, st, actor := outageVault(t, plugin, 0)
	var l outageLoad
	stop := make(chan struct{})
	var failedWrites atomic.Int64
	go func() {
		time.Sleep(200 * time.Millisecond)
		before := testutil.ToFloat64(v.metrics.auditWriteErrors)
		cutter.cut()
		time.Sleep(auditOutage(t))
		failedWrites.Store(int64(testutil.ToFloat64(v.metrics.auditWriteErrors) - before))
		cutter.restore()
		time.Sleep(300 * time.Millisecond)
		close(stop)
	}()
	start := time.Now()
	l.run(t, v, actor, 12_000, stop)
	el := time.Since(start)
	t.Logf("outage %s through the plugin: served %d (%.0f/s), refused %d, failed writes during the outage %d", auditOutage(t), l.served.Load(), float64(l.served.Load())/el.Seconds(), l.refused.Load(), failedWrites.Load())
	if failedWrites.Load() == 0 {
		t.Fatal("no audit write failed during the outage: the database was not cut")
	}
	// The plugin's pool reconnects; the writer retries with backoff (at
	// most auditRetryMax apart).
	deadline := time.Now().Add(30 * time.Second)
	for v.FlushAudit(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the audit writer did not recover within 30 s of the database coming back")
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkNoRowLost(t, v, st, actor, l.served.Load())
}
