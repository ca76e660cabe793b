package main

// SIP side, on sipgo: the callee ("room system") registers its AOR at the edge and answers every
// INVITE; the caller places calls through the edge. Both use sipgo's dialog caches, which build
// in-dialog requests (ACK, BYE) from the Record-Route set and echo Record-Route in responses.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
)

// drain is how long the caller waits after its last RTP packet before it sends BYE, so that
// packets still queued in the edge are counted rather than cut off by the media teardown.
const drain = 500 * time.Millisecond

// sipSide is one SIP UA bound on a loopback address: requests leave from the same socket.
type sipSide struct {
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cli     *sipgo.Client
	addr    netip.AddrPort
	contact sip.ContactHeader
}

func newSipSide(name, user string, addr netip.AddrPort) (*sipSide, error) {
	host := addr.Addr().String()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name), sipgo.WithUserAgentHostname(host))
	if err != nil {
		return nil, err
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		return nil, err
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientPort(int(addr.Port())),
		sipgo.WithClientConnectionAddr(addr.String()))
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("sip listen %s: %w", addr, err)
	}
	go srv.ServeUDP(conn)
	// Requests are sent from the listening socket once the transport has registered it.
	for i := 0; ; i++ {
		if _, err := ua.TransportLayer().GetConnection("udp", addr.String()); err == nil {
			break
		}
		if i > 400 {
			return nil, fmt.Errorf("sip listener %s did not come up", addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	s := &sipSide{ua: ua, srv: srv, cli: cli, addr: addr,
		contact: sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: host, Port: int(addr.Port())}}}
	return s, nil
}

func (s *sipSide) close() { _ = s.ua.Close() }

// loopbackOnly refuses any SIP or RTP target outside 127.0.0.0/8.
func loopbackOnly(host string) error {
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() || !ip.IsLoopback() {
		return fmt.Errorf("refusing non-loopback target %q", host)
	}
	return nil
}

// checkDialogTargets refuses a dialog whose in-dialog requests (ACK, BYE) could leave loopback:
// every Record-Route hop of the 2xx must be on 127.0.0.0/8, or its Contact when there is none.
func checkDialogTargets(res *sip.Response) error {
	var hosts []string
	for _, h := range res.GetHeaders("Record-Route") {
		for _, v := range strings.Split(h.Value(), ",") {
			_, v, _ = strings.Cut(v, "<")
			v, _, _ = strings.Cut(v, ">")
			var u sip.Uri
			if err := sip.ParseUri(strings.TrimSpace(v), &u); err != nil {
				return fmt.Errorf("record-route %q: %w", v, err)
			}
			hosts = append(hosts, u.Host)
		}
	}
	if len(hosts) == 0 {
		c := res.Contact()
		if c == nil {
			return errors.New("2xx without Contact")
		}
		hosts = append(hosts, c.Address.Host)
	}
	for _, h := range hosts {
		if err := loopbackOnly(h); err != nil {
			return err
		}
	}
	return nil
}

// ---- callee ("room system") ----

type callee struct {
	*sipSide
	dialogs         *sipgo.DialogServerCache
	eng             *engine
	ports           *portRange
	kinds           map[string]*streamKind
	hold            time.Duration
	edge            netip.AddrPort
	aor, user, pass string
	ctx             context.Context
	mu              sync.Mutex // guards closed and wg.Add against the final wg.Wait
	closed          bool
	wg              sync.WaitGroup
	invites, noAck  atomic.Int64
	rejected        atomic.Int64
	regCallID       string
	regCSeq         uint32
}

func (c *callee) start() {
	c.dialogs = sipgo.NewDialogServerCache(c.cli, c.contact)
	c.regCallID = fmt.Sprintf("callload-reg-%d@%s", time.Now().UnixNano(), c.addr.Addr())
	c.srv.OnInvite(c.onInvite)
	c.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = c.dialogs.ReadAck(req, tx) })
	c.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := c.dialogs.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
}

// register binds AOR -> our Contact at the edge (expires 0 removes it) and returns the granted
// expiry. A 401/407 challenge is answered when -user/-pass are set.
func (c *callee) register(ctx context.Context, expires int) (int, error) {
	c.regCSeq++
	host := c.edge.Addr().String()
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: host, Port: int(c.edge.Port())})
	aor := sip.Uri{Scheme: "sip", User: c.aor, Host: host}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	callID := sip.CallIDHeader(c.regCallID)
	exp := sip.ExpiresHeader(expires)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: c.regCSeq, MethodName: sip.REGISTER})
	req.AppendHeader(&c.contact)
	req.AppendHeader(&exp)
	req.AppendHeader(sip.NewHeader("User-Agent", "callload-room"))
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := c.cli.Do(rctx, req)
	if err == nil && (res.StatusCode == 401 || res.StatusCode == 407) && c.pass != "" {
		res, err = c.cli.DoDigestAuth(rctx, req, res, sipgo.DigestAuth{Username: c.user, Password: c.pass})
		c.regCSeq = req.CSeq().SeqNo
	}
	if err != nil {
		return 0, fmt.Errorf("REGISTER: %w", err)
	}
	if res.StatusCode != 200 {
		return 0, fmt.Errorf("REGISTER: %d %s", res.StatusCode, res.Reason)
	}
	granted := expires
	if h := res.GetHeader("Expires"); h != nil {
		if v, err := strconv.Atoi(h.Value()); err == nil {
			granted = v
		}
	}
	if ct := res.Contact(); ct != nil {
		if v, ok := ct.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				granted = n
			}
		}
	}
	return granted, nil
}

// keepRegistered refreshes the binding at half its expiry until ctx ends.
func (c *callee) keepRegistered(ctx context.Context, granted int) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(max(granted/2, 5)) * time.Second):
		}
		g, err := c.register(ctx, 3600)
		if err != nil {
			slog.Warn("re-register failed", "err", err)
			continue
		}
		granted = g
	}
}

func (c *callee) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		c.onReinvite(req, tx)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 480, "Temporarily Unavailable", nil))
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()
	c.invites.Add(1)
	var offer sdp.SessionDescription
	if err := offer.Unmarshal(req.Body()); err != nil {
		c.rejected.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
		return
	}
	dlg, err := c.dialogs.ReadInvite(req, tx)
	if err != nil {
		slog.Warn("callee: bad INVITE", "err", err)
		return
	}
	defer dlg.Close()

	answer, streams, err := c.answerMedia(&offer)
	if err != nil {
		slog.Warn("callee: media socket", "err", err)
		c.rejected.Add(1)
		_ = dlg.Respond(503, "Service Unavailable", nil)
		c.closeAll(streams.endpoints(), nil)
		return
	}
	body, _ := answer.Marshal()

	// Media starts as the 200 OK leaves: a relay that latches needs our packets promptly.
	var flows []*flow
	start := nowNs()
	for _, st := range streams {
		if f, err := c.eng.send(st.ep, st.dst, st.kind, st.pt, start, c.hold); err == nil {
			flows = append(flows, f)
		} else {
			slog.Warn("callee: media", "err", err)
		}
	}
	if err := dlg.RespondSDP(body); err != nil { // returns once the ACK came (or gave up)
		c.noAck.Add(1)
		slog.Debug("callee: 200 OK not acknowledged", "err", err)
	}
	select {
	case <-dlg.Context().Done(): // BYE
	case <-c.ctx.Done(): // run over
	}
	c.closeAll(streams.endpoints(), flows)
}

// calleeStream is one accepted stream of a call: our endpoint, where the offer sends it, its
// kind and payload type.
type calleeStream struct {
	ep   *endpoint
	dst  netip.AddrPort
	kind *streamKind
	pt   uint8
}

type calleeStreams []calleeStream

func (s calleeStreams) endpoints() []*endpoint {
	eps := make([]*endpoint, 0, len(s))
	for _, st := range s {
		eps = append(eps, st.ep)
	}
	return eps
}

// answerMedia opens one socket per offered audio/video stream (anything else is declined with
// port 0) and returns the answer and the accepted streams (on error, those opened so far, for
// the caller to close).
func (c *callee) answerMedia(offer *sdp.SessionDescription) (*sdp.SessionDescription, calleeStreams, error) {
	var streams calleeStreams
	answer := newSDP(c.addr.Addr().String())
	for _, md := range offer.MediaDescriptions {
		k := c.kinds[md.MediaName.Media]
		dst, derr := mediaTarget(offer, md)
		m := &sdp.MediaDescription{MediaName: sdp.MediaName{Media: md.MediaName.Media, Protos: md.MediaName.Protos,
			Formats: md.MediaName.Formats[:min(1, len(md.MediaName.Formats))]}}
		answer.MediaDescriptions = append(answer.MediaDescriptions, m)
		if k == nil || derr != nil || len(md.MediaName.Formats) == 0 {
			continue // port 0: declined
		}
		ep, err := c.ports.open(k)
		if err == nil {
			err = c.eng.watch(ep)
		}
		if err != nil {
			return nil, streams, err
		}
		pt, _ := strconv.Atoi(md.MediaName.Formats[0])
		m.MediaName.Port.Value = ep.port
		m.ConnectionInformation = connInfo(ep)
		if rtpmap, ok := md.Attribute("rtpmap"); ok {
			m.Attributes = append(m.Attributes, sdp.NewAttribute("rtpmap", rtpmap))
		}
		m.Attributes = append(m.Attributes, sdp.NewPropertyAttribute("sendrecv"))
		streams = append(streams, calleeStream{ep: ep, dst: dst, kind: k, pt: uint8(pt)})
	}
	return answer, streams, nil
}

// finish refuses new calls and waits for the calls in progress (ctx must be cancelled).
func (c *callee) finish() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *callee) closeAll(eps []*endpoint, flows []*flow) {
	for _, f := range flows {
		f.stop.Store(true)
		<-f.done
	}
	for _, ep := range eps {
		c.eng.release(ep)
	}
}

// onReinvite answers a session refresh with the SDP we already gave (media stays as it is).
func (c *callee) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	dlg, err := c.dialogs.MatchDialogRequest(req)
	if err != nil || dlg.InviteResponse == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	_ = dlg.ReadRequest(req, tx)
	res := sip.NewSDPResponseFromRequest(req, dlg.InviteResponse.Body())
	res.AppendHeader(&c.contact)
	_ = tx.Respond(res)
}

// ---- SDP ----

func newSDP(ip string) *sdp.SessionDescription {
	return &sdp.SessionDescription{
		Origin: sdp.Origin{Username: "callload", SessionID: uint64(time.Now().UnixNano()), SessionVersion: 1,
			NetworkType: "IN", AddressType: "IP4", UnicastAddress: ip},
		SessionName:           "callload",
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: "IP4", Address: &sdp.Address{Address: ip}},
		TimeDescriptions:      []sdp.TimeDescription{{}},
	}
}

func mediaOffer(k *streamKind, port int) *sdp.MediaDescription {
	pt := strconv.Itoa(int(k.pt))
	md := &sdp.MediaDescription{
		MediaName:  sdp.MediaName{Media: k.media, Port: sdp.RangedPort{Value: port}, Protos: []string{"RTP", "AVP"}, Formats: []string{pt}},
		Attributes: []sdp.Attribute{sdp.NewAttribute("rtpmap", pt+" "+k.codec)},
	}
	if k.media == "video" {
		md.Attributes = append(md.Attributes, sdp.NewAttribute("fmtp", pt+" profile-level-id=42e01f;packetization-mode=1"))
	}
	md.Attributes = append(md.Attributes, sdp.NewPropertyAttribute("sendrecv"))
	return md
}

// mediaTarget is where a stream described by md wants its RTP (media c= over session c=).
func mediaTarget(sd *sdp.SessionDescription, md *sdp.MediaDescription) (netip.AddrPort, error) {
	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	port := md.MediaName.Port.Value
	if ci == nil || ci.Address == nil || port <= 0 || port > 65535 {
		return netip.AddrPort{}, errors.New("no usable address")
	}
	ip, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// connInfo is the media-level c= line of an endpoint: every stream has its own loopback address.
func connInfo(ep *endpoint) *sdp.ConnectionInformation {
	return &sdp.ConnectionInformation{NetworkType: "IN", AddressType: "IP4", Address: &sdp.Address{Address: ep.addr().String()}}
}
