package cli

import (
	"fmt"
	"strings"
)

// argvSecrets are flags whose values must not be given on the command
// line, where every local user reads them (ps, /proc/<pid>/cmdline), with
// the alternatives each error names.
var argvSecrets = map[string]string{
	flagMasterKey:   "use ROTOR_MASTER_KEY_FILE (or --master-key-file), the ROTOR_MASTER_KEY environment variable, or master-key in the --config file",
	flagPostgresDSN: "use the ROTOR_POSTGRES_DSN environment variable or postgres-dsn in the --config file",
	// The dispatch token makes a client the dispatcher (the proxy attaches
	// callback credentials and signs for it); the bootstrap key is an
	// operator key.
	flagDispatchToken: "use the ROTOR_DISPATCH_TOKEN environment variable or dispatch-token in the --config file",
	flagBootstrapKey:  "use the ROTOR_BOOTSTRAP_API_KEY environment variable or bootstrap-api-key in the --config file",
}

// refuseArgvSecrets refuses any of argvSecrets in args (args[0] is the
// program), in every command, before anything runs. Arguments after "--"
// are positional and not looked at.
func refuseArgvSecrets(args []string) error {
	for _, a := range args[min(1, len(args)):] {
		if a == "--" {
			return nil
		}
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			if name, ok = strings.CutPrefix(a, "-"); !ok {
				continue
			}
		}
		name, _, _ = strings.Cut(name, "=")
		if alt, bad := argvSecrets[name]; bad {
			return fmt.Errorf("--%s is refused on the command line (visible to other users in ps): %s", name, alt)
		}
	}
	return nil
}
