package b2bua

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/portcullis-sbc/portcullis/cluster/state"
	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/media"
)

// Calls adopted from a lost node, at the engine's level: one rig bridges a call, a second one
// (another node) is given it from the replicated state, as the cluster does when the first is
// lost, and re-INVITEs both phones.

// versionMedia stands for the relay of the adopting node: it writes its own o= version into
// every SDP it returns, from 1 unless the engine renumbered the session (media.Session.Renumber).
type versionMedia struct {
	mu       sync.Mutex
	sessions int
	offerErr error
}

type versionSession struct {
	m       *versionMedia
	mu      sync.Mutex
	version uint64
}

func (m *versionMedia) NewSession(string, func(string)) (Session, error) {
	m.mu.Lock()
	m.sessions++
	m.mu.Unlock()
	return &versionSession{m: m, version: 1}, nil
}

var originLine = regexp.MustCompile(`(?m)^o=(\S+) (\S+) (\d+)`)

func (s *versionSession) rewrite(body []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	return originLine.ReplaceAll(body, fmt.Appendf(nil, "o=$1 $2 %d", s.version))
}

func (s *versionSession) Offer(_ media.Leg, body []byte, _ netip.AddrPort) ([]byte, error) {
	if s.m.offerErr != nil {
		return nil, s.m.offerErr
	}
	return s.rewrite(body), nil
}

func (s *versionSession) Answer(_ media.Leg, body []byte, _ netip.AddrPort) ([]byte, error) {
	return s.rewrite(body), nil
}

func (s *versionSession) Renumber(v uint64) {
	s.mu.Lock()
	s.version = max(s.version, v)
	s.mu.Unlock()
}

func (s *versionSession) Close() {}

// originVersion is the version of the o= line of an SDP body.
func originVersion(t *testing.T, body []byte) uint64 {
	t.Helper()
	m := originLine.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no o= line in %q", body)
	}
	v, err := strconv.ParseUint(string(m[3]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// answeredCall makes a call from a to room1 on r (bound to b) and returns the caller's dialog,
// the callee's INVITE and the call as r replicated it, with its dialog state.
func answeredCall(t *testing.T, r *rig, a, b *phone) (*caller, *sip.Request, state.Call) {
	t.Helper()
	r.room("room1")
	r.bind("room1", b)
	c := a.invite(r.addr, "room1", testSDP)
	inv := b.request(sip.INVITE)
	b.reply(inv, 200, "bt", testSDP)
	b.request(sip.ACK)
	c.ack(a.response(sip.INVITE, 200))
	var sc state.Call
	testutil.Eventually(t, "answered call replicated with its dialog state", func() bool {
		calls := r.store.State().Calls()
		if len(calls) != 1 {
			return false
		}
		sc = calls[0]
		return sc.State == state.CallAnswered && sc.A.SDP != "" && sc.B.SDP != "" && sc.A.Target != ""
	})
	// r, the "lost" node, lets the call go before it stops (it is not ended there)
	t.Cleanup(func() { r.e.Adopted([]state.Call{adoptedBy(sc, "gone")}, true) })
	return c, inv, sc
}

// adoptions counts what Config.CallAdopted is told, by result.
type adoptions struct {
	mu sync.Mutex
	n  map[string]int
}

// count makes c's engine count its adoptions in a.
func (a *adoptions) count(c *Config) {
	a.n = map[string]int{}
	c.CallAdopted = func(result string) {
		a.mu.Lock()
		a.n[result]++
		a.mu.Unlock()
	}
}

// wait waits until the adoptions counted are resumed and ended.
func (a *adoptions) wait(t *testing.T, resumed, ended int) {
	t.Helper()
	testutil.Eventually(t, fmt.Sprintf("%d adoptions resumed, %d ended", resumed, ended), func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.n[AdoptResumed] == resumed && a.n[AdoptEnded] == ended
	})
}

// adopter is a second node (n2) whose relay is m; it counts its adoptions in n.
func adopter(t *testing.T, m *versionMedia, n *adoptions) *rig {
	return newRig(t, func(c *Config, d *Deps) {
		c.NodeID = "n2"
		if m != nil {
			d.Media = m
		}
		if n != nil {
			n.count(c)
		}
	})
}

// adoptedBy is sc as the cluster gives it to node when its node is lost.
func adoptedBy(sc state.Call, node string) state.Call {
	sc.AdoptedFrom, sc.Node = sc.Node, node
	return sc
}

// checkReinvite checks a re-INVITE of the adopter on a leg: the leg's dialog, the adopter's
// Contact, a CSeq above the replicated one and an o= version above the one the phone saw.
func checkReinvite(t *testing.T, leg string, req *sip.Request, l state.Leg, port int) {
	t.Helper()
	if req.CallID().Value() != l.CallID {
		t.Fatalf("%s re-INVITE: Call-ID %q, want %q", leg, req.CallID().Value(), l.CallID)
	}
	if tag, _ := req.From().Params.Get("tag"); tag != l.LocalTag {
		t.Fatalf("%s re-INVITE: From tag %q, want %q", leg, tag, l.LocalTag)
	}
	if ct := req.Contact(); ct == nil || ct.Address.Port != port {
		t.Fatalf("%s re-INVITE: Contact %v, want the adopter's port %d", leg, ct, port)
	}
	if n := req.CSeq().SeqNo; n <= l.LocalCSeq {
		t.Fatalf("%s re-INVITE: CSeq %d, not above the replicated %d", leg, n, l.LocalCSeq)
	}
	if v := originVersion(t, req.Body()); v <= 1 {
		t.Fatalf("%s re-INVITE: o= version %d, not above the old relay's 1", leg, v)
	}
}

// resumeBoth answers the adopter's re-INVITEs on both legs and returns the callee's one.
func resumeBoth(t *testing.T, r2 *rig, a, b *phone, sc state.Call) *sip.Request {
	t.Helper()
	ra := a.request(sip.INVITE)
	checkReinvite(t, "caller", ra, sc.A, r2.port)
	a.reply(ra, 200, "", testSDP)
	a.request(sip.ACK)
	rb := b.request(sip.INVITE)
	checkReinvite(t, "callee", rb, sc.B, r2.port)
	b.reply(rb, 200, "", testSDP)
	b.request(sip.ACK)
	return rb
}

// waitRecord waits for r's only record and returns it.
func waitRecord(t *testing.T, r *rig) state.CallRecord {
	t.Helper()
	testutil.Eventually(t, "call record", func() bool { return len(r.records()) == 1 })
	return r.records()[0]
}

// TestAdoptAnsweredCallCalleeHangsUp: a survivor given an answered call re-INVITEs the caller
// then the callee with its own Contact, a CSeq above the replicated one and an o= version above
// the lost relay's; the callee's BYE afterwards reaches the caller and the record names the
// adopter and the lost node.
func TestAdoptAnsweredCallCalleeHangsUp(t *testing.T) {
	r1 := newRig(t, nil)
	m := &versionMedia{}
	var n adoptions
	r2 := adopter(t, m, &n)
	a, b := newPhone(t), newPhone(t)
	_, _, sc := answeredCall(t, r1, a, b)
	r2.e.Adopted([]state.Call{adoptedBy(sc, "n2")}, true)
	rb := resumeBoth(t, r2, a, b, sc)
	n.wait(t, 1, 0)
	testutil.Eventually(t, "adopted call replicated by n2", func() bool {
		got, ok := r2.store.State().Call(sc.ID)
		return ok && got.Node == "n2" && got.AdoptedFrom == "n1"
	})
	if !r2.e.Holds(sc.ID) {
		t.Fatal("the adopter does not hold the call")
	}

	d := b.callee(rb, "bt")
	d.cseq = 1000
	d.request(sip.BYE, "")
	a.reply(a.request(sip.BYE), 200, "", "")
	b.response(sip.BYE, 200)
	rec := waitRecord(t, r2)
	if rec.ID != sc.ID || rec.Node != "n2" || rec.AdoptedFrom != "n1" {
		t.Fatalf("record %+v: want call %s by n2 adopted from n1", rec, sc.ID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions != 1 {
		t.Fatalf("adopter opened %d media sessions, want 1", m.sessions)
	}
}

// TestAdoptAnsweredCallCallerHangsUp: after the adoption the caller's BYE, sent to the
// adopter's Contact, ends both legs there.
func TestAdoptAnsweredCallCallerHangsUp(t *testing.T) {
	r1 := newRig(t, nil)
	r2 := adopter(t, &versionMedia{}, nil)
	a, b := newPhone(t), newPhone(t)
	c, _, sc := answeredCall(t, r1, a, b)
	r2.e.Adopted([]state.Call{adoptedBy(sc, "n2")}, true)
	resumeBoth(t, r2, a, b, sc)
	c.to = r2.addr
	c.cseq = 1000
	c.inDialog(sip.BYE, "")
	b.reply(b.request(sip.BYE), 200, "", "")
	a.response(sip.BYE, 200)
	if rec := waitRecord(t, r2); rec.Node != "n2" || rec.AdoptedFrom != "n1" {
		t.Fatalf("record %+v", rec)
	}
	r2.waitIdle()
}

// TestAdoptLegRefuses: a caller that answers the adopter's re-INVITE 481 ends the call: BYE
// to both legs and a record "node lost".
func TestAdoptLegRefuses(t *testing.T) {
	r1 := newRig(t, nil)
	var n adoptions
	r2 := adopter(t, &versionMedia{}, &n)
	a, b := newPhone(t), newPhone(t)
	_, _, sc := answeredCall(t, r1, a, b)
	r2.e.Adopted([]state.Call{adoptedBy(sc, "n2")}, true)
	ra := a.request(sip.INVITE)
	a.reply(ra, 481, "", "")
	a.request(sip.ACK)
	a.reply(a.request(sip.BYE), 200, "", "")
	b.reply(b.request(sip.BYE), 200, "", "")
	rec := waitRecord(t, r2)
	if rec.EndReason != state.ReasonNodeLost || rec.Node != "n2" {
		t.Fatalf("record %+v: want %q by n2", rec, state.ReasonNodeLost)
	}
	n.wait(t, 0, 1)
	r2.waitIdle()
}

// TestAdoptCalleeRefuses: the caller takes the re-INVITE but the callee refuses it: the call
// ends on both legs with "node lost".
func TestAdoptCalleeRefuses(t *testing.T) {
	r1 := newRig(t, nil)
	r2 := adopter(t, nil, nil)
	a, b := newPhone(t), newPhone(t)
	_, _, sc := answeredCall(t, r1, a, b)
	r2.e.Adopted([]state.Call{adoptedBy(sc, "n2")}, true)
	ra := a.request(sip.INVITE)
	a.reply(ra, 200, "", testSDP)
	a.request(sip.ACK)
	rb := b.request(sip.INVITE)
	b.reply(rb, 488, "", "")
	b.request(sip.ACK)
	a.reply(a.request(sip.BYE), 200, "", "")
	b.reply(b.request(sip.BYE), 200, "", "")
	if rec := waitRecord(t, r2); rec.EndReason != state.ReasonNodeLost {
		t.Fatalf("record %+v", rec)
	}
	r2.waitIdle()
}

// TestAdoptUnusableState: a call whose dialog state cannot be rebuilt (no SDP, a bad URI) is
// ended in the cluster's table at once, without a message to anyone.
func TestAdoptUnusableState(t *testing.T) {
	r1 := newRig(t, nil)
	var n adoptions
	r2 := adopter(t, nil, &n)
	a, b := newPhone(t), newPhone(t)
	_, _, sc := answeredCall(t, r1, a, b)
	noSDP := adoptedBy(sc, "n2")
	noSDP.B.SDP = ""
	badURI := adoptedBy(sc, "n2")
	badURI.ID, badURI.A.Target = "other", "sip:a@b:xx"
	badRoute := adoptedBy(sc, "n2")
	badRoute.ID, badRoute.B.Routes = "third", []string{"::"}
	for _, c := range []state.Call{noSDP, badURI, badRoute} {
		if err := r2.store.Propose(t.Context(), state.PutCall(c)); err != nil {
			t.Fatal(err)
		}
	}
	r2.e.Adopted([]state.Call{noSDP, badURI, badRoute}, true)
	testutil.Eventually(t, "unusable calls ended", func() bool { return len(r2.store.State().Calls()) == 0 })
	n.wait(t, 0, 3)
	if !a.quiet(sip.INVITE, 200*time.Millisecond) || r2.e.Active() != 0 {
		t.Fatal("an unusable call was resumed")
	}
}

// TestAdoptWhileDraining: a draining node given a call ends it with BYE on both legs.
func TestAdoptWhileDraining(t *testing.T) {
	r1 := newRig(t, nil)
	r2 := adopter(t, nil, nil)
	a, b := newPhone(t), newPhone(t)
	_, _, sc := answeredCall(t, r1, a, b)
	r2.e.DrainRooms(func(string) bool { return false })
	r2.e.Adopted([]state.Call{adoptedBy(sc, "n2")}, true)
	a.reply(a.request(sip.BYE), 200, "", "")
	b.reply(b.request(sip.BYE), 200, "", "")
	if r2.e.Active() != 0 {
		t.Fatal("a draining node took an adopted call")
	}
}

// TestAdoptedElsewhereReleased: the node that held a call (it was declared lost, or it drains
// and handed its calls over) lets the call go when the cluster gives it to another node:
// no BYE and no record of its own; a node that is not ready does not adopt.
func TestAdoptedElsewhereReleased(t *testing.T) {
	r1 := newRig(t, nil)
	a, b := newPhone(t), newPhone(t)
	_, _, sc := answeredCall(t, r1, a, b)
	r1.e.Adopted([]state.Call{adoptedBy(sc, "n3")}, true)
	r1.waitIdle()
	if !a.quiet(sip.BYE, 200*time.Millisecond) || !b.quiet(sip.BYE, 0) || len(r1.records()) != 0 {
		t.Fatalf("released call sent BYE or wrote a record: %+v", r1.records())
	}
	r2 := adopter(t, nil, nil)
	r2.e.Adopted([]state.Call{adoptedBy(sc, "n2")}, false)
	if r2.e.Active() != 0 {
		t.Fatal("a node that is not ready adopted a call")
	}
}

// TestAdoptOverRoomFlow: the adopter sends the room's re-INVITE over the room's flow to the
// adopter when it has one, else to the source of its newest UDP registration anywhere (a NAT
// may have moved it), not to the address the lost node knew.
func TestAdoptOverRoomFlow(t *testing.T) {
	for _, here := range []bool{true, false} {
		t.Run(map[bool]string{true: "flow to the adopter", false: "udp flow elsewhere"}[here], func(t *testing.T) {
			r1 := newRig(t, nil)
			r2 := adopter(t, nil, nil)
			a, b, moved := newPhone(t), newPhone(t), newPhone(t)
			_, _, sc := answeredCall(t, r1, a, b)
			node := "n2"
			if !here {
				node = "n3"
			}
			r2.mu.Lock()
			r2.bindings["room1"] = []state.Binding{
				{Room: "room1", Contact: "sip:room1@" + moved.addr, Source: moved.addr, Transport: "udp", Node: node, Updated: time.Now()},
				{Room: "room1", Contact: "sip:room1@192.0.2.9", Transport: "udp", Node: "n3"}, // no source: not a flow
			}
			r2.mu.Unlock()
			r2.e.Adopted([]state.Call{adoptedBy(sc, "n2")}, true)
			ra := a.request(sip.INVITE)
			a.reply(ra, 200, "", testSDP)
			a.request(sip.ACK)
			rb := moved.request(sip.INVITE)
			if rb.CallID().Value() != sc.B.CallID {
				t.Fatalf("re-INVITE over the moved flow:\n%s", rb)
			}
			moved.reply(rb, 200, "", testSDP)
			moved.request(sip.ACK)
			testutil.Eventually(t, "adopted", func() bool { return r2.e.Holds(sc.ID) })
			if !b.quiet(sip.INVITE, 100*time.Millisecond) {
				t.Fatal("re-INVITE sent to the room's old address")
			}
			r2.e.CallsEnded(state.Ended{Records: []state.CallRecord{{Call: state.Call{ID: sc.ID}, EndReason: "ended by admin"}}})
			a.reply(a.request(sip.BYE), 200, "", "")
			moved.reply(moved.request(sip.BYE), 200, "", "")
			r2.waitIdle()
			if n := len(r2.records()); n != 0 {
				t.Fatalf("a call the cluster ended got %d records of its own", n)
			}
		})
	}
}
