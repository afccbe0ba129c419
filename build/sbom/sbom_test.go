package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The test binary itself is a Go binary with modules linked in
// (go-containerregistry is not, but the std library and the main module
// are): its SBOM must list what buildinfo lists, and be stable.
func TestSBOM(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	bom, err := Generate(self, "v1.2.3", created)
	if err != nil {
		t.Fatal(err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion != "1.5" || bom.Metadata.Timestamp != "2026-01-02T03:04:05Z" {
		t.Fatalf("header: %+v", bom)
	}
	if !strings.HasPrefix(bom.SerialNumber, "urn:uuid:") || len(bom.SerialNumber) != len("urn:uuid:")+36 {
		t.Fatalf("serial %q", bom.SerialNumber)
	}
	b, _ := os.ReadFile(self)
	sum := sha256.Sum256(b)
	m := bom.Metadata.Component
	if m.Type != "application" || len(m.Hashes) != 1 || m.Hashes[0].Content != hex.EncodeToString(sum[:]) {
		t.Fatalf("main component %+v: want the binary's SHA-256", m)
	}
	if m.Version != "v1.2.3" || !strings.HasPrefix(m.PURL, "pkg:golang/"+m.Name+"@v1.2.3?") {
		t.Fatalf("main component version %q purl %q", m.Version, m.PURL)
	}
	if !strings.Contains(m.PURL, "goos="+runtime.GOOS) || !strings.Contains(m.PURL, "goarch="+runtime.GOARCH) {
		t.Fatalf("main purl %q lacks the platform", m.PURL)
	}
	var std bool
	for _, c := range bom.Components {
		if c.PURL == "pkg:golang/std@"+runtime.Version() {
			std = true
		}
	}
	if !std || len(bom.Dependencies) != len(bom.Components)+1 || len(bom.Dependencies[0].DependsOn) != len(bom.Components) {
		t.Fatalf("components %d, dependencies %d, std listed %v", len(bom.Components), len(bom.Dependencies), std)
	}

	// Through the command, twice: byte-identical files.
	dir := t.TempDir()
	for _, name := range []string{"a.json", "b.json"} {
		if err := run([]string{"-created", "1767323045", "-out", filepath.Join(dir, name), self}, nil); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := os.ReadFile(filepath.Join(dir, "a.json"))
	bb, _ := os.ReadFile(filepath.Join(dir, "b.json"))
	if !bytes.Equal(a, bb) {
		t.Fatal("two SBOMs of one binary differ")
	}
	var generic map[string]any
	if err := json.Unmarshal(a, &generic); err != nil || generic["bomFormat"] != "CycloneDX" {
		t.Fatalf("file is not CycloneDX JSON: %v", err)
	}
}

func TestSBOMRefuses(t *testing.T) {
	dir := t.TempDir()
	notGo := filepath.Join(dir, "script")
	if err := os.WriteFile(notGo, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-created", "0", notGo}, nil); err == nil || !strings.Contains(err.Error(), "no Go build information") {
		t.Fatalf("non-Go file: %v", err)
	}
	if err := run([]string{"-created", "", notGo}, nil); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Fatalf("no timestamp: %v", err)
	}
}
