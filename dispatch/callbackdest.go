package dispatch

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/template"
	"rotor.sh/rotor/vault"
)

// checkCallbackDestination enforces who may choose where the workspace's
// callback credentials go. Every delivery carries the callback secret and a
// signature under the signing secret, which only admins may read; so a key
// below admin may point a queue only at a destination (scheme, host, port)
// the callback secret's allowed_hosts already cover, or keep the one the
// queue has. Admins and operators may choose any destination; the proxy
// still attaches the credentials only where allowed_hosts permit. prev is
// nil for a new queue. Run after validate (the URL's shape is checked).
func (s *Service) checkCallbackDestination(ctx context.Context, actor vault.Actor, prev *storage.Queue, next storage.Queue) error {
	if actor.Can(vault.RoleAdmin) {
		return nil
	}
	dest, err := callbackDestination(next.CallbackURL)
	if err != nil {
		return invalid("callback_url must be an absolute http:// or https:// URL")
	}
	if prev != nil {
		if was, err := callbackDestination(prev.CallbackURL); err == nil && sameDestination(was, dest) {
			return nil
		}
	}
	ok, err := s.vault.CallbackDestinationApproved(ctx, actor.WorkspaceID, dest)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: callback_url: %q is not in the callback secret's allowed_hosts, and only an admin may send the workspace's callback credentials to a new host; an admin must approve the host (PATCH /v1/workspace/callback-secret) or set this callback_url",
			vault.ErrForbidden, truncateHost(dest.Host))
	}
	return nil
}

// callbackDestination parses a callback URL with its references replaced
// (they are never in the host; validate refuses that).
func callbackDestination(raw string) (*url.URL, error) {
	u, err := url.Parse(template.URLShape(raw))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("not an absolute URL")
	}
	return u, nil
}

// sameDestination compares host names folding ASCII letters only: Unicode
// folding (strings.EqualFold) makes U+212A equal "k" and U+017F equal "s",
// names that DNS and certificates treat as different hosts.
func sameDestination(a, b *url.URL) bool {
	return equalFold(a.Scheme, b.Scheme) && equalFold(strings.TrimSuffix(a.Hostname(), "."), strings.TrimSuffix(b.Hostname(), ".")) &&
		effectivePort(a) == effectivePort(b)
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if equalFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

func truncateHost(h string) string {
	if len(h) > 100 {
		return h[:100] + "..."
	}
	return h
}
