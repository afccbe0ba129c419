// Package deploy holds Rotor's Kubernetes packaging (the Helm chart in
// deploy/helm/rotor) and the tests that render it with helm and check the
// manifests: secrets only from existing Secrets, probes on the ops
// listener, security context, disruption budget, and agreement with
// configs/kubernetes/ and Rotor's own defaults.
package deploy
