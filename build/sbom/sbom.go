package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"time"
)

// specVersion is the CycloneDX version written.
const specVersion = "1.5"

// BOM is the subset of the CycloneDX 1.5 JSON model written here.
type BOM struct {
	BOMFormat    string       `json:"bomFormat"`
	SpecVersion  string       `json:"specVersion"`
	SerialNumber string       `json:"serialNumber"`
	Version      int          `json:"version"`
	Metadata     Metadata     `json:"metadata"`
	Components   []Component  `json:"components"`
	Dependencies []Dependency `json:"dependencies"`
}

type Metadata struct {
	Timestamp string    `json:"timestamp"`
	Tools     Tools     `json:"tools"`
	Component Component `json:"component"`
}

type Tools struct {
	Components []Component `json:"components"`
}

type Component struct {
	BOMRef     string     `json:"bom-ref,omitempty"`
	Type       string     `json:"type"`
	Name       string     `json:"name"`
	Version    string     `json:"version,omitempty"`
	PURL       string     `json:"purl,omitempty"`
	Hashes     []Hash     `json:"hashes,omitempty"`
	Properties []Property `json:"properties,omitempty"`
}

type Hash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

type Property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type Dependency struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

// purl is the package URL of a Go module (purl-spec, type golang).
func purl(path, version string, qualifiers ...string) string {
	p := "pkg:golang/" + path
	if version != "" {
		p += "@" + url.PathEscape(version)
	}
	if len(qualifiers) > 0 {
		p += "?" + strings.Join(qualifiers, "&")
	}
	return p
}

// Generate builds the SBOM of the Go binary at path, created at created.
// version names the main module's version; empty means what the binary
// records (Go omits -ldflags from its build information under -trimpath, so
// Rotor's stamped version has to be passed in).
func Generate(path, version string, created time.Time) (BOM, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return BOM{}, err
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return BOM{}, fmt.Errorf("%s: no Go build information: %w", path, err)
	}
	sum := sha256.Sum256(bin)
	settings := map[string]string{}
	var props []Property
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
		props = append(props, Property{Name: "go:build:" + s.Key, Value: s.Value})
	}
	if version == "" {
		version = mainVersion(settings, info.Main.Version)
	}
	mainRef := purl(info.Main.Path, version, "goos="+settings["GOOS"], "goarch="+settings["GOARCH"])
	main := Component{
		BOMRef: mainRef, Type: "application", Name: info.Main.Path, Version: version, PURL: mainRef,
		Hashes:     []Hash{{Alg: "SHA-256", Content: hex.EncodeToString(sum[:])}},
		Properties: props,
	}
	std := Component{BOMRef: purl("std", info.GoVersion), Type: "library", Name: "std", Version: info.GoVersion, PURL: purl("std", info.GoVersion)}
	comps := []Component{std}
	for _, d := range info.Deps {
		comps = append(comps, module(d))
	}
	sort.Slice(comps, func(i, j int) bool { return comps[i].BOMRef < comps[j].BOMRef })
	var refs []string
	for _, c := range comps {
		refs = append(refs, c.BOMRef)
	}
	deps := []Dependency{{Ref: mainRef, DependsOn: refs}}
	for _, r := range refs {
		// The binary's build information records no graph between the
		// modules: each is listed with no known dependencies.
		deps = append(deps, Dependency{Ref: r, DependsOn: []string{}})
	}
	return BOM{
		BOMFormat:    "CycloneDX",
		SpecVersion:  specVersion,
		SerialNumber: serial(sum),
		Version:      1,
		Metadata: Metadata{
			Timestamp: created.UTC().Format(time.RFC3339),
			Tools:     Tools{Components: []Component{{Type: "application", Name: "rotor build/sbom"}}},
			Component: main,
		},
		Components:   comps,
		Dependencies: deps,
	}, nil
}

// mainVersion prefers the version Rotor stamps with -ldflags, when Go
// recorded them, over the "(devel)" it records for a checkout.
func mainVersion(settings map[string]string, recorded string) string {
	for _, f := range strings.Fields(settings["-ldflags"]) {
		if v, ok := strings.CutPrefix(f, "rotor.sh/rotor/cli.Version="); ok {
			return v
		}
	}
	return recorded
}

func module(d *debug.Module) Component {
	if d.Replace != nil {
		c := module(d.Replace)
		c.Properties = append(c.Properties, Property{Name: "go:replaces", Value: d.Path + "@" + d.Version})
		return c
	}
	c := Component{BOMRef: purl(d.Path, d.Version), Type: "library", Name: d.Path, Version: d.Version, PURL: purl(d.Path, d.Version)}
	if d.Sum != "" {
		// The go.sum h1: hash is not a plain file digest; it is kept as a
		// property so it can be checked against go.sum and the checksum DB.
		c.Properties = []Property{{Name: "go:sum", Value: d.Sum}}
	}
	return c
}

// serial is a stable urn:uuid for one binary (a version-8 UUID over its
// SHA-256), so rebuilding the SBOM of the same binary changes nothing.
func serial(sum [32]byte) string {
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u)
	return "urn:uuid:" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Marshal is the file form: indented, with a final newline.
func Marshal(b BOM) ([]byte, error) {
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
