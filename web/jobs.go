package web

import (
	"encoding/json"
	"errors"
	"net/url"
	"sort"
	"strings"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
)

// errNoQueues: this node serves no queues (built without a dispatch service).
var errNoQueues = errors.New("queues are not served by this node")

type queueForm struct{ Name, URL, Headers string }

func (d *Dashboard) queuesPage(q *req) { d.showQueues(q, queueForm{}, nil) }

func (d *Dashboard) showQueues(q *req, form queueForm, err error) {
	var qs []storage.Queue
	if d.queues != nil {
		var lerr error
		if qs, lerr = d.queues.ListQueues(q.r.Context(), q.actor); err == nil {
			err = lerr
		}
	}
	data := map[string]any{"Queues": qs, "Form": form}
	if err != nil {
		d.fail(q, "queues", data, err)
		return
	}
	d.render(q.w, q.r, "queues", q, data, nil)
}

// parseHeaders reads "Name: value" lines (the one header syntax of the
// CLI and the dashboard).
func parseHeaders(s string) (map[string]string, error) {
	headers := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, errors.New("headers: write one Name: value per line")
		}
		headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return headers, nil
}

func (d *Dashboard) saveQueue(q *req) {
	f := q.r.PostForm
	form := queueForm{Name: strings.TrimSpace(f.Get("name")), URL: strings.TrimSpace(f.Get("callback_url")), Headers: f.Get("headers")}
	headers, err := parseHeaders(form.Headers)
	if err != nil {
		d.showQueues(q, form, err)
		return
	}
	if d.queues == nil {
		d.showQueues(q, form, errNoQueues)
		return
	}
	spec := dispatch.QueueSpec{CallbackURL: &form.URL, CallbackHeaders: &headers}
	if _, _, err := d.queues.UpdateQueue(q.r.Context(), q.actor, form.Name, spec); err != nil {
		// Validation errors (a missing secret, a malformed reference) show
		// next to the form, which keeps what was typed.
		d.showQueues(q, form, err)
		return
	}
	q.back("/dashboard/queues", "Saved queue "+form.Name)
}

// testPayload is the default body of "Send a test event".
const testPayload = `{"type": "rotor.test", "message": "a test event sent from the Rotor dashboard"}`

type jobsData struct {
	Queue   string
	Status  string
	Jobs    []storage.Job
	Next    string
	Payload string
}

func jobsPath(queue string) string { return "/dashboard/queues/" + url.PathEscape(queue) + "/jobs" }

func (d *Dashboard) jobsPage(q *req) { d.showJobs(q, testPayload, nil) }

func (d *Dashboard) showJobs(q *req, payload string, err error) {
	v := q.r.URL.Query()
	data := jobsData{Queue: q.r.PathValue("name"), Status: v.Get("status"), Payload: payload}
	if d.queues == nil {
		d.fail(q, "jobs", data, errNoQueues)
		return
	}
	page, lerr := d.queues.ListJobs(q.r.Context(), q.actor, storage.JobQuery{Queue: data.Queue, Status: data.Status, Before: v.Get("before"), Limit: 50})
	data.Jobs, data.Next = page.Jobs, page.Next
	if err == nil {
		err = lerr
	}
	if err != nil {
		d.fail(q, "jobs", data, err)
		return
	}
	d.render(q.w, q.r, "jobs", q, data, nil)
}

func (d *Dashboard) retryDead(q *req) {
	name := q.r.PathValue("name")
	if d.queues == nil {
		d.showJobs(q, testPayload, errNoQueues)
		return
	}
	n, err := d.queues.RetryDead(q.r.Context(), q.actor, name)
	if err != nil {
		d.showJobs(q, testPayload, err)
		return
	}
	q.back(jobsPath(name), "Retried dead jobs: "+itoa(n))
}

// sendTest enqueues a test event to the queue and opens its job.
func (d *Dashboard) sendTest(q *req) {
	name := q.r.PathValue("name")
	payload := q.r.PostForm.Get("payload")
	if d.queues == nil {
		d.showJobs(q, payload, errNoQueues)
		return
	}
	j, _, err := d.queues.Enqueue(q.r.Context(), q.actor, name, dispatch.EnqueueRequest{Payload: json.RawMessage(payload)})
	if err != nil {
		d.showJobs(q, payload, err)
		return
	}
	q.back(jobPath(j.ID), "Sent a test event to "+name)
}

func jobPath(id string) string { return "/dashboard/jobs/" + url.PathEscape(id) }

type attemptView struct {
	storage.Attempt
	RequestHeaders  []kv
	ResponseHeaders []kv
}

type kv struct{ K, V string }

func sortedKV(m map[string]string) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].K < out[j].K })
	return out
}

type jobData struct {
	Job      storage.Job
	Attempts []attemptView
	// Retry: the job is dead or canceled (retry keeps the id).
	Retry bool
}

func (d *Dashboard) jobPage(q *req) { d.showJob(q, nil) }

func (d *Dashboard) showJob(q *req, err error) {
	if d.queues == nil {
		d.fail(q, "job", jobData{}, errNoQueues)
		return
	}
	j, gerr := d.queues.GetJob(q.r.Context(), q.actor, q.r.PathValue("id"))
	if gerr != nil {
		d.fail(q, "job", jobData{Job: storage.Job{ID: q.r.PathValue("id")}}, gerr)
		return
	}
	data := jobData{Job: j, Retry: j.Status == storage.JobDead || j.Status == storage.JobCanceled}
	// Newest attempt first: the one people came for.
	for i := len(j.Attempts) - 1; i >= 0; i-- {
		a := j.Attempts[i]
		data.Attempts = append(data.Attempts, attemptView{Attempt: a, RequestHeaders: sortedKV(a.RequestHeaders), ResponseHeaders: sortedKV(a.ResponseHeaders)})
	}
	if err != nil {
		d.fail(q, "job", data, err)
		return
	}
	d.render(q.w, q.r, "job", q, data, nil)
}

func (d *Dashboard) retryJob(q *req) {
	if d.queues == nil {
		d.showJob(q, errNoQueues)
		return
	}
	id := q.r.PathValue("id")
	if _, err := d.queues.RetryJob(q.r.Context(), q.actor, id); err != nil {
		d.showJob(q, err)
		return
	}
	q.back(jobPath(id), "Retried "+id)
}

// replayJob enqueues a copy of the job (same queue and payload, a new id),
// whatever its status: what "resend" does in webhook services.
func (d *Dashboard) replayJob(q *req) {
	if d.queues == nil {
		d.showJob(q, errNoQueues)
		return
	}
	j, err := d.queues.GetJob(q.r.Context(), q.actor, q.r.PathValue("id"))
	if err != nil {
		d.showJob(q, err)
		return
	}
	nj, _, err := d.queues.Enqueue(q.r.Context(), q.actor, j.Queue, dispatch.EnqueueRequest{Payload: j.Payload})
	if err != nil {
		d.showJob(q, err)
		return
	}
	q.back(jobPath(nj.ID), "Replayed "+j.ID+" as "+nj.ID)
}
