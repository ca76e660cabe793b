// Hosts and URIs: whether a request's From/To/R-URI are sane (whether a host names this node is
// siphost.Set's question).

package guard

import (
	"strings"

	"github.com/portcullis-sbc/portcullis/internal/siphost"
)

// Hosts is what names this node (its domain, aliases and addresses), gathered once when the
// guard was made; the node's B2BUA shares it.
func (g *Guard) Hosts() *siphost.Set { return g.hosts }

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
