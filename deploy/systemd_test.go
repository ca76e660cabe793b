package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis-sbc/portcullis/internal/testpeer"
)

const unitFile = "systemd/portcullis.service"

// unitDirs are where Debian and others keep the system's unit files (sysinit.target, ...).
var unitDirs = []string{"/usr/lib/systemd/system", "/lib/systemd/system"}

// verifyRoot makes a root directory for `systemd-analyze --root`: the system's units, our unit in
// etc/systemd/system, and an executable at the unit's ExecStart path. verify checks that the
// command exists and is executable; what it runs is not under test here.
func verifyRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	var sys string
	for _, d := range unitDirs {
		if _, err := os.Stat(filepath.Join(d, "sysinit.target")); err == nil {
			sys = d
			break
		}
	}
	if sys == "" {
		t.Skip("!!! no system unit directory with sysinit.target: systemd-analyze verify NOT run !!!")
	}
	copyRegular(t, sys, filepath.Join(root, "usr/lib/systemd/system"))
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(root, "etc/systemd/system/portcullis.service"), unit, 0o644)
	mustWrite(t, filepath.Join(root, "usr/local/bin/portcullis"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	return root
}

// copyRegular copies the regular files of dir (not its subdirectories, nor symlinks, which may
// point outside it) to dst.
func copyRegular(t *testing.T, dir, dst string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		mustWrite(t, filepath.Join(dst, e.Name()), b, 0o644)
	}
}

func mustWrite(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the unit. verify exits 0 on unknown
// keys and bad values (it ignores them with a message), so any output at all fails the test.
// It also reports the exposure score of `systemd-analyze security` and keeps it at 2.0 or below.
func TestSystemdUnitVerifies(t *testing.T) {
	bin := testpeer.Require(t, "systemd-analyze")
	root := verifyRoot(t)
	out, err := exec.Command(bin, "verify", "--root="+root, "portcullis.service").CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
	out, err = exec.Command(bin, "security", "--offline=true", "--root="+root, "portcullis.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for portcullis.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f (0 = fully locked down, 10 = unprotected)", score)
	if score > 2.0 {
		t.Errorf("exposure %.1f is above 2.0: a hardening setting was lost\n%s", score, out)
	}
}

// unitKeys returns the [Service] settings of the unit, every value of repeated keys in order,
// comments excluded.
func unitKeys(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		case section == "Service":
			k, v, _ := strings.Cut(line, "=")
			keys[k] = append(keys[k], v)
		}
	}
	return keys
}

// TestSystemdUnitHardening pins the settings the deployment guide promises, so that an edit that
// drops one fails here even where systemd-analyze is not installed.
func TestSystemdUnitHardening(t *testing.T) {
	keys := unitKeys(t)
	for _, c := range []struct{ key, want string }{
		{"User", "portcullis"},
		{"Group", "portcullis"},
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"ReadWritePaths", "/var/lib/portcullis"},
		{"StateDirectory", "portcullis"},
		{"Restart", "on-failure"},
		{"KillSignal", "SIGTERM"},
		{"CapabilityBoundingSet", ""},
		{"AmbientCapabilities", ""},
		{"PrivateTmp", "yes"},
		{"ProtectHome", "yes"},
	} {
		t.Run(c.key, func(t *testing.T) {
			got, ok := keys[c.key]
			if !ok || got[len(got)-1] != c.want {
				t.Fatalf("%s=%v, want %q", c.key, got, c.want)
			}
		})
	}
	if v := keys["ExecStart"]; len(v) != 1 || !strings.Contains(v[0], "serve --config /etc/portcullis/portcullis.yaml") {
		t.Errorf("ExecStart=%v", v)
	}
	// Every port Portcullis uses by default is above 1024: no capability is granted.
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		for _, v := range keys[k] {
			if v != "" {
				t.Errorf("%s=%s: the unit must run with no capabilities (CAP_NET_BIND_SERVICE only for ports < 1024, commented out)", k, v)
			}
		}
	}
	// The drain (node.drain_timeout, default 30s) must finish before systemd kills the process.
	if v := keys["TimeoutStopSec"]; len(v) != 1 || v[0] != "60s" {
		t.Errorf("TimeoutStopSec=%v, want 60s (above the default 30s drain)", v)
	}
}
