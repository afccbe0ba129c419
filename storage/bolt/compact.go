package bolt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"rotor.sh/rotor/storage"
)

// compactTxMax bounds each transaction of a compaction.
const compactTxMax = 64 << 20

// Compact rewrites the bbolt file at path with only its live pages, so the
// bytes of deleted records (freed pages keep them until reused) are gone
// from the file. Rotor must not be running on it: the file lock is taken
// and the call fails with storage.ErrUnavailable if another process holds it.
// It returns the file size before and after.
func Compact(path string, opts Options) (before, after int64, err error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultOpenTimeout
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	before = st.Size()
	src, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.Timeout, ReadOnly: true})
	if err != nil {
		if errors.Is(err, bberrors.ErrTimeout) {
			return 0, 0, fmt.Errorf("compact %s: the file is in use (stop rotor first): %w", path, storage.ErrUnavailable)
		}
		return 0, 0, err
	}
	defer src.Close()
	tmp := path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, 0, err
	}
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: opts.Timeout})
	if err != nil {
		return 0, 0, err
	}
	if err := bbolt.Compact(dst, src, compactTxMax); err != nil {
		dst.Close()
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return 0, 0, err
	}
	// Replace the file atomically, and make the rename durable.
	if err := os.Rename(tmp, path); err != nil {
		return 0, 0, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	if st, err = os.Stat(path); err != nil {
		return 0, 0, err
	}
	return before, st.Size(), nil
}
