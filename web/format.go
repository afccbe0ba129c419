package web

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// roundDuration shows a duration the way people read it: 3 significant
// digits at most (842ms, 1.24s, 2m05s), never 1.234567891s.
func roundDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0ms"
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < time.Second:
		return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10) + "ms"
	case d < 10*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		d = d.Round(time.Second)
		if d%time.Minute == 0 {
			return strconv.Itoa(int(d/time.Minute)) + "m"
		}
		return strconv.Itoa(int(d/time.Minute)) + "m" + pad2(int(d%time.Minute/time.Second)) + "s"
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		if d%time.Hour == 0 {
			return strconv.Itoa(int(d/time.Hour)) + "h"
		}
		return strconv.Itoa(int(d/time.Hour)) + "h" + pad2(int(d%time.Hour/time.Minute)) + "m"
	}
	return strconv.Itoa(int(d.Round(time.Hour)/(24*time.Hour))) + "d"
}

func pad2(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// when is a timestamp in UTC to the second ("" for the zero time).
func (d *Dashboard) when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// ago is how long before now t was ("in 5m" for the future).
func (d *Dashboard) ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	dt := d.now().Sub(t)
	switch {
	case dt < 0:
		return "in " + roundCoarse(-dt)
	case dt < 5*time.Second:
		return "just now"
	}
	return roundCoarse(dt) + " ago"
}

// roundCoarse is a duration for "ago" texts: one unit.
func roundCoarse(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

// prettyJSON indents a JSON document for reading (as is if it is not JSON).
func prettyJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}
