package storage

import (
	"fmt"
	"slices"
	"time"
)

// The state changes below are the same on every backend: each applies them
// to the run it read inside its transaction, so the rules live here once.

// CancelRunState makes r canceled at its current step, without a lease,
// fencing out the holder of the lease it had.
func CancelRunState(r *WorkflowRun, at time.Time) {
	if r.Step < len(r.Steps) {
		r.Steps[r.Step].Status = StepCanceled
		r.Steps[r.Step].FinishedAt = at
	}
	r.Status, r.WakeAt, r.WaitingFor = RunCanceled, time.Time{}, ""
	r.LeaseOwner, r.LeaseUntil = "", time.Time{}
	r.LeaseToken++
	r.UpdatedAt, r.FinishedAt = at, at
}

// ApplyCancel is CancelRun's change: ErrConflict once r is finished.
func ApplyCancel(r *WorkflowRun, at time.Time) error {
	if RunFinished(r.Status) {
		return fmt.Errorf("run %q is %s: %w", r.ID, r.Status, ErrConflict)
	}
	CancelRunState(r, at)
	return nil
}

// ApplySignal is SignalRun's change.
func ApplySignal(r *WorkflowRun, sg RunSignal, now time.Time) error {
	if RunFinished(r.Status) {
		return fmt.Errorf("run %q is %s: %w", r.ID, r.Status, ErrConflict)
	}
	if len(r.Signals) >= MaxRunSignals {
		return fmt.Errorf("run %q already holds %d signals: %w", r.ID, MaxRunSignals, ErrConflict)
	}
	sg.ReceivedAt, sg.UsedBy = now, ""
	r.Signals = append(r.Signals, sg)
	if r.Status == RunWaiting && r.WaitingFor == sg.Name {
		r.WakeAt = now
	}
	r.UpdatedAt = now
	return nil
}

// ApplyRetry is RetryRun's change: the failed step gets a fresh attempt
// budget and the run is due at at.
func ApplyRetry(r *WorkflowRun, at time.Time) error {
	if r.Status != RunFailed {
		return fmt.Errorf("run %q is %s, not failed: %w", r.ID, r.Status, ErrConflict)
	}
	if r.Step < len(r.Steps) {
		st := &r.Steps[r.Step]
		// A wait step waits its full timeout again from the retry.
		st.Status, st.RetryFrom, st.ErrorCode, st.StartedAt, st.FinishedAt = StepRunning, len(st.Attempts), "", time.Time{}, time.Time{}
	}
	r.Status, r.WakeAt, r.WaitingFor, r.ErrorCode, r.FinishedAt = RunRunning, at, "", "", time.Time{}
	r.LeaseOwner, r.LeaseUntil = "", time.Time{}
	r.LeaseToken++
	r.UpdatedAt = at
	return nil
}

// mergeSignals keeps the stored signals (some may have arrived since the
// lease) and takes only UsedBy from the lease holder's copy.
func mergeSignals(stored, mine []RunSignal) []RunSignal {
	out := slices.Clone(stored)
	for i := range out {
		if i < len(mine) && mine[i].Name == out[i].Name && out[i].UsedBy == "" {
			out[i].UsedBy = mine[i].UsedBy
		}
	}
	return out
}

// ApplyCheckpoint is CheckpointRun's change to the stored run cur: the
// fencing check, then the lease holder's state.
func ApplyCheckpoint(cur WorkflowRun, args CheckpointRunArgs) (WorkflowRun, error) {
	n := args.Run
	if cur.LeaseToken != n.LeaseToken || RunFinished(cur.Status) {
		return cur, fmt.Errorf("run %q: lease %d is no longer held: %w", cur.ID, n.LeaseToken, ErrConflict)
	}
	r := cur
	r.Status, r.Step, r.Steps = n.Status, n.Step, n.Steps
	r.WakeAt, r.WaitingFor, r.ErrorCode, r.FinishedAt = n.WakeAt, n.WaitingFor, n.ErrorCode, n.FinishedAt
	r.Signals = mergeSignals(cur.Signals, n.Signals)
	r.UpdatedAt = args.At
	// A signal that arrived while the holder computed a wait for it makes
	// the run due now rather than at the wait's timeout.
	if r.Status == RunWaiting && r.WaitingFor != "" {
		for _, sg := range r.Signals {
			if sg.Name == r.WaitingFor && sg.UsedBy == "" {
				r.WakeAt = args.At
				break
			}
		}
	}
	if args.Release || RunFinished(r.Status) {
		r.LeaseOwner, r.LeaseUntil = "", time.Time{}
	} else {
		r.LeaseUntil = args.LeaseUntil
	}
	return r, nil
}
