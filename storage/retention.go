package storage

import (
	"context"
	"time"
)

// Retainer is implemented by stores that delete old data (an optional
// capability, found by type assertion: both backends and the plugin client
// have it).
type Retainer interface {
	// PruneJobs deletes up to Limit finished jobs (delivered, dead or
	// canceled) last updated before Before, with their attempts and
	// idempotency records, in one short transaction, and returns how many it
	// deleted: fewer than Limit means none are left. Job ids are
	// time-ordered (dispatch.NewJobID), so a backend may stop scanning at
	// the first job created after Before.
	PruneJobs(ctx context.Context, args PruneJobsArgs) (int, error)
	// PruneAudit deletes a workspace's audit rows up to args.Marker.ThroughID
	// and stores the marker, in one transaction, and returns how many rows it
	// deleted. A marker older than the stored one changes nothing (0, nil):
	// nodes prune concurrently.
	PruneAudit(ctx context.Context, args PruneAuditArgs) (int, error)
	// GetAuditRetention returns the workspace's marker (ErrNotFound: none).
	GetAuditRetention(ctx context.Context, workspaceID string) (AuditRetention, error)
}

type PruneJobsArgs struct {
	Before time.Time `json:"before"`
	Limit  int       `json:"limit"`
}

// JobFinished reports whether a job status is final (prunable).
func JobFinished(status string) bool {
	return status == JobDelivered || status == JobDead || status == JobCanceled
}

// AuditRetention is the marker audit retention leaves: the rows of a
// workspace up to ThroughID were pruned at PrunedAt, and ThroughID's chain
// value was Chain, so the remaining trail verifies from it. MAC is the
// vault's keyed hash (as for AuditCheckpoint): a database writer cannot
// disguise a deletion as retention.
type AuditRetention struct {
	WorkspaceID string    `json:"workspace_id"`
	ThroughID   int64     `json:"through_id"`
	Chain       []byte    `json:"chain"`
	Rows        int64     `json:"rows"` // pruned so far, all batches
	PrunedAt    time.Time `json:"pruned_at"`
	MAC         []byte    `json:"mac"`
}

// PruneAuditArgs: delete the workspace's rows with id <= Marker.ThroughID
// and store Marker, in one transaction. The caller bounds the batch (it
// picks ThroughID from the rows it read).
type PruneAuditArgs struct {
	Marker AuditRetention `json:"marker"`
}
