package cli

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

func TestVersionPrintsVersionCommitAndGo(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })
	Version, Commit = "v9.8.7", "0123456789abcdef0123456789abcdef01234567"

	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"rotor", "version"}, &out, &errOut); err != nil {
		t.Fatalf("version: %v (%s)", err, errOut.String())
	}
	want := "rotor v9.8.7\ncommit: 0123456789abcdef0123456789abcdef01234567\ngo: " + runtime.Version() +
		"\nplatform: " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if out.String() != want {
		t.Fatalf("version printed\n%s\nwant\n%s", out.String(), want)
	}
}

func TestVersionWithoutStampedCommit(t *testing.T) {
	oldC := Commit
	t.Cleanup(func() { Commit = oldC })
	Commit = ""
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"rotor", "version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	// A test binary carries no vcs.revision: the line says so rather than
	// printing nothing.
	if !strings.Contains(out.String(), "\ncommit: ") || strings.Contains(out.String(), "commit: \n") {
		t.Fatalf("version without -ldflags commit: %q", out.String())
	}
}
