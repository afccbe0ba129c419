package api

import (
	"net/http"
	"net/url"
	"strconv"
)

// Cursor-paginated lists (jobs, workflow runs) share their limit and their
// page shape.

const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// pageLimit reads a list's limit parameter: defaultPageLimit when absent,
// else a whole number from 1 to maxPageLimit.
func pageLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return defaultPageLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPageLimit {
		return 0, badRequest(CodeInvalidQuery, "limit must be a whole number from 1 to "+strconv.Itoa(maxPageLimit))
	}
	return n, nil
}

// writePage writes one page: the items under key, each through toJSON, and
// next_cursor (null on the last page).
func writePage[T, J any](w http.ResponseWriter, key string, items []T, next string, toJSON func(T) J) {
	out := make([]J, 0, len(items))
	for _, it := range items {
		out = append(out, toJSON(it))
	}
	var cursor *string
	if next != "" {
		cursor = &next
	}
	writeJSON(w, http.StatusOK, map[string]any{key: out, "next_cursor": cursor})
}
