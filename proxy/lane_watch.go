package proxy

import (
	"context"
	"sync"
	"time"
)

// laneCtx is a lane connection's context (every request on the connection
// carries it) and the upstream connection its request is using now. Its
// end (watchClients found the client gone, or the connection ended)
// expires that upstream connection at once, which is what a
// context.AfterFunc per request did, for two allocations per request (the
// registration and its stop function); here the registration is a field
// set under a lock.
type laneCtx struct {
	context.Context
	cancelCtx context.CancelFunc

	mu sync.Mutex
	up *upConn // in use by the connection's request
	// ended: cancel ran; an upstream connection held then was expired.
	ended bool
}

func newLaneCtx() *laneCtx {
	c := &laneCtx{}
	c.Context, c.cancelCtx = context.WithCancel(context.Background())
	return c
}

// cancel ends the context and expires the upstream connection in use.
// The context ends first, so a hold refused after it finds ctx.Err set.
// The deadline moves under the lock, so the connection cannot return to
// the pool between the look and the move (release reports false after).
func (c *laneCtx) cancel() {
	c.cancelCtx()
	c.mu.Lock()
	c.ended = true
	if c.up != nil {
		c.up.expireNow()
		c.up = nil
	}
	c.mu.Unlock()
}

// Results of laneCtx.hold.
const (
	laneHeld  = iota // registered: cancel expires the connection
	laneEnded        // the context ended already
	laneInUse        // another connection is held: register with AfterFunc
)

// hold registers uc as the connection's upstream connection in use.
func (c *laneCtx) hold(uc *upConn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.ended:
		return laneEnded
	case c.up != nil:
		return laneInUse
	}
	c.up = uc
	return laneHeld
}

// release undoes hold; false means cancel ran meanwhile (uc's deadline
// may have moved, so it is not pooled).
func (c *laneCtx) release(uc *upConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up == uc {
		c.up = nil
	}
	return !c.ended
}

// upWatch ties one exchange on an upstream connection to its request's
// context: through the lane connection's laneCtx, or (another context:
// the dispatcher's in-process delivery, a second exchange at once) a
// context.AfterFunc.
type upWatch struct {
	lctx *laneCtx
	uc   *upConn
	stop func() bool
}

// watchExchange starts watching ctx for uc's exchange; false: ctx ended already.
func watchExchange(ctx context.Context, uc *upConn) (upWatch, bool) {
	if ctx.Done() == nil {
		return upWatch{}, true
	}
	if lctx, ok := ctx.(*laneCtx); ok {
		switch lctx.hold(uc) {
		case laneHeld:
			return upWatch{lctx: lctx, uc: uc}, true
		case laneEnded:
			return upWatch{}, false
		}
	}
	if uc.expire == nil {
		uc.expire = uc.expireNow // once per connection
	}
	return upWatch{stop: context.AfterFunc(ctx, uc.expire)}, true
}

// release ends the watch; false means the context ended meanwhile and
// the connection's deadline may have moved.
func (w upWatch) release() bool {
	switch {
	case w.lctx != nil:
		return w.lctx.release(w.uc)
	case w.stop != nil:
		return w.stop()
	}
	return true
}

// expireNow moves c's deadline to the past, which ends any read or write
// in progress.
func (uc *upConn) expireNow() { _ = uc.c.SetDeadline(time.Unix(1, 0)) }
