package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// Commit is the git commit the binary was built from, set at build time with
// -ldflags "-X rotor.sh/rotor/cli.Commit=...". When empty, the commit Go
// recorded itself (vcs.revision, absent under -buildvcs=false) is used.
var Commit = ""

// commitUnknown is printed when neither source knows the commit.
const commitUnknown = "unknown"

// buildCommit returns the commit this binary was built from.
func buildCommit() string {
	if Commit != "" {
		return Commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return commitUnknown
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return commitUnknown
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return rev
}

func versionCommand() *cli.Command {
	return &cli.Command{Name: "version", Usage: "print the version, commit and Go version", Action: func(c *cli.Context) error {
		// The first line stays "rotor VERSION": scripts read it.
		fmt.Fprintf(c.App.Writer, "rotor %s\ncommit: %s\ngo: %s\nplatform: %s/%s\n",
			Version, buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	}}
}
