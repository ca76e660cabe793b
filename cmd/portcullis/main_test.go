package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/testpeer"
)

// buildBinary builds the portcullis binary once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "portcullis")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestServeAnswersSipsak runs `portcullis serve` with built-in defaults (ports moved to free ones
// through the environment), checks that sipsak gets 200 to OPTIONS, then that SIGTERM drains and
// exits 0.
func TestServeAnswersSipsak(t *testing.T) {
	sipsak := testpeer.Require(t, "sipsak")
	bin := buildBinary(t)
	port := testpeer.FreeUDPPort(t)
	cmd := exec.Command(bin, "serve")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("PORTCULLIS_SIP_LISTEN=udp://127.0.0.1:%d,tcp://127.0.0.1:%d", port, port),
		fmt.Sprintf("PORTCULLIS_ADMIN_LISTEN=127.0.0.1:%d", testpeer.FreeTCPPort(t)),
		fmt.Sprintf("PORTCULLIS_CLUSTER_BIND=127.0.0.1:%d", testpeer.FreeTCPPort(t)),
		fmt.Sprintf("PORTCULLIS_MEDIA_PORTS=%d-%d", 31000, 31999),
		"PORTCULLIS_TURN_LISTEN=", "PORTCULLIS_MEDIA_BIND=127.0.0.1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "SIP      udp://") {
				ready <- sc.Text()
			}
		}
		close(ready)
	}()
	select {
	case line, ok := <-ready:
		if !ok {
			t.Fatalf("serve exited before listening:\n%s", logs.String())
		}
		t.Logf("banner: %s", line)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start within 60s")
	}
	out, err := exec.Command(sipsak, "-vv", "-s", fmt.Sprintf("sip:127.0.0.1:%d", port)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "200 OK") {
		t.Fatalf("sipsak: %v\n%s", err, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
}

func TestBadConfigNamesLineAndField(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("sip:\n  domain: x.example\n  listen: [udp://127.0.0.1:5060]\n  colour: blue\n"), 0o600)
	var out, errb strings.Builder
	if code := run([]string{"check", "--config", p}, &out, &errb); code == 0 {
		t.Fatal("check accepted a bad file")
	}
	if !strings.Contains(errb.String(), "bad.yaml:4: colour") {
		t.Fatalf("error does not name line and field: %q", errb.String())
	}
	out.Reset()
	if code := run([]string{"check", "--config", "../../deploy/portcullis.yaml"}, &out, &errb); code != 0 {
		t.Fatalf("example config rejected: %s", errb.String())
	}
}
