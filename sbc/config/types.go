package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as "30s", "5m", "12h".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil || v < 0 {
		return &FieldError{Line: n.Line, col: n.Column, Msg: fmt.Sprintf("%q is not a duration (examples: 30s, 5m, 12h)", n.Value)}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in Go syntax.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// PortRange is an inclusive UDP port range written "20000-39999".
type PortRange struct{ Min, Max int }

// UnmarshalYAML parses "MIN-MAX".
func (p *PortRange) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParsePortRange(n.Value)
	if err != nil {
		return &FieldError{Line: n.Line, col: n.Column, Msg: err.Error()}
	}
	*p = v
	return nil
}

// MarshalYAML writes "MIN-MAX".
func (p PortRange) MarshalYAML() (any, error) { return p.String(), nil }

func (p PortRange) String() string { return fmt.Sprintf("%d-%d", p.Min, p.Max) }

// ParsePortRange parses "MIN-MAX".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || a < 1024 || b > 65535 || a >= b {
		return PortRange{}, fmt.Errorf("%q is not a port range MIN-MAX within 1024-65535", s)
	}
	return PortRange{Min: a, Max: b}, nil
}

// Listen is a SIP listener written "udp://0.0.0.0:5060", "tcp://[::]:5060" or "tls://0.0.0.0:5061".
type Listen struct {
	Transport string // udp, tcp or tls
	Addr      netip.AddrPort
}

// UnmarshalYAML parses "transport://ip:port".
func (l *Listen) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseListen(n.Value)
	if err != nil {
		return &FieldError{Line: n.Line, col: n.Column, Msg: err.Error()}
	}
	*l = v
	return nil
}

// MarshalYAML writes "transport://ip:port".
func (l Listen) MarshalYAML() (any, error) { return l.String(), nil }

func (l Listen) String() string { return l.Transport + "://" + l.Addr.String() }

// ParseListen parses "transport://ip:port".
func ParseListen(s string) (Listen, error) {
	tr, addr, ok := strings.Cut(strings.TrimSpace(s), "://")
	tr = strings.ToLower(tr)
	if !ok || (tr != "udp" && tr != "tcp" && tr != "tls") {
		return Listen{}, fmt.Errorf("%q is not a listener: want udp://IP:PORT, tcp://IP:PORT or tls://IP:PORT", s)
	}
	host, portStr, ok := strings.Cut(addr, "]:") // [v6]:port
	if ok {
		host += "]"
	} else if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		host, portStr = addr[:i], addr[i+1:]
	}
	if port, err := strconv.Atoi(portStr); err == nil && (port < 1 || port > 65535) {
		return Listen{}, fmt.Errorf("%q: port %d is out of range 1-65535", s, port)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Port() == 0 {
		return Listen{}, fmt.Errorf("%q: address must be IP:PORT with a literal IP (0.0.0.0 or [::] for all), not %q", s, host)
	}
	return Listen{Transport: tr, Addr: ap}, nil
}

// PrefixList is a list of networks written as CIDRs: [10.0.0.0/8, "fd00::/8"].
type PrefixList []netip.Prefix

// UnmarshalYAML parses each CIDR and names the line of a bad one.
func (l *PrefixList) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!null" {
		*l = nil
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return &FieldError{Line: n.Line, Msg: "must be a list of CIDRs such as [10.0.0.0/8]"}
	}
	out := make(PrefixList, 0, len(n.Content))
	for _, e := range n.Content {
		p, err := netip.ParsePrefix(strings.TrimSpace(e.Value))
		if e.Kind != yaml.ScalarNode || err != nil {
			return &FieldError{Line: e.Line, Msg: fmt.Sprintf("%q is not a CIDR such as 10.0.0.0/8", e.Value)}
		}
		out = append(out, p)
	}
	*l = out
	return nil
}
