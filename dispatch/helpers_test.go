package dispatch_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testutilCounter finds rotor_dispatch_attempts_total{outcome=...}.
func testutilCounter(t *testing.T, h *harness, outcome string) prometheus.Collector {
	t.Helper()
	mfs, err := h.ve.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rotor_dispatch_attempts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return constCounter(m)
				}
			}
		}
	}
	t.Fatalf("no attempts metric for %s", outcome)
	return nil
}

func constCounter(m *dto.Metric) prometheus.Collector {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c", Help: "c"})
	c.Add(m.GetCounter().GetValue())
	return c
}
