package apptest

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the child when this process dies (a
// benchmark or test interrupted), so that no peer outlives it and skews
// the next run.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
