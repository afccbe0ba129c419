package plugins

import (
	"context"
	"fmt"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/storage/postgres"
)

// OpenBackend opens the built-in backends; it is the Opener of `rotor
// plugin storage`.
func OpenBackend(ctx context.Context, cfg *pb.ConfigureRequest) (storage.Store, error) {
	switch cfg.Backend {
	case "bbolt":
		if cfg.Path == "" {
			return nil, fmt.Errorf("bbolt: no path")
		}
		return bolt.Open(cfg.Path, bolt.Options{})
	case "postgres":
		if cfg.Dsn == "" {
			return nil, fmt.Errorf("postgres: no DSN")
		}
		return postgres.Open(ctx, cfg.Dsn)
	}
	return nil, fmt.Errorf("unknown storage backend %q", cfg.Backend)
}
