package workflow

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"rotor.sh/rotor/storage"
)

// Step attempt outcomes (the outcome label and log field).
const (
	OutcomeCompleted = "completed"
	OutcomeRetry     = "retry"
	OutcomeFailed    = "failed"
)

type metrics struct {
	finished    *prometheus.CounterVec
	attempts    *prometheus.CounterVec
	stepLatency prometheus.Histogram
	inflight    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, store storage.Store) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		finished: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rotor_workflow_runs_finished_total",
			Help: "Workflow runs finished by this node, by status (completed, failed).",
		}, []string{"status"}),
		attempts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rotor_workflow_step_attempts_total",
			Help: "Workflow request step attempts by outcome (completed, retry, failed).",
		}, []string{"outcome"}),
		stepLatency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "rotor_workflow_step_duration_seconds",
			Help:    "Duration of workflow request step attempts, through the proxy.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		inflight: f.NewGauge(prometheus.GaugeOpts{
			Name: "rotor_workflow_runs_executing",
			Help: "Workflow runs executing a step on this node (sleeping and waiting runs take none).",
		}),
	}
	if store != nil {
		reg.MustRegister(&runsCollector{store: store, desc: prometheus.NewDesc("rotor_workflow_runs", "Workflow runs by status (waiting: sleeping or waiting for a signal).", []string{"status"}, nil)})
	}
	return m
}

// runsCollector reads the run counts at scrape time.
type runsCollector struct {
	store storage.Store
	desc  *prometheus.Desc
}

func (c *runsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *runsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.store.CountRuns(ctx)
	if err != nil {
		return
	}
	for _, st := range []string{storage.RunRunning, storage.RunWaiting, storage.RunCompleted, storage.RunFailed, storage.RunCanceled} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), st)
	}
}

// ServiceMetrics counts runs started through the API (every node).
type serviceMetrics struct {
	started prometheus.Counter
}

func newServiceMetrics(reg prometheus.Registerer) *serviceMetrics {
	return &serviceMetrics{started: promauto.With(reg).NewCounter(prometheus.CounterOpts{
		Name: "rotor_workflow_runs_started_total",
		Help: "Workflow runs started (an idempotent repeat is not counted).",
	})}
}
