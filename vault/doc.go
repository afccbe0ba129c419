// Package vault is Rotor's domain core: secret names and values, envelope
// encryption, the keyring, the resolver that the proxy and dispatcher call,
// API keys and workspaces, and the audit trail.
//
// Encryption (see crypto.go): every secret version is sealed with its own
// random 256-bit data key under AES-256-GCM; the data key is wrapped with
// AES-256-GCM by a key-encryption key (KEK) from the keyring; each KEK is
// itself wrapped under the master key, which never leaves this process and is
// never stored by Rotor (except the generated development key file).
// Associated data binds each ciphertext to its workspace, name and version,
// and each wrapped data key also to the KEK id, so ciphertext moved, swapped or
// altered fails to open instead of yielding wrong plaintext.
//
// Plaintext only ever lives in a Plaintext value, which redacts itself in
// every formatting and encoding path.
package vault
