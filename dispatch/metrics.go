package dispatch

import (
	"context"
	"slices"
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
	reg.MustRegister(newQueueCollector(store))
	return m
}

// MaxQueueSeries bounds the per-queue series (queue names are chosen by
// users): the queues with the oldest ready jobs get their own series, the
// rest are summed under workspace="_other", queue="_other".
const MaxQueueSeries = 100

// queueCollector reads per-queue ready jobs, lag and running jobs at
// scrape time (storage.QueueStats).
type queueCollector struct {
	store               storage.Store
	ready, lag, running *prometheus.Desc
	now                 func() time.Time
}

func newQueueCollector(store storage.Store) *queueCollector {
	l := []string{"workspace", "queue"}
	return &queueCollector{store: store, now: time.Now,
		ready:   prometheus.NewDesc("rotor_queue_ready_jobs", "Jobs due and waiting to start, per queue (at most MaxQueueSeries queues; the rest under queue=\"_other\").", l, nil),
		lag:     prometheus.NewDesc("rotor_queue_lag_seconds", "Age of the queue's oldest ready job: how long it has waited since it was due.", l, nil),
		running: prometheus.NewDesc("rotor_queue_running_jobs", "Jobs leased (being delivered), per queue.", l, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.lag
	ch <- c.running
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	now := c.now()
	stats, err := c.store.QueueStats(ctx, now)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.ready, err)
		return
	}
	lagOf := func(st storage.QueueStat) float64 {
		if st.Ready == 0 {
			return 0
		}
		return max(0, now.Sub(st.OldestReady).Seconds())
	}
	slices.SortFunc(stats, func(a, b storage.QueueStat) int {
		if la, lb := lagOf(a), lagOf(b); la != lb {
			if la > lb {
				return -1
			}
			return 1
		}
		return b.Ready - a.Ready
	})
	other := storage.QueueStat{WorkspaceID: "_other", Queue: "_other"}
	otherLag := 0.0
	for i, st := range stats {
		if i >= MaxQueueSeries {
			other.Ready += st.Ready
			other.Running += st.Running
			otherLag = max(otherLag, lagOf(st))
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(st.Ready), st.WorkspaceID, st.Queue)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lagOf(st), st.WorkspaceID, st.Queue)
		ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(st.Running), st.WorkspaceID, st.Queue)
	}
	if len(stats) > MaxQueueSeries {
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(other.Ready), other.WorkspaceID, other.Queue)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, otherLag, other.WorkspaceID, other.Queue)
		ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(other.Running), other.WorkspaceID, other.Queue)
	}
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
