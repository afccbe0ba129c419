package web

import (
	"context"
	"errors"
	"html/template"
	"sort"
	"strconv"
	"strings"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

const (
	// chartHours is the overview chart's window, one bar per hour.
	chartHours = 24
	// Bounds of what one overview reads: the newest jobs of each of the
	// first queues, and counts up to a cap ("1000+").
	overviewQueues   = 50
	overviewJobs     = 500
	overviewCountCap = 1000
	// verifyBudget bounds the audit verification the overview runs; a long
	// trail says "not checked here" rather than hold the page.
	verifyBudget = 2 * time.Second
)

type queueStats struct {
	Name                     string
	Backlog, Dead            string
	Delivered, Failed        int
	LastDelivered            time.Time
	BacklogMore, DeadMore    bool
	backlogCount, deadCount  int
	hasDelivered, hasAttempt bool
}

type outcome struct {
	Name  string
	Count int64
}

type overviewData struct {
	Queues            []queueStats
	Delivered, Failed int
	Backlog, Dead     string
	Chart             template.HTML
	// Proxy is this node's proxy requests by outcome since it started
	// (operators only: the counters are not per workspace).
	Proxy      []outcome
	ProxyShown bool
	Verify     *vault.AuditVerification
	VerifyNote string
	Since      time.Time
}

// count counts a queue's jobs in a status, up to overviewCountCap.
func (d *Dashboard) count(q *req, queue, status string) (int, bool, error) {
	page, err := d.queues.ListJobs(q.r.Context(), q.actor, storage.JobQuery{Queue: queue, Status: status, Limit: overviewCountCap})
	return len(page.Jobs), page.Next != "", err
}

func capped(n int, more bool) string {
	if more {
		return strconv.Itoa(n) + "+"
	}
	return strconv.Itoa(n)
}

func (d *Dashboard) overviewPage(q *req) {
	ctx := q.r.Context()
	now := d.now().UTC()
	start := now.Truncate(time.Hour).Add(-(chartHours - 1) * time.Hour)
	data := overviewData{Since: start}
	ok, fail := make([]int, chartHours), make([]int, chartHours)
	var errs []error
	if d.queues != nil {
		qs, err := d.queues.ListQueues(ctx, q.actor)
		errs = append(errs, err)
		if len(qs) > overviewQueues {
			qs = qs[:overviewQueues]
		}
		var backlog, dead int
		var backlogMore, deadMore bool
		for _, qu := range qs {
			st := queueStats{Name: qu.Name}
			n, more, err := d.count(q, qu.Name, storage.JobQueued)
			errs = append(errs, err)
			l, lmore, err := d.count(q, qu.Name, storage.JobLeased)
			errs = append(errs, err)
			st.backlogCount, st.BacklogMore = n+l, more || lmore
			st.deadCount, st.DeadMore, err = d.count(q, qu.Name, storage.JobDead)
			errs = append(errs, err)
			st.Backlog, st.Dead = capped(st.backlogCount, st.BacklogMore), capped(st.deadCount, st.DeadMore)
			backlog, dead = backlog+st.backlogCount, dead+st.deadCount
			backlogMore, deadMore = backlogMore || st.BacklogMore, deadMore || st.DeadMore
			page, err := d.queues.ListJobs(ctx, q.actor, storage.JobQuery{Queue: qu.Name, Limit: overviewJobs})
			errs = append(errs, err)
			for _, j := range page.Jobs {
				for _, a := range j.Attempts {
					if a.StartedAt.Before(start) || a.StartedAt.After(now) {
						continue
					}
					i := int(a.StartedAt.Sub(start) / time.Hour)
					if a.ErrorCode == "" && a.StatusCode >= 200 && a.StatusCode < 300 {
						ok[i]++
						st.Delivered++
					} else {
						fail[i]++
						st.Failed++
					}
				}
				if j.DeliveredAt.After(st.LastDelivered) {
					st.LastDelivered = j.DeliveredAt
				}
			}
			data.Delivered, data.Failed = data.Delivered+st.Delivered, data.Failed+st.Failed
			data.Queues = append(data.Queues, st)
		}
		data.Backlog, data.Dead = capped(backlog, backlogMore), capped(dead, deadMore)
	}
	data.Chart = chartSVG(start, ok, fail)
	if d.metrics != nil && q.actor.Can(vault.RoleOperator) {
		data.ProxyShown = true
		data.Proxy = d.proxyOutcomes()
	}
	vctx, cancel := context.WithTimeout(ctx, verifyBudget)
	defer cancel()
	if v, err := d.vault.VerifyAudit(vctx, q.actor); err == nil || errors.Is(err, vault.ErrAuditTampered) {
		data.Verify = &v
	} else if errors.Is(err, context.DeadlineExceeded) {
		data.VerifyNote = "not checked here: the trail takes longer than " + verifyBudget.String() + " to verify; run rotor audit verify"
	} else {
		data.VerifyNote = "could not be checked: " + err.Error()
	}
	if err := errors.Join(errs...); err != nil {
		d.fail(q, "overview", data, err)
		return
	}
	d.render(q.w, q.r, "overview", q, data, nil)
}

// proxyOutcomes sums rotor_proxy_requests_total by outcome.
func (d *Dashboard) proxyOutcomes() []outcome {
	mfs, err := d.metrics.Gather()
	if err != nil {
		d.log.Warn("dashboard metrics", "err", err)
	}
	sums := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "rotor_proxy_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					sums[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	out := make([]outcome, 0, len(sums))
	for k, v := range sums {
		out = append(out, outcome{Name: k, Count: int64(v)})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Count > out[j].Count || out[i].Count == out[j].Count && out[i].Name < out[j].Name
	})
	return out
}

// chartSVG draws delivered (green) and failed (red) attempts per hour as
// stacked bars: inline SVG, no script, nothing fetched. The bars stretch
// to the page's width (preserveAspectRatio none); the scale and hour
// labels are HTML beside it, so their text keeps its size at any width.
func chartSVG(start time.Time, ok, fail []int) template.HTML {
	const w, h = 240, 100
	peak := 1
	for i := range ok {
		peak = max(peak, ok[i]+fail[i])
	}
	scale := niceCeil(peak)
	bw := float64(w) / float64(len(ok))
	var b strings.Builder
	b.WriteString(`<div class="chartbox"><div class="yaxis"><span>` + itoa(scale) + `</span><span>` + ftoa(float64(scale)/2) + `</span><span>0</span></div><div class="plot">`)
	b.WriteString(`<svg class="chart" viewBox="0 0 ` + itoa(w) + ` ` + itoa(h) + `" preserveAspectRatio="none" role="img" aria-label="Deliveries and failures per hour, last 24 hours" xmlns="http://www.w3.org/2000/svg">`)
	for _, y := range []int{0, h / 2, h} {
		b.WriteString(`<line x1="0" x2="` + itoa(w) + `" y1="` + itoa(y) + `" y2="` + itoa(y) + `" stroke="#e3e6eb" vector-effect="non-scaling-stroke"/>`)
	}
	for i := range ok {
		x := float64(i)*bw + bw*0.15
		hOK := float64(h) * float64(ok[i]) / float64(scale)
		hFail := float64(h) * float64(fail[i]) / float64(scale)
		hour := start.Add(time.Duration(i) * time.Hour)
		title := hour.Format("15:04") + " UTC: " + itoa(ok[i]) + " delivered, " + itoa(fail[i]) + " failed"
		b.WriteString(`<g><title>` + template.HTMLEscapeString(title) + `</title>`)
		// A transparent full-height bar makes the whole hour hoverable.
		b.WriteString(`<rect x="` + ftoa(float64(i)*bw) + `" y="0" width="` + ftoa(bw) + `" height="` + itoa(h) + `" fill="transparent"/>`)
		if ok[i] > 0 {
			b.WriteString(`<rect class="ok" x="` + ftoa(x) + `" y="` + ftoa(h-hOK) + `" width="` + ftoa(bw*0.7) + `" height="` + ftoa(hOK) + `" fill="#2f9e5b"/>`)
		}
		if fail[i] > 0 {
			b.WriteString(`<rect class="fail" x="` + ftoa(x) + `" y="` + ftoa(h-hOK-hFail) + `" width="` + ftoa(bw*0.7) + `" height="` + ftoa(hFail) + `" fill="#d64545"/>`)
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg><div class="xaxis">`)
	for i := 0; i < len(ok); i += 6 {
		b.WriteString(`<span>` + start.Add(time.Duration(i)*time.Hour).Format("15:04") + `</span>`)
	}
	b.WriteString(`<span>now</span></div></div></div>`)
	return template.HTML(b.String()) //nolint:gosec // built above from numbers and escaped text only
}

// niceCeil is the chart's scale: the first of 1, 2, 5, 10, 20, 50... at
// or above n.
func niceCeil(n int) int {
	for p := 1; ; p *= 10 {
		for _, s := range []int{1, 2, 5} {
			if s*p >= n {
				return s * p
			}
		}
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
