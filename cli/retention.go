package cli

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

const (
	// DefaultJobsRetention keeps finished jobs a week.
	DefaultJobsRetention = 168 * time.Hour
	// DefaultAuditRetention keeps the audit trail (0: forever); the
	// README recommends a value for long-running nodes.
	DefaultAuditRetention = 0
	// retentionEvery is how often pruning runs (more often for retentions
	// under two minutes: half the retention).
	retentionEvery = time.Minute
	// pruneBatch bounds one pruning transaction; pruneRounds bounds the
	// batches of one run, so a large first run spreads over several.
	pruneBatch  = 500
	pruneRounds = 200
)

// jobsRetention deletes finished jobs older than keep, in bounded batches,
// until ctx ends. It is a task of runServers (which owns its goroutine).
func jobsRetention(st storage.Store, keep time.Duration, log *slog.Logger, reg prometheus.Registerer) func(context.Context) error {
	pruned := promauto.With(reg).NewCounter(prometheus.CounterOpts{
		Name: "rotor_jobs_pruned_total",
		Help: "Finished jobs deleted by --jobs-retention.",
	})
	r, ok := st.(storage.Retainer)
	if !ok || keep <= 0 {
		return func(context.Context) error { return nil }
	}
	return everyTick(retentionInterval(keep), func(ctx context.Context) {
		before := time.Now().Add(-keep)
		for range pruneRounds {
			n, err := r.PruneJobs(ctx, storage.PruneJobsArgs{Before: before, Limit: pruneBatch})
			if err != nil {
				if ctx.Err() == nil {
					log.Error("jobs retention failed; will retry", "err", err)
				}
				return
			}
			pruned.Add(float64(n))
			if n < pruneBatch {
				return
			}
		}
	})
}

// everyTick runs fn every interval until ctx ends (a task of runServers,
// which owns its goroutine).
func everyTick(interval time.Duration, fn func(ctx context.Context)) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				fn(ctx)
			}
		}
	}
}

// retentionInterval: every minute, half the retention when that is under
// two minutes (the issue: pruning lags a short retention by at most half).
func retentionInterval(keep time.Duration) time.Duration {
	if keep < 2*retentionEvery {
		return max(keep/2, time.Second)
	}
	return retentionEvery
}

// auditRetention prunes audit rows older than keep (sealed, and exported
// when an export is configured; vault.PruneAudit) until ctx ends. A task of
// runServers, which owns its goroutine; rotor_audit_pruned_total counts.
func auditRetention(v *vault.Vault, keep time.Duration, log *slog.Logger) func(context.Context) error {
	if keep <= 0 {
		return func(context.Context) error { return nil }
	}
	return everyTick(retentionInterval(keep), func(ctx context.Context) {
		_, err := v.PruneAudit(ctx, vault.PruneAuditArgs{Before: time.Now().Add(-keep), Limit: pruneBatch})
		if err != nil && ctx.Err() == nil {
			log.Error("audit retention failed; will retry", "err", err)
		}
	})
}
