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
// The protocol (proto/storage.proto) carries each Store method as a Call
// with JSON of the storage package's types, so one definition covers the
// whole interface. The host side (Client) implements storage.Store; the
// plugin side (Server) serves any storage.Store. Supervised restarts a
// plugin that dies, with backoff; while it is down every call fails with
// storage.ErrUnavailable (the API answers 503) and nothing acknowledged is
// lost, because nothing is acknowledged before the backend commits it.
package plugins
