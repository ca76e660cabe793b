package sbc

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/sbc/b2bua"
)

// startCalls builds the B2BUA on the node's client, store, authenticator and media relay.
func (n *Node) startCalls() error {
	k := n.cfg.Calls
	var transports []string
	for _, b := range n.bound {
		transports = append(transports, strings.ToUpper(b.Transport))
	}
	deps := b2bua.Deps{Client: n.client, Store: n.store, Auth: n.auth, Observer: n.observer()}
	if n.guard != nil {
		deps.Decider = n.guard // the caller filter asked before every inbound call
	}
	if n.media != nil {
		deps.Media = mediaFactory{n.media}
	}
	if k.OutboundOn() {
		r, err := b2bua.NewDNSResolver(k.DNS, transports)
		if err != nil {
			n.log.Warn("outbound calls disabled: no DNS server", "error", err)
		} else {
			deps.Resolver = r
		}
	}
	e, err := b2bua.New(b2bua.Config{
		Domain: n.cfg.SIP.Domain, NodeID: n.cfg.Node.ID,
		Contact: n.contactURI, ContactFor: n.contactFor, Local: n.guard.Hosts().Ours, Bindings: n.reg.Bindings,
		RingTimeout: k.RingTimeout.D(), MaxDuration: k.MaxDuration.D(), SessionExpires: k.SessionExpires.D(),
		MinSE: k.MinSE.D(), RequireSDP: k.RequireSDP, Follow3xx: k.Follow3xx,
		UserAgent: n.cfg.SIP.UserAgent, PassUserAgent: n.cfg.SIP.PassUserAgent,
		Logger: n.log, CallStarted: n.callStarted, CallEnded: n.callEnded, CallAdopted: n.callAdopted,
		MediaRefused: n.mediaRefused,
		FlowNodeDown: n.flowNodeDown, FlowNodeReached: n.flowNodeReached, CatchUp: n.catchUp,
	}, deps)
	if err != nil {
		return fmt.Errorf("b2bua: %w", err)
	}
	n.calls = e
	return nil
}

// observer is the guard's auth observer, when a guard runs.
func (n *Node) observer() b2bua.AuthObserver {
	if n.guard == nil {
		return nil
	}
	return n.guard
}

// contactURI is our Contact on a transport.
func (n *Node) contactURI(transport string) sip.Uri {
	tr := strings.ToLower(transport)
	b, ok := n.firstBound(tr)
	if !ok && len(n.bound) > 0 {
		b = n.bound[0]
		tr = b.Transport
	}
	// No user part: nothing in it would help the peer, and a fixed one names the product.
	u := sip.Uri{Scheme: "sip", Host: n.advertiseHost(b), Port: int(b.Addr.Port())}
	if tr == "tcp" || tr == "tls" {
		u.UriParams = sip.HeaderParams{}
		u.UriParams.Add("transport", tr)
	}
	return u
}

// contactFor is our Contact toward a peer: on the listener of the peer's address family when
// the first listener of the transport is of the other family.
func (n *Node) contactFor(transport string, peer netip.AddrPort) sip.Uri {
	u := n.contactURI(transport)
	v6 := peer.Addr().Is6() && !peer.Addr().Is4In6()
	if b, host, ok := n.boundOfFamily(strings.ToLower(transport), v6); ok {
		if first, _ := n.firstBound(strings.ToLower(transport)); b != first {
			u.Host, u.Port = host, int(b.Addr.Port())
		}
	}
	return u
}

// mediaFactory adapts the media manager to the B2BUA's seam.
type mediaFactory struct{ m *media.Manager }

func (f mediaFactory) NewSession(id string, onTimeout func(string)) (b2bua.Session, error) {
	s, err := f.m.NewSession(id, onTimeout)
	if err != nil {
		return nil, err
	}
	return s, nil
}
