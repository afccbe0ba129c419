package cli

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed moves a leaf command's flags in front of its positional
// arguments, so `rotor secrets create NAME --from-env VAR` works as people
// type it (urfave/cli v2 stops parsing flags at the first argument).
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == "--generate-bash-completion" {
		// Completion reads the words as typed, its flag last.
		return args
	}
	cmds := app.Commands
	i := 1
	var leaf *cli.Command
	// Client flags given before (or between) the command names, as in
	// `rotor -o json secrets list`, move to the leaf command that owns them.
	var early []string
	path := []string{args[0]}
	for i < len(args) {
		if n := globalFlagLen(args[i:]); n > 0 {
			early = append(early, args[i:i+n]...)
			i += n
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if slices.Contains(c.Names(), args[i]) {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		leaf, cmds = next, next.Subcommands
		path = append(path, args[i])
		i++
	}
	if leaf == nil || len(leaf.Subcommands) > 0 || (len(early) > 0 && !hasFlag(leaf, flagAPIURL)) {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range leaf.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, pos []string
	rest := args[i:]
	for j := 0; j < len(rest); j++ {
		t := rest[j]
		if t == "--" {
			pos = append(pos, rest[j:]...)
			break
		}
		name := strings.TrimLeft(t, "-")
		if !strings.HasPrefix(t, "-") || name == "" {
			pos = append(pos, t)
			continue
		}
		name, _, hasValue := strings.Cut(name, "=")
		flags = append(flags, t)
		if takesValue[name] && !hasValue && j+1 < len(rest) {
			j++
			flags = append(flags, rest[j])
		}
	}
	out := append(path, early...)
	out = append(out, flags...)
	return append(out, pos...)
}

// globalFlagLen is how many of args (1 or 2) the client flag at args[0]
// takes, or 0 when args[0] is not one.
func globalFlagLen(args []string) int {
	t := args[0]
	if !strings.HasPrefix(t, "-") {
		return 0
	}
	name, _, hasValue := strings.Cut(strings.TrimLeft(t, "-"), "=")
	switch name {
	case flagAPIURL, flagAPIKey, flagOutput, "o":
	default:
		return 0
	}
	if hasValue || len(args) < 2 {
		return 1
	}
	return 2
}

func hasFlag(c *cli.Command, name string) bool {
	for _, f := range c.Flags {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}
