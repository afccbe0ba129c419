package dispatch

import "errors"

// Sentinel errors, mapped to HTTP statuses by package api.
var (
	// ErrInvalidQueue: a queue field is malformed (name, URL, headers, policy).
	ErrInvalidQueue = errors.New("invalid queue")
	// ErrMissingSecrets: a queue's templates reference secrets that do not
	// exist in the workspace.
	ErrMissingSecrets = errors.New("queue references secrets that do not exist")
	// ErrInvalidJob: a job field is malformed (payload, delay, key).
	ErrInvalidJob = errors.New("invalid job")
	// ErrSecretInUse: a secret that queues or workflows reference cannot be deleted
	// without force.
	ErrSecretInUse = errors.New("secret is used by queues")
	// ErrJobState: the job's status does not allow the operation (cancel a
	// delivered job, retry a queued one).
	ErrJobState = errors.New("job state does not allow this")
	// ErrProxyURL: no in-process transport and no usable proxy URL to
	// deliver through.
	ErrProxyURL = errors.New("proxy URL must name a host")
	// ErrNoActors: a Dispatcher needs Options.Actors to check each job's
	// enqueuing key before sending it.
	ErrNoActors = errors.New("dispatcher needs an enqueuer check (Options.Actors)")
)

// MissingSecretsError names the secrets a queue references that do not exist.
type MissingSecretsError struct{ Names []string }

func (e *MissingSecretsError) Error() string {
	return ErrMissingSecrets.Error() + ": " + joinNames(e.Names)
}

func (e *MissingSecretsError) Unwrap() error { return ErrMissingSecrets }

// SecretInUseError names the queues and workflows that reference a secret.
type SecretInUseError struct {
	Secret    string
	Queues    []string
	Workflows []string
}

func (e *SecretInUseError) Error() string {
	users := ""
	if len(e.Queues) > 0 {
		users = "queues " + joinNames(e.Queues)
	}
	if len(e.Workflows) > 0 {
		if users != "" {
			users += " and "
		}
		users += "workflows " + joinNames(e.Workflows)
	}
	return "secret " + e.Secret + " is used by " + users + "; delete with ?force=true to delete it anyway"
}

func (e *SecretInUseError) Unwrap() error { return ErrSecretInUse }

func joinNames(n []string) string {
	out := ""
	for i, s := range n {
		if i > 0 {
			out += ", "
		}
		out += s
	}
	return out
}
