// Package workflow is Rotor's durable workflow engine: definitions of
// ordered steps (an HTTP request, a sleep, a wait for a signal), their
// validation, and an Engine that runs them on the Store.
//
// Every step's completion is checkpointed (storage.WorkflowStore
// CheckpointRun, fenced by the run's lease) before the next step starts, so
// a run resumes after a crash at the step that had not completed. Sleeping
// and waiting runs hold no lease and no goroutine: only their wake time is
// stored.
//
// Step requests go through the resolving proxy exactly like job
// deliveries: the engine substitutes its own expressions (${{ input.* }},
// ${{ steps.* }}, ${{ signals.* }}, ${{ run.id }}) and leaves every
// ${{ secrets.* }} reference for the proxy, which resolves, host-binds,
// audits and scrubs. The engine never sees a secret value.
package workflow
