package b2bua

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"

	"github.com/portcullis-sbc/portcullis/internal/siphost"
)

// Resolver turns a SIP URI into an ordered list of targets to try (RFC 3263).
type Resolver interface {
	Resolve(ctx context.Context, u sip.Uri) ([]target, error)
}

// DNSResolver resolves per RFC 3263 against one DNS server: NAPTR, then SRV, then A/AAAA.
type DNSResolver struct {
	Server  string        // ip:port of the DNS server
	Timeout time.Duration // per query (default 2s)
	// Transports lists what the node can send on (UDP, TCP, TLS); others are skipped.
	Transports []string
}

// NewDNSResolver returns a resolver using server, or the first nameserver of
// /etc/resolv.conf when server is empty.
func NewDNSResolver(server string, transports []string) (*DNSResolver, error) {
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cc.Servers) == 0 {
			return nil, fmt.Errorf("dns: no server configured and none in /etc/resolv.conf: %v", err)
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	return &DNSResolver{Server: server, Timeout: 2 * time.Second, Transports: transports}, nil
}

// ErrNoTarget means the name resolved to nothing usable.
var ErrNoTarget = errors.New("no SIP target")

var naptrService = map[string]string{"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}

// Resolve implements RFC 3263 section 4: the transport, then the addresses and ports.
func (r *DNSResolver) Resolve(ctx context.Context, u sip.Uri) ([]target, error) {
	host := strings.Trim(u.Host, "[]")
	secure := u.Scheme == "sips"
	want, _ := u.UriParams.Get("transport")
	want = strings.ToUpper(want)
	if secure {
		want = "TLS"
	}
	orUDP := want
	if orUDP == "" {
		orUDP = "UDP"
	}
	if ip, ok := siphost.IP(u.Host); ok {
		port := uint16(u.Port)
		if port == 0 {
			port = defaultPort(orUDP)
		}
		return r.filter([]target{mkTarget(netip.AddrPortFrom(ip, port), orUDP)})
	}
	if u.Port != 0 {
		out, err := r.hostTargets(ctx, host, uint16(u.Port), orUDP)
		if err != nil {
			return nil, err
		}
		return r.filter(out)
	}
	var out []target
	for _, s := range r.srvNames(ctx, host, want, secure) {
		ts, err := r.srv(ctx, s.name, s.tr)
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		out = append(out, ts...)
	}
	if len(out) == 0 {
		// No SRV: the host itself, on the default port (RFC 3263 4.2).
		var err error
		if out, err = r.hostTargets(ctx, host, defaultPort(orUDP), orUDP); err != nil {
			return nil, err
		}
	}
	return r.filter(out)
}

// defaultPort is SIP's port on a transport.
func defaultPort(tr string) uint16 {
	if tr == "TLS" {
		return 5061
	}
	return 5060
}

// hostTargets are host's addresses (A/AAAA) on port over tr.
func (r *DNSResolver) hostTargets(ctx context.Context, host string, port uint16, tr string) ([]target, error) {
	addrs, err := r.addrs(ctx, host)
	if err != nil {
		return nil, err
	}
	var out []target
	for _, a := range addrs {
		out = append(out, mkTarget(netip.AddrPortFrom(a, port), tr))
	}
	return out, nil
}

// srvName is an SRV name to look up and the transport it is for.
type srvName struct{ name, tr string }

// srvNames are the SRV names of host for the transports wanted ("" any; secure: TLS only):
// those its NAPTR records offer, in its order of preference, or else the usual ones.
func (r *DNSResolver) srvNames(ctx context.Context, host, want string, secure bool) []srvName {
	var srvs []srvName
	if msg, err := r.query(ctx, dns.Fqdn(host), dns.TypeNAPTR); err == nil {
		var recs []*dns.NAPTR
		for _, rr := range msg.Answer {
			if n, ok := rr.(*dns.NAPTR); ok && strings.EqualFold(n.Flags, "s") {
				if tr, ok := naptrService[strings.ToUpper(n.Service)]; ok && (want == "" || want == tr) {
					recs = append(recs, n)
				}
			}
		}
		slices.SortStableFunc(recs, func(a, b *dns.NAPTR) int {
			if a.Order != b.Order {
				return int(a.Order) - int(b.Order)
			}
			return int(a.Preference) - int(b.Preference)
		})
		for _, n := range recs {
			srvs = append(srvs, srvName{n.Replacement, naptrService[strings.ToUpper(n.Service)]})
		}
	}
	if len(srvs) == 0 {
		for _, s := range []srvName{{"_sips._tcp.", "TLS"}, {"_sip._udp.", "UDP"}, {"_sip._tcp.", "TCP"}} {
			if (want == "" && !secure) || want == s.tr {
				srvs = append(srvs, srvName{s.name + dns.Fqdn(host), s.tr})
			}
		}
	}
	return srvs
}

func mkTarget(ap netip.AddrPort, tr string) target {
	return target{dest: ap.String(), transport: tr, peer: ap}
}

func (r *DNSResolver) filter(ts []target) ([]target, error) {
	if len(r.Transports) > 0 {
		ts = slices.DeleteFunc(ts, func(t target) bool { return !slices.Contains(r.Transports, t.transport) })
	}
	if len(ts) == 0 {
		return nil, ErrNoTarget
	}
	return ts, nil
}

// srv resolves one SRV name into targets ordered by priority, weighted-random within a
// priority (RFC 2782).
func (r *DNSResolver) srv(ctx context.Context, name, tr string) ([]target, error) {
	msg, err := r.query(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	var recs []*dns.SRV
	for _, rr := range msg.Answer {
		if s, ok := rr.(*dns.SRV); ok && s.Target != "." {
			recs = append(recs, s)
		}
	}
	slices.SortStableFunc(recs, func(a, b *dns.SRV) int { return int(a.Priority) - int(b.Priority) })
	ordered := make([]*dns.SRV, 0, len(recs))
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].Priority == recs[i].Priority {
			j++
		}
		group := slices.Clone(recs[i:j])
		for len(group) > 0 {
			total := 0
			for _, s := range group {
				total += int(s.Weight)
			}
			pick := 0
			if total > 0 {
				n := rand.IntN(total + 1)
				for k, s := range group {
					if n -= int(s.Weight); n <= 0 {
						pick = k
						break
					}
				}
			}
			ordered = append(ordered, group[pick])
			group = slices.Delete(group, pick, pick+1)
		}
		i = j
	}
	glue := map[string][]netip.Addr{}
	for _, rr := range msg.Extra {
		switch a := rr.(type) {
		case *dns.A:
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				glue[strings.ToLower(a.Hdr.Name)] = append(glue[strings.ToLower(a.Hdr.Name)], ip)
			}
		case *dns.AAAA:
			if ip, ok := netip.AddrFromSlice(a.AAAA); ok {
				glue[strings.ToLower(a.Hdr.Name)] = append(glue[strings.ToLower(a.Hdr.Name)], ip)
			}
		}
	}
	var out []target
	for _, s := range ordered {
		addrs := glue[strings.ToLower(s.Target)]
		if len(addrs) == 0 {
			addrs, _ = r.addrs(ctx, s.Target)
		}
		for _, a := range addrs {
			out = append(out, mkTarget(netip.AddrPortFrom(a, s.Port), tr))
		}
	}
	return out, nil
}

// addrs resolves A then AAAA records.
func (r *DNSResolver) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	var firstErr error
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		msg, err := r.query(ctx, dns.Fqdn(host), t)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, rr := range msg.Answer {
			switch a := rr.(type) {
			case *dns.A:
				if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
					out = append(out, ip)
				}
			case *dns.AAAA:
				if ip, ok := netip.AddrFromSlice(a.AAAA); ok {
					out = append(out, ip)
				}
			}
		}
	}
	if len(out) == 0 {
		if firstErr == nil {
			firstErr = fmt.Errorf("%w: %s has no address", ErrNoTarget, host)
		}
		return nil, firstErr
	}
	return out, nil
}

func (r *DNSResolver) query(ctx context.Context, name string, t uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	m.RecursionDesired = true
	c := &dns.Client{Net: "udp", Timeout: r.Timeout}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	res, _, err := c.ExchangeContext(ctx, m, r.Server)
	if err != nil {
		return nil, fmt.Errorf("dns %s %s: %w", dns.TypeToString[t], name, err)
	}
	if res.Truncated {
		c.Net = "tcp"
		if res, _, err = c.ExchangeContext(ctx, m, r.Server); err != nil {
			return nil, fmt.Errorf("dns %s %s over tcp: %w", dns.TypeToString[t], name, err)
		}
	}
	if res.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("dns %s %s: %s", dns.TypeToString[t], name, dns.RcodeToString[res.Rcode])
	}
	return res, nil
}
