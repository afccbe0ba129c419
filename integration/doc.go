// Package integration tests the built rotor binary: real processes, real
// listeners, real files, signals. `make integration` runs it; `make test`
// includes it.
package integration
