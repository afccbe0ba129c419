// Package dispatch is Rotor's job delivery: queues (a callback URL and
// headers, as templates, with a delivery policy), jobs, and the dispatcher
// that leases due jobs and delivers them through the resolving proxy.
//
// Delivery is at least once: a job is leased for a visibility timeout, and
// a job whose holder dies is leased again when it expires; results carry the
// lease token so a late result of an expired lease is ignored. Templates are
// stored and sent as templates: only the proxy ever holds plaintext.
package dispatch
