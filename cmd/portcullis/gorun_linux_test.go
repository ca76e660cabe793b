package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
)

// TestServeUnderGoRun runs the README's `go run ./cmd/portcullis serve` and stops it the two ways
// an operator does. `go run` ignores SIGINT itself and passes no signal on (cmd/go: base.RunStdin
// and StartSigHandlers), so:
//   - Ctrl-C in a terminal signals the whole process group: the server gets SIGINT and stops;
//   - SIGTERM (or a kill) to the go command alone ends it and would leave the server running,
//     orphaned: serve notices it was started by `go run` and asks the kernel for SIGTERM when
//     its parent dies, so it drains and exits.
func TestServeUnderGoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary with go run")
	}
	for _, tc := range []struct {
		name   string
		signal func(pid int) error
		want   string
	}{
		{"Ctrl-C to the process group", func(pid int) error { return syscall.Kill(-pid, syscall.SIGINT) }, "SIGINT: stopping now"},
		{"SIGTERM to go run alone", func(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }, "SIGTERM: draining"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testpeer.FreeUDPPort(t)
			cmd := exec.Command("go", "run", ".", "serve")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			data := t.TempDir()
			cmd.Env = append(os.Environ(),
				fmt.Sprintf("PORTCULLIS_SIP_LISTEN=udp://127.0.0.1:%d", port),
				fmt.Sprintf("PORTCULLIS_ADMIN_LISTEN=127.0.0.1:%d", testpeer.FreeTCPPort(t)),
				fmt.Sprintf("PORTCULLIS_CLUSTER_BIND=127.0.0.1:%d", testpeer.FreeTCPPort(t)),
				"PORTCULLIS_MEDIA_PORTS=32000-32099", "PORTCULLIS_TURN_LISTEN=", "PORTCULLIS_MEDIA_BIND=127.0.0.1",
				"PORTCULLIS_NODE_DATA_DIR="+data)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pgid := cmd.Process.Pid
			t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL); cmd.Wait() })
			lines := make(chan string, 1000)
			go func() { // ends when every holder of the pipe (go run and the server) has exited
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			var logs strings.Builder
			wait := func(what string, limit time.Duration, done func(line string, open bool) bool) {
				t.Helper()
				timeout := time.After(limit)
				for {
					select {
					case line, open := <-lines:
						logs.WriteString(line + "\n")
						if done(line, open) {
							return
						}
						if !open {
							t.Fatalf("output ended before %s:\n%s", what, logs.String())
						}
					case <-timeout:
						t.Fatalf("no %s:\n%s", what, logs.String())
					}
				}
			}
			// go run compiles first: a cold build on 2 loaded cores takes what it takes, up to the
			// test's own deadline.
			startLimit := 10 * time.Minute
			if dl, ok := t.Deadline(); ok {
				startLimit = time.Until(dl) - 90*time.Second
			}
			wait("banner", startLimit, func(line string, _ bool) bool { return strings.Contains(line, "SIP      udp://") })
			if err := tc.signal(pgid); err != nil {
				t.Fatal(err)
			}
			sawStop := false
			wait("exit of the server", 60*time.Second, func(line string, open bool) bool {
				sawStop = sawStop || strings.Contains(line, tc.want)
				return !open
			})
			if !sawStop || !strings.Contains(logs.String(), "stopped") {
				t.Fatalf("the server did not log %q and stopped:\n%s", tc.want, logs.String())
			}
		})
	}
}
