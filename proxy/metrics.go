package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	failures  *prometheus.CounterVec
	rewritten prometheus.Counter
	scrubbed  prometheus.Counter
	conns     *connCollector
	// byOutcome caches the children of requests and duration, so a request
	// costs no label lookup (a hash of the label values and a lock).
	// Children are created on first use, so series that never happened stay
	// absent from /metrics as before.
	byOutcome [len(outcomes)]outcomeMetrics
}

// outcomes are the values of the outcome label, in byOutcome's order.
var outcomes = [...]string{OutcomeForwarded, OutcomeResolved, OutcomeRefused, OutcomeFailed, OutcomeTunneled}

// statusClasses are the values of status_class, indexed by statusIndex.
var statusClasses = [...]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"}

type outcomeMetrics struct {
	duration atomic.Pointer[prometheus.Observer]
	requests [len(statusClasses)]atomic.Pointer[prometheus.Counter]
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rotor_proxy_requests_total",
			Help: "Proxied requests by outcome (forwarded, resolved, refused, failed, tunneled) and status class.",
		}, []string{"outcome", "status_class"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rotor_proxy_request_duration_seconds",
			Help:    "Proxied request duration, to the end of the response body, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"outcome"}),
		failures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rotor_proxy_resolution_failures_total",
			Help: "Secret references that could not be resolved, by reason (error code).",
		}, []string{"reason"}),
		rewritten: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_proxy_rewritten_body_bytes_total",
			Help: "Bytes of reference text replaced in request bodies.",
		}),
		scrubbed: f.NewCounter(prometheus.CounterOpts{
			Name: "rotor_proxy_scrubbed_total",
			Help: "Echoed secret values replaced by their reference in responses.",
		}),
		conns: &connCollector{desc: prometheus.NewDesc("rotor_proxy_upstream_connections_total",
			"Upstream connections used per request, by whether a pooled connection was reused (reused=false: connections dialed).",
			[]string{"reused"}, nil)},
	}
	reg.MustRegister(m.conns)
	return m
}

// observe counts one finished request.
func (m *metrics) observe(outcome string, status int, seconds float64) {
	i := outcomeIndex(outcome)
	if i < 0 {
		m.requests.WithLabelValues(outcome, statusClass(status)).Inc()
		m.duration.WithLabelValues(outcome).Observe(seconds)
		return
	}
	om := &m.byOutcome[i]
	c := statusIndex(status)
	cp := om.requests[c].Load()
	if cp == nil {
		v := m.requests.WithLabelValues(outcome, statusClasses[c])
		cp = &v
		om.requests[c].Store(cp)
	}
	(*cp).Inc()
	op := om.duration.Load()
	if op == nil {
		v := m.duration.WithLabelValues(outcome)
		op = &v
		om.duration.Store(op)
	}
	(*op).Observe(seconds)
}

func outcomeIndex(o string) int {
	for i, x := range outcomes {
		if x == o {
			return i
		}
	}
	return -1
}

func statusIndex(s int) int {
	if s < 100 || s > 599 {
		return 0
	}
	return s / 100
}

func statusClass(s int) string { return statusClasses[statusIndex(s)] }

// connCollector reports rotor_proxy_upstream_connections_total from two
// counters: upstream round trips and upstream dials. A round trip that did
// not dial reused a pooled connection. This replaces a per-request
// httptrace.ClientTrace (and the request copy WithContext makes) that cost
// more than the rest of the metrics together. It can differ from the old
// per-request view in one rare case: a dial the transport started for a
// request that then got a connection freed meanwhile (the dialed one goes
// to the pool and serves a later request).
type connCollector struct {
	desc   *prometheus.Desc
	trips  atomic.Uint64
	dialed atomic.Uint64
	// mu guards last: reused is reported as the largest value seen, so the
	// counter never goes down while a dial's round trip is in flight.
	mu   sync.Mutex
	last uint64
}

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	d, t := c.dialed.Load(), c.trips.Load()
	// A dial is counted before its round trip ends, so t >= d except for
	// dials whose round trips are still in flight.
	c.mu.Lock()
	if t > d {
		c.last = max(c.last, t-d)
	}
	reused := c.last
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(reused), "true")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(d), "false")
}
