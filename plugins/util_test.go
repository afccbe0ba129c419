package plugins_test

import (
	"bytes"
	"strconv"
)

func itoa(n int) string { return strconv.Itoa(n) }

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
