package plugins

import (
	"context"
	"errors"
	"fmt"

	"rotor.sh/rotor/storage"
)

var _ storage.Retainer = (*Client)(nil)

// PruneJobs prunes through the plugin (storage.Retainer).
func (c *Client) PruneJobs(ctx context.Context, args storage.PruneJobsArgs) (n int, err error) {
	err = c.call(ctx, "PruneJobs", args, &n)
	return
}

// pruneJobs is the plugin side: the backend must be a Retainer.
func pruneJobs(st storage.Store, ctx context.Context, args storage.PruneJobsArgs) (int, error) {
	r, ok := st.(storage.Retainer)
	if !ok {
		return 0, fmt.Errorf("storage plugin: %w", errors.ErrUnsupported)
	}
	return r.PruneJobs(ctx, args)
}
