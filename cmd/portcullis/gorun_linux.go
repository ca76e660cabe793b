package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// stopWithGoRun makes a node started by `go run` stop when the go command does. `go run`
// ignores SIGINT and SIGQUIT itself and passes no signal on to the program it runs (cmd/go:
// base.RunStdin, StartSigHandlers): Ctrl-C in a terminal still reaches the node, because the
// terminal signals the whole process group, but a SIGTERM or a kill sent to the go command alone
// (an IDE's stop button, a supervisor, `kill PID`) ends it and leaves the node running, orphaned.
// So under `go run` the node asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG)
// and then drains as usual. A SIGINT sent to the go command alone is ignored by it and cannot
// reach the node: signal the process group (kill -INT -PGID) or run the built binary.
func stopWithGoRun(log *slog.Logger) {
	ppid := os.Getppid()
	if !parentIsGoRun(ppid) {
		return
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0); err != nil {
		log.Warn("started by go run: cannot ask to stop with it", "error", err)
		return
	}
	if os.Getppid() != ppid { // the go command died before the request took effect
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}
	log.Info("started by `go run`: stops (drains) when the go command ends; SIGINT to the go command alone " +
		"does not reach the node (Ctrl-C in the terminal does)")
}

// parentIsGoRun reports whether process ppid is `go run`.
func parentIsGoRun(ppid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ppid))
	if err != nil || filepath.Base(exe) != "go" {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppid))
	if err != nil {
		return false
	}
	args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
	return len(args) > 1 && string(args[1]) == "run"
}
