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

// PruneAudit prunes audit rows through the plugin (storage.Retainer).
func (c *Client) PruneAudit(ctx context.Context, args storage.PruneAuditArgs) (n int, err error) {
	err = c.call(ctx, "PruneAudit", args, &n)
	return
}

// GetAuditRetention reads the retention marker through the plugin.
func (c *Client) GetAuditRetention(ctx context.Context, workspaceID string) (m storage.AuditRetention, err error) {
	err = c.call(ctx, "GetAuditRetention", idArgs{ID: workspaceID}, &m)
	return
}

func retainer(st storage.Store) (storage.Retainer, error) {
	r, ok := st.(storage.Retainer)
	if !ok {
		return nil, fmt.Errorf("storage plugin: %w", errors.ErrUnsupported)
	}
	return r, nil
}

func pruneAudit(st storage.Store, ctx context.Context, args storage.PruneAuditArgs) (int, error) {
	r, err := retainer(st)
	if err != nil {
		return 0, err
	}
	return r.PruneAudit(ctx, args)
}

func getAuditRetention(st storage.Store, ctx context.Context, a idArgs) (storage.AuditRetention, error) {
	r, err := retainer(st)
	if err != nil {
		return storage.AuditRetention{}, err
	}
	return r.GetAuditRetention(ctx, a.ID)
}
