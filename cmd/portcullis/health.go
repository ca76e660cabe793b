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
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// health runs `portcullis health [--config FILE] [--timeout 3s]`: it loads the configuration the
// way serve does (file, then PORTCULLIS_* environment), sends a SIP OPTIONS over UDP to the
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
	cfg, err := config.Load(*path, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "unhealthy: config: %v\n", err)
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
		fmt.Fprintf(stderr, "unhealthy: SIP OPTIONS to %s: %v\n", target, err)
		return 1
	}
	if code < 200 || code > 299 {
		fmt.Fprintf(stderr, "unhealthy: SIP OPTIONS to %s answered %d\n", target, code)
		return 1
	}
	fmt.Fprintf(stdout, "healthy: SIP OPTIONS to %s answered %d\n", target, code)
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
