package vault

import (
	"bytes"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"rotor.sh/rotor/storage"
)

// The audit anchor is the newest seal this node wrote or verified, per
// workspace, kept outside the database: in memory, and in a file in the
// node's data dir when Options.AuditAnchorPath is set. Someone who can
// write the database but not the node cannot delete the newest seal,
// replay an older one, or truncate the trail back to one: the database's
// seal must be at least as new as the anchor (docs/security.md, threat
// model). Each entry carries its checkpoint MAC, checked on load.
type auditAnchor struct {
	path string
	mu   sync.Mutex
	ws   map[string]storage.AuditCheckpoint
}

type anchorFile struct {
	Version int                                `json:"version"`
	Seals   map[string]storage.AuditCheckpoint `json:"seals"`
}

// loadAnchor reads the anchor file (none yet is fine). An entry whose MAC
// does not verify means another master key's data dir or a damaged file.
func (v *Vault) loadAnchor(path string) (*auditAnchor, error) {
	a := &auditAnchor{path: path, ws: map[string]storage.AuditCheckpoint{}}
	if path == "" {
		return a, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit anchor: %w", err)
	}
	var f anchorFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("audit anchor %s: %w", path, err)
	}
	for ws, c := range f.Seals {
		if c.WorkspaceID != ws || !hmac.Equal(c.MAC, v.checkpointMAC(c)) {
			return nil, fmt.Errorf("%w: the seal kept in %s for workspace %s does not verify (another master key's file, or edited); move it away only if you know why", ErrAuditTampered, path, ws)
		}
		a.ws[ws] = c
	}
	return a, nil
}

func (a *auditAnchor) get(ws string) (storage.AuditCheckpoint, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.ws[ws]
	return c, ok
}

// update keeps c if it is newer than the anchor, and writes the file.
func (a *auditAnchor) update(c storage.AuditCheckpoint) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur, ok := a.ws[c.WorkspaceID]; ok && cur.LastID >= c.LastID {
		return nil
	}
	a.ws[c.WorkspaceID] = c
	if a.path == "" {
		return nil
	}
	b, err := json.Marshal(anchorFile{Version: 1, Seals: a.ws})
	if err != nil {
		return err
	}
	return writeFileAtomic(a.path, b)
}

// behind says how the database's seal (found or not) falls short of the
// anchor: "" when it does not.
func sealBehind(anchor, db storage.AuditCheckpoint, found bool) string {
	switch {
	case !found:
		return "the database holds no seal"
	case db.LastID < anchor.LastID:
		return fmt.Sprintf("the database's newest seal is an older one (row %d)", db.LastID)
	case db.LastID == anchor.LastID && !bytes.Equal(db.Chain, anchor.Chain):
		return "the database's seal of that row differs"
	}
	return ""
}

// writeFileAtomic replaces path with b (mode 0600) so a crash leaves the
// old file or the new one, never a torn one.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".audit-anchor-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
