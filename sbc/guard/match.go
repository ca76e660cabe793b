package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"go4.org/netipx"
)

// Matcher matches sources and callers against a list of patterns, the form of the global allow
// and deny lists and of a room's allow list. A pattern is one of:
//
//	203.0.113.7, 2001:db8::1       an IP: matches the source address
//	203.0.113.0/24, 2001:db8::/48  a CIDR: matches the source address
//	example.com                    a domain: matches the caller's (From) host exactly
//	*.example.com                  a domain glob: matches the caller's host
//	alice@example.com              a caller URI (sip:/sips: prefix and ;params allowed)
//	*@example.com, 10??@*.example.com
//	                               a caller URI glob: user and host matched separately
//
// Globs know '*' (any run of bytes, also empty) and '?' (one byte). Matching is case-insensitive
// (ASCII) for users and hosts, so a deny pattern cannot be dodged by changing case; the caller's
// user is percent-decoded and a host's brackets and trailing dot are removed before matching.
// IP and CIDR patterns match only the network source of a request, never a host name in a URI,
// since From is chosen by the sender. A Matcher is immutable and safe for concurrent use; its
// match methods do not allocate for users and hosts of ordinary length.
type Matcher struct {
	ips       *netipx.IPSet
	hosts     map[string]struct{} // exact hosts, lowercase
	hostGlobs []string
	users     map[string]struct{} // exact "user@host", lowercase
	userGlobs []userGlob
	n         int
}

type userGlob struct{ user, host string }

// CompilePatterns compiles patterns into a Matcher. Invalid entries are reported (each wrapping
// ErrPattern, joined) and left out: the returned Matcher is usable either way.
func CompilePatterns(patterns []string) (*Matcher, error) {
	m := &Matcher{hosts: map[string]struct{}{}, users: map[string]struct{}{}}
	var b netipx.IPSetBuilder
	var errs []error
	for i, p := range patterns {
		if err := m.add(&b, p); err != nil {
			errs = append(errs, fmt.Errorf("entry %d %q: %w", i, p, err))
		}
	}
	ips, err := b.IPSet()
	if err != nil {
		errs = append(errs, fmt.Errorf("%w: %v", ErrPattern, err))
		ips = &netipx.IPSet{}
	}
	m.ips = ips
	return m, errors.Join(errs...)
}

// Len is the number of patterns compiled into m.
func (m *Matcher) Len() int {
	if m == nil {
		return 0
	}
	return m.n
}

func (m *Matcher) add(b *netipx.IPSetBuilder, raw string) error {
	s := strings.TrimSpace(raw)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if len(s) >= 5 && strings.EqualFold(s[:5], "sips:") {
		s = s[5:]
	} else if len(s) >= 4 && strings.EqualFold(s[:4], "sip:") {
		s = s[4:]
	}
	if s == "" {
		return fmt.Errorf("%w: empty", ErrPattern)
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		if p, ok, err := parseNet(s); ok {
			if err != nil {
				return err
			}
			b.AddPrefix(p)
			m.n++
			return nil
		}
	}
	host := s[at+1:]
	if i := strings.IndexAny(host, ";?"); i >= 0 {
		host = host[:i]
	}
	host, err := patternHost(host)
	if err != nil {
		return err
	}
	if at < 0 {
		if hasGlob(host) {
			m.hostGlobs = append(m.hostGlobs, host)
		} else {
			m.hosts[host] = struct{}{}
		}
		m.n++
		return nil
	}
	user := asciiLower(s[:at])
	if user == "" {
		return fmt.Errorf("%w: empty user (write *@host for any user)", ErrPattern)
	}
	for i := 0; i < len(user); i++ {
		if c := user[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' {
			return fmt.Errorf("%w: bad character %q in user", ErrPattern, c)
		}
	}
	if hasGlob(user) || hasGlob(host) {
		m.userGlobs = append(m.userGlobs, userGlob{user: user, host: host})
	} else {
		m.users[user+"@"+host] = struct{}{}
	}
	m.n++
	return nil
}

// parseNet recognises IP, IP:port and CIDR patterns. ok is false for anything else.
func parseNet(s string) (p netip.Prefix, ok bool, err error) {
	if strings.IndexByte(s, '/') >= 0 {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, true, fmt.Errorf("%w: not a CIDR: %v", ErrPattern, err)
		}
		a := p.Addr()
		if a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), true, nil
	}
	t := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(t)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(s)
		if err2 != nil {
			return netip.Prefix{}, false, nil
		}
		a = ap.Addr()
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), true, nil
}

// patternHost normalises and checks the host of a pattern.
func patternHost(h string) (string, error) {
	h = asciiLower(strings.TrimSpace(h))
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i] // host:port
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", fmt.Errorf("%w: empty host", ErrPattern)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '*', c == '?', c == ':':
		default:
			return "", fmt.Errorf("%w: bad character %q in host", ErrPattern, c)
		}
	}
	return h, nil
}

func hasGlob(s string) bool { return strings.ContainsAny(s, "*?") }

// MatchSource reports whether the source address is matched by an IP or CIDR pattern.
func (m *Matcher) MatchSource(a netip.Addr) bool {
	if m == nil || m.ips == nil {
		return false
	}
	return m.ips.Contains(a.Unmap().WithZone(""))
}

// overlaps reports whether any address of p is matched by an IP or CIDR pattern.
func (m *Matcher) overlaps(p netip.Prefix) bool {
	return m != nil && m.ips != nil && m.ips.OverlapsPrefix(p)
}

// MatchCaller reports whether the caller URI user@host is matched by a domain or URI pattern.
func (m *Matcher) MatchCaller(user, host string) bool {
	if m == nil || host == "" || (len(m.hosts) == 0 && len(m.hostGlobs) == 0 && len(m.users) == 0 && len(m.userGlobs) == 0) {
		return false
	}
	var hb [256]byte
	h := normHost(hb[:0], host)
	if _, ok := m.hosts[string(h)]; ok {
		return true
	}
	for _, g := range m.hostGlobs {
		if globMatch(g, h) {
			return true
		}
	}
	if len(m.users) == 0 && len(m.userGlobs) == 0 {
		return false
	}
	var kb [512]byte
	k := normUser(kb[:0], user)
	ulen := len(k)
	k = append(k, '@')
	k = append(k, h...)
	if _, ok := m.users[string(k)]; ok {
		return true
	}
	for _, g := range m.userGlobs {
		if globMatch(g.user, k[:ulen]) && globMatch(g.host, h) {
			return true
		}
	}
	return false
}

// Match reports whether either the source or the caller is matched.
func (m *Matcher) Match(src netip.Addr, user, host string) bool {
	return m.MatchSource(src) || m.MatchCaller(user, host)
}

// normHost appends the lowercase form of a URI host without brackets or trailing dot.
func normHost(dst []byte, h string) []byte {
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	for len(h) > 0 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	for i := 0; i < len(h); i++ {
		dst = append(dst, lower(h[i]))
	}
	return dst
}

// normUser appends the percent-decoded, lowercase form of a URI user.
func normUser(dst []byte, u string) []byte {
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c == '%' && i+2 < len(u) {
			if hi, ok := unhex(u[i+1]); ok {
				if lo, ok := unhex(u[i+2]); ok {
					c = hi<<4 | lo
					i += 2
				}
			}
		}
		dst = append(dst, lower(c))
	}
	return dst
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// globMatch matches s against a lowercase glob p ('*' any run, '?' one byte). s must already be
// lowercase. It runs in O(len(p)·len(s)) at worst and does not allocate.
func globMatch(p string, s []byte) bool {
	px, sx := 0, 0
	starPx, starSx := -1, 0
	for px < len(p) || sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				starPx, starSx = px, sx
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if starPx >= 0 && starSx < len(s) {
			starSx++
			px, sx = starPx+1, starSx
			continue
		}
		return false
	}
	return true
}
