// Command storage-plugin is an example of an external Rotor storage plugin:
// its own main package, outside cmd/rotor, built against the generated
// protocol (rotor.sh/rotor/plugins/proto) and public packages only. It
// stores everything in one bbolt file named by ConfigureRequest.path, and
// passes the conformance suite:
//
//	go build -o bin/storage-plugin ./examples/storage-plugin
//	make conformance PLUGIN=bin/storage-plugin
//
// Rotor runs it with `--storage bbolt --storage-plugin PATH` (and pins it
// with --storage-plugin-sha256). docs/plugins.md is the guide; a backend in
// another language implements plugins/proto/storage.proto directly.
package main
