//go:build !linux

package redistest

import "os/exec"

// setParentDeath does nothing where the kernel offers no parent-death
// signal; t.Cleanup still kills every server.
func setParentDeath(*exec.Cmd) {}
