//go:build !unix

package launch

import (
	"errors"
	"os"
	"syscall"
)

// sysProcAttr has no process groups to set up off Unix.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// killGroup kills the process alone: there are no process groups off Unix.
func killGroup(pid int, _ bool) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}
