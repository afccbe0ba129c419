// Package web is Rotor's dashboard, served by `rotor serve` under
// /dashboard: server-rendered pages embedded in the binary (no CDN, no
// build step, no JavaScript; the overview's chart is inline SVG) for an
// overview, queues, jobs and their attempts, workflows and their runs (a
// step timeline; start, signal, cancel, retry), secrets, API keys,
// callback credentials and the audit log (docs/dashboard.md).
//
// Sign-in takes an API key; the session is a sealed HttpOnly,
// SameSite=Strict cookie (Secure over TLS) naming the key, and every form
// carries the session's CSRF token. Pages act with the key's own
// permissions through the same domain services as the API; secret values
// are never rendered, and new keys and rotated callback secrets only in the
// response that creates them.
//
// Workflow pages need Options.Workflows (the workflow service), which also
// adds workflow steps to a secret's references; Options.References adds
// other finders. Definitions and outputs are shown as stored: templates
// with their references, and outputs the proxy already scrubbed.
package web
