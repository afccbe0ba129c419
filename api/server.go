package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/workflow"
)

// DashboardPath is where `rotor serve` mounts the dashboard next to the API;
// GET / sends browsers there.
const DashboardPath = "/dashboard/"

// Options configure New.
type Options struct {
	Vault *vault.Vault
	// Queues serves /v1/queues and /v1/jobs; nil leaves them out.
	Queues     *dispatch.Service
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Quotas bound each workspace's queued jobs (api/quotas.go); Usage
	// reads what a workspace holds (the store). Without Usage only the
	// payload size is checked.
	Quotas Quotas
	Usage  UsageSource

	// Workflows serves /v1/workflows and /v1/workflow-runs (issue 14);
	// nil leaves them out.
	Workflows *workflow.Service
}

// Server is the /v1 control API.
type Server struct {
	vault   *vault.Vault
	queues  *dispatch.Service
	log     *slog.Logger
	mux     *http.ServeMux
	reqs    *prometheus.CounterVec
	latency *prometheus.HistogramVec
	// routes lists "METHOD /path" of every endpoint (checked against the
	// OpenAPI description by a test).
	endpoints []string
	quota     *quotaGate

	workflows *workflow.Service
}

// Routes returns "METHOD /path" for every endpoint the server handles.
func (s *Server) Routes() []string { return slices.Clone(s.endpoints) }

// New builds the API handler.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	f := promauto.With(opts.Registerer)
	s := &Server{
		vault:  opts.Vault,
		queues: opts.Queues,
		log:    opts.Logger,
		mux:    http.NewServeMux(),
		reqs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rotor_api_requests_total",
			Help: "Control API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rotor_api_request_duration_seconds",
			Help:    "Control API request latency by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"route"}),
	}
	s.quota = newQuotaGate(opts.Quotas, opts.Usage, opts.Registerer)
	s.workflows = opts.Workflows
	s.routes()
	return s
}

// route registers handlers for one path, and a JSON 405 for other methods.
func (s *Server) route(path string, methods map[string]http.HandlerFunc) {
	allowed := make([]string, 0, len(methods))
	for m, h := range methods {
		s.mux.HandleFunc(m+" "+path, h)
		allowed = append(allowed, m)
		s.endpoints = append(s.endpoints, m+" "+path)
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSONError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed here; use "+allow)
	})
}

func (s *Server) routes() {
	s.route("/v1/secrets", map[string]http.HandlerFunc{
		http.MethodPost: s.authed(vault.RoleMember, s.createSecret),
		http.MethodGet:  s.authed(vault.RoleMember, s.listSecrets),
	})
	s.route("/v1/secrets/{name}", map[string]http.HandlerFunc{
		http.MethodGet:    s.authed(vault.RoleMember, s.getSecret),
		http.MethodPatch:  s.authed(vault.RoleMember, s.updateSecret),
		http.MethodDelete: s.authed(vault.RoleMember, s.deleteSecret),
	})
	s.route("/v1/audit", map[string]http.HandlerFunc{
		http.MethodGet: s.authed(vault.RoleMember, s.listAudit),
	})
	s.route("/v1/audit/verify", map[string]http.HandlerFunc{
		http.MethodGet: s.authed(vault.RoleMember, s.verifyAudit),
	})
	s.route("/v1/keys", map[string]http.HandlerFunc{
		http.MethodPost: s.authed(vault.RoleAdmin, s.createKey),
		http.MethodGet:  s.authed(vault.RoleAdmin, s.listKeys),
	})
	s.route("/v1/keys/{id}", map[string]http.HandlerFunc{
		http.MethodDelete: s.authed(vault.RoleAdmin, s.revokeKey),
	})
	s.route("/v1/workspace", map[string]http.HandlerFunc{
		http.MethodGet: s.authed(vault.RoleMember, s.getWorkspace),
	})
	s.route("/v1/workspaces", map[string]http.HandlerFunc{
		http.MethodPost: s.authed(vault.RoleOperator, s.createWorkspace),
	})
	s.route("/v1/vault/rotate-key", map[string]http.HandlerFunc{
		http.MethodPost: s.authed(vault.RoleOperator, s.rotateKey),
	})
	s.route("/v1/workspace/callback-secret", map[string]http.HandlerFunc{
		http.MethodPost:  s.authed(vault.RoleAdmin, s.rotateCallbackSecret),
		http.MethodGet:   s.authed(vault.RoleAdmin, s.getCallbackSettings),
		http.MethodPatch: s.authed(vault.RoleAdmin, s.patchCallbackSettings),
	})
	if s.queues != nil {
		s.route("/v1/queues", map[string]http.HandlerFunc{
			http.MethodPost: s.authed(vault.RoleMember, s.createQueue),
			http.MethodGet:  s.authed(vault.RoleMember, s.listQueues),
		})
		s.route("/v1/secrets/{name}/references", map[string]http.HandlerFunc{
			http.MethodGet: s.authed(vault.RoleMember, s.secretReferences),
		})
		s.route("/v1/queues/{name}", map[string]http.HandlerFunc{
			http.MethodGet:    s.authed(vault.RoleMember, s.getQueue),
			http.MethodPatch:  s.authed(vault.RoleMember, s.patchQueue),
			http.MethodDelete: s.authed(vault.RoleMember, s.deleteQueue),
		})
		s.route("/v1/queues/{name}/jobs", map[string]http.HandlerFunc{
			http.MethodPost: s.authed(vault.RoleMember, s.enqueue),
			http.MethodGet:  s.authed(vault.RoleMember, s.listJobs),
		})
		s.route("/v1/queues/{name}/jobs/retry", map[string]http.HandlerFunc{
			http.MethodPost: s.authed(vault.RoleMember, s.retryDead),
		})
		s.route("/v1/jobs/{id}", map[string]http.HandlerFunc{
			http.MethodGet:    s.authed(vault.RoleMember, s.getJob),
			http.MethodDelete: s.authed(vault.RoleMember, s.cancelJob),
		})
		s.route("/v1/jobs/{id}/retry", map[string]http.HandlerFunc{
			http.MethodPost: s.authed(vault.RoleMember, s.retryJob),
		})
	}
	if s.workflows != nil {
		s.workflowRoutes()
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			// A browser opening the API address lands on the dashboard;
			// scripts keep the JSON answer, with the way in.
			if strings.Contains(r.Header.Get("Accept"), "text/html") {
				http.Redirect(w, r, DashboardPath, http.StatusSeeOther)
				return
			}
			writeJSONError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: /; the API is under /v1/, the dashboard at "+DashboardPath)
			return
		}
		writeJSONError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: "+truncate(r.URL.Path, 100))
	})
}

// reqInfo is filled in as a request is handled, for its summary log line.
type reqInfo struct {
	actor     vault.Actor
	errCode   string
	requestID string
}

type ctxKey struct{}

func info(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(ctxKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// authed authenticates the request and runs h; whatever h returns is
// written as the error response.
func (s *Server) authed(role string, h func(http.ResponseWriter, *http.Request, vault.Actor) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		actor, err := s.authenticate(r)
		if err == nil && !actor.Can(role) {
			err = fmt.Errorf("%w: this needs an API key with the %s role (yours: %s)", vault.ErrForbidden, role, actor.Role)
		}
		if err == nil {
			info(r.Context()).actor = actor
			err = h(w, r, actor)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	}
}

func (s *Server) authenticate(r *http.Request) (vault.Actor, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return vault.Actor{}, errUnauth("missing Authorization header; send Authorization: Bearer <API key>")
	}
	scheme, key, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return vault.Actor{}, errUnauth("Authorization must be Bearer <API key>")
	}
	return s.vault.Authenticate(r.Context(), strings.TrimSpace(key))
}

func errUnauth(msg string) error {
	return &requestError{status: http.StatusUnauthorized, code: CodeUnauthorized, message: msg}
}

// writeError writes err as the JSON error body, logging server errors.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := classify(err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rotor"`)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if code == CodeAuditUnavailable {
		// The same header the proxy sets, so clients of both see one signal.
		w.Header().Set(HeaderError, code)
	}
	if status >= 500 {
		s.log.Error("request failed", LogFieldRequestID, info(r.Context()).requestID, "err", err)
	}
	info(r.Context()).errCode = code
	writeJSONError(w, status, code, msg)
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// statusWriter records what a handler wrote, for the summary line.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP runs a request with recovery, a request id, metrics and one
// summary log line.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ri := &reqInfo{requestID: requestID(r)}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
	sw := &statusWriter{ResponseWriter: w}
	sw.Header().Set("X-Request-Id", ri.requestID)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			// The panic value is not logged: it could hold request data.
			s.log.Error("panic in handler", LogFieldRequestID, ri.requestID, "stack", string(debug.Stack()))
			if sw.status == 0 {
				writeJSONError(sw, http.StatusInternalServerError, CodeInternal, "internal error")
			}
			ri.errCode = CodeInternal
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		d := time.Since(start)
		s.reqs.WithLabelValues(route, statusCode(status)).Inc()
		s.latency.WithLabelValues(route).Observe(d.Seconds())
		attrs := []slog.Attr{
			slog.String(LogFieldRequestID, ri.requestID),
			slog.String(LogFieldMethod, r.Method),
			slog.String(LogFieldRoute, route),
			slog.String(LogFieldPath, truncate(r.URL.Path, 200)),
			slog.Int(LogFieldStatus, status),
			slog.Float64(LogFieldDurationMS, float64(d.Microseconds())/1000),
			slog.Int(LogFieldBytesOut, sw.bytes),
			slog.String(LogFieldRemote, r.RemoteAddr),
		}
		if ri.actor.KeyID != "" {
			attrs = append(attrs, slog.String(LogFieldActorID, ri.actor.KeyID), slog.String(LogFieldWorkspace, ri.actor.WorkspaceID))
		}
		if ri.errCode != "" {
			attrs = append(attrs, slog.String(LogFieldErrorCode, ri.errCode))
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, LogMsgRequest, attrs...)
	}()
	s.mux.ServeHTTP(sw, r)
}

func statusCode(status int) string {
	const digits = "0123456789"
	if status < 100 || status > 999 {
		return "other"
	}
	return string([]byte{digits[status/100], digits[status/10%10], digits[status%10]})
}

// requestID keeps a well-formed client X-Request-Id so logs correlate across
// services, and makes one otherwise.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 && strings.IndexFunc(id, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
	}) < 0 {
		return id
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "req_" + hex.EncodeToString(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
