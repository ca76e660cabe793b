package b2bua

import (
	"fmt"
	"time"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
)

// Calls across the internal trunk whose owner died. The caller's node (the owner) held leg A
// and handed leg B over the trunk to the node that holds the room's flow; that node bridges
// the trunk dialog to the room with its own relay. When the owner is lost, the cluster gives
// the call to the room's node (state.AdoptableByTrunk): it keeps its leg toward the room and
// its relay ports as they are, turns its trunk leg into the caller's dialog (replicated with
// the call) and re-INVITEs the caller with an offer from its relay built from the room's last
// SDP. The room sees nothing. From then on this node owns the call: it writes its state and
// its record under the call's ID.

// trunkLeg returns the call handed over the trunk to this node whose trunk dialog has Call-ID
// id, if any.
func (e *Engine) trunkLeg(id string) *call {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.calls {
		if c.fromTrunk && c.owned.Load() == nil && c.a.id() == id {
			return c
		}
	}
	return nil
}

// adoptTrunk continues call c, the room leg of sc held here, with the caller's leg of sc.
func (e *Engine) adoptTrunk(c *call, sc state.Call) {
	log := e.log.With("call", sc.ID, "adopted_from", sc.AdoptedFrom, "room", sc.Room)
	start := time.Now()
	a, err := legDialog(media.LegA, sc.A)
	if err == nil {
		err = e.takeOver(c, sc, a)
	}
	if err != nil {
		log.Warn("trunk call not adopted; ending it", "error", err)
		e.deps.Store.Enqueue(state.EndCallsByID([]string{sc.ID}, e.cfg.NodeID, state.ReasonNodeLost, e.cfg.NodeID, time.Now()))
		c.hangup(state.ReasonNodeLost, 0)
		e.noteAdopted(false)
		return
	}
	err = c.resumeCaller()
	c.mu.Lock()
	c.pending = false
	c.mu.Unlock()
	if err != nil {
		log.Warn("adopted trunk call could not be resumed; ending it", "error", err)
		c.hangup(state.ReasonNodeLost, 0)
		e.noteAdopted(false)
		return
	}
	c.replicate()
	e.noteAdopted(true)
	log.Info("trunk call adopted", "took", time.Since(start).Round(time.Millisecond))
}

// takeOver makes c the call sc in this node's table: its trunk leg becomes the caller's
// dialog a, and c is recorded under sc's ID from now on.
func (e *Engine) takeOver(c *call, sc state.Call, a *dialog) error {
	c.mu.Lock()
	if c.ended || c.st != state.CallAnswered || c.pending {
		c.mu.Unlock()
		return fmt.Errorf("the room's leg is not answered and idle")
	}
	c.pending = true
	c.adoptedFrom = sc.AdoptedFrom
	c.mu.Unlock()
	own := sc
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.calls[c.id] != c {
		return fmt.Errorf("the room's leg ended")
	}
	delete(e.legs, c.a.key())
	delete(e.calls, c.id)
	c.owned.Store(&own)
	e.calls[own.ID] = c
	c.a.become(a)
	e.legs[c.a.key()] = &leg{c: c, d: c.a}
	return nil
}

// resumeCaller re-INVITEs the caller toward this node's relay, with an offer built from the
// room's last SDP.
func (c *call) resumeCaller() error {
	return c.refreshLeg(c.a, c.b, "room", "caller")
}

// refreshLeg re-INVITEs leg to toward this node's relay with an offer built from the last SDP
// of the other leg from (its peer named fromName, to's toName), has the relay take the answer,
// and records both SDPs of leg to.
func (c *call) refreshLeg(to, from *dialog, fromName, toName string) error {
	m := c.mediaSession()
	renumber(m) // the peer saw the versions of the lost node's relay
	offer := from.remoteSDPCopy()
	if len(offer) == 0 {
		return fmt.Errorf("no SDP of the %s", fromName)
	}
	var err error
	if m != nil {
		if offer, err = m.Offer(from.side, offer, from.peer); err != nil {
			return fmt.Errorf("%s's SDP: %w", fromName, err)
		}
	}
	ans, err := c.reinvite(to, offer)
	if err != nil {
		return err
	}
	if m != nil {
		if _, err = m.Answer(to.side, ans, to.peer); err != nil {
			return fmt.Errorf("%s's answer: %w", toName, err)
		}
	}
	to.setSDP(offer)
	to.setRemoteSDP(ans)
	return nil
}

// become takes the dialog state of n (the same side): a trunk leg turned into the caller's.
func (d *dialog) become(n *dialog) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.callID, d.localTag, d.remoteTag = n.callID, n.localTag, n.remoteTag
	d.local, d.localName, d.remote, d.remoteName = n.local, n.localName, n.remote, n.remoteName
	d.target, d.routes, d.dest, d.transport = n.target, n.routes, n.dest, n.transport
	d.cseq, d.remoteCSeq, d.peer, d.update = n.cseq, n.remoteCSeq, n.peer, n.update
	d.lastSDP, d.remoteSDP = nil, n.remoteSDP
}
