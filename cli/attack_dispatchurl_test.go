package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestAttackDispatchTokenInClear: the dispatch token lets its holder act
// as the dispatcher on any proxy started with it: name any workspace and
// any actor, and have that workspace's secrets, callback secret and
// signatures placed into requests it chooses. A dispatch node given an
// http:// proxy URL across a network sent it in clear (Proxy-Authorization)
// to whoever is on the path. It is refused at start, naming the setting;
// https:// and loopback http:// are accepted.
func TestAttackDispatchTokenInClear(t *testing.T) {
	for _, c := range []struct {
		url     string
		refused bool
	}{
		{"http://192.0.2.10:8081", true},
		{"http://rotor-proxy.rotor.svc:8081", true},
		{"HTTP://[2001:db8::1]:8081", true},
		{"ftp://127.0.0.1:8081", true},
		{"https://rotor-proxy.rotor.svc:8081", false},
		{"http://127.0.0.1:8081", false},
		{"http://localhost:8081", false},
		{"http://[::1]:8081", false},
	} {
		for _, cmd := range [][]string{{"dispatch"}, {"serve", "--components", "api,dispatch"}} {
			// Set each time: a command removes it from the environment.
			t.Setenv("ROTOR_DISPATCH_TOKEN", "dispatch-token-0123456789abcdef0123456789")
			args := append(append([]string{"rotor"}, cmd...), "--data-dir", t.TempDir(), "--dispatch-proxy-url", c.url,
				// A command past its settings starts its storage plugin:
				// none here, so it stops there.
				"--storage-plugin", "/nonexistent/rotor-plugin")
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // a command that gets past its settings stops at once
			err := Run(ctx, args, &bytes.Buffer{}, &bytes.Buffer{})
			named := err != nil && strings.Contains(err.Error(), "dispatch-proxy-url") && strings.Contains(err.Error(), "https://")
			if named != c.refused {
				t.Errorf("%v %s: %v; refused for its scheme: %v, want %v", cmd, c.url, err, named, c.refused)
			}
			if err != nil && strings.Contains(err.Error(), "0123456789abcdef") {
				t.Errorf("%v %s: the error holds the token: %v", cmd, c.url, err)
			}
		}
	}
}
