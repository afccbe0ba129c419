package proxy

import (
	"bytes"
	"encoding/base64"
	"strings"

	"rotor.sh/rotor/template"
)

// BodyContext is the context the proxy resolves a request body's
// references in, chosen from its Content-Type: whoever checks a body
// before it reaches the proxy (the workflow engine's injection guard) must
// count references as the proxy will find them, percent-encoded ones in a
// form body included.
func BodyContext(contentType string) template.Context { return bodyContext(contentType) }

// HeaderReferences returns the names of the secret references the proxy
// would resolve in one header field, in order: for Authorization: Basic,
// those inside the base64-decoded credentials (and none in the encoded
// text, which the proxy leaves alone), else those in the value. An error
// is a malformed reference the proxy would refuse.
func HeaderReferences(name, value string) ([]string, error) {
	var names []string
	collect := func(n string) ([]byte, error) {
		names = append(names, n)
		return nil, nil
	}
	if name == "Authorization" {
		if _, user, pass, ok := basicCredentials(value); ok {
			if _, _, err := template.RewriteString(user, template.ContextUserinfo, collect); err != nil {
				return nil, err
			}
			if _, _, err := template.RewriteString(pass, template.ContextUserinfo, collect); err != nil {
				return nil, err
			}
			return names, nil
		}
		if isBasic(value) {
			return nil, nil
		}
	}
	if _, _, err := template.RewriteString(value, template.ContextHeader, collect); err != nil {
		return nil, err
	}
	return names, nil
}

func isBasic(v string) bool { return len(v) > 6 && strings.EqualFold(v[:6], "Basic ") }

// basicCredentials decodes Basic credentials the way rewriteBasic reads
// them (the decoded text, then split at the first ':'); ok is false when the proxy would pass the field untouched (not
// Basic, not base64, or no '$' inside).
func basicCredentials(v string) (raw, user, pass string, ok bool) {
	if !isBasic(v) {
		return "", "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[6:]))
	if err != nil || !bytes.ContainsRune(b, '$') {
		return "", "", "", false
	}
	user, pass, _ = strings.Cut(string(b), ":")
	return string(b), user, pass, true
}
