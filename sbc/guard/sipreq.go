package guard

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// RequestOf describes a parsed SIP request for the guard: what Check and CheckCall read of it.
// Registered is left false: only the node knows whether the source is a registered room's flow.
// The node builds it once per request, at the edge, and hands the same one to the B2BUA.
func RequestOf(req *sip.Request) *Request {
	src, _ := netip.ParseAddrPort(req.Source())
	r := &Request{Source: src, Transport: req.Transport(), Method: string(req.Method),
		RURIUser: req.Recipient.User, RURIHost: req.Recipient.Host, MaxForwards: -1}
	if f := req.From(); f != nil {
		r.FromName, r.FromUser, r.FromHost = f.DisplayName, f.Address.User, f.Address.Host
	}
	if t := req.To(); t != nil {
		r.ToUser, r.ToHost = t.Address.User, t.Address.Host
	}
	if h := req.GetHeader("User-Agent"); h != nil {
		r.UserAgent = h.Value()
	}
	if c := req.CallID(); c != nil {
		r.CallID = string(*c)
	}
	if mf := req.MaxForwards(); mf != nil {
		r.MaxForwards = int(*mf)
	}
	return r
}
