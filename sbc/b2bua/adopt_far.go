package b2bua

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/media"
)

// Calls across the internal trunk whose room node died. The node a call was handed to (it
// holds the room's flow) tells the owner its leg toward the room in the 2xx it answers over
// the trunk (FarHeader); the owner replicates it with the call (state.Call.Far). When that
// node is lost, the cluster gives the room's leg to the owner (state.NodeLost): the owner
// turns its trunk leg into the room's dialog and re-INVITEs the room (over the room's flow to
// this node if it has one, else at its address) with an offer from its own relay. The caller
// sees nothing.

// FarHeader carries, in a 2xx over the internal trunk, the answering node's leg toward the
// room (base64 of its state.Leg in JSON). It is never passed to a peer (headers.go passes a
// fixed list).
const FarHeader = "X-Portcullis-Far"

// addFarLeg puts the room's leg in the 2xx of a call handed over the trunk.
func (c *call) addFarLeg(res *sip.Response) {
	if !c.fromTrunk {
		return
	}
	b, err := json.Marshal(c.b.stateLeg(c.e.cfg.NodeID, true))
	if err != nil {
		return
	}
	res.AppendHeader(sip.NewHeader(FarHeader, base64.RawStdEncoding.EncodeToString(b)))
}

// farLeg reads the room's leg from a 2xx over the trunk; the zero Leg when there is none.
func farLeg(res *sip.Response) state.Leg {
	var l state.Leg
	h := res.GetHeader(FarHeader)
	if h == nil {
		return l
	}
	b, err := base64.RawStdEncoding.DecodeString(h.Value())
	if err != nil || json.Unmarshal(b, &l) != nil {
		return state.Leg{}
	}
	return l
}

// roomLegOf returns the call handed over the trunk to this node whose leg toward the room has
// Call-ID id, if any.
func (e *Engine) roomLegOf(id string) *call {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.calls {
		if c.fromTrunk && c.owned.Load() == nil && c.b.id() == id {
			return c
		}
	}
	return nil
}

// adoptFar continues call c, owned here, with the room's leg sc.B once the node that held it
// was lost.
func (e *Engine) adoptFar(c *call, sc state.Call) {
	log := e.log.With("call", sc.ID, "adopted_from", sc.AdoptedFrom, "room", sc.Room)
	start := time.Now()
	b, err := legDialog(media.LegB, sc.B)
	if err == nil {
		e.overRoomFlow(sc.Room, b)
		err = e.swapLeg(c, c.b, b, sc.AdoptedFrom)
	}
	if err == nil {
		c.mu.Lock()
		c.bNode = ""
		c.mu.Unlock()
		err = c.resumeRoom()
		c.mu.Lock()
		c.pending = false
		c.mu.Unlock()
	}
	if err != nil {
		log.Warn("room leg not adopted; ending the call", "error", err)
		c.hangup(state.ReasonNodeLost, 0)
		e.noteAdopted(false)
		return
	}
	c.replicate()
	e.noteAdopted(true)
	log.Info("room leg adopted", "took", time.Since(start).Round(time.Millisecond))
}

// swapLeg turns leg d of c into the dialog n (same side), in c and in the engine's index, with
// an offer/answer exchange pending (a peer's own re-INVITE meanwhile gets 491).
func (e *Engine) swapLeg(c *call, d, n *dialog, from string) error {
	c.mu.Lock()
	if c.ended || c.st != state.CallAnswered || c.pending {
		c.mu.Unlock()
		return fmt.Errorf("the call is not answered and idle")
	}
	c.pending = true
	c.adoptedFrom = from
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.legs, d.key())
	d.become(n)
	e.legs[d.key()] = &leg{c: c, d: d}
	return nil
}

// resumeRoom re-INVITEs the room toward this node's relay, with an offer built from the
// caller's last SDP.
func (c *call) resumeRoom() error {
	return c.refreshLeg(c.b, c.a, "caller", "room")
}
