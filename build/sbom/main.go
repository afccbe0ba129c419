package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sbom: "+err.Error())
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sbom", flag.ContinueOnError)
	out := fs.String("out", "", "file to write (default standard output)")
	version := fs.String("version", "", "the binary's version (default: what its build information says)")
	created := fs.String("created", os.Getenv("SOURCE_DATE_EPOCH"), "timestamp, unix seconds (default $SOURCE_DATE_EPOCH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: sbom [-out FILE] [-version V] [-created SECS] BINARY")
	}
	secs, err := strconv.ParseInt(*created, 10, 64)
	if err != nil || secs < 0 {
		return fmt.Errorf("created: %q is not unix seconds (set SOURCE_DATE_EPOCH)", *created)
	}
	bom, err := Generate(fs.Arg(0), *version, time.Unix(secs, 0))
	if err != nil {
		return err
	}
	b, err := Marshal(bom)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}
