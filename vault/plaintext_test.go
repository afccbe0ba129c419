package vault

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestPlaintextRedacts(t *testing.T) {
	const canary = "canary-5ecr3t-value"
	p := PlaintextString(canary)
	type wrapper struct {
		Value Plaintext
		Ptr   *Plaintext
	}
	w := wrapper{Value: p, Ptr: &p}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		outs = append(outs, fmt.Sprintf(verb, p), fmt.Sprintf(verb, w), fmt.Sprintf(verb, &p))
	}
	outs = append(outs, p.String(), p.GoString(), fmt.Sprint(p), fmt.Sprintln(p))
	j, _ := json.Marshal(w)
	outs = append(outs, string(j))
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("m", "v", p, "w", w, "p", &p)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "v", p, "w", w)
	outs = append(outs, buf.String())
	for _, o := range outs {
		if strings.Contains(o, canary) || strings.Contains(o, fmt.Sprintf("%x", canary)) {
			t.Fatalf("plaintext leaked: %s", o)
		}
	}
	if !strings.Contains(buf.String(), Redacted) {
		t.Fatalf("log does not show %s: %s", Redacted, buf.String())
	}
	if string(p.Bytes()) != canary || !p.Equal(PlaintextString(canary)) || p.Equal(PlaintextString("other")) {
		t.Fatal("Bytes/Equal broken")
	}
}
