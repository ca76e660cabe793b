package b2bua

import (
	"net/netip"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
)

// dialog is one leg of a call as this node sees it: the identifiers of our side and the peer's,
// where requests go (the peer's target through its route set, sent over the flow the peer uses),
// and our CSeq space. Each leg has its own; nothing here is ever copied to the other leg.
type dialog struct {
	side media.Leg

	mu         sync.Mutex
	callID     string
	localTag   string
	remoteTag  string
	local      sip.Uri // our address on this leg (From in our requests)
	localName  string
	remote     sip.Uri // the peer's address (To in our requests)
	remoteName string
	target     sip.Uri   // the peer's Contact
	routes     []sip.Uri // route set, in order
	dest       string    // ip:port the requests are sent to (the peer's flow)
	transport  string    // UDP, TCP, TLS
	cseq       uint32    // last local CSeq
	remoteCSeq uint32    // last remote CSeq seen
	peer       netip.AddrPort
	update     bool   // the peer allows UPDATE
	lastSDP    []byte // the last SDP we sent on this leg (for session refreshes)
	remoteSDP  []byte // the last SDP the peer sent on this leg (replicated: adopt.go)
}

// nextCSeq reserves the next local CSeq number.
func (d *dialog) nextCSeq() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cseq++
	return d.cseq
}

// newRequest builds an in-dialog request on this leg. CSeq is taken from the leg's own space
// unless cseq is non-zero (ACK and CANCEL reuse their INVITE's number).
func (d *dialog) newRequest(method sip.RequestMethod, cseq uint32, contact sip.ContactHeader) *sip.Request {
	if cseq == 0 {
		cseq = d.nextCSeq()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	req := sip.NewRequest(method, d.target)
	from := &sip.FromHeader{DisplayName: d.localName, Address: d.local}
	from.Params.Add("tag", d.localTag)
	to := &sip.ToHeader{DisplayName: d.remoteName, Address: d.remote}
	if d.remoteTag != "" {
		to.Params.Add("tag", d.remoteTag)
	}
	cid := sip.CallIDHeader(d.callID)
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	req.AppendHeader(&mf)
	for _, r := range d.routes {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	if method != sip.BYE && method != sip.ACK && method != sip.CANCEL {
		c := contact
		req.AppendHeader(&c)
	}
	req.SetDestination(d.dest)
	req.SetTransport(d.transport)
	return req
}

// checkRemoteCSeq accepts an in-dialog request's CSeq if it is higher than the last one seen
// (RFC 3261 12.2.2); ACK and CANCEL carry their INVITE's number and are not checked.
func (d *dialog) checkRemoteCSeq(req *sip.Request) bool {
	cs := req.CSeq()
	if cs == nil {
		return false
	}
	if req.IsAck() || req.IsCancel() {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.remoteCSeq != 0 && cs.SeqNo <= d.remoteCSeq {
		return false
	}
	d.remoteCSeq = cs.SeqNo
	return true
}

func (d *dialog) setSDP(b []byte) {
	if len(b) == 0 {
		return
	}
	d.mu.Lock()
	d.lastSDP = b
	d.mu.Unlock()
}

func (d *dialog) sdp() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastSDP
}

// stateLeg is the leg as recorded in the call table, with node, which holds it; with full
// (the call is answered), the dialog state a survivor needs to continue it (adopt.go). A
// ringing call's URIs are still being set up without the lock (route.go).
func (d *dialog) stateLeg(node string, full bool) state.Leg {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := state.Leg{CallID: d.callID, LocalTag: d.localTag, RemoteTag: d.remoteTag, Peer: d.dest, Transport: d.transport, Node: node}
	if !full {
		return l
	}
	l.LocalName, l.RemoteName, l.LocalCSeq, l.RemoteCSeq = d.localName, d.remoteName, d.cseq, d.remoteCSeq
	l.SDP = string(d.remoteSDP)
	if d.local.Host != "" {
		l.Local = d.local.String()
	}
	if d.remote.Host != "" {
		l.Remote = d.remote.String()
	}
	if d.target.Host != "" {
		l.Target = d.target.String()
	}
	for _, r := range d.routes {
		l.Routes = append(l.Routes, r.String())
	}
	return l
}

// id is the leg's Call-ID.
func (d *dialog) id() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.callID
}

// key identifies the leg for requests the peer sends us: its Call-ID and our tag.
func (d *dialog) key() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.callID + "\x00" + d.localTag
}

// routeSetFrom returns the route set from Record-Route headers, reversed when the message is a
// response to our request (RFC 3261 12.1.2).
func routeSetFrom(m message, reverse bool) []sip.Uri {
	var out []sip.Uri
	for _, h := range m.GetHeaders("Record-Route") {
		rr, ok := h.(*sip.RecordRouteHeader)
		if !ok {
			continue
		}
		out = append(out, rr.Address)
	}
	if reverse {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// allowsUpdate reports whether a message's Allow header lists UPDATE.
func allowsUpdate(m message) bool { return hasOption(m, "Allow", "UPDATE") }
