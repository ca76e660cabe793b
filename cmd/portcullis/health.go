package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// health runs `portcullis health [--config FILE] [--timeout 3s]`: it loads the configuration the
// way serve does (file, then PORTCULLIS_* environment); without --config it takes the file and
// the environment of the `portcullis serve` running on this host (so a container's HEALTHCHECK
// follows a mounted --config), and the built-in defaults only when there is none. It sends a SIP OPTIONS over UDP to the
// node's first UDP listener on this host (0.0.0.0 is asked on 127.0.0.1) and exits 0 on a 2xx
// answer, 1 otherwise with one line on stderr. The node answers SIP only once it has joined its
// cluster and a leader is known, so this is also a readiness check.
//
// When the admin API serves /healthz, add a GET of http(s)://<admin.listen>/healthz here
// (https when admin.tls is set; loopback, so the certificate need not be verified).
func health(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file (default: built-in defaults)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfgPath, environ, from := *path, os.Environ(), ""
	if cfgPath == "" {
		if p, env, pid, ok := servingNode(); ok {
			cfgPath, environ = p, env
			from = fmt.Sprintf(" (node pid %d", pid)
			if p != "" {
				from += ", --config " + p
			}
			from += ")"
		}
	}
	cfg, err := config.Load(cfgPath, environ)
	if err != nil {
		fmt.Fprintf(stderr, "unhealthy: config%s: %v\n", from, err)
		return 1
	}
	var target netip.AddrPort
	for _, l := range cfg.SIP.Listen {
		if l.Transport == "udp" {
			target = l.Addr
			break
		}
	}
	if !target.IsValid() {
		fmt.Fprintln(stderr, "unhealthy: no udp:// SIP listener configured to probe")
		return 1
	}
	if target.Addr().IsUnspecified() {
		lo := netip.MustParseAddr("127.0.0.1")
		if target.Addr().Is6() && !target.Addr().Is4In6() {
			lo = netip.IPv6Loopback()
		}
		target = netip.AddrPortFrom(lo, target.Port())
	}
	code, err := sipOptions(target, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "unhealthy: SIP OPTIONS to %s%s: %v\n", target, from, err)
		return 1
	}
	if code < 200 || code > 299 {
		fmt.Fprintf(stderr, "unhealthy: SIP OPTIONS to %s%s answered %d\n", target, from, code)
		return 1
	}
	fmt.Fprintf(stdout, "healthy: SIP OPTIONS to %s%s answered %d\n", target, from, code)
	return 0
}

// sipOptions sends one OPTIONS (retransmitted every 500ms) and returns the final status code.
func sipOptions(target netip.AddrPort, timeout time.Duration) (int, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	local := c.LocalAddr().(*net.UDPAddr)
	rnd := make([]byte, 12)
	rand.Read(rnd)
	id := hex.EncodeToString(rnd)
	branch := "z9hG4bK" + id[:16]
	host := net.JoinHostPort(local.IP.String(), strconv.Itoa(local.Port))
	req := "OPTIONS sip:" + target.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + host + ";branch=" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:health@" + host + ">;tag=" + id[16:] + "\r\n" +
		"To: <sip:" + target.String() + ">\r\n" +
		"Call-ID: " + id + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"User-Agent: portcullis-health\r\n" +
		"Content-Length: 0\r\n\r\n"
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65535)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte(req)); err != nil {
			return 0, err
		}
		rd := time.Now().Add(500 * time.Millisecond)
		if rd.After(deadline) {
			rd = deadline
		}
		c.SetReadDeadline(rd)
		for {
			n, err := c.Read(buf)
			if err != nil {
				break // retransmit, or give up at the deadline
			}
			msg := string(buf[:n])
			if !strings.HasPrefix(msg, "SIP/2.0 ") || !strings.Contains(msg, branch) {
				continue
			}
			code, _ := strconv.Atoi(strings.Fields(msg)[1])
			if code >= 200 {
				return code, nil
			}
		}
	}
	return 0, fmt.Errorf("no answer within %s", timeout)
}

// servingNode finds the `portcullis serve` process on this host through /proc: one running this
// very binary first (as in a container, or under systemd), else any portcullis serve; the lowest
// PID of those (PID 1 in a container). It returns its --config (absolute: relative to its working
// directory) and its environment. ok is false when there is none or it cannot be read (another
// user's process, no /proc).
func servingNode() (path string, environ []string, pid int, ok bool) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, 0, false
	}
	self, _ = filepath.EvalSymlinks(self)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return "", nil, 0, false
	}
	pids := []int{}
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n != os.Getpid() {
			pids = append(pids, n)
		}
	}
	slices.Sort(pids)
	for _, sameBinary := range []bool{true, false} {
		if path, environ, pid, ok = findServe(pids, self, sameBinary); ok {
			return path, environ, pid, ok
		}
	}
	return "", nil, 0, false
}

func findServe(pids []int, self string, sameBinary bool) (path string, environ []string, pid int, ok bool) {
	for _, p := range pids {
		dir := "/proc/" + strconv.Itoa(p)
		raw, err := os.ReadFile(dir + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 2 || args[1] != "serve" {
			continue
		}
		exe, err := os.Readlink(dir + "/exe")
		if err != nil || sameBinary && exe != self ||
			!sameBinary && filepath.Base(exe) != filepath.Base(self) && filepath.Base(args[0]) != "portcullis" {
			continue
		}
		env, err := os.ReadFile(dir + "/environ")
		if err != nil {
			continue // not ours to read
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv != "" {
				environ = append(environ, kv)
			}
		}
		path = serveConfigFlag(args[2:])
		if path != "" && !filepath.IsAbs(path) {
			cwd, err := os.Readlink(dir + "/cwd")
			if err != nil {
				continue
			}
			path = filepath.Join(cwd, path)
		}
		return path, environ, p, true
	}
	return "", nil, 0, false
}

// serveConfigFlag returns the value of --config (-config, --config=F) in serve's arguments.
func serveConfigFlag(args []string) string {
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasVal {
			return val
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
