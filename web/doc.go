// Package web is Rotor's dashboard, served by `rotor serve` under
// /dashboard: server-rendered pages embedded in the binary (no CDN, no
// build step, no JavaScript), for secrets (write-only values), queues,
// jobs and the audit log.
//
// Sign-in takes an API key; the session is a random id in an HttpOnly,
// SameSite=Strict cookie (Secure over TLS), mapped in memory to the key, and
// every form carries the session's CSRF token. Pages act with the key's own
// permissions through the same domain services as the API.
package web
