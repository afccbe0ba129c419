package vault

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Resolution results, the values of the "result" label.
const (
	resultHit      = "cache_hit"
	resultMiss     = "cache_miss"
	resultNotFound = "not_found"
	resultDenied   = "host_not_allowed"
	resultError    = "error"
)

type metrics struct {
	resolutions *prometheus.CounterVec
	// Pre-bound children of resolutions, for the hot path.
	resolvedHit, resolvedMiss prometheus.Counter
	auditEventsWritten        prometheus.Counter
	auditWriteErrors          prometheus.Counter
	auditDropped              prometheus.Counter
	auditRefused              prometheus.Counter
	// auditWriter is the writer whose backlog rotor_audit_backlog_rows
	// reads when scraped (nil until it starts).
	auditWriter       atomic.Pointer[auditWriter]
	auditBacklog      prometheus.GaugeFunc
	auditExported     prometheus.Counter
	auditExportErrors prometheus.Counter
	auditFlushSeconds prometheus.Histogram
	auditSeals        prometheus.Counter
	auditTamper       prometheus.Counter
	auditPruned       prometheus.Counter // issue 11: audit retention
	secretWrites      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		resolutions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rotor_vault_resolutions_total",
			Help: "Secret resolutions by result (cache_hit, cache_miss, not_found, host_not_allowed, error); cache hits are counted as the audit writer takes their rows (within the flush interval).",
		}, []string{"result"}),
		auditEventsWritten: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_audit_events_written_total",
			Help: "Access audit events written by the group-commit writer.",
		}),
		auditWriteErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_audit_write_errors_total",
			Help: "Failed group-commit writes of access audit events (retried).",
		}),
		auditDropped: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_audit_events_dropped_total",
			Help: "Accepted access audit rows lost because storage kept failing until the shutdown timeout ended (the only loss left).",
		}),
		auditRefused: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_audit_refused_total",
			Help: "Requests refused (audit_unavailable) because their access row could not be queued: the audit backlog was at its bound.",
		}),
		auditExported: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_audit_exported_rows_total",
			Help: "Audit rows written to the export sink (--audit-export).",
		}),
		auditExportErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_audit_export_errors_total",
			Help: "Failed export passes (retried from the saved cursor).",
		}),
		auditFlushSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "rotor_audit_flush_duration_seconds",
			Help:    "Time to write one batch of access audit events.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		auditSeals: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_audit_seals_total",
			Help: "Audit chain checkpoints written.",
		}),
		auditTamper: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_audit_tamper_detected_total",
			Help: "Times the audit chain failed to verify (by the sealer or a verification).",
		}),
		auditPruned: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_audit_pruned_total",
			Help: "Audit rows deleted by --audit-retention.",
		}),
		secretWrites: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rotor_vault_secret_writes_total",
			Help: "Secret writes by operation (create, rotate, update, delete).",
		}, []string{"op"}),
	}
	m.auditBacklog = f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rotor_audit_backlog_rows",
		Help: "Access audit rows accepted and not yet written to storage.",
	}, func() float64 {
		if a := m.auditWriter.Load(); a != nil {
			return float64(a.backlogRows())
		}
		return 0
	})
	m.resolvedHit = m.resolutions.WithLabelValues(resultHit)
	m.resolvedMiss = m.resolutions.WithLabelValues(resultMiss)
	return m
}
