package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var o Options
	var out, created, digestFile string
	fs.StringVar(&o.Binary, "binary", "", "static linux rotor binary")
	fs.StringVar(&o.Arch, "arch", runtime.GOARCH, "GOARCH of -binary (amd64, arm64)")
	fs.StringVar(&o.Version, "version", "dev", "version: label and tag")
	fs.StringVar(&o.Revision, "revision", "", "git commit (org.opencontainers.image.revision)")
	fs.StringVar(&o.Source, "source", "https://rotor.sh/rotor", "repository URL (org.opencontainers.image.source)")
	fs.StringVar(&o.CABundle, "ca-bundle", "", "PEM bundle to install at "+CABundlePath+" (optional)")
	fs.StringVar(&o.Name, "name", "rotor", "image name recorded with the tag")
	fs.StringVar(&created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time, unix seconds (default $SOURCE_DATE_EPOCH)")
	fs.StringVar(&out, "out", "", "tarball to write")
	fs.StringVar(&digestFile, "digest-file", "", "also write the image digest here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if out == "" {
		return errors.New("out: required")
	}
	// No fallback to the current time: that would make every build differ.
	secs, err := strconv.ParseInt(created, 10, 64)
	if err != nil || secs < 0 {
		return fmt.Errorf("created: %q is not unix seconds (set SOURCE_DATE_EPOCH, e.g. to the commit time)", created)
	}
	o.Created = time.Unix(secs, 0).UTC()
	res, err := writeFile(ctx, o, out)
	if err != nil {
		return err
	}
	if digestFile != "" {
		if err := os.WriteFile(digestFile, []byte(res.Digest.String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s %s %s\n", out, res.Ref, res.Digest)
	return nil
}
