//go:build !linux

package plugins

import "os/exec"

// setPdeathsig: elsewhere the plugin watches its parent (watchParent).
func setPdeathsig(*exec.Cmd) {}
