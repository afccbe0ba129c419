// Package storage defines the Store interface that every Rotor storage
// backend implements, and the records that cross it.
//
// A Store only ever sees ciphertext, wrapped keys and metadata: encryption
// and decryption stay in package vault, in the host process. That is what lets
// a backend run as a separate plugin process without widening the set of
// places plaintext can reach.
//
// Backends live in subpackages (storage/bolt) and are checked by one
// conformance suite, storage/storagetest.
package storage
