package plugins

import (
	"context"
	"runtime"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Limits of the plugin connection.
const (
	// DefaultCallTimeout bounds one storage call through the plugin when the
	// caller's context has no earlier deadline: a hung plugin (or a backend
	// stuck on a lock) turns into ErrUnavailable instead of blocking the
	// audit writer, the completer, leases and cache misses forever.
	DefaultCallTimeout = 10 * time.Second
	// MaxMessageSize is the gRPC message limit on both sides. gRPC's default
	// receive limit (4 MiB) refused audit backlogs of about 15,000 rows; the
	// audit writer now sends chunks far below this (vault's auditChunkBytes),
	// so the limit is a ceiling, not a working size.
	MaxMessageSize = 64 << 20
)

// windowSize is the fixed gRPC flow-control window of both sides (per
// stream and per connection): large enough that a big audit batch is not
// throttled by window updates.
const windowSize = 4 << 20

// grpcServer is the plugin side's gRPC server with explicit message limits.
func grpcServer(opts []grpc.ServerOption) *grpc.Server {
	// Stream workers: a fixed pool serves calls instead of a new goroutine
	// per call (every storage call is a short unary RPC).
	// Fixed flow-control windows turn off gRPC's bandwidth-delay probing,
	// which otherwise sends a PING (and reads its ack) alongside calls: on
	// a local socket there is no bandwidth to discover.
	opts = append(opts, grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.InitialWindowSize(windowSize), grpc.InitialConnWindowSize(windowSize), grpc.SharedWriteBuffer(true))
	return plugin.DefaultGRPCServer(opts)
}

// grpcDialOptions are the host side's limits, matching grpcServer's.
func grpcDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		grpc.WithInitialWindowSize(windowSize), grpc.WithInitialConnWindowSize(windowSize), grpc.WithSharedWriteBuffer(true),
		// No transparent retries: they keep a copy of every request for a
		// replay that only helps when a call never left the host, which on
		// a local socket means the plugin is gone (callers see unavailable
		// and retry at their level, as they do for a crash).
		grpc.WithDisableRetry()}
}

// withCallTimeout gives ctx the call timeout unless it already ends sooner.
func withCallTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
