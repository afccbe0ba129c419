package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestSecretsOnArgvRefused: a master key or DSN on the command line is
// visible to every local user in ps and /proc/<pid>/cmdline; every command
// refuses it with one line naming the alternatives, before doing anything.
func TestSecretsOnArgvRefused(t *testing.T) {
	const mk = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="
	cases := [][]string{
		{"serve", "--master-key", mk},
		{"serve", "--master-key=" + mk},
		{"serve", "-master-key", mk},
		{"serve", "--storage", "postgres", "--postgres-dsn", "postgres://u:pw@127.0.0.1/db"},
		{"proxy", "--master-key", mk},
		{"dispatch", "--postgres-dsn=postgres://u:pw@127.0.0.1/db"},
		{"migrate", "--postgres-dsn", "postgres://u:pw@127.0.0.1/db"},
		{"vault", "rotate-key", "--master-key", mk},
	}
	for _, args := range cases {
		var out, errb bytes.Buffer
		err := Run(context.Background(), append([]string{"rotor"}, args...), &out, &errb)
		if err == nil {
			t.Fatalf("%v: accepted", args)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || strings.Contains(msg, mk) || strings.Contains(msg, "pw@") {
			t.Fatalf("%v: error is not one clean line: %q", args, msg)
		}
		want := "ROTOR_MASTER_KEY_FILE"
		if strings.Contains(strings.Join(args, " "), "postgres-dsn") {
			want = "ROTOR_POSTGRES_DSN"
		}
		if !strings.Contains(msg, want) || !strings.Contains(msg, "command line") {
			t.Fatalf("%v: %q does not name %s", args, msg, want)
		}
	}
	// A file flag of similar name is fine (it fails later for other reasons,
	// not this one).
	err := Run(context.Background(), []string{"rotor", "serve", "--master-key-file", "/nonexistent/key", "--data-dir", t.TempDir(), "--components", "nothing"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil && strings.Contains(err.Error(), "command line") {
		t.Fatalf("--master-key-file refused as argv secret: %v", err)
	}
}
