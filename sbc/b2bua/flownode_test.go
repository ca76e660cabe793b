package b2bua

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
)

// Rooms whose flow is on a node that cannot take calls, and rooms that move (flownode.go).
// Phones stand for the other nodes: a binding with Node set and Local a phone's address sends
// the call over the internal trunk to that phone.

// bindOn registers room1 through node at phone p's address (a flow another node holds).
func (r *rig) bindOn(room, node string, p *phone, instance string, updated time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bindings[room] = append(r.bindings[room], state.Binding{Room: room, Contact: "sip:" + room + "@192.0.2.1",
		Node: node, Local: p.addr, Instance: instance, Updated: updated})
}

// asTrunk makes new calls enter r as handed over the trunk by node.
func (r *rig) asTrunk(node string) {
	r.mu.Lock()
	r.trunk = node
	r.mu.Unlock()
}

// TestMovedRoomCaughtUp: a call handed here for a room whose flow this node's state does not
// show yet waits for the state to catch up, then rings the flow the room just registered here.
func TestMovedRoomCaughtUp(t *testing.T) {
	var r *rig
	b := newPhone(t)
	r = newRig(t, func(c *Config, _ *Deps) {
		c.CatchUp = func(context.Context) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(r.bindings["room1"]) == 0 { // the REGISTER's write arrives
				r.bindings["room1"] = []state.Binding{{Room: "room1", Contact: "sip:room1@" + b.addr, Source: b.addr, Transport: "udp", Node: "n1"}}
			}
			return nil
		}
	})
	r.room("room1")
	r.asTrunk("n0")
	x := newPhone(t)
	x.invite(r.addr, "room1", testSDP)
	inv := b.request(sip.INVITE)
	if inv.GetHeader(RelayHeader) != nil || inv.GetHeader(TrunkHeader) != nil {
		t.Fatalf("the room's own flow got trunk headers:\n%s", inv)
	}
	b.reply(inv, 486, "bt", "")
	b.request(sip.ACK)
	x.response(sip.INVITE, 486)
	r.waitIdle()
}

// TestMovedRoomRelayedOnce: a call handed here for a room that moved to another node (this
// node's state, caught up or not, shows its flow there) is handed on once, marked; a call that
// was handed on already is not handed on again: 480.
func TestMovedRoomRelayedOnce(t *testing.T) {
	r := newRig(t, func(c *Config, _ *Deps) {
		c.CatchUp = func(context.Context) error { return errors.New("no leader") }
	})
	r.room("room1")
	y := newPhone(t)
	r.bindOn("room1", "n2", y, "", time.Now())
	r.asTrunk("n0")
	x := newPhone(t)
	x.invite(r.addr, "room1", testSDP)
	inv := y.request(sip.INVITE)
	if inv.GetHeader(RelayHeader) == nil || inv.GetHeader(TrunkHeader) == nil {
		t.Fatalf("the call handed on is not marked:\n%s", inv)
	}
	y.reply(inv, 486, "yt", "")
	y.request(sip.ACK)
	x.response(sip.INVITE, 486)
	r.waitIdle()

	x.invite(r.addr, "room1", testSDP, RelayHeader+": 1")
	if res := x.final(sip.INVITE); res.StatusCode != 480 || res.GetHeader("Retry-After") != nil {
		t.Fatalf("a call handed on twice: %d %v, want 480 without Retry-After", res.StatusCode, res.GetHeader("Retry-After"))
	}
	if !y.quiet(sip.INVITE, 200*time.Millisecond) {
		t.Fatal("a call was handed on twice")
	}
}

// TestMovedRoomInstanceFlows: a room that moved with two RFC 5626 flows on other nodes is
// handed on to the first, with the other as its alternate; trunk flows only.
func TestMovedRoomInstanceFlows(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	y, z := newPhone(t), newPhone(t)
	now := time.Now()
	r.bindOn("room1", "n2", y, "<urn:uuid:1>", now)
	r.bindOn("room1", "n3", z, "<urn:uuid:1>", now.Add(-time.Second))
	r.asTrunk("n0")
	x := newPhone(t)
	x.invite(r.addr, "room1", testSDP)
	inv := y.request(sip.INVITE)
	if inv.GetHeader(RelayHeader) == nil {
		t.Fatalf("not marked:\n%s", inv)
	}
	y.reply(inv, 486, "yt", "")
	y.request(sip.ACK)
	x.response(sip.INVITE, 486)
	r.waitIdle()
}

// TestFlowNodeDown: a room whose only flow is on a member seen down gets 480 with
// Retry-After at once; nothing is sent to the member.
func TestFlowNodeDown(t *testing.T) {
	r := newRig(t, func(c *Config, _ *Deps) { c.FlowNodeDown = func(n string) bool { return n == "n2" } })
	r.room("room1")
	y := newPhone(t)
	r.bindOn("room1", "n2", y, "", time.Now())
	a := newPhone(t)
	a.invite(r.addr, "room1", testSDP)
	res := a.final(sip.INVITE)
	if res.StatusCode != 480 || res.GetHeader("Retry-After") == nil || res.GetHeader("Retry-After").Value() != flowDownRetryAfter {
		t.Fatalf("room on a dead node: %d Retry-After %v", res.StatusCode, res.GetHeader("Retry-After"))
	}
	if !y.quiet(sip.INVITE, 200*time.Millisecond) {
		t.Fatal("the call was handed to a member seen down")
	}
}

// silentMember is a FlowNodeReached whose member answered a ping when first asked (slow, not
// gone) and never since.
func silentMember() func(string) time.Time {
	var mu sync.Mutex
	asked := 0
	return func(string) time.Time {
		mu.Lock()
		defer mu.Unlock()
		asked++
		if asked == 1 {
			return time.Now()
		}
		return time.Time{}
	}
}

// TestDeadTrunkNodeTimeout: a member handed a call that says nothing at all (not even 100)
// while it does not answer the cluster's pings is given up on: the caller gets 480 with
// Retry-After rather than a 408 after Timer B.
func TestDeadTrunkNodeTimeout(t *testing.T) {
	r := newRig(t, func(c *Config, _ *Deps) {
		c.FlowNodeReached = silentMember()
		c.TrunkTimeout = 100 * time.Millisecond
	})
	r.room("room1")
	y := newPhone(t)
	r.bindOn("room1", "n2", y, "", time.Now())
	a := newPhone(t)
	a.invite(r.addr, "room1", testSDP)
	y.request(sip.INVITE) // and nothing back
	res := a.final(sip.INVITE)
	if res.StatusCode != 480 || res.GetHeader("Retry-After") == nil {
		t.Fatalf("call to a silent member: %d Retry-After %v", res.StatusCode, res.GetHeader("Retry-After"))
	}
	r.waitIdle()
}

// TestDeadTrunkNodeNextFlow: when the silent member held one of a UA instance's flows, the
// call goes on with its next flow, on another member.
func TestDeadTrunkNodeNextFlow(t *testing.T) {
	r := newRig(t, func(c *Config, _ *Deps) {
		c.FlowNodeReached = func(string) time.Time { return time.Time{} }
		c.TrunkTimeout = 100 * time.Millisecond
	})
	r.room("room1")
	y, z := newPhone(t), newPhone(t)
	now := time.Now()
	r.bindOn("room1", "n2", y, "<urn:uuid:1>", now)
	r.bindOn("room1", "n3", z, "<urn:uuid:1>", now.Add(-time.Second))
	a := newPhone(t)
	c := a.invite(r.addr, "room1", testSDP)
	y.request(sip.INVITE) // silent
	inv := z.request(sip.INVITE)
	z.reply(inv, 200, "zt", testSDP)
	z.request(sip.ACK)
	c.ack(a.response(sip.INVITE, 200))
	c.hangUp(r, z)
}

// TestDrainKeepsRoomsWithoutOtherFlows: a draining node still takes the calls handed to it for
// the rooms it keeps (their flows are all here), and refuses the others with 503.
func TestDrainKeepsRoomsWithoutOtherFlows(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	r.room("room2")
	b := newPhone(t)
	r.bind("room1", b)
	r.bind("room2", b)
	r.asTrunk("n0")
	r.e.DrainRooms(func(room string) bool { return room == "room1" })
	x := newPhone(t)
	x.invite(r.addr, "room2", testSDP)
	if res := x.final(sip.INVITE); res.StatusCode != 503 {
		t.Fatalf("draining: call for a room not kept answered %d", res.StatusCode)
	}
	x.invite(r.addr, "room1", testSDP)
	inv := b.request(sip.INVITE)
	b.reply(inv, 486, "bt", "")
	b.request(sip.ACK)
	x.response(sip.INVITE, 486)
	r.waitIdle()
}

// TestForkSecondAnswerReleased: a branch that answers 200 after another won (crossing our
// CANCEL) is acknowledged and hung up; the caller sees one answer.
func TestForkSecondAnswerReleased(t *testing.T) {
	r := newRig(t, nil)
	r.room("room1")
	a, b1, b2 := newPhone(t), newPhone(t), newPhone(t)
	r.bind("room1", b1)
	r.bind("room1", b2)
	c := a.invite(r.addr, "room1", testSDP)
	inv1, inv2 := b1.request(sip.INVITE), b2.request(sip.INVITE)
	b2.reply(inv2, 200, "t2", testSDP)
	b2.request(sip.ACK)
	ok := a.response(sip.INVITE, 200)
	c.ack(ok)
	b1.request(sip.CANCEL)
	b1.reply(inv1, 200, "t1", testSDP) // crossed with the CANCEL
	b1.request(sip.ACK)
	b1.reply(b1.request(sip.BYE), 200, "", "")
	c.hangUp(r, b2)
}
