package plugins

import (
	"context"
	"errors"
	"fmt"

	pb "rotor.sh/rotor/plugins/proto"
	"rotor.sh/rotor/storage"
)

var _ storage.Retainer = (*Client)(nil)

// PruneJobs prunes through the plugin (storage.Retainer); errors.ErrUnsupported
// when the plugin does not report the RETENTION capability.
func (c *Client) PruneJobs(ctx context.Context, args storage.PruneJobsArgs) (int, error) {
	if err := c.need(pb.Capability_RETENTION, "PruneJobs"); err != nil {
		return 0, err
	}
	// Above MaxBatch, several calls (each one transaction), so that "fewer
	// than Limit: none left" still holds for the caller.
	total := 0
	for total < args.Limit {
		n := min(args.Limit-total, MaxBatch)
		r, err := call(ctx, c, "PruneJobs", func(ctx context.Context, cc *conn) (*pb.PruneJobsResponse, error) {
			return cc.retention.PruneJobs(ctx, &pb.PruneJobsRequest{Before: ts(args.Before), Limit: int64(n)})
		})
		if err != nil {
			return total, err
		}
		total += int(r.Deleted)
		if int(r.Deleted) < n {
			break
		}
	}
	return total, nil
}

// PruneAudit prunes audit rows through the plugin (storage.Retainer).
func (c *Client) PruneAudit(ctx context.Context, args storage.PruneAuditArgs) (int, error) {
	if err := c.need(pb.Capability_RETENTION, "PruneAudit"); err != nil {
		return 0, err
	}
	r, err := call(ctx, c, "PruneAudit", func(ctx context.Context, cc *conn) (*pb.PruneAuditResponse, error) {
		return cc.retention.PruneAudit(ctx, &pb.PruneAuditRequest{Marker: retentionToPB(args.Marker)})
	})
	if err != nil {
		return 0, err
	}
	return int(r.Deleted), nil
}

// GetAuditRetention reads the retention marker through the plugin.
func (c *Client) GetAuditRetention(ctx context.Context, workspaceID string) (storage.AuditRetention, error) {
	if err := c.need(pb.Capability_RETENTION, "GetAuditRetention"); err != nil {
		return storage.AuditRetention{}, err
	}
	r, err := call(ctx, c, "GetAuditRetention", func(ctx context.Context, cc *conn) (*pb.GetAuditRetentionResponse, error) {
		return cc.retention.GetAuditRetention(ctx, &pb.GetAuditRetentionRequest{WorkspaceId: workspaceID})
	})
	if err != nil {
		return storage.AuditRetention{}, err
	}
	return retentionFromPB(r.Marker), nil
}

func retainer(st storage.Store) (storage.Retainer, error) {
	r, ok := st.(storage.Retainer)
	if !ok {
		return nil, fmt.Errorf("storage plugin: retention: %w", errors.ErrUnsupported)
	}
	return r, nil
}

// The plugin side: the backend must be a storage.Retainer.

func (s *Server) PruneJobs(ctx context.Context, r *pb.PruneJobsRequest) (*pb.PruneJobsResponse, error) {
	return serve(s, func(st storage.Store) (*pb.PruneJobsResponse, error) {
		if err := checkBatch("limit", r.Limit); err != nil {
			return nil, err
		}
		rt, err := retainer(st)
		if err != nil {
			return nil, err
		}
		n, err := rt.PruneJobs(ctx, storage.PruneJobsArgs{Before: tm(r.Before), Limit: int(r.Limit)})
		return &pb.PruneJobsResponse{Deleted: int64(n)}, err
	})
}

func (s *Server) PruneAudit(ctx context.Context, r *pb.PruneAuditRequest) (*pb.PruneAuditResponse, error) {
	return serve(s, func(st storage.Store) (*pb.PruneAuditResponse, error) {
		rt, err := retainer(st)
		if err != nil {
			return nil, err
		}
		n, err := rt.PruneAudit(ctx, storage.PruneAuditArgs{Marker: retentionFromPB(r.Marker)})
		return &pb.PruneAuditResponse{Deleted: int64(n)}, err
	})
}

func (s *Server) GetAuditRetention(ctx context.Context, r *pb.GetAuditRetentionRequest) (*pb.GetAuditRetentionResponse, error) {
	return serve(s, func(st storage.Store) (*pb.GetAuditRetentionResponse, error) {
		rt, err := retainer(st)
		if err != nil {
			return nil, err
		}
		m, err := rt.GetAuditRetention(ctx, r.WorkspaceId)
		return &pb.GetAuditRetentionResponse{Marker: retentionToPB(m)}, err
	})
}
