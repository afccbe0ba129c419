package storage

import (
	"slices"
	"sync"
)

// ReadyQueue is a queue with due jobs, as a lease call sees it.
type ReadyQueue struct {
	WorkspaceID string
	Name        string
	// Max is how many of its jobs the call may lease (LeaseCap).
	Max int
}

// LeaseCap is how many jobs of q one lease call may take: the queue's
// concurrency less its unexpired leases (on every node sharing the store),
// and at most slots[key] when the caller lists the queue. A rate-limited
// queue the caller does not list yet gets one: the caller learns the rate
// from that job and lists the queue from then on, so no job is leased that
// the caller's rate limiter would have to hold back.
func LeaseCap(q Queue, leased int, slots map[string]int) int {
	n := max(q.Concurrency, 1) - leased
	if s, ok := slots[QueueKey(q.WorkspaceID, q.Name)]; ok {
		n = min(n, s)
	} else if q.RatePerSecond > 0 {
		n = min(n, 1)
	}
	return max(n, 0)
}

// Fair shares lease calls among workspaces, then among each workspace's
// queues, by round robin: every turn gives one job to the next workspace
// with a ready queue, from its next ready queue. It remembers where the
// last call stopped, so a workspace's share does not depend on how many
// jobs or queues it has, nor on where its name sorts. Safe for concurrent
// use; each store (each node) keeps its own.
type Fair struct {
	mu     sync.Mutex
	lastWS string
	// lastQ is each ready workspace's last queue served; rebuilt from the
	// ready workspaces on every call, so it stays bounded.
	lastQ map[string]string
}

// Allocate returns how many jobs to lease from each of ready (parallel to
// it), limit in all, at most wsSlots[ws] per listed workspace.
func (f *Fair) Allocate(ready []ReadyQueue, limit int, wsSlots map[string]int) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	counts := make([]int, len(ready))
	type wsTurn struct {
		id     string
		queues []int // indexes into ready, in turn order
		next   int
		budget int
	}
	order := make([]int, 0, len(ready))
	for i, r := range ready {
		if r.Max > 0 {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := compareStr(ready[a].WorkspaceID, ready[b].WorkspaceID); c != 0 {
			return c
		}
		return compareStr(ready[a].Name, ready[b].Name)
	})
	var turns []*wsTurn
	for _, i := range order {
		ws := ready[i].WorkspaceID
		if len(turns) == 0 || turns[len(turns)-1].id != ws {
			b := limit
			if s, ok := wsSlots[ws]; ok {
				b = s
			}
			turns = append(turns, &wsTurn{id: ws, budget: b})
		}
		t := turns[len(turns)-1]
		t.queues = append(t.queues, i)
	}
	// Start after the last workspace served, and in each workspace after
	// its last queue served.
	start := 0
	for start < len(turns) && turns[start].id <= f.lastWS {
		start++
	}
	turns = append(turns[start:], turns[:start]...)
	lastQ := make(map[string]string, len(turns))
	for _, t := range turns {
		prev := f.lastQ[t.id]
		for t.next < len(t.queues) && ready[t.queues[t.next]].Name <= prev {
			t.next++
		}
		t.next %= len(t.queues)
		lastQ[t.id] = prev
	}
	total := 0
	for total < limit {
		served := false
		for _, t := range turns {
			if total == limit {
				break
			}
			if t.budget <= 0 || len(t.queues) == 0 {
				continue
			}
			i := t.queues[t.next]
			counts[i]++
			total++
			t.budget--
			served = true
			f.lastWS, lastQ[t.id] = t.id, ready[i].Name
			if counts[i] >= ready[i].Max {
				t.queues = slices.Delete(t.queues, t.next, t.next+1)
			} else {
				t.next++
			}
			if len(t.queues) > 0 {
				t.next %= len(t.queues)
			}
		}
		if !served {
			break
		}
	}
	f.lastQ = lastQ
	return counts
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
