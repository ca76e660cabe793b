package b2bua

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
)

// Calls adopted from a lost node. An answered call carries in the replicated state what a
// survivor needs to continue its two dialogs (state.Leg: Call-ID, tags, URIs, remote target,
// route set, CSeqs, the last SDP each peer sent), written with the answer and again when a
// re-INVITE or UPDATE changes a side's SDP. When its node is lost, the cluster gives the call
// to a survivor (state.NodeLost). The survivor rebuilds both dialogs, takes relay ports and
// sends a target-refresh re-INVITE on each leg, with its own Contact and an offer built from
// the last SDP of the other side (same m-lines, in order: RFC 3264 section 8): first toward the
// caller, then toward the callee with the caller's answer. Its CSeqs start well above anything
// the dead node can have sent. A leg that does not take its re-INVITE (no answer, 481,
// another refusal) ends the call: BYE on both legs and a record "node lost", naming this node
// and the node it adopted the call from.

// adoptCSeqStep is added to the replicated local CSeq of a leg: the dead node may have sent
// requests (session refreshes, INFO) after its last write.
const adoptCSeqStep = 10000

// adoptWait bounds each leg's re-INVITE (a peer that does not answer ends the call).
const adoptWait = 16 * time.Second

// Outcomes of an adoption (Config.CallAdopted).
const (
	AdoptResumed = "resumed" // both legs took the re-INVITE: the call goes on here
	AdoptEnded   = "ended"   // the call could not be continued and was ended
)

// noteAdopted tells Config.CallAdopted how an adoption turned out.
func (e *Engine) noteAdopted(resumed bool) {
	if e.cfg.CallAdopted == nil {
		return
	}
	if resumed {
		e.cfg.CallAdopted(AdoptResumed)
	} else {
		e.cfg.CallAdopted(AdoptEnded)
	}
}

// Adopted handles calls the cluster gave to survivors of a lost node. This node continues the
// calls given to it when adopt is true (it is ready: a node replaying old log entries at its
// start does not; it ends them as ghosts once it has caught up). A node that still holds one
// of them (it was cut off, not dead) lets it go without a BYE or a record. It must not block:
// it is called from the state's apply path.
func (e *Engine) Adopted(calls []state.Call, adopt bool) {
	for _, sc := range calls {
		e.mu.Lock()
		held := e.calls[sc.ID]
		e.mu.Unlock()
		var leg *call // the room leg of a call handed over the trunk, held here
		if sc.B.Node == e.cfg.NodeID && sc.Node == e.cfg.NodeID {
			leg = e.trunkLeg(sc.B.CallID)
		}
		switch {
		case held != nil && held.recordsHere() && sc.Node == e.cfg.NodeID && held.peerNode() == sc.AdoptedFrom:
			if adopt {
				go e.adoptFar(held, sc) // the room's node was lost: the room's leg comes here
			}
		case held != nil && held.recordsHere() && sc.Node != e.cfg.NodeID:
			go held.release(sc.Node)
		case leg != nil && adopt:
			go e.adoptTrunk(leg, sc)
		case held == nil && sc.Node != e.cfg.NodeID:
			if far := e.roomLegOf(sc.B.CallID); far != nil {
				go far.release(sc.Node) // this node handed the room's leg to the owner (drain)
			}
		case held == nil && sc.Node == e.cfg.NodeID && adopt:
			go e.adopt(sc)
		}
	}
}

// adopt continues one call of a lost node, or ends it.
func (e *Engine) adopt(sc state.Call) {
	log := e.log.With("call", sc.ID, "adopted_from", sc.AdoptedFrom, "room", sc.Room)
	start := time.Now()
	c, err := e.rebuild(sc)
	if err != nil {
		log.Warn("call not adopted; ending it", "error", err)
		e.deps.Store.Enqueue(state.EndCallsByID([]string{sc.ID}, e.cfg.NodeID, state.ReasonNodeLost, e.cfg.NodeID, time.Now()))
		e.noteAdopted(false)
		return
	}
	if !e.register(c) {
		log.Info("draining: adopted call ended")
		c.byeNow(c.a, c.b)
		e.deps.Store.Enqueue(state.EndCallsByID([]string{sc.ID}, e.cfg.NodeID, state.ReasonNodeLost, e.cfg.NodeID, time.Now()))
		e.noteAdopted(false)
		return
	}
	err = c.resume()
	c.mu.Lock()
	c.pending = false
	c.mu.Unlock()
	if err != nil {
		log.Warn("adopted call could not be resumed; ending it", "error", err)
		c.hangup(state.ReasonNodeLost, 0)
		e.noteAdopted(false)
		return
	}
	c.replicate()
	c.armTimers()
	e.noteAdopted(true)
	log.Info("call adopted", "took", time.Since(start).Round(time.Millisecond))
}

// byeNow sends BYE on legs of a call that is not in the engine's table and waits for the
// answers. byeLeg counts its sends in the engine's wait group, which only calls in the table
// may do: a draining engine waits on that group, and an Add from zero while it waits is a race.
func (c *call) byeNow(legs ...*dialog) {
	var wg sync.WaitGroup
	for _, d := range legs {
		req := d.newRequest(sip.BYE, 0, sip.ContactHeader{})
		wg.Go(func() {
			ctx, done := context.WithTimeout(context.Background(), 8*time.Second)
			defer done()
			_, _ = c.e.deps.Client.Do(ctx, req)
		})
	}
	wg.Wait()
}

// rebuild makes the call from its replicated state: both dialogs (the room's leg over the
// room's flow to this node when it has one), answered, with an offer/answer exchange pending
// until resume is done (a peer's own re-INVITE meanwhile gets 491).
func (e *Engine) rebuild(sc state.Call) (*call, error) {
	a, err := legDialog(media.LegA, sc.A)
	if err != nil {
		return nil, fmt.Errorf("caller leg: %w", err)
	}
	b, err := legDialog(media.LegB, sc.B)
	if err != nil {
		return nil, fmt.Errorf("callee leg: %w", err)
	}
	src, _ := netip.ParseAddrPort(sc.Source)
	c := &call{
		e: e, id: sc.ID, dir: sc.Direction, room: sc.Room, from: sc.From, to: sc.To, source: src, started: sc.Started,
		transport: a.transport, a: a, b: b, st: state.CallAnswered, answered: sc.Answered, status: 200, pending: true,
		acks: map[ackKey]chan *sip.Request{}, pracks: map[uint32]chan struct{}{}, cancelCh: make(chan struct{}),
		endedCh: make(chan struct{}), adoptedFrom: sc.AdoptedFrom,
	}
	roomLeg := b
	if sc.Direction == state.Outbound {
		roomLeg = a
	}
	e.overRoomFlow(sc.Room, roomLeg)
	return c, nil
}

// legDialog is a dialog from its replicated state.
func legDialog(side media.Leg, l state.Leg) (*dialog, error) {
	d := &dialog{side: side, callID: l.CallID, localTag: l.LocalTag, remoteTag: l.RemoteTag, localName: l.LocalName,
		remoteName: l.RemoteName, dest: l.Peer, transport: strings.ToUpper(l.Transport), cseq: l.LocalCSeq + adoptCSeqStep,
		remoteCSeq: l.RemoteCSeq, remoteSDP: []byte(l.SDP)}
	if d.transport == "" {
		d.transport = "UDP"
	}
	d.peer, _ = netip.ParseAddrPort(l.Peer)
	for _, u := range []struct {
		s   string
		dst *sip.Uri
	}{{l.Local, &d.local}, {l.Remote, &d.remote}, {l.Target, &d.target}} {
		if err := sip.ParseUri(u.s, u.dst); err != nil {
			return nil, fmt.Errorf("uri %q: %w", u.s, err)
		}
	}
	for _, r := range l.Routes {
		var u sip.Uri
		if err := sip.ParseUri(r, &u); err != nil {
			return nil, fmt.Errorf("route %q: %w", r, err)
		}
		d.routes = append(d.routes, u)
	}
	if len(d.remoteSDP) == 0 {
		return nil, fmt.Errorf("no SDP of the peer replicated")
	}
	return d, nil
}

// overRoomFlow sends leg d, toward room, over the room's newest flow to this node, if it has
// one; else a UDP leg goes to the source of the room's newest UDP registration anywhere (its
// address now, behind a NAT that may have moved it), or keeps the replicated address.
func (e *Engine) overRoomFlow(room string, d *dialog) {
	var best, udp state.Binding
	for _, bd := range e.cfg.Bindings(room) {
		switch {
		case bd.Source == "":
		case bd.Node == "" || bd.Node == e.cfg.NodeID:
			if bd.Updated.After(best.Updated) {
				best = bd
			}
		case strings.EqualFold(bd.Transport, "UDP") && bd.Updated.After(udp.Updated):
			udp = bd
		}
	}
	if best.Source == "" && d.transport == "UDP" {
		best = udp
	}
	if best.Source == "" {
		return
	}
	d.dest, d.transport = best.Source, strings.ToUpper(best.Transport)
	d.peer, _ = netip.ParseAddrPort(best.Source)
}

// resume moves the call's media to this node: new relay ports, a re-INVITE on each leg.
func (c *call) resume() error {
	e := c.e
	if e.deps.Media != nil {
		s, err := e.deps.Media.NewSession(c.id, func(reason string) { c.hangup(reason, 0) })
		e.noteMedia(err)
		if err != nil {
			return fmt.Errorf("media session: %w", err)
		}
		c.setMedia(s)
	}
	renumber(c.mediaSession())
	e.index(c, c.a)
	e.index(c, c.b)
	m := c.mediaSession()
	toA := c.b.remoteSDPCopy()
	var err error
	if m != nil {
		if toA, err = m.Offer(media.LegB, toA, c.b.peer); err != nil {
			return fmt.Errorf("callee's SDP: %w", err)
		}
	}
	ansA, err := c.reinvite(c.a, toA)
	if err != nil {
		return err
	}
	toB := ansA
	if m != nil {
		if toB, err = m.Offer(media.LegA, ansA, c.a.peer); err != nil {
			return fmt.Errorf("caller's answer: %w", err)
		}
	}
	ansB, err := c.reinvite(c.b, toB)
	if err != nil {
		return err
	}
	if m != nil {
		if _, err = m.Answer(media.LegB, ansB, c.b.peer); err != nil {
			return fmt.Errorf("callee's answer: %w", err)
		}
	}
	c.a.setSDP(toA)
	c.a.setRemoteSDP(ansA)
	c.b.setSDP(toB)
	c.b.setRemoteSDP(ansB)
	return nil
}

// reinvite sends a target-refresh re-INVITE with an offer on leg d, ACKs its 2xx and returns
// the peer's answer.
func (c *call) reinvite(d *dialog, offer []byte) ([]byte, error) {
	req := d.newRequest(sip.INVITE, 0, sip.ContactHeader{Address: c.e.contactFor(d.transport, d.peer)})
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(offer)
	res, tx, err := c.transactWithin(req, adoptWait)
	if tx != nil {
		defer tx.Terminate()
	}
	if err != nil || res == nil {
		return nil, fmt.Errorf("re-INVITE to the %s not answered: %w", legName(d.side), err)
	}
	if !res.IsSuccess() {
		return nil, fmt.Errorf("re-INVITE to the %s refused: %d %s", legName(d.side), res.StatusCode, res.Reason)
	}
	if ct := res.Contact(); ct != nil {
		d.mu.Lock()
		d.target = ct.Address
		d.mu.Unlock()
	}
	ack := d.newRequest(sip.ACK, req.CSeq().SeqNo, sip.ContactHeader{})
	_ = c.e.deps.Client.WriteRequest(ack)
	if !hasSDP(res) {
		return nil, fmt.Errorf("re-INVITE to the %s answered without SDP", legName(d.side))
	}
	return res.Body(), nil
}

// renumber makes the o= versions of m, a relay that takes over a call, start above any the
// peers can have seen from the relay before it (media.Session.Renumber): the current time in
// seconds, which a relay's count of changes does not reach.
func renumber(m Session) {
	if r, ok := m.(interface{ Renumber(uint64) }); ok {
		r.Renumber(uint64(time.Now().Unix()))
	}
}

// release lets go of a call another node adopted (this node was declared lost but lives): its
// media and table entry, without a BYE and without a record (the adopter writes it).
func (c *call) release(owner string) {
	c.mu.Lock()
	c.recorded = true
	c.mu.Unlock()
	c.finish(200, "adopted by "+owner)
}

// noteSDP keeps the SDP each peer sent in an offer/answer exchange, and writes the call again
// when one changed, so a survivor would offer the media as it is now.
func (c *call) noteSDP(d *dialog, dBody []byte, o *dialog, oBody []byte) {
	changed := d.setRemoteSDP(dBody)
	if o.setRemoteSDP(oBody) {
		changed = true
	}
	if changed {
		c.replicate()
	}
}

// replicate writes the answered call (and its dialog state) to the cluster's call table.
func (c *call) replicate() {
	if !c.recordsHere() {
		return
	}
	c.mu.Lock()
	live := !c.ended && c.st == state.CallAnswered
	c.mu.Unlock()
	if live {
		c.e.deps.Store.Enqueue(state.PutCall(c.snapshot()))
	}
}

// setRemoteSDP records the last SDP the peer sent on the leg; it reports whether it changed.
func (d *dialog) setRemoteSDP(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if bytes.Equal(d.remoteSDP, b) {
		return false
	}
	d.remoteSDP = bytes.Clone(b)
	return true
}

func (d *dialog) remoteSDPCopy() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return bytes.Clone(d.remoteSDP)
}
