package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type exportLine struct {
	Type        string `json:"type"`
	WorkspaceID string `json:"workspace_id"`
	ID          int64  `json:"id"`
	Chain       string `json:"chain"`
	LastID      int64  `json:"last_id"`
}

func readExport(t *testing.T, path string) []exportLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []exportLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l exportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			// A line torn by kill -9 can only be the last one.
			continue
		}
		out = append(out, l)
	}
	return out
}

// auditRows lists every row of the key's workspace through the API: id -> chain.
func auditRows(t *testing.T, apiURL, key string) map[int64]string {
	t.Helper()
	rows := map[int64]string{}
	cursor := ""
	for range 1000 {
		url := apiURL + "/v1/audit?limit=500"
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		code, body := call(t, "GET", url, key, "")
		if code != 200 {
			t.Fatalf("audit: %d %s", code, body)
		}
		var page struct {
			Events []struct {
				ID    int64  `json:"id"`
				Chain string `json:"chain"`
			} `json:"events"`
			Next *string `json:"next_cursor"`
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			rows[e.ID] = e.Chain
		}
		if page.Next == nil {
			return rows
		}
		cursor = *page.Next
	}
	t.Fatal("too many audit pages")
	return nil
}

// TestAuditExportResumesAfterKill: export to a file, kill -9 the node while
// rows are being written and exported, restart it: the export has every row
// of the trail, with its chain value, in order per workspace (a row may
// appear twice across the crash, never be missing), and seal records.
func TestAuditExportResumesAfterKill(t *testing.T) {
	dir := t.TempDir()
	export := filepath.Join(dir, "audit.jsonl")
	env := []string{"ROTOR_AUDIT_EXPORT=file:" + export, "ROTOR_BOOTSTRAP_API_KEY=rtr_export_test_key_0123456789abcdef"}
	s := startServer(t, dir, env...)
	key := "rtr_export_test_key_0123456789abcdef"
	// Errors are expected while the node is killed: not fatal here.
	create := func(s *server, prefix string, n int) {
		for i := range n {
			req, _ := http.NewRequest("POST", s.apiURL+"/v1/secrets", strings.NewReader(fmt.Sprintf(`{"name":"%s_%d","value":"export-value"}`, prefix, i)))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}
	}
	create(s, "BEFORE", 20)
	deadline := time.Now().Add(30 * time.Second)
	for len(readExport(t, export)) < 10 {
		if time.Now().After(deadline) {
			t.Fatal("nothing exported in 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Kill -9 while writes (and so exports) are going on.
	var wg sync.WaitGroup
	wg.Go(func() { create(s, "DURING", 40) })
	time.Sleep(300 * time.Millisecond)
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.done
	wg.Wait()
	before := len(readExport(t, export))

	s = startServer(t, dir, env...)
	defer s.stop()
	create(s, "AFTER", 10)
	var lines []exportLine
	var rows map[int64]string
	for {
		lines, rows = readExport(t, export), auditRows(t, s.apiURL, key)
		got := map[int64]string{}
		for _, l := range lines {
			if l.Type == "row" {
				got[l.ID] = l.Chain
			}
		}
		missing := 0
		for id, chain := range rows {
			if c, ok := got[id]; !ok {
				missing++
			} else if c != chain {
				t.Fatalf("row %d exported with chain %s, trail has %s", id, c, chain)
			}
		}
		// A seal line follows its rows once the sealer's next tick has
		// sealed them, so wait for one as well.
		sealed := slices.ContainsFunc(lines, func(l exportLine) bool { return l.Type == "seal" })
		if missing == 0 && sealed {
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("%d of %d rows never exported (seal exported: %v)", missing, len(rows), sealed)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Ordered per workspace: each row is newer than every row before it,
	// or a repeat of one already exported (at least once across the crash).
	seen, maxID := map[int64]bool{}, map[string]int64{}
	dups, seals := 0, 0
	for _, l := range lines {
		switch l.Type {
		case "seal":
			seals++
			if !seen[l.LastID] {
				t.Fatalf("seal over row %d exported before the row", l.LastID)
			}
		case "row":
			if l.ID <= maxID[l.WorkspaceID] {
				if !seen[l.ID] {
					t.Fatalf("row %d exported after row %d: out of order", l.ID, maxID[l.WorkspaceID])
				}
				dups++
			}
			seen[l.ID] = true
			maxID[l.WorkspaceID] = max(maxID[l.WorkspaceID], l.ID)
		}
	}
	if seals == 0 {
		t.Fatal("no seal records exported")
	}
	t.Logf("%d lines before the restart, %d after; %d rows in the trail, %d repeated, %d seals", before, len(lines), len(rows), dups, seals)

	// logrotate: move the file away, SIGHUP, and the next rows go to a new file.
	if err := os.Rename(export, export+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	create(s, "ROTATED", 1)
	for len(readExport(t, export)) == 0 {
		if time.Now().After(deadline.Add(60 * time.Second)) {
			t.Fatal("nothing written to the new export file after SIGHUP")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// rotor audit verify --against: the rotated export matches the trail; a
	// copy with one chain value changed names that row.
	cliEnv := []string{"ROTOR_API_URL=" + s.apiURL, "ROTOR_API_KEY=" + key}
	if code, out, errOut := rotor(t, cliEnv, "audit", "verify", "--against", export+".1"); code != 0 || !strings.Contains(out, "matches the export") {
		t.Fatalf("verify --against: %d %s %s", code, out, errOut)
	}
	b, err := os.ReadFile(export + ".1")
	if err != nil {
		t.Fatal(err)
	}
	var victim exportLine
	for _, l := range lines {
		if l.Type == "row" && l.ID > 3 {
			victim = l
			break
		}
	}
	forged := strings.Replace(string(b), victim.Chain, strings.Repeat("0", len(victim.Chain)), -1)
	if err := os.WriteFile(export+".forged", []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := rotor(t, cliEnv, "audit", "verify", "--against", export+".forged")
	if code != 1 || !strings.Contains(errOut, fmt.Sprintf("at row %d", victim.ID)) {
		t.Fatalf("verify --against a differing export: %d %s %s", code, out, errOut)
	}
}
