package plugins_test

import (
	"bytes"
	"os"
	"strconv"
)

func itoa(n int) string { return strconv.Itoa(n) }

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

func launchPath() string { return os.Args[0] }
