// Package web is Rotor's dashboard, served by `rotor serve` under
// /dashboard: server-rendered pages embedded in the binary (no CDN, no
// build step, no JavaScript; the overview's chart is inline SVG) for an
// overview, queues, jobs and their attempts, secrets, API keys, callback
// credentials and the audit log (docs/dashboard.md).
//
// Sign-in takes an API key; the session is a sealed HttpOnly,
// SameSite=Strict cookie (Secure over TLS) naming the key, and every form
// carries the session's CSRF token. Pages act with the key's own
// permissions through the same domain services as the API; secret values
// are never rendered, and new keys and rotated callback secrets only in the
// response that creates them.
//
// Other features plug in through Options: References lists what else
// references a secret (workflows), Workflows serves the Workflows nav slot.
package web
