package vault

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"rotor.sh/rotor/storage"
)

// Export of the audit trail to a sink outside the database: JSON Lines, one
// row per line with its chain value, and the seal records. It is the
// external anchor of the threat model (docs/security.md) and what a SIEM
// reads. Delivery is at least once and ordered per workspace: a row is
// written, the sink synced, and only then the cursor (the last id exported,
// per workspace) saved; after a crash the node resumes from the cursor, so
// nothing is skipped and a row may appear twice (same id and chain value:
// consumers keep one per (workspace_id, id)).

const (
	auditExportInterval = 500 * time.Millisecond
	auditExportPage     = 1000
)

// ExportLine is one line of the export. Type is "row" or "seal".
type ExportLine struct {
	Type         string          `json:"type"`
	WorkspaceID  string          `json:"workspace_id"`
	ID           int64           `json:"id,omitempty"`
	OccurredAt   *time.Time      `json:"occurred_at,omitempty"`
	ActorID      string          `json:"actor_id,omitempty"`
	EventType    string          `json:"event_type,omitempty"`
	ResourceType string          `json:"resource_type,omitempty"`
	ResourceID   string          `json:"resource_id,omitempty"`
	Input        json.RawMessage `json:"input,omitempty"`
	Output       json.RawMessage `json:"output,omitempty"`
	// Chain is the row's chain value, or the sealed row's (hex).
	Chain string `json:"chain"`
	// Nonce (hex) is a row's MAC nonce (auditrowmac.go).
	Nonce string `json:"nonce,omitempty"`
	// Seal records: the sealed row, when. MAC (hex) is the seal's MAC, or
	// a row's row MAC.
	LastID   int64      `json:"last_id,omitempty"`
	SealedAt *time.Time `json:"sealed_at,omitempty"`
	MAC      string     `json:"mac,omitempty"`
}

// ParseExportTarget checks an --audit-export value: "stdout" or "file:PATH".
func ParseExportTarget(s string) (path string, err error) {
	switch {
	case s == "stdout":
		return "", nil
	case strings.HasPrefix(s, "file:") && len(s) > len("file:"):
		return strings.TrimPrefix(s, "file:"), nil
	}
	return "", fmt.Errorf("%w: %q is not stdout or file:PATH", ErrInvalidArgument, s)
}

// auditExporter owns the sink and the cursor; its goroutine is owned by the
// Vault and stopped by Close.
type auditExporter struct {
	v          *Vault
	path       string // "" = stdout
	cursorPath string

	mu   sync.Mutex // the sink
	f    *os.File
	w    io.Writer
	sync func() error

	cursor  map[string]int64 // workspace -> last row id exported
	sealOut map[string]int64 // workspace -> last sealed id exported
	stop    chan struct{}
	done    chan struct{}
	reopen  chan struct{}
}

func (v *Vault) newExporter(target, cursorPath string) (*auditExporter, error) {
	path, err := ParseExportTarget(target)
	if err != nil {
		return nil, err
	}
	e := &auditExporter{v: v, path: path, cursorPath: cursorPath, cursor: map[string]int64{}, sealOut: map[string]int64{},
		stop: make(chan struct{}), done: make(chan struct{}), reopen: make(chan struct{}, 1)}
	if cursorPath != "" {
		b, err := os.ReadFile(cursorPath)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("audit export cursor: %w", err)
		default:
			if err := json.Unmarshal(b, &e.cursor); err != nil {
				return nil, fmt.Errorf("audit export cursor %s: %w", cursorPath, err)
			}
		}
	}
	if err := e.open(); err != nil {
		return nil, err
	}
	go e.run()
	return e, nil
}

func (e *auditExporter) open() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.path == "" {
		e.w, e.sync = os.Stdout, func() error { return nil }
		return nil
	}
	f, err := os.OpenFile(e.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if e.f != nil {
		e.f.Close()
	}
	e.f, e.w, e.sync = f, f, f.Sync
	return nil
}

// Reopen reopens the export file (after logrotate moved it): SIGHUP.
func (e *auditExporter) Reopen() {
	select {
	case e.reopen <- struct{}{}:
	default:
	}
}

// exported is the last row id exported for ws (retention keeps the rest).
func (e *auditExporter) exported(ws string) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cursor[ws]
}

func (e *auditExporter) run() {
	defer close(e.done)
	t := time.NewTicker(auditExportInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-e.reopen:
			if err := e.open(); err != nil {
				e.v.log.Error("audit export reopen failed", "err", err)
			}
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := e.pass(ctx); err != nil {
			e.v.metrics.auditExportErrors.Inc()
			e.v.log.Error("audit export failed; will retry", "err", err)
		}
		cancel()
	}
}

// close stops the loop after one last pass (rows and the final seal).
func (e *auditExporter) close(ctx context.Context) error {
	close(e.stop)
	<-e.done
	err := e.pass(ctx)
	e.mu.Lock()
	if e.f != nil {
		e.f.Close()
	}
	e.mu.Unlock()
	return err
}

// pass exports every workspace's rows after its cursor, then its newest
// seal when the rows it covers are out.
func (e *auditExporter) pass(ctx context.Context) error {
	wss, err := e.v.store.ListWorkspaces(ctx)
	if err != nil {
		return err
	}
	for _, ws := range wss {
		if err := e.exportWorkspace(ctx, ws.ID); err != nil {
			return fmt.Errorf("workspace %s: %w", ws.ID, err)
		}
	}
	return nil
}

func (e *auditExporter) exportWorkspace(ctx context.Context, ws string) error {
	for {
		after := e.exported(ws)
		evs, err := e.v.store.ListAuditAsc(ctx, storage.AuditRange{WorkspaceID: ws, AfterID: after, Limit: auditExportPage})
		if err != nil {
			return err
		}
		if len(evs) > 0 {
			lines := make([]ExportLine, len(evs))
			for i, ev := range evs {
				at := ev.OccurredAt
				lines[i] = ExportLine{Type: "row", WorkspaceID: ws, ID: ev.ID, OccurredAt: &at, ActorID: ev.ActorID,
					EventType: ev.EventType, ResourceType: ev.ResourceType, ResourceID: ev.ResourceID,
					Input: ev.Input, Output: ev.Output, Chain: hex.EncodeToString(ev.Chain),
					Nonce: hex.EncodeToString(ev.Nonce), MAC: hex.EncodeToString(ev.MAC)}
			}
			if err := e.write(lines); err != nil {
				return err
			}
			if err := e.advance(ws, evs[len(evs)-1].ID); err != nil {
				return err
			}
			e.v.metrics.auditExported.Add(float64(len(evs)))
		}
		if len(evs) < auditExportPage {
			break
		}
	}
	if seal, ok := e.v.anchor.get(ws); ok && seal.LastID <= e.exported(ws) && seal.LastID > e.sealOut[ws] {
		at := seal.SealedAt
		line := ExportLine{Type: "seal", WorkspaceID: ws, LastID: seal.LastID, Chain: hex.EncodeToString(seal.Chain),
			SealedAt: &at, MAC: hex.EncodeToString(seal.MAC)}
		if err := e.write([]ExportLine{line}); err != nil {
			return err
		}
		e.sealOut[ws] = seal.LastID
	}
	return nil
}

// write appends lines to the sink and syncs it.
func (e *auditExporter) write(lines []ExportLine) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	bw := bufio.NewWriterSize(e.w, 64<<10)
	enc := json.NewEncoder(bw)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return e.sync()
}

// advance saves the cursor after the rows up to id are in the sink.
func (e *auditExporter) advance(ws string, id int64) error {
	e.mu.Lock()
	e.cursor[ws] = id
	b, err := json.Marshal(e.cursor)
	e.mu.Unlock()
	if err != nil || e.cursorPath == "" {
		return err
	}
	return writeFileAtomic(e.cursorPath, b)
}
