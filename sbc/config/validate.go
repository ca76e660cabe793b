package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/sbc/digest"
)

var (
	nodeIDRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	roomNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$`)
	hexRe      = regexp.MustCompile(`^[0-9a-f]+$`)
)

type validator struct {
	file  string
	lines map[string]int
	errs  []error
}

func (v *validator) fail(field, format string, args ...any) {
	line := v.lines[field]
	// Fall back to the nearest enclosing field that has a line.
	for p := field; line == 0 && p != ""; {
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
		line = v.lines[p]
	}
	v.errs = append(v.errs, &FieldError{File: v.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate(file string, lines map[string]int) error {
	v := &validator{file: file, lines: lines}
	if c.Node.ID != "" && !nodeIDRe.MatchString(c.Node.ID) {
		v.fail("node.id", "%q must be 1-63 letters, digits, '.', '_' or '-'", c.Node.ID)
	}
	if c.Node.DataDir == "" {
		v.fail("node.data_dir", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.fail("log.level", "%q must be debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		v.fail("log.format", "%q must be text or json", c.Log.Format)
	}
	c.validateSIP(v)
	c.validateTimers(v)
	c.validateMedia(v)
	c.validateNet(v)
	c.validateGuard(v)
	c.validateRooms(v)
	c.validateSinks(v)
	c.validateACME(v)
	return errors.Join(v.errs...)
}

func (c *Config) validateSIP(v *validator) {
	s := &c.SIP
	if s.Domain != "" && !ValidDomain(s.Domain) {
		v.fail("sip.domain", "%q must be a domain name such as video.example.com (or unset: the cluster records one)", s.Domain)
	}
	if len(s.Listen) == 0 {
		v.fail("sip.listen", "needs at least one listener")
	}
	seen := map[string]bool{}
	for i, l := range s.Listen {
		key := l.String()
		if seen[key] {
			v.fail(fmt.Sprintf("sip.listen[%d]", i), "%s is listed twice", key)
		}
		seen[key] = true
		if l.Transport == "tls" && (!c.ACME.Enabled() || s.TLS.Cert != "" || s.TLS.Key != "") {
			checkTLS(v, "sip.tls", s.TLS)
		}
	}
	if s.MaxMessageSize < 1500 || s.MaxMessageSize > MaxMessageSizeLimit {
		v.fail("sip.max_message_size", "%d must be between 1500 and %d bytes", s.MaxMessageSize, MaxMessageSizeLimit)
	}
	if s.ReadTimeout <= 0 {
		v.fail("sip.read_timeout", "must be positive")
	}
	if s.IdleTimeout < s.ReadTimeout {
		v.fail("sip.idle_timeout", "must be at least sip.read_timeout")
	}
	if s.MaxConnsPerSource < 1 {
		v.fail("sip.max_conns_per_source", "must be at least 1")
	}
	if s.MaxConnsPerPrefix < 1 {
		v.fail("sip.max_conns_per_prefix", "must be at least 1")
	}
	if s.MaxConns < 1 {
		v.fail("sip.max_conns", "must be at least 1")
	}
}

func checkTLS(v *validator, field string, t TLS) {
	if t.Cert == "" || t.Key == "" {
		v.fail(field, "a tls:// listener needs cert and key")
		return
	}
	for name, p := range map[string]string{"cert": t.Cert, "key": t.Key} {
		if _, err := os.Stat(p); err != nil {
			v.fail(field+"."+name, "cannot read %q: %v", p, err)
		}
	}
}

func (c *Config) validateTimers(v *validator) {
	r := &c.Registrar
	if r.MinExpires <= 0 || r.MinExpires > r.DefaultExpires || r.DefaultExpires > r.MaxExpires {
		v.fail("registrar.min_expires", "need 0 < min_expires (%s) <= default_expires (%s) <= max_expires (%s)",
			r.MinExpires.D(), r.DefaultExpires.D(), r.MaxExpires.D())
	}
	if r.KeepaliveInterval <= 0 {
		v.fail("registrar.keepalive_interval", "must be positive")
	}
	if r.KeepaliveFailures < 1 {
		v.fail("registrar.keepalive_failures", "must be at least 1")
	}
	if r.MaxContacts < 1 {
		v.fail("registrar.max_contacts", "must be at least 1")
	}
	if len(r.Algorithms) == 0 {
		v.fail("registrar.algorithms", "needs at least one of SHA-256, MD5")
	}
	for i, a := range r.Algorithms {
		if a != "SHA-256" && a != "MD5" {
			v.fail(fmt.Sprintf("registrar.algorithms[%d]", i), "%q must be SHA-256 or MD5", a)
		}
	}
	if r.NonceTTL < Duration(10e9) {
		v.fail("registrar.nonce_ttl", "must be at least 10s")
	}
	if r.ChallengeTimeout < Duration(1e9) || r.ChallengeTimeout > Duration(600e9) {
		v.fail("registrar.challenge_timeout", "%s must be between 1s and 10m", r.ChallengeTimeout.D())
	}
	k := &c.Calls
	if k.RingTimeout <= 0 {
		v.fail("calls.ring_timeout", "must be positive")
	}
	if k.MinSE < Duration(90e9) {
		v.fail("calls.min_se", "must be at least 90s (RFC 4028)")
	}
	if k.SessionExpires < k.MinSE {
		v.fail("calls.session_expires", "must be at least calls.min_se")
	}
	if k.DNS != "" {
		if _, err := netip.ParseAddrPort(k.DNS); err != nil {
			v.fail("calls.dns", "%q must be IP:PORT of a DNS server", k.DNS)
		}
	}
}

func (c *Config) validateMedia(v *validator) {
	m := &c.Media
	if !m.Bind.IsValid() {
		v.fail("media.bind", "must be an IP address")
	}
	if m.Advertise.IsValid() && m.Advertise.IsUnspecified() {
		v.fail("media.advertise", "must be an address peers can reach, not %s", m.Advertise)
	}
	if a := m.Advertise6; a.IsValid() {
		switch {
		case !a.Is6() || a.Is4In6() || a.IsUnspecified():
			v.fail("media.advertise6", "must be an IPv6 address peers can reach, not %s", a)
		case m.Bind.Is4():
			v.fail("media.advertise6", "needs a relay on IPv6: media.bind is %s (use :: for both families)", m.Bind)
		}
	}
	if m.Ports.Max-m.Ports.Min < 3 {
		v.fail("media.ports", "range %s is too small", m.Ports)
	}
	if m.LatchWindow <= 0 || m.Timeout <= 0 || m.HoldTimeout < m.Timeout {
		v.fail("media.timeout", "need latch_window > 0, timeout > 0 and hold_timeout >= timeout")
	}
	if m.MaxStreams < 1 || m.MaxStreams > 64 {
		v.fail("media.max_streams", "%d must be 1-64", m.MaxStreams)
	}
	if m.FastPath != "auto" && m.FastPath != "off" {
		v.fail("media.fastpath", "%q must be auto or off", m.FastPath)
	}
	if m.MaxUnansweredPorts < 4 {
		v.fail("media.max_unanswered_ports", "%d must be at least 4 (one stream)", m.MaxUnansweredPorts)
	}
	t := &c.TURN
	if len(t.Listen) > 0 {
		if t.Quota < 1 {
			v.fail("turn.quota", "must be at least 1")
		}
		count := map[string]int{}
		for i, l := range t.Listen {
			if count[l.Transport]++; count[l.Transport] > 1 {
				v.fail(fmt.Sprintf("turn.listen[%d]", i), "only one %s TURN listener is supported", l.Transport)
			}
			if l.Transport == "tls" {
				checkTLS(v, "turn.tls", t.TLS)
			}
		}
		if count["udp"] == 0 {
			v.fail("turn.listen", "TURN needs a udp:// listener (tcp:// and tls:// are optional extras)")
		}
		if t.SIPCredentials && t.Realm != "" && t.Realm != c.SIP.Domain {
			v.fail("turn.sip_credentials", "rooms' SIP credentials are TURN keys only in the SIP realm: turn.realm %q must be empty or sip.domain %q", t.Realm, c.SIP.Domain)
		}
		if (t.UnauthRate <= 0 && t.UnauthRate != -1) || (t.UnauthRate > 0 && t.UnauthBurst < 1) {
			v.fail("turn.unauth_rate", "unauth_rate and unauth_burst must be positive (unauth_rate -1 turns the limit off)")
		}
	}
}

func (c *Config) validateNet(v *validator) {
	host, _, err := net.SplitHostPort(c.Admin.Listen)
	if err != nil {
		v.fail("admin.listen", "%q must be HOST:PORT", c.Admin.Listen)
	} else if ip, err := netip.ParseAddr(host); (err != nil || !ip.IsLoopback()) && host != "localhost" {
		if c.Admin.TLS.Cert == "" && !(c.ACME.Enabled() && c.ACME.Admin) {
			v.fail("admin.listen", "%q is not a loopback address: the API then needs admin.tls", c.Admin.Listen)
		}
	}
	if c.Admin.TLS.Cert != "" || c.Admin.TLS.Key != "" {
		checkTLS(v, "admin.tls", c.Admin.TLS)
	}
	if _, _, err := net.SplitHostPort(c.Cluster.Bind); err != nil {
		v.fail("cluster.bind", "%q must be HOST:PORT", c.Cluster.Bind)
	}
	if c.Cluster.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Cluster.Advertise); err != nil {
			v.fail("cluster.advertise", "%q must be HOST:PORT", c.Cluster.Advertise)
		}
	}
	for i, j := range c.Cluster.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			v.fail(fmt.Sprintf("cluster.join[%d]", i), "%q must be HOST:PORT", j)
		}
	}
	if c.Cluster.NodeLostAfter < Duration(300e6) {
		v.fail("cluster.node_lost_after", "must be at least 300ms")
	}
	cl := &c.Cluster
	if cl.HeartbeatTimeout < Duration(20e6) || cl.HeartbeatTimeout > Duration(10e9) {
		v.fail("cluster.heartbeat_timeout", "%s must be between 20ms and 10s", cl.HeartbeatTimeout.D())
	}
	if cl.ElectionTimeout < cl.HeartbeatTimeout {
		v.fail("cluster.election_timeout", "%s must be at least heartbeat_timeout (%s)", cl.ElectionTimeout.D(), cl.HeartbeatTimeout.D())
	}
	if cl.LeaderLeaseTimeout < Duration(10e6) || cl.LeaderLeaseTimeout > cl.HeartbeatTimeout {
		v.fail("cluster.leader_lease_timeout", "%s must be between 10ms and heartbeat_timeout (%s)", cl.LeaderLeaseTimeout.D(), cl.HeartbeatTimeout.D())
	}
}

func (c *Config) validateGuard(v *validator) {
	g := &c.Guard
	for name, list := range map[string][]string{"guard.allow": g.Allow, "guard.deny": g.Deny} {
		for i, e := range list {
			if strings.TrimSpace(e) == "" {
				v.fail(fmt.Sprintf("%s[%d]", name, i), "empty entry")
			} else if strings.Contains(e, "/") {
				if _, err := netip.ParsePrefix(e); err != nil {
					v.fail(fmt.Sprintf("%s[%d]", name, i), "%q is not a CIDR", e)
				}
			}
		}
	}
	if g.BanTime <= 0 || g.BanMax < g.BanTime {
		v.fail("guard.ban_time", "need 0 < ban_time <= ban_max")
	}
	if g.RequestRate <= 0 || g.RequestBurst < 1 {
		v.fail("guard.request_rate", "request_rate and request_burst must be positive")
	}
	if (g.DatagramRate <= 0 && g.DatagramRate != -1) || (g.DatagramRate > 0 && g.DatagramBurst < 1) {
		v.fail("guard.datagram_rate", "datagram_rate and datagram_burst must be positive (datagram_rate -1 turns the meter off)")
	}
	if g.AuthFailures < 1 || g.AuthWindow <= 0 {
		v.fail("guard.auth_failures", "auth_failures and auth_window must be positive")
	}
	if g.RoomAuthFailures < 1 || g.RoomAuthWindow <= 0 {
		v.fail("guard.room_auth_failures", "room_auth_failures and room_auth_window must be positive")
	}
	if g.RoomLockTime <= 0 || g.RoomLockMax < g.RoomLockTime {
		v.fail("guard.room_lock_time", "need 0 < room_lock_time <= room_lock_max")
	}
	if g.UnknownUsers < 1 || g.UnknownWindow <= 0 {
		v.fail("guard.unknown_users", "unknown_users and unknown_window must be positive")
	}
	if g.Events < 100 {
		v.fail("guard.events", "must be at least 100")
	}
	for i, f := range g.Feeds {
		if f.URL == "" {
			v.fail(fmt.Sprintf("guard.feeds[%d].url", i), "must not be empty")
		}
		if f.Interval == 0 {
			g.Feeds[i].Interval = Duration(3600e9)
		}
	}
}

func (c *Config) validateRooms(v *validator) {
	seen := map[string]bool{}
	for i := range c.Rooms {
		r := &c.Rooms[i]
		at := func(f string) string { return fmt.Sprintf("rooms[%d].%s", i, f) }
		if !roomNameRe.MatchString(r.Name) {
			v.fail(at("name"), "%q must be 1-64 letters, digits, '.', '_', '~' or '-'", r.Name)
		}
		if seen[r.Name] {
			v.fail(at("name"), "room %q is declared twice", r.Name)
		}
		seen[r.Name] = true
		if r.Password == "" && r.HA1MD5 == "" && r.HA1SHA256 == "" {
			v.fail(at("password"), "room %q needs password, ha1_md5 or ha1_sha256", r.Name)
		}
		if n := len([]rune(r.Password)); r.Password != "" && (n < MinPassword || n > MaxPassword) {
			v.fail(at("password"), "must be at least %d and at most %d characters (as the admin API requires), not %d",
				MinPassword, MaxPassword, n)
		}
		if r.Password != "" && (r.HA1MD5 != "" || r.HA1SHA256 != "") {
			v.fail(at("password"), "give either password or ha1_*, not both")
		}
		if r.HA1MD5 != "" && (len(r.HA1MD5) != 32 || !hexRe.MatchString(r.HA1MD5)) {
			v.fail(at("ha1_md5"), "must be 32 lowercase hex digits")
		}
		if r.HA1SHA256 != "" && (len(r.HA1SHA256) != 64 || !hexRe.MatchString(r.HA1SHA256)) {
			v.fail(at("ha1_sha256"), "must be 64 lowercase hex digits")
		}
		switch r.Inbound {
		case "":
			r.Inbound = string(state.InboundOpen)
		case string(state.InboundOpen), string(state.InboundAllowlist), string(state.InboundDND):
		default:
			v.fail(at("inbound"), "%q must be open, allowlist or dnd", r.Inbound)
		}
		if r.AutoAnswer == "" {
			r.AutoAnswer = "block"
		} else if r.AutoAnswer != "block" && r.AutoAnswer != "allow" {
			v.fail(at("auto_answer"), "%q must be block or allow", r.AutoAnswer)
		}
		if r.DropIn == "" {
			r.DropIn = "deny"
		} else if r.DropIn != "deny" && r.DropIn != "allow" {
			v.fail(at("drop_in"), "%q must be deny or allow", r.DropIn)
		}
		if r.DNDCode != nil && *r.DNDCode != 0 && (*r.DNDCode < 400 || *r.DNDCode > 699) {
			v.fail(at("dnd_code"), "%d must be 0 (drop silently) or a SIP status 400-699", *r.DNDCode)
		}
		for j, a := range r.Allow {
			if strings.TrimSpace(a) == "" {
				v.fail(fmt.Sprintf("rooms[%d].allow[%d]", i, j), "empty entry")
			}
		}
	}
}

// StateRoom converts a configured room to its replicated form; a plain password becomes HA1 hashes
// over the SIP domain as realm, and is not kept.
func (r Room) StateRoom(realm string) state.Room {
	out := state.Room{
		Name: r.Name, HA1MD5: r.HA1MD5, HA1SHA256: r.HA1SHA256, Inbound: state.InboundMode(r.Inbound),
		Allow: r.Allow, DNDCode: 486, BlockAutoAnswer: r.AutoAnswer != "allow", DenyDropIn: r.DropIn != "allow",
	}
	if out.Inbound == "" {
		out.Inbound = state.InboundOpen
	}
	if r.DNDCode != nil {
		out.DNDCode = *r.DNDCode
	}
	if r.Password != "" {
		out.HA1MD5 = digest.HA1(digest.MD5, r.Name, realm, r.Password)
		out.HA1SHA256 = digest.HA1(digest.SHA256, r.Name, realm, r.Password)
	}
	return out
}
