package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"

	"rotor.sh/rotor/vault"
)

const flagAgainst = "against"

// exportedTrail is what an export file says about one workspace.
type exportedTrail struct {
	rows map[int64]string // id -> chain (hex)
	macs map[int64]string // id -> row MAC (hex; "" before row MACs)
	seal *vault.ExportLine
}

func readExportFile(path string) (map[string]*exportedTrail, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--against: %w", err)
	}
	defer f.Close()
	out := map[string]*exportedTrail{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		var l vault.ExportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			// A torn last line (a crash mid-write) is expected; others are not.
			if !sc.Scan() {
				break
			}
			return nil, fmt.Errorf("--against %s: line %d is not an export line", path, n)
		}
		tr := out[l.WorkspaceID]
		if tr == nil {
			tr = &exportedTrail{rows: map[int64]string{}, macs: map[int64]string{}}
			out[l.WorkspaceID] = tr
		}
		switch l.Type {
		case "row":
			tr.rows[l.ID], tr.macs[l.ID] = l.Chain, l.MAC
		case "seal":
			if tr.seal == nil || l.LastID > tr.seal.LastID {
				tr.seal = &l
			}
		}
	}
	return out, sc.Err()
}

// checkAgainst compares the API key's workspace trail with an export: every
// exported row must be in the trail with the same chain value, no row may
// appear in the trail between exported rows that the export lacks, and the
// newest exported seal's row must carry the sealed chain value. Rows up to
// prunedThrough were pruned by retention (verify checked the MAC'd marker):
// their absence from the trail is expected.
func checkAgainst(ctx context.Context, a *apiClient, path string, prunedThrough int64) (string, error) {
	exp, err := readExportFile(path)
	if err != nil {
		return "", err
	}
	trail := map[int64]string{}
	macs := map[int64]string{}
	ws := ""
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Events []struct {
				ID          int64  `json:"id"`
				WorkspaceID string `json:"workspace_id"`
				Chain       string `json:"chain"`
				MAC         string `json:"mac"`
			} `json:"events"`
			Next *string `json:"next_cursor"`
		}
		if err := a.do(ctx, "GET", "/v1/audit?"+q.Encode(), nil, &page); err != nil {
			return "", err
		}
		for _, e := range page.Events {
			trail[e.ID], macs[e.ID], ws = e.Chain, e.MAC, e.WorkspaceID
		}
		if page.Next == nil {
			break
		}
		cursor = *page.Next
	}
	tr := exp[ws]
	if tr == nil || len(tr.rows) == 0 {
		return "", fmt.Errorf("the export %s has no rows of this workspace", path)
	}
	ids := slices.Sorted(maps.Keys(tr.rows))
	last := ids[len(ids)-1]
	for id := range trail {
		if id < last && tr.rows[id] == "" {
			ids = append(ids, id) // inserted: checked in order below
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		want, inExport := tr.rows[id]
		got, inTrail := trail[id]
		switch {
		case !inExport:
			return "", fmt.Errorf("audit trail differs from the export at row %d: the row is in the trail but not in the export (inserted)", id)
		case !inTrail && id <= prunedThrough:
		case !inTrail:
			return "", fmt.Errorf("audit trail differs from the export at row %d: exported, but missing from the trail (deleted)", id)
		case got != want:
			return "", fmt.Errorf("audit trail differs from the export at row %d: its chain value changed (edited, or re-chained)", id)
		case macs[id] != tr.macs[id]:
			// The server's verify checks the trail's row MACs with the key;
			// equal MACs make the exported rows as authentic.
			return "", fmt.Errorf("audit trail differs from the export at row %d: its row MAC changed (the row was replaced)", id)
		}
	}
	msg := fmt.Sprintf("matches the export %s: %d exported rows, through row %d", path, len(tr.rows), last)
	if tr.seal != nil && tr.seal.LastID > prunedThrough {
		if got, ok := trail[tr.seal.LastID]; !ok || got != tr.seal.Chain {
			return "", fmt.Errorf("audit trail differs from the export at row %d: the exported seal covers it and the trail does not match", tr.seal.LastID)
		}
		msg += ", exported seal over row " + strconv.FormatInt(tr.seal.LastID, 10)
	}
	return msg, nil
}
