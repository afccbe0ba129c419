package web

import (
	"errors"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"

	"rotor.sh/rotor/storage"
)

const (
	auditPageSize = 50
	// auditScanPages bounds the rows one page reads when filtering by
	// actor or end time (filters the store does not index): 20 × 500.
	auditScanPages = 20
	auditScanBatch = 500
	// timeInput is the format of <input type="datetime-local">, read as UTC.
	timeInput = "2006-01-02T15:04"
)

type auditFilter struct {
	EventType, ResourceType, ResourceID, Actor, Since, Until string
}

type auditData struct {
	Q      auditFilter
	Events []storage.AuditEvent
	Names  map[string]string
	// Next is the cursor of the following (older) page; 0 when none.
	Next    int64
	Scanned int
	// Partial: the scan bound ended the page before it was full.
	Partial bool
	// Older links the next (older) page with the same filter.
	Older template.URL
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, f := range []string{timeInput, time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(f, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("times: write 2026-03-01T14:30 (UTC) or 2026-03-01")
}

func (d *Dashboard) auditPage(q *req) {
	v := q.r.URL.Query()
	f := auditFilter{EventType: v.Get("event_type"), ResourceType: v.Get("resource_type"), ResourceID: v.Get("resource_id"),
		Actor: strings.TrimSpace(v.Get("actor")), Since: v.Get("since"), Until: v.Get("until")}
	data := auditData{Q: f, Names: d.keyNames(q)}
	since, err := parseTime(f.Since)
	until, uerr := parseTime(f.Until)
	if err == nil {
		err = uerr
	}
	before, _ := strconv.ParseInt(v.Get("before"), 10, 64)
	if err != nil || before < 0 {
		if err == nil {
			err = errors.New("before: a row id from the Older link")
		}
		d.fail(q, "audit", data, err)
		return
	}
	// An actor filter matches a key id, or a key name (admins see names).
	actorIDs := map[string]bool{}
	if f.Actor != "" {
		actorIDs[f.Actor] = true
		for id, name := range data.Names {
			if strings.EqualFold(name, f.Actor) {
				actorIDs[id] = true
			}
		}
	}
	filtered := f.Actor != "" || !until.IsZero()
	aq := storage.AuditQuery{EventType: f.EventType, ResourceType: f.ResourceType, ResourceID: f.ResourceID, Since: since, Before: before, Limit: auditPageSize}
	if filtered {
		aq.Limit = auditScanBatch
	}
	for range auditScanPages {
		page, lerr := d.vault.ListAudit(q.r.Context(), q.actor, aq)
		if lerr != nil {
			d.fail(q, "audit", data, lerr)
			return
		}
		if !filtered {
			data.Events, data.Next = page.Events, page.Next
			break
		}
		data.Scanned += len(page.Events)
		full := false
		for _, e := range page.Events {
			if (f.Actor == "" || actorIDs[e.ActorID]) && (until.IsZero() || !e.OccurredAt.After(until)) {
				data.Events = append(data.Events, e)
				if len(data.Events) == auditPageSize {
					data.Next, full = e.ID, true
					break
				}
			}
		}
		if full {
			data.Partial = false
			break
		}
		// Scanned to here without filling the page: older rows remain
		// unread only if the store has more.
		data.Next, data.Partial = page.Next, page.Next != 0
		if page.Next == 0 {
			break
		}
		aq.Before = page.Next
	}
	if data.Next != 0 {
		qs := url.Values{}
		for k, vs := range v {
			if k != "before" && k != "flash" {
				qs[k] = vs
			}
		}
		qs.Set("before", strconv.FormatInt(data.Next, 10))
		data.Older = template.URL("?" + qs.Encode()) //nolint:gosec // a query string built by url.Values
	}
	d.render(q.w, q.r, "audit", q, data, nil)
}
