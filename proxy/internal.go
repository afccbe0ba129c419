package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"rotor.sh/rotor/template"
	"rotor.sh/rotor/vault"
)

// Rotor's dispatcher talks to the proxy with a per-process token and these
// headers. They are honoured only for that token and stripped from every
// request, so a worker cannot use them to have the workspace's callback
// secret or signature sent anywhere.
const (
	// HeaderInternalWorkspace names the job's workspace.
	HeaderInternalWorkspace = "Rotor-Internal-Workspace"
	// HeaderInternalJob and HeaderInternalAttempt go into audit rows.
	HeaderInternalJob     = "Rotor-Internal-Job"
	HeaderInternalAttempt = "Rotor-Internal-Attempt"
	// HeaderInternalRun and HeaderInternalStep name a workflow step's run
	// and step in audit rows.
	HeaderInternalRun  = "Rotor-Internal-Run"
	HeaderInternalStep = "Rotor-Internal-Step"
	// HeaderInternalActor is the API key on whose behalf the dispatcher
	// sends (the key that enqueued the job or started the run): the actor
	// of the audit rows. Honoured only with the internal token.
	HeaderInternalActor = "Rotor-Internal-Actor"
	// HeaderInternalScheme "https": the request came as http:// in clear on
	// loopback and goes upstream over TLS (no interception needed).
	HeaderInternalScheme = "Rotor-Internal-Scheme"
	// HeaderInternalAuth "callback": set Authorization: Bearer <the
	// workspace's callback secret>.
	HeaderInternalAuth = "Rotor-Internal-Auth"
	// HeaderInternalSign "standard-webhooks": sign the resolved body into
	// webhook-signature, over webhook-id.webhook-timestamp.body.
	HeaderInternalSign = "Rotor-Internal-Sign"
	internalPrefix     = "Rotor-Internal-"
	// DispatcherActor is the audit actor_id of dispatch requests that name
	// no actor.
	DispatcherActor = "dispatcher"
	// maxInternalActor bounds the actor id taken from the header.
	maxInternalActor = 128
)

// internalActor is the actor a dispatch request names, or DispatcherActor
// when it names none or one that is not a plain id.
func internalActor(h http.Header) string {
	a := h.Get(HeaderInternalActor)
	if a == "" || len(a) > maxInternalActor {
		return DispatcherActor
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return DispatcherActor
		}
	}
	return a
}

// auditExtra is what a dispatch request adds to its audit rows.
func (in internalReq) auditExtra() map[string]string {
	m := map[string]string{"attempt": in.attempt}
	if in.job != "" || in.run == "" {
		m["job_id"] = in.job
	}
	if in.run != "" {
		m["run_id"], m["step_id"] = in.run, in.step
	}
	return m
}

// internalReq is what a dispatch request asked for.
type internalReq struct {
	workspace, job, attempt, scheme, auth, sign string
	run, step                                   string
}

func readInternal(h http.Header) internalReq {
	return internalReq{
		workspace: h.Get(HeaderInternalWorkspace), job: h.Get(HeaderInternalJob), attempt: h.Get(HeaderInternalAttempt),
		scheme: h.Get(HeaderInternalScheme), auth: h.Get(HeaderInternalAuth), sign: h.Get(HeaderInternalSign),
		run: h.Get(HeaderInternalRun), step: h.Get(HeaderInternalStep),
	}
}

func stripInternal(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, internalPrefix) {
			delete(h, k)
		}
	}
}

func (p *Proxy) isInternalToken(key string) bool {
	return p.internalToken != "" && subtle.ConstantTimeCompare([]byte(key), []byte(p.internalToken)) == 1
}

var errSignTooLarge = errors.New("a signed dispatch body must fit the buffer")

// applyInternal adds what the dispatcher asked for, after the rewrite (so
// the signature covers the body as the callback receives it). The callback
// credentials obey their allowed_hosts like any secret, checked against the
// host the request goes to: a refused request is not sent at all, so a
// queue pointed at the wrong host fails visibly instead of delivering bare.
func (st *reqState) applyInternal(out *http.Request, in internalReq) error {
	ctx := out.Context()
	creq := vault.CredentialRequest{WorkspaceID: st.actor.WorkspaceID, Host: out.URL.Hostname(), Scheme: st.scheme, Port: st.port, RequireAllowedHosts: st.p.requireAH}
	if in.auth == "callback" {
		cs, err := st.p.vault.CallbackSecret(ctx, creq)
		if err != nil {
			return err
		}
		out.Header.Set("Authorization", "Bearer "+string(cs.Bytes()))
	}
	if in.sign == "standard-webhooks" {
		if st.body != nil {
			return fmt.Errorf("%w: %v", template.ErrValueRefused, errSignTooLarge)
		}
		if err := st.holdBody(out); err != nil {
			return err
		}
		keys, err := st.p.vault.SigningSecrets(ctx, creq)
		if err != nil {
			return err
		}
		sigs := make([]string, 0, len(keys))
		for _, key := range keys {
			sig, err := st.sign(out, key)
			if err != nil {
				return err
			}
			sigs = append(sigs, sig)
		}
		out.Header.Set("webhook-signature", strings.Join(sigs, " "))
	}
	return nil
}

// holdBody reads a body the rewrite passed through (a compressed one) into
// memory, unchanged, so the signature covers exactly the bytes that go:
// signed as if empty, the receiver's verifier, which hashes what it got,
// rejected it. One past BufferLimit is refused, as a streamed body is.
func (st *reqState) holdBody(out *http.Request) error {
	if st.buffered || out.Body == nil || out.Body == http.NoBody {
		return nil
	}
	raw, rawp, whole, err := readBody(out)
	if err != nil {
		return err
	}
	if !whole {
		putBodyBuf(rawp)
		return fmt.Errorf("%w: %v", template.ErrValueRefused, errSignTooLarge)
	}
	st.setBody(out, raw, rawp)
	return nil
}

// sign returns one Standard Webhooks signature ("v1,<base64>").
func (st *reqState) sign(out *http.Request, key vault.Plaintext) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(key.Bytes()), "whsec_"))
	if err != nil {
		return "", fmt.Errorf("signing key: %w", err)
	}
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte(out.Header.Get("webhook-id") + "." + out.Header.Get("webhook-timestamp") + "."))
	if st.buffered {
		mac.Write(st.bodyBytes)
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}
