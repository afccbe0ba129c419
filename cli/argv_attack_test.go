package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestAttackCredentialsOnArgv: the dispatch token (it makes a client the
// dispatcher: the proxy attaches any workspace's callback secret and signs
// any body for it) and the bootstrap API key (an operator key) are
// credentials like the master key: on argv every local user reads them in
// ps and /proc/<pid>/cmdline. Every command refuses them there, with one
// line naming the environment variable, before doing anything.
func TestAttackCredentialsOnArgv(t *testing.T) {
	const secret = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--dispatch-token", secret}, "ROTOR_DISPATCH_TOKEN"},
		{[]string{"serve", "--dispatch-token=" + secret}, "ROTOR_DISPATCH_TOKEN"},
		{[]string{"dispatch", "-dispatch-token", secret}, "ROTOR_DISPATCH_TOKEN"},
		{[]string{"serve", "--bootstrap-api-key", secret}, "ROTOR_BOOTSTRAP_API_KEY"},
		{[]string{"serve", "--bootstrap-api-key=" + secret}, "ROTOR_BOOTSTRAP_API_KEY"},
	} {
		args := append([]string{"rotor"}, c.args...)
		args = append(args, "--data-dir", t.TempDir(), "--components", "nothing")
		err := Run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil {
			t.Fatalf("%v: accepted", c.args)
		}
		msg := err.Error()
		if !strings.Contains(msg, "command line") || !strings.Contains(msg, c.want) {
			t.Errorf("%v: %q; want a refusal naming %s", c.args, msg, c.want)
		}
		if strings.Contains(msg, "\n") || strings.Contains(msg, secret) {
			t.Errorf("%v: error is not one clean line without the value: %q", c.args, msg)
		}
	}
}
