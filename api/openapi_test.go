package api_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/vault/vaulttest"
	"rotor.sh/rotor/workflow"
)

// TestOpenAPIMatchesRoutes: docs/openapi.yaml describes exactly the routes
// the server has.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(m)+" "+path)
		}
	}
	ve := vaulttest.New(t)
	routes := api.New(api.Options{Vault: ve.Vault, Queues: dispatch.NewService(ve.Store, ve.Vault, nil, nil),
		Workflows: workflow.NewService(ve.Store, ve.Vault, nil, nil, nil)}).Routes()
	slices.Sort(documented)
	slices.Sort(routes)
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in docs/openapi.yaml", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("docs/openapi.yaml documents %s, which the server does not have", d)
		}
	}
}
