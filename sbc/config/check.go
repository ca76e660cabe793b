package config

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
)

// MinPassword and MaxPassword bound a room's plain-text password, in characters, in the config
// and in the admin API alike.
const (
	MinPassword = 8
	MaxPassword = 128
)

// Warning is a value that loads but is probably wrong. It is located like a FieldError.
type Warning struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (w Warning) String() string {
	return (&FieldError{File: w.File, Line: w.Line, Field: w.Field, Msg: w.Msg}).Error()
}

// docNets are the address blocks reserved for documentation: values copied from an example.
var docNets = []struct {
	prefix netip.Prefix
	rfc    string
}{
	{netip.MustParsePrefix("192.0.2.0/24"), "RFC 5737"},
	{netip.MustParsePrefix("198.51.100.0/24"), "RFC 5737"},
	{netip.MustParsePrefix("203.0.113.0/24"), "RFC 5737"},
	{netip.MustParsePrefix("2001:db8::/32"), "RFC 3849"},
}

// docRFC returns the RFC that reserves the address in s (an IP, IP:PORT or CIDR) for
// documentation, or "".
func docRFC(s string) string {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if v, err := netip.ParsePrefix(s); err == nil {
		p = v
	} else if a, err := netip.ParseAddr(s); err == nil {
		p = netip.PrefixFrom(a, a.BitLen())
	} else if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if !p.IsValid() {
		return ""
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-(p.Addr().BitLen()-p.Addr().Unmap().BitLen()))
	for _, d := range docNets {
		if d.prefix.Overlaps(p) {
			return d.rfc
		}
	}
	return ""
}

// placeholder reports whether a password or secret is one an example would use.
func placeholder(pw string) bool {
	p := strings.ToLower(strings.TrimSpace(pw))
	for _, pre := range []string{"change-me", "changeme", "change_me", "replace-me", "replaceme", "example", "placeholder", "your-", "<"} {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return slices.Contains([]string{"password", "passw0rd", "secret", "admin", "default", "test", "12345678",
		"123456789", "1234567890", "qwertyui", "letmein", "xxxxxxxx"}, p) || strings.Contains(p, "example")
}

// exampleWarnings names documentation addresses and placeholder passwords left in the config.
func (c *Config) exampleWarnings(file string, lines map[string]int) []Warning {
	v := &validator{file: file, lines: lines}
	var out []Warning
	warn := func(field, format string, args ...any) {
		v.errs = v.errs[:0]
		v.fail(field, format, args...)
		fe := v.errs[0].(*FieldError)
		out = append(out, Warning{File: fe.File, Line: fe.Line, Field: fe.Field, Msg: fe.Msg})
	}
	addr := func(field, s string) {
		if rfc := docRFC(s); rfc != "" {
			warn(field, "%s is a documentation address (%s): an example left in place? Put your own value or remove the key", s, rfc)
		}
	}
	list := func(field string, l []string) {
		for i, s := range l {
			addr(fmt.Sprintf("%s[%d]", field, i), s)
		}
	}
	if c.Media.Bind.IsValid() {
		addr("media.bind", c.Media.Bind.String())
	}
	if c.Media.Advertise.IsValid() {
		addr("media.advertise", c.Media.Advertise.String())
	}
	if c.Media.Advertise6.IsValid() {
		addr("media.advertise6", c.Media.Advertise6.String())
	}
	addr("sip.advertise", c.SIP.Advertise)
	for i, l := range c.SIP.Listen {
		addr(fmt.Sprintf("sip.listen[%d]", i), l.Addr.String())
	}
	for i, l := range c.TURN.Listen {
		addr(fmt.Sprintf("turn.listen[%d]", i), l.Addr.String())
	}
	for i, p := range c.TURN.AllowPeers {
		addr(fmt.Sprintf("turn.allow_peers[%d]", i), p.String())
	}
	addr("calls.dns", c.Calls.DNS)
	addr("admin.listen", c.Admin.Listen)
	addr("cluster.bind", c.Cluster.Bind)
	addr("cluster.advertise", c.Cluster.Advertise)
	list("cluster.join", c.Cluster.Join)
	list("guard.allow", c.Guard.Allow)
	list("guard.deny", c.Guard.Deny)
	for i, r := range c.Rooms {
		list(fmt.Sprintf("rooms[%d].allow", i), r.Allow)
		if r.Password != "" && placeholder(r.Password) {
			warn(fmt.Sprintf("rooms[%d].password", i), "a placeholder password (an example left in place?): set the room's own")
		}
	}
	if strings.Contains(strings.ToLower(c.SIP.Domain), "portcullis") {
		warn("sip.domain", "%q names the product in every digest challenge (a scanner's fingerprint): set your own domain, "+
			"or remove the key on a cluster without rooms; rooms' stored HA1 depend on it (see the README, upgrade)", c.SIP.Domain)
	}
	if c.TURN.Secret != "" && placeholder(c.TURN.Secret) {
		warn("turn.secret", "a placeholder secret: set a random one")
	}
	if c.Admin.Token != "" && placeholder(c.Admin.Token) {
		warn("admin.token", "a placeholder token: create one with `portcullis token create`")
	}
	return out
}

// envWarnings names PORTCULLIS_ variables that look like settings but set nothing: a known
// section with an unknown key (PORTCULLIS_SIP_DOMAN), or a name close to a setting
// (PORTCULLIS_SPI_DOMAIN). The tools' own variables (PORTCULLIS_API, PORTCULLIS_TOKEN, ...) are
// neither.
func envWarnings(environ []string) []Warning {
	known := envNames()
	sections := map[string]bool{}
	for _, n := range known {
		rest := strings.TrimPrefix(n, EnvPrefix)
		sec, _, _ := strings.Cut(rest, "_")
		sections[sec] = true
	}
	var out []Warning
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || slices.Contains(known, name) {
			continue
		}
		best, dist := "", 3
		for _, k := range known {
			if d := editDistance(name, k); d < dist {
				best, dist = k, d
			}
		}
		sec, _, _ := strings.Cut(strings.TrimPrefix(name, EnvPrefix), "_")
		if best == "" && !sections[sec] {
			continue
		}
		msg := "not a setting: it is ignored"
		if best != "" {
			msg = "not a setting (did you mean " + best + "?): it is ignored"
		}
		out = append(out, Warning{Field: name, Msg: msg})
	}
	return out
}

// envNames lists every variable that sets a key, as applyEnv reads them.
func envNames() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" || tag == "rooms" || tag == "feeds" {
				continue
			}
			name := prefix + "_" + strings.ToUpper(tag)
			if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(unmarshalerType) &&
				f.Type.PkgPath() == t.PkgPath() {
				walk(f.Type, name)
				continue
			}
			out = append(out, name)
		}
	}
	walk(reflect.TypeFor[Config](), EnvPrefix[:len(EnvPrefix)-1])
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// AdvertiseAddr is the media address written into SDP and given to TURN as its relay address:
// Advertise; by default Bind, or the host's primary address when Bind is unspecified (0.0.0.0).
func (m Media) AdvertiseAddr() netip.Addr {
	switch {
	case m.Advertise.IsValid():
		return m.Advertise
	case m.Bind.IsValid() && !m.Bind.IsUnspecified():
		return m.Bind
	}
	return PrimaryIP()
}

// PrimaryIP is the host's first global unicast IPv4 address on an interface that is up and not
// loopback, else 127.0.0.1.
func PrimaryIP() netip.Addr {
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() {
				return p.Addr()
			}
		}
	}
	return netip.MustParseAddr("127.0.0.1")
}
