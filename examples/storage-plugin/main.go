package main

import (
	"context"
	"fmt"
	"time"

	"rotor.sh/rotor/plugins"
	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

// backendName names this backend in errors; ConfigureRequest.backend must
// be "bbolt" (what `rotor serve --storage bbolt --storage-plugin PATH`
// sends) or backendName.
const backendName = "example-bbolt"

func main() {
	// plugins.Serve does the go-plugin handshake (protocol version,
	// AutoMTLS), registers every service of the protocol, answers Describe
	// (RETENTION because a bolt store is a storage.Retainer) and exits when
	// the host dies.
	plugins.Serve(open)
}

// open is called once, by the Configure RPC: settings never come from argv
// or the environment (the plugin starts with an empty environment).
func open(_ context.Context, cfg *pb.ConfigureRequest) (storage.Store, error) {
	if b := cfg.GetBackend(); b != "bbolt" && b != backendName {
		return nil, fmt.Errorf("%s: serves backend \"bbolt\", not %q", backendName, b)
	}
	if cfg.GetPath() == "" {
		return nil, fmt.Errorf("%s: ConfigureRequest.path (the bbolt file) is required", backendName)
	}
	opts := bolt.Options{}
	if v, ok := cfg.GetSettings()["lock_timeout"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("%s: settings.lock_timeout: %w", backendName, err)
		}
		opts.Timeout = d
	}
	return bolt.Open(cfg.GetPath(), opts)
}
