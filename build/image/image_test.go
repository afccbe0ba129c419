package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// `make image-test` sets these to what `make image` wrote; without them the
// test builds its own binary and image, so plain `go test ./...` in build/
// checks the same things.
const (
	envTar    = "ROTOR_IMAGE_TAR"
	envDigest = "ROTOR_IMAGE_DIGEST_FILE"
	envBinary = "ROTOR_IMAGE_BINARY"
)

// testCreated is the creation time of images the test builds itself.
var testCreated = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestImage(t *testing.T) {
	ctx := context.Background()
	tarPath, binary := os.Getenv(envTar), os.Getenv(envBinary)
	if (tarPath == "") != (binary == "") {
		t.Fatalf("set both %s and %s, or neither", envTar, envBinary)
	}
	if tarPath == "" {
		binary = buildRotor(t)
		tarPath = filepath.Join(t.TempDir(), "rotor-image.tar")
		opts := Options{Binary: binary, Arch: runtime.GOARCH, Version: "v0.0.0-imagetest", Revision: "0123456789abcdef0123456789abcdef01234567",
			Source: "https://rotor.sh/rotor", Created: testCreated, Name: "rotor"}
		if _, err := writeFile(ctx, opts, tarPath); err != nil {
			t.Fatal(err)
		}
	}
	img := inspect(t, tarPath)

	if f := os.Getenv(envDigest); f != "" {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := img.digest.String(); got != strings.TrimSpace(string(want)) {
			t.Fatalf("digest file says %s, archive holds %s", strings.TrimSpace(string(want)), got)
		}
	}

	t.Run("binary runs", func(t *testing.T) {
		if img.arch != runtime.GOARCH {
			t.Skipf("image is %s, this machine %s", img.arch, runtime.GOARCH)
		}
		out, err := exec.CommandContext(ctx, img.binary, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("rotor version: %v\n%s", err, out)
		}
		lines := strings.Split(string(out), "\n")
		if lines[0] != "rotor "+img.labels[annVersion] {
			t.Fatalf("rotor version says %q, the label %q", lines[0], img.labels[annVersion])
		}
		if !slices.Contains(lines, "commit: "+img.labels[annRevision]) || !slices.Contains(lines, "go: "+runtime.Version()) {
			t.Fatalf("rotor version lacks commit %s or Go version:\n%s", img.labels[annRevision], out)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		// Rebuild from the same inputs, read back from the image itself,
		// from a copy of the binary with another mtime and path: the
		// digest must not move, and the archives must be byte-identical.
		created, err := time.Parse(time.RFC3339, img.labels[annCreated])
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		cp := filepath.Join(dir, "other-name")
		copyFile(t, binary, cp)
		if err := os.Chtimes(cp, time.Now(), time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		opts := Options{Binary: cp, Arch: img.arch, Version: img.labels[annVersion], Revision: img.labels[annRevision],
			Source: img.labels[annSource], Created: created, Name: strings.Split(img.ref, ":")[0]}
		if img.caBundle != nil {
			opts.CABundle = filepath.Join(dir, "ca.pem")
			if err := os.WriteFile(opts.CABundle, img.caBundle, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var a bytes.Buffer
		ra, err := Build(ctx, opts, &a)
		if err != nil {
			t.Fatal(err)
		}
		if ra.Digest != img.digest {
			t.Fatalf("the rebuild gives %s, the archive %s", ra.Digest, img.digest)
		}
		orig, err := os.ReadFile(tarPath)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), orig) {
			t.Fatal("same digest but the archive bytes differ")
		}
	})
}

// inspected is what the checks found in an image archive.
type inspected struct {
	digest   v1.Hash
	ref      string
	arch     string
	labels   map[string]string
	binary   string // the extracted rotor binary
	caBundle []byte // nil without one
}

// inspect opens the archive both ways tools read it (OCI layout and docker
// archive), validates every digest and size, and checks the image's promises.
func inspect(t *testing.T, tarPath string) inspected {
	t.Helper()
	dir := t.TempDir()
	untar(t, tarPath, dir)

	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("not an OCI layout: %v", err)
	}
	if err := validate.Index(ii); err != nil {
		t.Fatalf("OCI layout does not validate: %v", err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index holds %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	img, err := ii.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}

	// The docker-archive view must be the same image.
	dimg, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatalf("not a docker archive: %v", err)
	}
	if err := validate.Image(dimg); err != nil {
		t.Fatalf("docker archive does not validate: %v", err)
	}
	dcfg, _ := dimg.ConfigName()
	ocfg, _ := img.ConfigName()
	if dcfg != ocfg {
		t.Fatalf("docker archive config %s, OCI config %s", dcfg, ocfg)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || desc.Platform == nil || desc.Platform.Architecture != cf.Architecture {
		t.Fatalf("platform: config %s/%s, index %+v", cf.OS, cf.Architecture, desc.Platform)
	}
	if c.User != "65532:65532" {
		t.Fatalf("user %q, want the numeric non-root 65532:65532", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{BinaryPath}) || !slices.Equal(c.Cmd, []string{"serve"}) {
		t.Fatalf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
	}
	if !slices.Contains(c.Env, "ROTOR_DATA_DIR=/data") {
		t.Fatalf("env %q lacks ROTOR_DATA_DIR=/data", c.Env)
	}
	if _, ok := c.Volumes["/data"]; !ok {
		t.Fatalf("volumes %v lack /data", c.Volumes)
	}
	manifest, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{annSource, annRevision, annVersion, annCreated} {
		if c.Labels[k] == "" || c.Labels[k] != manifest.Annotations[k] {
			t.Fatalf("%s: label %q, manifest annotation %q", k, c.Labels[k], manifest.Annotations[k])
		}
	}
	created, err := time.Parse(time.RFC3339, c.Labels[annCreated])
	if err != nil || !cf.Created.Time.Equal(created) {
		t.Fatalf("created label %q, config %v", c.Labels[annCreated], cf.Created)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1 (empty base)", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := inspected{digest: desc.Digest, arch: cf.Architecture, labels: c.Labels, ref: desc.Annotations[annContainerdName]}
	seen := map[string]*tar.Header{}
	var names []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		seen[h.Name] = h
		if !h.ModTime.Equal(created) {
			t.Fatalf("%s: mtime %v, want the creation time %v", h.Name, h.ModTime, created)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Fatalf("%s: owner names %q/%q leak the build machine's users", h.Name, h.Uname, h.Gname)
		}
		switch h.Name {
		case "usr/local/bin/rotor":
			out.binary = filepath.Join(dir, "rotor")
			writeExec(t, out.binary, tr)
		case strings.TrimPrefix(CABundlePath, "/"):
			if out.caBundle, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !slices.IsSorted(names) {
		t.Fatalf("layer entries not sorted: %q", names)
	}
	bin, data := seen["usr/local/bin/rotor"], seen["data/"]
	if bin == nil || bin.Mode&0o777 != 0o755 || bin.Uid != 0 {
		t.Fatalf("binary entry %+v: want root-owned 0755 (the user cannot replace it)", bin)
	}
	if data == nil || data.Typeflag != tar.TypeDir || data.Uid != UID || data.Gid != GID || data.Mode&0o777 != 0o700 {
		t.Fatalf("/data entry %+v: want a 0700 directory owned by %d", data, UID)
	}
	if tmp := seen["tmp/"]; tmp == nil || tmp.Mode&0o1777 != 0o1777 {
		t.Fatalf("/tmp entry %+v: want mode 1777", tmp)
	}
	return out
}

// buildRotor builds a static linux rotor binary the way the Makefile does.
func buildRotor(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "rotor")
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X rotor.sh/rotor/cli.Version=v0.0.0-imagetest -X rotor.sh/rotor/cli.Commit=0123456789abcdef0123456789abcdef01234567",
		"-o", out, "./cmd/rotor")
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func untar(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if strings.Contains(h.Name, "..") || filepath.IsAbs(h.Name) {
			t.Fatalf("archive entry %q escapes", h.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.IsSorted(names) {
		t.Fatalf("archive entries not sorted: %q", names)
	}
	var layoutFile struct {
		Version string `json:"imageLayoutVersion"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil || json.Unmarshal(b, &layoutFile) != nil || layoutFile.Version != "1.0.0" {
		t.Fatalf("oci-layout: %q %v", b, err)
	}
}

func writeExec(t *testing.T, path string, r io.Reader) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, r); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestBuildRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable() // the test binary: linux, but maybe dynamic
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	for name, tc := range map[string]struct {
		opts Options
		want string
	}{
		"no created time": {Options{Binary: script, Arch: "amd64", Version: "v1", Name: "rotor"}, "created"},
		"bad arch":        {Options{Binary: script, Arch: "386", Version: "v1", Name: "rotor", Created: testCreated}, "arch"},
		"not elf":         {Options{Binary: script, Arch: "amd64", Version: "v1", Name: "rotor", Created: testCreated}, "not a Linux executable"},
		"wrong arch":      {Options{Binary: self, Arch: other, Version: "v1", Name: "rotor", Created: testCreated}, "built for"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Build(ctx, tc.opts, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
	// The command refuses to fall back to the clock.
	err = run(ctx, []string{"-binary", script, "-out", filepath.Join(dir, "x.tar"), "-created", ""}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Fatalf("no -created: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.tar")); !os.IsNotExist(err) {
		t.Fatalf("a refused build left a file: %v", err)
	}
}
