package cli

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/workflow"
)

// workflowEngineTasks are the engine's tasks for runServers: the engine
// itself, and a listener that wakes it when another node starts, signals
// or retries a run.
func workflowEngineTasks(eng *workflow.Engine, store storage.Store) []func(context.Context) error {
	return []func(context.Context) error{eng.Run, func(ctx context.Context) error {
		return store.Changes(ctx, func(c storage.Change) {
			if c.Kind == storage.ChangeWorkflowRuns {
				eng.Notify()
			}
		})
	}}
}

// runsRetention deletes finished workflow runs older than keep (the jobs'
// retention, --jobs-retention), in bounded batches, until ctx ends.
func runsRetention(st storage.Store, keep time.Duration, log *slog.Logger, reg prometheus.Registerer) func(context.Context) error {
	pruned := promauto.With(reg).NewCounter(prometheus.CounterOpts{
		Name: "rotor_workflow_runs_pruned_total",
		Help: "Finished workflow runs deleted by --jobs-retention.",
	})
	if keep <= 0 {
		return func(context.Context) error { return nil }
	}
	return everyTick(retentionInterval(keep), func(ctx context.Context) {
		before := time.Now().Add(-keep)
		for range pruneRounds {
			n, err := st.PruneRuns(ctx, storage.PruneRunsArgs{Before: before, Limit: pruneBatch})
			if err != nil {
				if ctx.Err() == nil {
					log.Error("workflow runs retention failed; will retry", "err", err)
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
