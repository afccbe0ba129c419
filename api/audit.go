package api

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

// Audit page sizes.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// auditEventJSON is an audit_event row as the API shows it.
type auditEventJSON struct {
	ID           int64           `json:"id"`
	OccurredAt   time.Time       `json:"occurred_at"`
	WorkspaceID  string          `json:"workspace_id"`
	ActorID      string          `json:"actor_id"`
	EventType    string          `json:"event_type"`
	ResourceType string          `json:"resource_type"`
	ResourceID   string          `json:"resource_id"`
	Input        json.RawMessage `json:"input"`
	Output       json.RawMessage `json:"output"`
	// Chain is the row's chain value (hex): keep one outside Rotor to
	// anchor the trail (docs/security.md).
	Chain string `json:"chain"`
	// Nonce and MAC (hex) are the row's MAC under the node's audit row key
	// (docs/security.md); absent on rows written before row MACs.
	Nonce string `json:"nonce,omitempty"`
	MAC   string `json:"mac,omitempty"`
}

var auditParams = map[string]bool{"resource_type": true, "event_type": true, "resource_id": true, "since": true, "limit": true, "cursor": true}

func parseAuditQuery(r *http.Request) (storage.AuditQuery, error) {
	q := r.URL.Query()
	for k, vs := range q {
		if !auditParams[k] {
			return storage.AuditQuery{}, badRequest(CodeInvalidQuery, fmt.Sprintf("unknown query parameter %q (allowed: resource_type, event_type, resource_id, since, limit, cursor)", truncate(k, 40)))
		}
		if len(vs) > 1 {
			return storage.AuditQuery{}, badRequest(CodeInvalidQuery, fmt.Sprintf("query parameter %q given more than once", k))
		}
	}
	aq := storage.AuditQuery{
		ResourceType: q.Get("resource_type"),
		EventType:    q.Get("event_type"),
		ResourceID:   q.Get("resource_id"),
		Limit:        defaultAuditLimit,
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return aq, badRequest(CodeInvalidQuery, "since must be an RFC 3339 time, like 2026-01-02T15:04:05Z")
		}
		aq.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditLimit {
			return aq, badRequest(CodeInvalidQuery, fmt.Sprintf("limit must be a whole number from 1 to %d", maxAuditLimit))
		}
		aq.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return aq, badRequest(CodeInvalidQuery, "cursor must be a next_cursor value from a previous page")
		}
		aq.Before = n
	}
	return aq, nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	q, err := parseAuditQuery(r)
	if err != nil {
		return err
	}
	page, err := s.vault.ListAudit(r.Context(), actor, q)
	if err != nil {
		return err
	}
	events := make([]auditEventJSON, 0, len(page.Events))
	for _, e := range page.Events {
		events = append(events, auditEventJSON{
			ID: e.ID, OccurredAt: e.OccurredAt, WorkspaceID: e.WorkspaceID, ActorID: e.ActorID,
			EventType: e.EventType, ResourceType: e.ResourceType, ResourceID: e.ResourceID,
			Input: orEmpty(e.Input), Output: orEmpty(e.Output), Chain: hex.EncodeToString(e.Chain),
			Nonce: hex.EncodeToString(e.Nonce), MAC: hex.EncodeToString(e.MAC),
		})
	}
	var next *string
	if page.Next > 0 {
		c := strconv.FormatInt(page.Next, 10)
		next = &c
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "next_cursor": next})
	return nil
}

func orEmpty(m json.RawMessage) json.RawMessage {
	if len(m) == 0 {
		return json.RawMessage(`{}`)
	}
	return m
}

// verifyAudit walks the caller's workspace trail and reports the first row
// that was edited, deleted, reordered or truncated. A tampered trail is
// still a 200: the verification ran; "ok": false is its finding.
func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, actor vault.Actor) error {
	if len(r.URL.Query()) > 0 {
		return badRequest(CodeInvalidQuery, "GET /v1/audit/verify takes no query parameters")
	}
	res, err := s.vault.VerifyAudit(r.Context(), actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
