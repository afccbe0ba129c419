// Package api is Rotor's control API (/v1): secrets, API keys, workspaces,
// the keyring and the audit trail, plus the ops listener (/metrics, /healthz,
// /readyz).
//
// Every response to a client mistake is a 4xx with a JSON body
// {"error":{"code":"...","message":"..."}}; errors.go maps domain errors to
// statuses in exactly one place. No handler logs or returns a secret value:
// values enter through request bodies, go straight into vault.Plaintext, and
// leave only as hints.
package api
