package redistest

import (
	"os/exec"
	"syscall"
)

// setParentDeath has the kernel kill redis-server when the test binary
// dies without running its cleanups (a panic, or go test's timeout), so no
// server outlives the run.
func setParentDeath(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
