package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster"
	"github.com/portcullis-sbc/portcullis/sbc/admin"
	"github.com/portcullis-sbc/portcullis/sbc/admin/client"
	"github.com/portcullis-sbc/portcullis/sbc/config"
)

const doctorUsage = `usage: portcullis doctor [--config FILE] [--api URL] [--token-file F] [--ca PEM]

Checks a running node as an operator would and prints one line per check (OK, WARN, FAIL) with
what to fix: the admin API and health, every SIP listener (dialled), the advertised SIP and media
addresses, rooms that never registered, the clocks (the node's against this host's, the members'
against the leader's), the cluster (leader, members), served certificates' expiry and renewal,
and the data dir's free space. With --config, the API URL and token come from the file (token
also from PORTCULLIS_TOKEN). Exit status: 0 no FAIL, 1 a FAIL, 2 bad usage.
`

// Thresholds of the checks.
const (
	skewWarn    = time.Second      // digest nonces, bans and call records tolerate this
	skewFail    = 10 * time.Second // certificates, nonces and Raft leases start to misbehave
	certFail    = 7 * 24 * time.Hour
	diskFailMiB = 100
	diskWarnMiB = 1024
)

// level of a check line.
type level int

const (
	lvOK level = iota
	lvWarn
	lvFail
)

func (l level) String() string { return [...]string{"OK  ", "WARN", "FAIL"}[l] }

type doctor struct {
	c     *ctl
	out   io.Writer
	fails int
	warns int
}

func (d *doctor) line(l level, area, msg, fix string) {
	fmt.Fprintf(d.out, "%s  %-13s %s\n", l, area, msg)
	if fix != "" && l != lvOK {
		fmt.Fprintf(d.out, "      %-13s fix: %s\n", "", fix)
	}
	switch l {
	case lvFail:
		d.fails++
	case lvWarn:
		d.warns++
	}
}

func runDoctor(args []string, stdout, stderr io.Writer) int {
	c := &ctl{stdout: stdout, stderr: stderr}
	fs := c.flags("doctor")
	cfgFile := fs.String("config", "", "the node's config file: API URL, token and listeners from it")
	fs.Usage = func() { fmt.Fprint(stderr, doctorUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	apiSet := false
	fs.Visit(func(f *flag.Flag) { apiSet = apiSet || f.Name == "api" })
	var cfg *config.Config
	if *cfgFile != "" {
		loaded, err := config.Load(*cfgFile, os.Environ())
		if err != nil {
			fmt.Fprintf(stderr, "portcullis doctor: %v\n", err)
			return 2
		}
		cfg = &loaded
		if !apiSet && os.Getenv("PORTCULLIS_API") == "" {
			c.api = apiURL(loaded)
		}
		if c.token == "" && c.tokenFile == "" {
			c.token = loaded.Admin.Token
		}
	}
	c.timeout = min(c.timeout, 10*time.Second)
	d := &doctor{c: c, out: stdout}
	d.run(cfg)
	fmt.Fprintf(stdout, "\n%d FAIL, %d WARN\n", d.fails, d.warns)
	if d.fails > 0 {
		return 1
	}
	return 0
}

// apiURL is the admin API's URL from the node's config (a wildcard bind is dialled on loopback).
func apiURL(cfg config.Config) string {
	host, port, err := net.SplitHostPort(cfg.Admin.Listen)
	if err != nil {
		return "http://" + admin.DefaultListen
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.Admin.TLS.Cert != "" || cfg.ACME.Enabled() && cfg.ACME.Admin {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

func (d *doctor) run(cfg *config.Config) {
	// The API and the node's health.
	var h admin.Health
	sent := time.Now()
	_, err := d.c.get("/health", &h)
	var ae *client.Error
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		d.line(lvFail, "api", ue.msg, "")
	case errors.As(err, &ae) && ae.Status == 503:
		d.line(lvFail, "health", "the node does not serve: "+ae.Message, "see the node's log; `portcullis ctl cluster members` for the cluster")
	case err != nil:
		d.line(lvFail, "api", err.Error(), "start the node, or point --api/--config at it (admin.listen)")
	default:
		d.line(lvOK, "health", fmt.Sprintf("node %s serves, leader %s", h.Node, h.Leader), "")
	}
	apiUp := err == nil || ae != nil && ae.Status == 503
	var rep admin.NodeReport
	if apiUp {
		if _, err := d.c.get("/node/doctor", &rep); err != nil {
			d.line(lvWarn, "api", "no node report: "+err.Error(), "upgrade the node (GET /api/v1/node/doctor)")
			apiUp = false
		} else {
			rtt := time.Since(sent)
			d.clock(rep.Time, sent.Add(rtt/2))
		}
	}
	d.listeners(cfg, rep)
	d.realm(cfg, rep, apiUp)
	d.advertise(cfg, rep, apiUp)
	if !apiUp {
		return
	}
	d.rooms()
	d.cluster()
	d.certificates(rep)
	d.disk(rep)
}

func (d *doctor) clock(node, local time.Time) {
	skew := node.Sub(local)
	msg := fmt.Sprintf("the node's clock is %v off this host's", skew.Round(time.Millisecond))
	fix := "run NTP (chrony, systemd-timesyncd) on every node and on this host"
	switch {
	case skew.Abs() > skewFail:
		d.line(lvFail, "clock", msg, fix)
	case skew.Abs() > skewWarn:
		d.line(lvWarn, "clock", msg, fix)
	default:
		d.line(lvOK, "clock", msg, "")
	}
}

// listeners dials every SIP listener the node reports (or the config lists).
func (d *doctor) listeners(cfg *config.Config, rep admin.NodeReport) {
	addrs := rep.Listeners
	if len(addrs) == 0 && cfg != nil {
		for _, l := range cfg.SIP.Listen {
			addrs = append(addrs, l.String())
		}
	}
	if len(addrs) == 0 {
		d.line(lvWarn, "listeners", "no SIP listener known", "give --config FILE, or reach the API")
		return
	}
	for _, a := range addrs {
		tr, hp, ok := strings.Cut(a, "://")
		ap, err := netip.ParseAddrPort(hp)
		if !ok || err != nil {
			d.line(lvWarn, "listener", fmt.Sprintf("%q is not transport://ip:port", a), "")
			continue
		}
		if ap.Addr().IsUnspecified() {
			lo := netip.MustParseAddr("127.0.0.1")
			if ap.Addr().Is6() {
				lo = netip.IPv6Loopback()
			}
			ap = netip.AddrPortFrom(lo, ap.Port())
		}
		if err := dialSIP(tr, ap.String()); err != nil {
			l := lvFail
			if tr == "udp" {
				l = lvWarn // stealth drops what it does not trust: silence is not proof
			}
			d.line(l, "listener", fmt.Sprintf("%s: %v", a, err), "is the node running and the port open in the firewall? (ss -lntup)")
			continue
		}
		d.line(lvOK, "listener", a+" answers", "")
	}
}

// dialSIP connects to a TCP or TLS listener, or sends OPTIONS to a UDP one and waits for an
// answer.
func dialSIP(transport, addr string) error {
	dl := &net.Dialer{Timeout: 3 * time.Second}
	switch transport {
	case "tcp":
		c, err := dl.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	case "tls":
		// The certificate is checked below (certificates); here only that a handshake completes.
		c, err := tls.DialWithDialer(dl, "tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec
		if err == nil {
			c.Close()
		}
		return err
	}
	c, err := dl.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	local := c.LocalAddr().String()
	host, _, _ := net.SplitHostPort(addr)
	msg := "OPTIONS sip:" + addr + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bK-doctor" + fmt.Sprint(time.Now().UnixNano()) +
		";rport\r\nMax-Forwards: 70\r\nFrom: <sip:doctor@" + local + ">;tag=doctor\r\nTo: <sip:" + addr + ">\r\n" +
		"Call-ID: doctor-" + fmt.Sprint(time.Now().UnixNano()) + "@" + host + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("no answer to OPTIONS: %w", err)
	}
	if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
		return fmt.Errorf("answer is not SIP")
	}
	return nil
}

// addrClass names what is wrong with an address peers must reach, "" when it is public.
func addrClass(a netip.Addr) (level, string) {
	a = a.Unmap()
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"} {
		if netip.MustParsePrefix(p).Contains(a) {
			return lvFail, "a documentation address (RFC 5737/3849): nobody can reach it"
		}
	}
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return lvFail, "unspecified: peers cannot send to it"
	case a.IsLoopback():
		return lvWarn, "loopback: only this host can reach it"
	case a.IsPrivate() || netip.MustParsePrefix("100.64.0.0/10").Contains(a) || a.IsLinkLocalUnicast():
		return lvWarn, "private: only rooms and callers on this network can reach it"
	}
	return lvOK, ""
}

// realm says which SIP domain and digest realm the node uses, and warns when it names the product
// (a scanner reads it in every challenge).
func (d *doctor) realm(cfg *config.Config, rep admin.NodeReport, apiUp bool) {
	realm, src := rep.Realm, rep.RealmSource
	if !apiUp || realm == "" {
		if cfg == nil {
			return
		}
		realm, src = cfg.SIP.Domain, "sip.domain"
		if realm == "" {
			d.line(lvOK, "sip realm", "sip.domain unset: the realm recorded in the cluster's state", "")
			return
		}
	}
	if strings.Contains(strings.ToLower(realm), "portcullis") {
		d.line(lvWarn, "sip realm", fmt.Sprintf("%s (%s) names the product in every digest challenge", realm, src),
			"set sip.domain to your own domain on every node, then set each room's password again (stored HA1 depend on the realm)")
		return
	}
	d.line(lvOK, "sip realm", fmt.Sprintf("%s (%s)", realm, src), "")
}

func (d *doctor) advertise(cfg *config.Config, rep admin.NodeReport, apiUp bool) {
	sip, media := rep.SIPAdvertise, rep.MediaAdvertise
	if !apiUp && cfg != nil {
		sip, media = cfg.SIP.Advertise, cfg.Media.AdvertiseAddr().String()
	}
	for _, x := range []struct{ area, v, fix string }{
		{"sip address", sip, "set sip.advertise to the name or public address rooms and callers use"},
		{"media address", media, "set media.advertise to the public address of the media ports (1:1 NAT)"},
	} {
		if x.v == "" {
			continue
		}
		a, err := netip.ParseAddr(x.v)
		if err != nil { // a host name: resolve it as peers will
			ips, rerr := net.LookupHost(x.v)
			if rerr != nil || len(ips) == 0 {
				d.line(lvFail, x.area, fmt.Sprintf("%s does not resolve: %v", x.v, rerr), x.fix)
				continue
			}
			a, _ = netip.ParseAddr(ips[0])
		}
		if l, why := addrClass(a); l != lvOK {
			d.line(l, x.area, fmt.Sprintf("advertised %s is %s", x.v, why), x.fix)
			continue
		}
		d.line(lvOK, x.area, "advertised "+x.v, "")
	}
}

func (d *doctor) rooms() {
	var rooms struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	var regs struct {
		Items []struct {
			Room string `json:"room"`
		} `json:"items"`
	}
	if _, err := d.c.get("/rooms", &rooms); err != nil {
		d.line(lvWarn, "rooms", "cannot list rooms: "+err.Error(), "")
		return
	}
	if _, err := d.c.get("/registrations", &regs); err != nil {
		d.line(lvWarn, "rooms", "cannot list registrations: "+err.Error(), "")
		return
	}
	registered := map[string]bool{}
	for _, b := range regs.Items {
		registered[b.Room] = true
	}
	n := 0
	for _, r := range rooms.Items {
		if !registered[r.Name] {
			d.line(lvWarn, "room", fmt.Sprintf("%s is not registered", r.Name),
				"on the room system: registrar = this node's SIP address, user "+r.Name+", its password; then `portcullis ctl events` for refusals")
			continue
		}
		n++
	}
	if len(rooms.Items) == 0 {
		d.line(lvWarn, "rooms", "no room configured", "add rooms: to the config or `portcullis ctl rooms create`")
		return
	}
	if n == len(rooms.Items) {
		d.line(lvOK, "rooms", fmt.Sprintf("all %d rooms registered", n), "")
	}
}

func (d *doctor) cluster() {
	var ms struct {
		Items []cluster.Member `json:"items"`
	}
	if _, err := d.c.get("/cluster/members", &ms); err != nil {
		d.line(lvFail, "cluster", "cannot list members: "+err.Error(), "")
		return
	}
	leader := ""
	healthy := 0
	for _, m := range ms.Items {
		if m.State == cluster.StateLeader {
			leader = m.ID
		}
		if !m.Healthy {
			d.line(lvFail, "raft member", fmt.Sprintf("%s (%s) is not reachable from the leader", m.ID, m.Address),
				"start it, or open the cluster port between nodes; `portcullis ctl cluster remove "+m.ID+"` if it is gone for good")
			continue
		}
		healthy++
		if off := m.ClockOffset; off.Abs() > skewWarn {
			l := lvWarn
			if off.Abs() > skewFail {
				l = lvFail
			}
			d.line(l, "clock", fmt.Sprintf("%s's clock is %v off the leader's", m.ID, off.Round(time.Millisecond)),
				"run NTP on every node")
		}
	}
	switch {
	case leader == "":
		d.line(lvFail, "raft", "no leader", "a majority of the members must run and reach each other")
	case len(ms.Items)%2 == 0:
		d.line(lvWarn, "raft", fmt.Sprintf("leader %s, %d of %d members healthy: an even count tolerates no more failures than one fewer", leader, healthy, len(ms.Items)),
			"run 3 or 5 members")
	default:
		d.line(lvOK, "raft", fmt.Sprintf("leader %s, %d of %d members healthy", leader, healthy, len(ms.Items)), "")
	}
}

func (d *doctor) certificates(rep admin.NodeReport) {
	now := time.Now()
	for _, c := range rep.Certificates {
		area := "cert " + c.Use
		fix := "renew it and point the config at the new files, or use acme: (certificates that renew)"
		if c.Source == "acme" {
			fix = "check acme.domains resolve to the nodes and the challenge port is reachable from the CA; the leader's log has the ACME error"
		}
		if c.Serial == "" {
			d.line(lvFail, area, "no certificate: "+c.Error, fix)
			continue
		}
		left := c.NotAfter.Sub(now)
		msg := fmt.Sprintf("%s certificate %s for %s expires %s (%s left)", c.Source, c.Serial, strings.Join(c.Domains, ","),
			c.NotAfter.UTC().Format(time.DateOnly), left.Round(time.Hour))
		life := c.NotAfter.Sub(c.NotBefore)
		switch {
		case left <= 0:
			d.line(lvFail, area, fmt.Sprintf("%s certificate %s expired on %s", c.Source, c.Serial, c.NotAfter.UTC().Format(time.RFC3339)), fix)
		case left < certFail:
			d.line(lvFail, area, msg, fix)
		case c.Source == "acme" && (c.Error != "" || left < life/3):
			d.line(lvWarn, area, msg+"; renewal is overdue: "+c.Error, fix)
		case c.Source == "file" && left < 30*24*time.Hour:
			d.line(lvWarn, area, msg, fix)
		default:
			d.line(lvOK, area, msg, "")
		}
	}
}

func (d *doctor) disk(rep admin.NodeReport) {
	if rep.DiskTotal == 0 {
		d.line(lvWarn, "disk", "free space of "+rep.DataDir+" unknown", "")
		return
	}
	freeMiB := rep.DiskFree >> 20
	msg := fmt.Sprintf("%s: %d MiB free of %d MiB", rep.DataDir, freeMiB, rep.DiskTotal>>20)
	fix := "free space or grow the volume of node.data_dir (Raft log and snapshots)"
	switch {
	case freeMiB < diskFailMiB:
		d.line(lvFail, "disk", msg, fix)
	case freeMiB < diskWarnMiB || rep.DiskFree < rep.DiskTotal/20:
		d.line(lvWarn, "disk", msg, fix)
	default:
		d.line(lvOK, "disk", msg, "")
	}
}
