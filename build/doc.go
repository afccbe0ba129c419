// Package build is the root of Rotor's packaging module: the OCI image
// builder (build/image) and the release SBOM writer (build/sbom).
//
// It is a module of its own (build/go.mod) so that go-containerregistry and
// its dependencies stay out of Rotor's dependency graph: nothing that ships
// in the rotor binary imports this module, and `go list -m all` in the root
// module does not see it.
package build
