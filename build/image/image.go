package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image looks like inside. Tests and the Helm chart rely on these.
const (
	// UID and GID of the user the image runs as: the "nonroot" id of
	// distroless images, so volume permissions carry over between them.
	UID = 65532
	GID = 65532
	// BinaryPath is where the rotor binary lives; the entrypoint.
	BinaryPath = "/usr/local/bin/rotor"
	// DataDir is the data dir (ROTOR_DATA_DIR), owned by UID, mode 0700.
	DataDir = "/data"
	// CABundlePath is where -ca-bundle lands: Go's crypto/x509 reads it on
	// Linux, so the proxy can verify upstream TLS without a base image.
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

// OCI annotation keys (image-spec annotations.md), used as both config
// labels and manifest annotations.
const (
	annSource   = "org.opencontainers.image.source"
	annRevision = "org.opencontainers.image.revision"
	annVersion  = "org.opencontainers.image.version"
	annCreated  = "org.opencontainers.image.created"
	annTitle    = "org.opencontainers.image.title"
	annDesc     = "org.opencontainers.image.description"
	annRefName  = "org.opencontainers.image.ref.name"
	// containerd's `ctr images import` names the image from this one.
	annContainerdName = "io.containerd.image.name"
)

// Options describe one image build.
type Options struct {
	Binary   string    // the static rotor binary for Arch
	Arch     string    // GOARCH of Binary: amd64 or arm64
	Version  string    // rotor version (also the tag)
	Revision string    // git commit
	Source   string    // repository URL
	Created  time.Time // every timestamp in the image
	CABundle string    // optional PEM file copied to CABundlePath
	Name     string    // image name for the tag, e.g. "rotor"
}

// Result is what Build wrote.
type Result struct {
	Digest v1.Hash // the image manifest's digest: what a registry reports
	Ref    string  // name:tag recorded in the archive
}

// Build writes the image tarball for opts to out.
func Build(ctx context.Context, opts Options, out io.Writer) (Result, error) {
	if err := opts.validate(); err != nil {
		return Result{}, err
	}
	bin, err := os.ReadFile(opts.Binary)
	if err != nil {
		return Result{}, fmt.Errorf("binary: %w", err)
	}
	if err := checkStatic(opts.Binary, opts.Arch); err != nil {
		return Result{}, err
	}
	var ca []byte
	if opts.CABundle != "" {
		if ca, err = os.ReadFile(opts.CABundle); err != nil {
			return Result{}, fmt.Errorf("ca-bundle: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	layerTar, err := rootfs(opts.Created, bin, ca)
	if err != nil {
		return Result{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return Result{}, err
	}
	img, err := image(opts, layer)
	if err != nil {
		return Result{}, err
	}
	ref := opts.Name + ":" + opts.Version
	digest, err := img.Digest()
	if err != nil {
		return Result{}, err
	}
	if err := writeArchive(img, ref, opts, out); err != nil {
		return Result{}, err
	}
	return Result{Digest: digest, Ref: ref}, nil
}

func (o Options) validate() error {
	switch {
	case o.Binary == "":
		return errors.New("binary: required")
	case o.Arch != "amd64" && o.Arch != "arm64":
		return fmt.Errorf("arch: %q is not amd64 or arm64", o.Arch)
	case o.Version == "":
		return errors.New("version: required")
	case o.Name == "":
		return errors.New("name: required")
	case o.Created.IsZero():
		return errors.New("created: required (SOURCE_DATE_EPOCH)")
	}
	return nil
}

// checkStatic refuses a binary that would not run on an empty base: one
// for another architecture, or one that needs a dynamic loader (cgo).
func checkStatic(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("binary: not a Linux executable: %w", err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != want {
		return fmt.Errorf("binary: built for %v, not %s", f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("binary: dynamically linked (build with CGO_ENABLED=0)")
		}
	}
	return nil
}

// entry is one file or directory of the root filesystem.
type entry struct {
	name     string
	mode     int64
	uid, gid int
	body     []byte // nil for directories
}

// rootfs returns the layer's uncompressed tar: entries sorted by name,
// every time set to created, numeric owners only (no uname/gname), so the
// bytes depend on the inputs alone.
func rootfs(created time.Time, bin, ca []byte) ([]byte, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", UID, GID, DataDir)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
	entries := []entry{
		{name: "data/", mode: 0o700, uid: UID, gid: GID},
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, body: []byte(group)},
		{name: "etc/passwd", mode: 0o644, body: []byte(passwd)},
		// The storage plugin's go-plugin socket lives in the temp dir.
		{name: "tmp/", mode: 0o1777},
		{name: "usr/", mode: 0o755},
		{name: "usr/local/", mode: 0o755},
		{name: "usr/local/bin/", mode: 0o755},
		{name: "usr/local/bin/rotor", mode: 0o755, body: bin},
	}
	if ca != nil {
		entries = append(entries,
			entry{name: "etc/ssl/", mode: 0o755},
			entry{name: "etc/ssl/certs/", mode: 0o755},
			entry{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: ca})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: created, Format: tar.FormatPAX}
		if e.body == nil {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func annotations(o Options) map[string]string {
	return map[string]string{
		annSource:   o.Source,
		annRevision: o.Revision,
		annVersion:  o.Version,
		annCreated:  o.Created.UTC().Format(time.RFC3339),
		annTitle:    "rotor",
		annDesc:     "Rotor: a secrets-resolving egress proxy and job dispatcher",
	}
}

// image assembles the OCI image (manifest and config) around the layer.
func image(o Options, layer v1.Layer) (v1.Image, error) {
	created := v1.Time{Time: o.Created.UTC()}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: "rotor build/image", Comment: "static rotor binary on an empty base"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = o.Arch, "linux", created
	cf.Config = v1.Config{
		User:       strconv.Itoa(UID) + ":" + strconv.Itoa(GID),
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"serve"},
		// ROTOR_DATA_DIR rather than a config-file key: it works for every
		// command (serve, ca init, vault compact) without a file.
		Env:        []string{"PATH=/usr/local/bin", "ROTOR_DATA_DIR=" + DataDir},
		WorkingDir: DataDir,
		Volumes:    map[string]struct{}{DataDir: {}},
		ExposedPorts: map[string]struct{}{
			"8080/tcp": {}, "8081/tcp": {}, "8082/tcp": {},
		},
		Labels: annotations(o),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	out, ok := mutate.Annotations(img, annotations(o)).(v1.Image)
	if !ok {
		return nil, errors.New("annotating the manifest lost the image type")
	}
	return out, nil
}

// blob is one file of the archive.
type blob struct {
	name string
	body []byte
}

// writeArchive writes img as an OCI image layout plus docker's
// manifest.json, in one tar with sorted, fixed-time entries.
func writeArchive(img v1.Image, ref string, o Options, out io.Writer) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	mDigest, err := img.Digest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cDigest, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	blobs := []blob{
		{"blobs/sha256/" + mDigest.Hex, manifest},
		{"blobs/sha256/" + cDigest.Hex, config},
	}
	var layerNames []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		name := "blobs/sha256/" + d.Hex
		layerNames = append(layerNames, name)
		blobs = append(blobs, blob{name, body})
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Digest:    mDigest,
			Size:      int64(len(manifest)),
			Platform:  &v1.Platform{OS: "linux", Architecture: o.Arch},
			Annotations: map[string]string{
				annRefName:        o.Version,
				annContainerdName: ref,
			},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	docker, err := json.Marshal([]map[string]any{{
		"Config":   "blobs/sha256/" + cDigest.Hex,
		"RepoTags": []string{ref},
		"Layers":   layerNames,
	}})
	if err != nil {
		return err
	}
	blobs = append(blobs,
		blob{"index.json", indexJSON},
		blob{"manifest.json", docker},
		blob{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
	)
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].name < blobs[j].name })

	tw := tar.NewWriter(out)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: o.Created, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	for _, b := range blobs {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: b.name, Mode: 0o644, Size: int64(len(b.body)), ModTime: o.Created, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(b.body); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeFile builds into path atomically: a failed build leaves no partial
// tarball behind for `docker load` to choke on.
func writeFile(ctx context.Context, opts Options, path string) (Result, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".image-*.tar")
	if err != nil {
		return Result{}, err
	}
	defer os.Remove(tmp.Name())
	res, err := Build(ctx, opts, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Result{}, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return Result{}, err
	}
	return res, os.Rename(tmp.Name(), path)
}
