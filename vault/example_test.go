package vault_test

import (
	"fmt"

	"rotor.sh/rotor/vault"
)

// The hint shown in place of a value: at most 8 characters, fewer for
// short values, so a hint never gives most of a value away.
func ExampleHint() {
	for _, v := range []string{"your-token-here", "sk_live_51HqLyjWDarjtT1zdp7dc", "abc"} {
		fmt.Println(vault.Hint(vault.PlaintextString(v)))
	}
	// Output:
	// your-t...
	// sk_live_...
	// a...
}

// allowed_hosts patterns: exact names, IPs, and *.domain for sub-domains.
func ExampleHostAllowed() {
	hosts, _ := vault.NormalizeAllowedHosts([]string{"API.example.com", "*.hooks.example.org"})
	for _, h := range []string{"api.example.com", "eu.hooks.example.org", "hooks.example.org", "evil.com"} {
		fmt.Println(h, vault.HostAllowed(hosts, h))
	}
	// Output:
	// api.example.com true
	// eu.hooks.example.org true
	// hooks.example.org false
	// evil.com false
}

// A Plaintext never prints its value, whatever formats it.
func ExamplePlaintext() {
	p := vault.PlaintextString("hunter2-hunter2")
	fmt.Println(p)
	fmt.Printf("%v %s %q %x %#v\n", p, p, p, p, p)
	// Output:
	// [REDACTED]
	// [REDACTED] [REDACTED] [REDACTED] [REDACTED] [REDACTED]
}
