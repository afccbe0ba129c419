// Package plugins runs Rotor's storage backends as separate processes,
// speaking gRPC through github.com/hashicorp/go-plugin, so an operator can
// swap or add a backend without rebuilding Rotor and a crashing backend
// cannot take a key or a value with it.
//
// Crypto stays in the host. No message of this protocol carries plaintext:
// storage.Store only ever sees ciphertext (sealed envelopes), wrapped keys
// and metadata, and the master key is never sent to, nor inherited by, a
// plugin process (it starts with an empty environment; its connection
// settings arrive over the Configure RPC, never in argv or env).
//
// The protocol (proto/storage.proto, version ProtocolVersion) has one typed
// RPC per Store method, grouped into services by concern, with typed error
// codes and batch limits; docs/plugins.md is the guide for backend authors.
// The go-plugin handshake carries the version, and the host refuses a
// plugin of another version, or one whose Describe lacks a required
// capability, at start. The host side (Client) implements storage.Store; the
// plugin side (Server) serves any storage.Store. Supervised restarts a
// plugin that dies, with backoff; while it is down every call fails with
// storage.ErrUnavailable (the API answers 503) and nothing acknowledged is
// lost, because nothing is acknowledged before the backend commits it.
//
// Unary calls take a faster path when the plugin offers FAST_CALLS (fast.go):
// the same messages framed with call ids over one Unix socket that only the
// host, told its token over the AutoMTLS connection, can connect to, because
// gRPC's per-call machinery cost more than the calls themselves.
package plugins
