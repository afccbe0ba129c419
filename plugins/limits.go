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

// grpcServer is the plugin side's gRPC server with explicit message limits.
func grpcServer(opts []grpc.ServerOption) *grpc.Server {
	// Stream workers: a fixed pool serves calls instead of a new goroutine
	// per call (every storage call is a short unary RPC).
	opts = append(opts, grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))))
	return plugin.DefaultGRPCServer(opts)
}

// grpcDialOptions are the host side's limits, matching grpcServer's.
func grpcDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(
		grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize))}
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
