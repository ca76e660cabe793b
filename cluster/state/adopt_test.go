package state

import (
	"testing"
	"time"
)

// TestNodeLostAdoptsAnsweredCalls: a lost node's answered calls with both legs and their dialog
// state go to the adopters round-robin (owner changed, AdoptedFrom set, no record); a call
// handed over the internal trunk goes to the node holding its room leg when that node is an
// adopter; a call whose room leg was on the lost node continues on its owner with the room's
// leg it replicated; a ringing call and a trunk call whose other node is gone too end with a
// record.
func TestNodeLostAdoptsAnsweredCalls(t *testing.T) {
	leg := func(id string) Leg {
		return Leg{CallID: id, LocalTag: "l", RemoteTag: "r", Peer: "127.0.0.1:5060", Transport: "UDP",
			Target: "sip:x@127.0.0.1:5060", SDP: "v=0\r\n"}
	}
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	calls := []Call{
		{ID: "c1", Room: "r1", Node: "dead", State: CallAnswered, A: leg("a1"), B: leg("b1"), Started: at, Answered: at},
		{ID: "c2", Room: "r2", Node: "dead", State: CallAnswered, A: leg("a2"), B: leg("b2"), Started: at.Add(time.Second), Answered: at},
		{ID: "c3", Room: "r3", Node: "dead", State: CallRinging, A: leg("a3"), B: leg("b3"), Started: at.Add(2 * time.Second)},
		{ID: "c4", Room: "r4", Node: "dead", State: CallAnswered, A: leg("a4"), B: leg("b4"), Started: at.Add(3 * time.Second), Answered: at},
		{ID: "c5", Room: "r5", Node: "alive", State: CallAnswered, A: leg("a5"), B: leg("b5"), Started: at, Answered: at},
		{ID: "c6", Room: "r6", Node: "dead", State: CallAnswered, A: leg("a6"), B: leg("b6"), Started: at.Add(4 * time.Second), Answered: at},
	}
	calls[3].B.Node = "s2" // leg B across the trunk, on an adopter
	calls[5].B.Node = "gone"
	// s1 handed c7 over the trunk to the lost node, which replicated the room's leg
	far := Call{ID: "c7", Room: "r7", Node: "s1", State: CallAnswered, A: leg("a7"), B: leg("b7"), Far: leg("room7"),
		Started: at, Answered: at}
	far.B.Node = "dead"
	calls = append(calls, far)
	s := New()
	for _, c := range calls {
		if err := s.Apply(PutCall(c)); err != nil {
			t.Fatal(err)
		}
	}
	var got Ended
	s.ObserveEnded(func(e Ended) { got = e })
	if err := s.Apply(NodeLost("dead", []string{"s1", "s2"}, ReasonNodeLost, "s1", at.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{}
	for _, c := range s.Calls() {
		owners[c.ID] = c.Node + "/" + c.AdoptedFrom
	}
	want := map[string]string{"c1": "s1/dead", "c2": "s2/dead", "c4": "s2/dead", "c5": "alive/", "c7": "s1/dead"}
	if len(owners) != len(want) {
		t.Fatalf("active calls %v, want %v", owners, want)
	}
	for id, w := range want {
		if owners[id] != w {
			t.Errorf("call %s owner/adopted-from %q, want %q", id, owners[id], w)
		}
	}
	if len(got.Adopted) != 4 || len(got.Records) != 2 || got.Lost != "dead" {
		t.Fatalf("observed %+v, want 4 adopted, 2 ended", got)
	}
	if c7 := got.Adopted[3]; c7.ID != "c7" || c7.B.CallID != "room7" || c7.B.Node != "s1" || c7.Far.CallID != "" {
		t.Fatalf("c7 adopted as %+v: want its owner to continue with the room's leg", c7)
	}
	if recs := s.Records(RecordQuery{EndReason: ReasonNodeLost}); len(recs) != 2 {
		t.Fatalf("%d node-lost records, want 2 (the ringing and the trunk call)", len(recs))
	}
	if !s.RoomInCall("r1", "") || s.RoomInCall("r3", "") {
		t.Fatal("the adopted call's room must stay busy, the ended call's room free")
	}
	// No adopters: everything ends, as CmdEndCalls did.
	if err := s.Apply(NodeLost("s1", nil, ReasonNodeLost, "s2", at.Add(2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	if len(s.CallsOf("s1")) != 0 {
		t.Fatal("calls of a node lost with no adopter must end")
	}
	if err := s.Apply(NodeLost("s2", []string{"s2"}, ReasonNodeLost, "s1", at)); err == nil {
		t.Fatal("the lost node as its own adopter must be refused")
	}
}

// TestHandOverKeepsWhatCannotMove: a draining node hands its adoptable calls over; the others
// stay with it, nothing ends, and the command names no lost node.
func TestHandOverKeepsWhatCannotMove(t *testing.T) {
	leg := Leg{CallID: "x", RemoteTag: "r", Target: "sip:x@127.0.0.1", SDP: "v=0\r\n"}
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	s := New()
	for _, c := range []Call{
		{ID: "up", Room: "r1", Node: "n1", State: CallAnswered, A: leg, B: leg, Started: at},
		{ID: "ringing", Room: "r2", Node: "n1", State: CallRinging, A: leg, B: leg, Started: at},
	} {
		if err := s.Apply(PutCall(c)); err != nil {
			t.Fatal(err)
		}
	}
	var got Ended
	s.ObserveEnded(func(e Ended) { got = e })
	if err := s.Apply(HandOver("n1", []string{"n2"}, "n1", at)); err != nil {
		t.Fatal(err)
	}
	if got.Lost != "" || len(got.Records) != 0 || len(got.Adopted) != 1 || got.Adopted[0].Node != "n2" {
		t.Fatalf("observed %+v, want the answered call adopted by n2 and nothing ended", got)
	}
	if cs := s.CallsOf("n1"); len(cs) != 1 || cs[0].ID != "ringing" {
		t.Fatalf("n1 keeps %+v, want the ringing call", cs)
	}
}
