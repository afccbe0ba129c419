// Command sbom writes a CycloneDX 1.5 JSON SBOM for a Go binary from the
// build information the Go linker embeds in it (the same data as
// `go version -m`): the main module, every module linked in with its
// version and go.sum hash, the Go toolchain, and the build settings.
//
// It reads what was actually linked into that binary for that GOOS/GOARCH,
// not the module graph, and needs no tool beyond Go. The output is
// reproducible: the serial number derives from the binary's SHA-256 and
// the timestamp is SOURCE_DATE_EPOCH.
//
//	go run ./sbom -version v1.2.3 -created $SOURCE_DATE_EPOCH -out rotor.cdx.json bin/release/rotor_linux_amd64
package main
