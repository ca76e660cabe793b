package b2bua

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// Calls across the internal trunk whose owner or room node is lost (adopt_trunk.go,
// adopt_far.go). A phone stands for the other node: it sends or answers the trunk INVITE.

// legOf is a leg's replicated dialog state as a node toward phone p holds it.
func legOf(p *phone, callID, localTag, remoteTag string) state.Leg {
	return state.Leg{CallID: callID, LocalTag: localTag, RemoteTag: remoteTag, Peer: p.addr, Transport: "UDP",
		Local: "sip:room1@" + testDomain, Remote: "sip:alice@outside.test", Target: "sip:alice@" + p.addr,
		LocalCSeq: 5, RemoteCSeq: 3, SDP: testSDP}
}

// trunkCall makes node "n0" (phone x) hand a call for room1 to r over the trunk, answered by
// b; it returns the trunk INVITE and the 2xx x got.
func trunkCall(t *testing.T, r *rig, x, b *phone) (*sip.Request, *sip.Response, *sip.Request) {
	t.Helper()
	r.room("room1")
	r.bind("room1", b)
	r.mu.Lock()
	r.trunk = "n0"
	r.mu.Unlock()
	c := x.invite(r.addr, "room1", testSDP)
	inv := b.request(sip.INVITE)
	b.reply(inv, 200, "bt", testSDP)
	b.request(sip.ACK)
	ok := x.response(sip.INVITE, 200)
	c.ack(ok)
	return c.inv, ok, inv
}

// TestFarLegRoundTrip: a node answering a call handed over the trunk puts its leg toward the
// room in the 2xx; the owner reads it back; a malformed or missing header reads as no leg.
func TestFarLegRoundTrip(t *testing.T) {
	r := newRig(t, nil)
	x, b := newPhone(t), newPhone(t)
	trunkInv, ok, inv := trunkCall(t, r, x, b)
	l := farLeg(ok)
	if l.CallID != inv.CallID().Value() || l.Node != "n1" || l.RemoteTag == "" || l.SDP == "" || l.Target == "" {
		t.Fatalf("far leg %+v, want the room's dialog %s held by n1", l, inv.CallID().Value())
	}
	for _, v := range []string{"!!! not base64", base64.RawStdEncoding.EncodeToString([]byte("{not json"))} {
		res := sip.NewResponseFromRequest(inv, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader(FarHeader, v))
		if l := farLeg(res); l.CallID != "" {
			t.Fatalf("malformed header %q read as %+v", v, l)
		}
	}
	if l := farLeg(sip.NewResponseFromRequest(inv, 200, "OK", nil)); l.CallID != "" {
		t.Fatalf("no header read as %+v", l)
	}
	// the owner (here: the node that handed the call over) ends it; the room gets BYE
	r.e.CallsEnded(state.Ended{Records: []state.CallRecord{{Call: state.Call{ID: "owner", B: state.Leg{CallID: trunkInv.CallID().Value()}}}}})
	b.reply(b.request(sip.BYE), 200, "", "")
	x.reply(x.request(sip.BYE), 200, "", "")
	r.waitIdle()
}

// TestAdoptTrunkCall: the owner of a call handed over the trunk is lost; the room's node
// re-INVITEs the caller from the replicated caller's leg, owns the call from then on (its ID,
// its record), and the caller's BYE ends the room's leg.
func TestAdoptTrunkCall(t *testing.T) {
	var n adoptions
	r := newRig(t, func(c *Config, _ *Deps) { n.count(c) })
	x, a, b := newPhone(t), newPhone(t), newPhone(t)
	trunkInv, _, _ := trunkCall(t, r, x, b)
	sc := state.Call{ID: "owned-by-n0", Room: "room1", Direction: state.Inbound, Node: "n1", AdoptedFrom: "n0",
		State: state.CallAnswered, Started: time.Now(), Answered: time.Now(),
		A: legOf(a, "caller-dialog", "n0tag", "atag"), B: state.Leg{CallID: trunkInv.CallID().Value(), Node: "n1"}}
	r.e.Adopted([]state.Call{sc}, true)
	ra := a.request(sip.INVITE)
	if ra.CallID().Value() != "caller-dialog" || ra.CSeq().SeqNo <= 5 || ra.Contact().Address.Port != r.port {
		t.Fatalf("re-INVITE to the caller:\n%s", ra)
	}
	a.reply(ra, 200, "", testSDP)
	a.request(sip.ACK)
	testutil.Eventually(t, "adopted trunk call owned here", func() bool { return r.e.Holds(sc.ID) })
	n.wait(t, 1, 0)
	c := &caller{p: a, to: r.addr, callID: "caller-dialog", fromTag: "atag", toTag: "n0tag", cseq: 10}
	c.inDialog(sip.BYE, "")
	b.reply(b.request(sip.BYE), 200, "", "")
	a.response(sip.BYE, 200)
	rec := waitRecord(t, r)
	if rec.ID != sc.ID || rec.Node != "n1" || rec.AdoptedFrom != "n0" {
		t.Fatalf("record %+v", rec)
	}
	r.waitIdle()
}

// TestAdoptTrunkCallRefused: a caller that refuses the re-INVITE ends the call: the room's
// leg gets BYE and the call is ended in the cluster's table.
func TestAdoptTrunkCallRefused(t *testing.T) {
	var n adoptions
	r := newRig(t, func(c *Config, _ *Deps) { n.count(c) })
	x, a, b := newPhone(t), newPhone(t), newPhone(t)
	trunkInv, _, _ := trunkCall(t, r, x, b)
	sc := state.Call{ID: "owned-by-n0", Room: "room1", Node: "n1", AdoptedFrom: "n0", State: state.CallAnswered,
		A: legOf(a, "caller-dialog", "n0tag", "atag"), B: state.Leg{CallID: trunkInv.CallID().Value(), Node: "n1"}}
	r.e.Adopted([]state.Call{sc}, true)
	a.reply(a.request(sip.INVITE), 481, "", "")
	a.reply(a.request(sip.BYE), 481, "", "")
	b.reply(b.request(sip.BYE), 200, "", "")
	if rec := waitRecord(t, r); rec.EndReason != state.ReasonNodeLost || rec.ID != sc.ID {
		t.Fatalf("record %+v", rec)
	}
	r.waitIdle()

	// a caller's leg that cannot be rebuilt ends the room's leg at once
	trunkInv2, _, _ := trunkCall(t, r, x, b)
	bad := sc
	bad.ID, bad.A.SDP, bad.B.CallID = "second", "", trunkInv2.CallID().Value()
	r.e.Adopted([]state.Call{bad}, true)
	b.reply(b.request(sip.BYE), 200, "", "")
	x.reply(x.request(sip.BYE), 200, "", "")
	r.waitIdle()
	n.wait(t, 0, 2)
}

// TestTrunkLegHandedOver: a node that holds the room's leg of a call lets it go, without a
// BYE, when the cluster gives the call to another node (its owner drained and handed it over).
func TestTrunkLegHandedOver(t *testing.T) {
	r := newRig(t, nil)
	x, b := newPhone(t), newPhone(t)
	_, _, inv := trunkCall(t, r, x, b)
	r.e.Adopted([]state.Call{{ID: "owned", Node: "n3", B: state.Leg{CallID: inv.CallID().Value(), Node: "n3"}}}, true)
	r.waitIdle()
	if !b.quiet(sip.BYE, 200*time.Millisecond) || len(r.records()) != 0 {
		t.Fatal("a handed-over room leg sent BYE or wrote a record")
	}
}

// TestAdoptFarLeg: a call owned here whose room leg was handed over the trunk to n2 (which
// told its leg in the 2xx) continues when n2 is lost: the room is re-INVITEd from here, and its
// BYE reaches the caller.
func TestAdoptFarLeg(t *testing.T) {
	var n adoptions
	r := newRig(t, func(c *Config, _ *Deps) { n.count(c) })
	r.room("room1")
	a, x, b := newPhone(t), newPhone(t), newPhone(t)
	r.mu.Lock()
	r.bindings["room1"] = []state.Binding{{Room: "room1", Contact: "sip:room1@" + b.addr, Node: "n2", Local: x.addr}}
	r.mu.Unlock()
	c := a.invite(r.addr, "room1", testSDP)
	inv := x.request(sip.INVITE)
	far := legOf(b, "room-dialog", "n2tag", "btag")
	far.Node = "n2"
	js, err := json.Marshal(far)
	if err != nil {
		t.Fatal(err)
	}
	x.reply(inv, 200, "xt", testSDP, FarHeader+": "+base64.RawStdEncoding.EncodeToString(js))
	x.request(sip.ACK)
	c.ack(a.response(sip.INVITE, 200))
	var sc state.Call
	testutil.Eventually(t, "call replicated with the far leg", func() bool {
		calls := r.store.State().Calls()
		if len(calls) != 1 {
			return false
		}
		sc = calls[0]
		return sc.Far.CallID == "room-dialog" && sc.A.SDP != ""
	})
	sc.B, sc.Far, sc.AdoptedFrom = sc.Far, state.Leg{}, "n2"
	r.e.Adopted([]state.Call{sc}, true)
	rb := b.request(sip.INVITE)
	if rb.CallID().Value() != "room-dialog" || rb.CSeq().SeqNo <= 5 || rb.Contact().Address.Port != r.port {
		t.Fatalf("re-INVITE to the room:\n%s", rb)
	}
	b.reply(rb, 200, "", testSDP)
	b.request(sip.ACK)
	n.wait(t, 1, 0)
	d := b.callee(rb, "btag")
	d.request(sip.BYE, "")
	a.reply(a.request(sip.BYE), 200, "", "")
	b.response(sip.BYE, 200)
	if rec := waitRecord(t, r); rec.AdoptedFrom != "n2" || rec.Node != "n1" {
		t.Fatalf("record %+v", rec)
	}
	r.waitIdle()
}

// TestAdoptFarLegRefused: a room that refuses the re-INVITE of the owner (its node lost) ends
// the call: the caller gets BYE and the record says "node lost".
func TestAdoptFarLegRefused(t *testing.T) {
	var n adoptions
	r := newRig(t, func(c *Config, _ *Deps) { n.count(c) })
	r.room("room1")
	a, x, b := newPhone(t), newPhone(t), newPhone(t)
	r.bindOn("room1", "n2", x, "", time.Now())
	c := a.invite(r.addr, "room1", testSDP)
	inv := x.request(sip.INVITE)
	far := legOf(b, "room-dialog", "n2tag", "btag")
	js, err := json.Marshal(far)
	if err != nil {
		t.Fatal(err)
	}
	x.reply(inv, 200, "xt", testSDP, FarHeader+": "+base64.RawStdEncoding.EncodeToString(js))
	x.request(sip.ACK)
	c.ack(a.response(sip.INVITE, 200))
	var sc state.Call
	testutil.Eventually(t, "call replicated with the far leg", func() bool {
		calls := r.store.State().Calls()
		if len(calls) != 1 {
			return false
		}
		sc = calls[0]
		return sc.Far.CallID == "room-dialog"
	})
	sc.B, sc.Far, sc.AdoptedFrom = sc.Far, state.Leg{}, "n2"
	r.e.Adopted([]state.Call{sc}, true)
	b.reply(b.request(sip.INVITE), 481, "", "")
	a.reply(a.request(sip.BYE), 200, "", "")
	b.reply(b.request(sip.BYE), 481, "", "")
	if rec := waitRecord(t, r); rec.EndReason != state.ReasonNodeLost {
		t.Fatalf("record %+v", rec)
	}
	n.wait(t, 0, 1)
	r.waitIdle()
}
