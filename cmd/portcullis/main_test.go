package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
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

// TestCheckAgreesWithServe: what `check` accepts, `serve` starts, and what check refuses, serve
// refuses with the same message: they run one validation. The first row is the issue's: media
// bound to 127.0.0.1 with no media.advertise and TURN on by default (serve used to fail with
// "turn: bad configuration: relay address required": advertise defaults to media.bind, for TURN
// as for SDP).
func TestCheckAgreesWithServe(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct {
		name, body string
		ok         bool
		want       string // in check's and serve's output
	}{
		{"media on loopback, TURN by default", "media:\n  bind: 127.0.0.1\n  ports: 33000-33099\n", true, ""},
		{"bad address", "media:\n  bind: not-an-ip\n", false, "media.bind"},
		{"short room password", "rooms:\n  - {name: r1, password: short}\n", false, "rooms[0].password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "portcullis.yaml")
			if err := os.WriteFile(cfg, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			env := append(os.Environ(),
				fmt.Sprintf("PORTCULLIS_SIP_LISTEN=udp://127.0.0.1:%d", testpeer.FreeUDPPort(t)),
				fmt.Sprintf("PORTCULLIS_ADMIN_LISTEN=127.0.0.1:%d", testpeer.FreeTCPPort(t)),
				fmt.Sprintf("PORTCULLIS_CLUSTER_BIND=127.0.0.1:%d", testpeer.FreeTCPPort(t)),
				fmt.Sprintf("PORTCULLIS_TURN_LISTEN=udp://127.0.0.1:%d", testpeer.FreeUDPPort(t)),
				"PORTCULLIS_NODE_DATA_DIR="+filepath.Join(dir, "data"))
			chk := exec.Command(bin, "check", "--config", cfg)
			chk.Env = env
			chkOut, chkErr := chk.CombinedOutput()
			if (chkErr == nil) != tc.ok || !strings.Contains(string(chkOut), tc.want) {
				t.Fatalf("check: %v\n%s", chkErr, chkOut)
			}
			srv := exec.Command(bin, "serve", "--config", cfg)
			srv.Env = env
			out, err := srv.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
			var logs strings.Builder
			started := false
			sc := bufio.NewScanner(out)
			for sc.Scan() { // until the banner, or until serve exits
				logs.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "SIP      udp://") {
					started = true
					break
				}
			}
			if started != tc.ok || !strings.Contains(logs.String(), tc.want) {
				t.Fatalf("check said ok=%v, serve started=%v:\n%s", tc.ok, started, logs.String())
			}
			if started && !strings.Contains(logs.String(), "TURN") {
				t.Fatalf("TURN is not in the banner:\n%s", logs.String())
			}
		})
	}
}

// TestCheckWarns: `check` prints warnings for example values and misspelt variables, and still
// exits 0.
func TestCheckWarns(t *testing.T) {
	p := filepath.Join(t.TempDir(), "portcullis.yaml")
	os.WriteFile(p, []byte("media:\n  advertise: 203.0.113.10\nrooms:\n  - {name: boardroom, password: change-me-boardroom}\n"), 0o600)
	t.Setenv("PORTCULLIS_SIP_DOMAN", "video.example.com")
	var out, errb strings.Builder
	if code := run([]string{"check", "--config", p}, &out, &errb); code != 0 {
		t.Fatalf("check: %d %s", code, errb.String())
	}
	for _, want := range []string{"portcullis.yaml:2: media.advertise: 203.0.113.10 is a documentation address",
		"portcullis.yaml:4: rooms[0].password: a placeholder password", "PORTCULLIS_SIP_DOMAN: not a setting (did you mean PORTCULLIS_SIP_DOMAIN?)"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, errb.String())
		}
	}
	if !strings.Contains(out.String(), "3 warning(s)") || strings.Contains(errb.String(), "change-me-boardroom") {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
}

// TestHealthFollowsServingConfig: `portcullis health` with no --config (the container's
// HEALTHCHECK) probes the port the running `serve --config FILE` listens on, not the default
// 5060, even when run from another directory with none of serve's environment.
func TestHealthFollowsServingConfig(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	port := testpeer.FreeUDPPort(t)
	cfg := fmt.Sprintf("node:\n  data_dir: data\nsip:\n  listen: [udp://0.0.0.0:%d]\nmedia:\n  bind: 127.0.0.1\n  ports: 33100-33199\n"+
		"turn:\n  listen: []\nadmin:\n  listen: 127.0.0.1:%d\ncluster:\n  bind: 127.0.0.1:%d\n",
		port, testpeer.FreeTCPPort(t), testpeer.FreeTCPPort(t))
	if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(bin, "serve", "--config", "node.yaml") // relative: to serve's directory
	srv.Dir = dir
	srv.Env = append(os.Environ(), "PORTCULLIS_LOG_LEVEL=warn")
	stderr, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	sc := bufio.NewScanner(stderr)
	var logs strings.Builder
	for sc.Scan() && !strings.Contains(sc.Text(), "SIP      udp://") {
		logs.WriteString(sc.Text() + "\n")
	}
	go io.Copy(io.Discard, stderr)
	h := exec.Command(bin, "health", "--timeout", "5s")
	h.Dir = t.TempDir()
	h.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := h.CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("127.0.0.1:%d", port)) || !strings.Contains(string(out), "answered 200") {
		t.Fatalf("health: %v\n%s\nserve:\n%s", err, out, logs.String())
	}
	t.Logf("%s", out)
}
