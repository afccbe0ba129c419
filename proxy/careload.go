package proxy

import (
	"crypto/tls"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
)

// DefaultCAReloadInterval bounds how often the proxy looks at the CA files
// (issue 17: `rotor ca init`, or a rotation, took a restart to apply).
const DefaultCAReloadInterval = 2 * time.Second

// caReloader holds the interception CA and picks up a new one when its
// files appear or change: checked on CONNECT, at most once per interval,
// or at once on Reload (SIGHUP). A file that cannot be loaded (half
// written, a key that does not match) keeps the previous CA, with a
// warning; removing the files keeps it too, so interception never turns
// off behind the operator's back.
type caReloader struct {
	certPath, keyPath string
	interval          time.Duration
	log               *slog.Logger
	// next is when the files are looked at again (Unix ns).
	next atomic.Int64
	mu   sync.Mutex // one check at a time; guards stamps
	// stamps identify the files' versions last loaded or refused.
	stamps [2]fileStamp
	cur    atomic.Pointer[caState]
}

// caState is one CA and the leaf configurations minted under it (a new CA
// starts with an empty cache, so no leaf of the old one is served).
type caState struct {
	action *goproxy.ConnectAction
	mu     sync.Mutex
	leaves map[string]*leafEntry
}

type leafEntry struct {
	once sync.Once
	cfg  *tls.Config
	err  error
}

type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
}

func newCAState(ca *tls.Certificate) *caState {
	st := &caState{}
	mint := goproxy.TLSConfigFromCA(ca)
	st.action = &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: func(host string, ctx *goproxy.ProxyCtx) (*tls.Config, error) {
		// A host's leaf is signed once per CA (goproxy clones the
		// configuration before changing it, so sharing it is safe).
		name := stripPort(host)
		st.mu.Lock()
		if st.leaves == nil || len(st.leaves) >= maxCachedCerts {
			st.leaves = make(map[string]*leafEntry)
		}
		e, ok := st.leaves[name]
		if !ok {
			e = &leafEntry{}
			st.leaves[name] = e
		}
		st.mu.Unlock()
		e.once.Do(func() { e.cfg, e.err = mint(host, ctx) })
		if e.err != nil {
			st.mu.Lock()
			delete(st.leaves, name)
			st.mu.Unlock()
		}
		return e.cfg, e.err
	}}
	return st
}

func stripPort(host string) string {
	for i := len(host) - 1; i >= 0; i-- {
		switch host[i] {
		case ':':
			return host[:i]
		case ']':
			return host
		}
	}
	return host
}

// current is the CA to intercept with (nil: tunnel), after a check of the
// files when one is due.
func (r *caReloader) current() *goproxy.ConnectAction {
	if r.certPath != "" && time.Now().UnixNano() >= r.next.Load() && r.mu.TryLock() {
		r.check()
		r.mu.Unlock()
	}
	if st := r.cur.Load(); st != nil {
		return st.action
	}
	return nil
}

// Reload looks at the files now.
func (r *caReloader) reload() {
	if r.certPath == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.check()
}

func (r *caReloader) check() {
	r.next.Store(time.Now().Add(r.interval).UnixNano())
	s := [2]fileStamp{stampOf(r.certPath), stampOf(r.keyPath)}
	if s == r.stamps || !s[0].ok || !s[1].ok {
		return
	}
	r.stamps = s
	ca, err := LoadCA(r.certPath, r.keyPath)
	if err != nil {
		r.log.Warn("proxy CA files changed but cannot be loaded; keeping the previous CA", "cert", r.certPath, "err", err)
		return
	}
	r.cur.Store(newCAState(ca))
	r.log.Info("proxy CA loaded: CONNECT requests are intercepted with it", "cert", r.certPath)
}
