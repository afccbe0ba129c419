package cli

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"rotor.sh/rotor/internal/memlock"
)

// hardenProcess turns off core dumps before any key is read (a dump would
// hold the master key, the keyring and cached plaintext). A platform
// without it is logged, not fatal: docs/security.md says what remains.
func hardenProcess(log *slog.Logger) {
	if err := memlock.DisableCoreDumps(); err != nil {
		lvl := slog.LevelWarn
		if errors.Is(err, errors.ErrUnsupported) {
			lvl = slog.LevelDebug
		}
		log.Log(context.Background(), lvl, "core dumps could not be disabled", "err", err)
	}
}

// lockKey keeps a key buffer out of swap, best effort.
func lockKey(log *slog.Logger, what string, b []byte) {
	if err := memlock.Lock(b); err != nil {
		log.Debug("could not lock key material in memory", "what", what, "err", err)
	}
}

// dropSecretEnv removes, once the settings are read, the environment
// variables that hold credentials, so child processes (the storage plugin)
// do not inherit them. The process's own initial environment block, in
// /proc/<pid>/environ, keeps them: prefer ROTOR_MASTER_KEY_FILE.
func dropSecretEnv() {
	for _, f := range []string{flagMasterKey, flagBootstrapKey, flagDispatchToken, flagPostgresDSN} {
		os.Unsetenv(envName(f))
	}
}
