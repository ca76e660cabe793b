// Package testpeer finds the external programs that interop tests drive (sipp, baresip, sipsak,
// svmap/svwar/svcrack, chromium, docker). Absent on a developer machine: the test is skipped
// with a loud message. In CI (PORTCULLIS_CI=1, set by .ci/run) an absent peer fails the test,
// because there the peers must run.
package testpeer

import (
	"os"
	"os/exec"
	"testing"
)

// Require returns the path of program, or skips (fails in CI) when it is not installed.
func Require(t testing.TB, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err == nil {
		return p
	}
	msg := "!!! INTEROP PEER MISSING: " + program + " is not installed (apt-get install it; .ci/run does) — test NOT run !!!"
	if os.Getenv("PORTCULLIS_CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
