package dispatch

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"rotor.sh/rotor/storage"
)

type metrics struct {
	attempts      *prometheus.CounterVec
	latency       prometheus.Histogram
	inflight      prometheus.Gauge
	leasesExpired prometheus.Counter
	released      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, store storage.Store) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		attempts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rotor_dispatch_attempts_total",
			Help: "Delivery attempts by outcome (delivered, retry, dead).",
		}, []string{"outcome"}),
		latency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "rotor_dispatch_delivery_latency_seconds",
			Help:    "Time from enqueue to successful delivery.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
		}),
		inflight: f.NewGauge(prometheus.GaugeOpts{
			Name: "rotor_dispatch_inflight",
			Help: "Delivery attempts in progress.",
		}),
		leasesExpired: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_dispatch_leases_expired_total",
			Help: "Job leases that expired before a result was recorded (the job was delivered again).",
		}),
		released: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_dispatch_leases_released_total",
			Help: "Leased jobs given back unstarted because their queue could not start them after all (its settings changed).",
		}),
	}
	reg.MustRegister(&depthCollector{store: store, desc: prometheus.NewDesc("rotor_jobs", "Jobs by status.", []string{"status"}, nil)})
	return m
}

// depthCollector reads job counts by status at scrape time.
type depthCollector struct {
	store storage.Store
	desc  *prometheus.Desc
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.store.CountJobs(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, st := range []string{storage.JobQueued, storage.JobLeased, storage.JobDelivered, storage.JobDead, storage.JobCanceled} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), st)
	}
}
