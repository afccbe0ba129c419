// Package template is the secret-reference syntax every surface shares:
// ${{ secrets.NAME }} and $<< secrets.NAME >>, their percent-encoded forms,
// and the near-misses that fail closed (template.go); and the context-aware
// rewriter that puts each resolved value in place, encoded for where it
// lands, as a whole string or as a stream (rewrite.go); and the URL
// checks every surface makes on a template URL (url.go).
//
// The proxy uses it to resolve references on the way out; dispatch and
// workflow use the same scanner to validate queue and step templates
// (References, RewriteString with a placeholder value), so a template that
// validates is exactly one the proxy will accept. The package holds no
// plaintext beyond what a ResolveFunc hands it for one encoding step, and
// no error it returns carries a value.
package template
