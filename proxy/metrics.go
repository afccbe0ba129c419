package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	failures    *prometheus.CounterVec
	rewritten   prometheus.Counter
	scrubbed    prometheus.Counter
	connections *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
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
		connections: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rotor_proxy_upstream_connections_total",
			Help: "Upstream connections used per request, by whether a pooled connection was reused.",
		}, []string{"reused"}),
	}
}
