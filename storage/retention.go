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
}

type PruneJobsArgs struct {
	Before time.Time `json:"before"`
	Limit  int       `json:"limit"`
}

// JobFinished reports whether a job status is final (prunable).
func JobFinished(status string) bool {
	return status == JobDelivered || status == JobDead || status == JobCanceled
}
