package cli

import (
	"context"
	"errors"
	"log/slog"

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
