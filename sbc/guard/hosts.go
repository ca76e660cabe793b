// Hosts and URIs: whether a host names this node, and whether a request's From/To/R-URI are sane.

package guard

import (
	"net/netip"
	"strings"
)

// ours reports whether a URI host is our domain, an alias or one of our addresses.
func (g *Guard) ours(h string) bool {
	if ip, ok := hostIP(h); ok {
		return g.isNodeAddr(ip)
	}
	return g.isOurHost(h)
}

// isOurHost reports whether a URI host is our domain or an alias (not an IP).
func (g *Guard) isOurHost(h string) bool {
	h = trimHost(h)
	for _, d := range g.domains {
		if strings.EqualFold(h, d) {
			return true
		}
	}
	return false
}

func (g *Guard) isNodeAddr(a netip.Addr) bool {
	for _, n := range g.cfg.NodeAddrs {
		if n == a {
			return true
		}
	}
	return false
}

// trimHost removes IPv6 brackets and a trailing dot.
func trimHost(h string) string {
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(h, ".")
}

// hostIP parses a URI host that is an IP literal. Domains are told apart without calling the
// parser (whose error allocates). A zone ID (RFC 6874, fe80::1%25eth0) is kept: it names an
// interface of the sender's host, so such an address is never one of ours (the B2BUA does not
// take it for ours either: a stranger got its "403 Relaying Denied" instead of the stealth
// answer).
func hostIP(h string) (netip.Addr, bool) {
	h = trimHost(h)
	if h == "" {
		return netip.Addr{}, false
	}
	if strings.IndexByte(h, ':') < 0 {
		for i := 0; i < len(h); i++ {
			if c := h[i]; (c < '0' || c > '9') && c != '.' {
				return netip.Addr{}, false
			}
		}
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func isNumeric(u string) bool {
	u = strings.TrimPrefix(u, "+")
	if u == "" {
		return false
	}
	for i := 0; i < len(u); i++ {
		if u[i] < '0' || u[i] > '9' {
			return false
		}
	}
	return true
}

// Limits of sane request fields.
const (
	maxUser = 256
	maxHost = 255
)

// insane returns why the request's From/To/R-URI are not sane, or "".
func insane(r *Request) string {
	switch {
	case r.Method == "":
		return "no method"
	case r.FromHost == "":
		return "From has no host"
	case r.ToHost == "":
		return "To has no host"
	case r.RURIHost == "":
		return "Request-URI has no host"
	}
	for _, f := range [...]struct{ name, v string }{{"From", r.FromHost}, {"To", r.ToHost}, {"Request-URI", r.RURIHost}} {
		if !validHost(f.v) {
			return f.name + " host is not a host name or address"
		}
	}
	for _, f := range [...]struct{ name, v string }{{"From", r.FromUser}, {"To", r.ToUser}, {"Request-URI", r.RURIUser}} {
		if !validUser(f.v) {
			return f.name + " user has control characters or is too long"
		}
	}
	return ""
}

func validHost(h string) bool {
	if len(h) > maxHost+2 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == ':', c == '[', c == ']', c == '%':
		default:
			return false
		}
	}
	return true
}

func validUser(u string) bool {
	if len(u) > maxUser {
		return false
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// uri formats a caller or callee for events and reasons.
func uri(user, host string) string {
	if user == "" {
		return host
	}
	return user + "@" + host
}
