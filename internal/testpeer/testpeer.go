// Package testpeer finds the external programs that interop tests drive (sipp, baresip, sipsak,
// svmap/svwar/svcrack, chromium, docker). Absent on a developer machine: the test is skipped
// with a loud message. In CI (PORTCULLIS_CI=1, set by .ci/run) an absent peer fails the test,
// because there the peers must run. It also hands out free loopback ports.
package testpeer

import (
	"net"
	"os"
	"os/exec"
	"strconv"
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

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// FreeTCPPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreePort returns a port on 127.0.0.1 that was free a moment ago for both UDP and TCP (for
// peers such as baresip that listen on both with one setting).
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		c.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}
