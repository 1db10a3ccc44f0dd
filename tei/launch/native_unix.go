//go:build unix

package launch

import "syscall"

// sysProcAttr puts TEI in a process group of its own, so a terminal's
// Ctrl-C reaches only the sidecar, which stops TEI in order, and Stop can
// end whatever TEI started.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup signals the process group led by pid: SIGTERM, or SIGKILL when
// force is set.
func killGroup(pid int, force bool) error {
	sig := syscall.SIGTERM
	if force {
		sig = syscall.SIGKILL
	}
	return syscall.Kill(-pid, sig)
}
