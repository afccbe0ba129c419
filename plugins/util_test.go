package plugins_test

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
)

func itoa(n int) string { return strconv.Itoa(n) }

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

func launchPath() string { return os.Args[0] }

func cmdWithEnv(path string, env ...string) *exec.Cmd {
	cmd := exec.Command(path)
	cmd.Env = env
	return cmd
}
