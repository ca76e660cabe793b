package state

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)

func TestApply(t *testing.T) {
	ban := netip.MustParsePrefix("198.51.100.0/24")
	tests := []struct {
		name    string
		cmds    []Command
		wantErr error
		check   func(*testing.T, *State)
	}{
		{"put room", []Command{PutRoom(Room{Name: "r", Inbound: InboundOpen})}, nil, func(t *testing.T, s *State) {
			if _, ok := s.Room("r"); !ok {
				t.Fatal("room missing")
			}
		}},
		{"room without name", []Command{PutRoom(Room{})}, ErrBadPayload, nil},
		{"delete missing room", []Command{DeleteRoom("x")}, ErrNotFound, nil},
		{"delete room drops bindings", []Command{PutRoom(Room{Name: "r"}),
			PutBinding(Binding{Room: "r", Contact: "c", Expires: t0.Add(time.Hour)}), DeleteRoom("r")}, nil,
			func(t *testing.T, s *State) {
				if s.Counts().Bindings != 0 {
					t.Fatal("bindings left")
				}
			}},
		{"node bindings", []Command{PutBinding(Binding{Room: "r", Contact: "1", Node: "a", Expires: t0.Add(time.Hour)}),
			PutBinding(Binding{Room: "r", Contact: "2", Node: "b", Expires: t0.Add(time.Hour)}), DeleteNodeBindings("a")}, nil,
			func(t *testing.T, s *State) {
				if bs := s.Bindings("r", t0); len(bs) != 1 || bs[0].Node != "b" {
					t.Fatalf("bindings %+v", bs)
				}
			}},
		{"ban masked and lifted", []Command{PutBan(Ban{Prefix: netip.MustParsePrefix("198.51.100.7/24"), Until: t0.Add(time.Hour)}),
			LiftBan(ban)}, nil, func(t *testing.T, s *State) {
			if _, ok := s.Ban(ban); ok {
				t.Fatal("ban not lifted")
			}
		}},
		{"expire", []Command{PutBinding(Binding{Room: "r", Contact: "c", Expires: t0}),
			PutBan(Ban{Prefix: ban, Until: t0.Add(time.Hour)}), Expire(t0, 0, 0)}, nil, func(t *testing.T, s *State) {
			if c := s.Counts(); c.Bindings != 0 || c.Bans != 1 {
				t.Fatalf("counts %+v", c)
			}
		}},
		{"end call appends a record", []Command{PutCall(Call{ID: "x"}), EndCall(CallRecord{Call: Call{ID: "x"}}),
			EndCall(CallRecord{Call: Call{ID: "y"}})}, nil, func(t *testing.T, s *State) {
			rs := s.Records(RecordQuery{})
			if len(rs) != 2 || rs[0].Seq != 1 || rs[1].Seq != 2 || rs[0].State != CallEnded || len(s.Calls()) != 0 {
				t.Fatalf("records %+v", rs)
			}
		}},
		{"unknown ignorable", []Command{{Type: Ignorable | 0x7e, Version: 1}}, nil, nil},
		{"unknown", []Command{{Type: 0x7e, Version: 1}}, ErrUnknownCommand, nil},
		{"newer version", []Command{{Type: CmdPutRoom, Version: cmdVersion + 1}}, ErrNewerVersion, nil},
		{"newer ignorable version", []Command{{Type: CmdAudit, Version: cmdVersion + 1}}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			var err error
			for _, c := range tt.cmds {
				if err = s.Apply(c); err != nil {
					break
				}
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && Fatal(err) != (errors.Is(err, ErrUnknownCommand) || errors.Is(err, ErrNewerVersion)) {
				t.Fatal("Fatal misclassifies")
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func TestEncodeDecode(t *testing.T) {
	c := PutRoom(Room{Name: "r"})
	d, err := DecodeCommand(c.Encode())
	if err != nil || d.Type != c.Type || d.Version != c.Version || !bytes.Equal(d.Payload, c.Payload) {
		t.Fatalf("round trip: %+v %v", d, err)
	}
	if _, err := DecodeCommand([]byte{1}); !errors.Is(err, ErrShortCommand) {
		t.Fatal(err)
	}
}

func TestSnapshotRoundTripAndDue(t *testing.T) {
	s := New()
	for _, c := range []Command{
		PutRoom(Room{Name: "r", Allow: []string{"*@x"}, Updated: t0}),
		PutBinding(Binding{Room: "r", Contact: "c", Expires: t0.Add(time.Minute)}),
		PutBan(Ban{Prefix: netip.MustParsePrefix("2001:db8::/64"), Until: t0.Add(time.Hour)}),
		SetLists(Lists{Deny: []string{"203.0.113.0/24"}}),
		PutCall(Call{ID: "live", Started: t0}),
		EndCall(CallRecord{Call: Call{ID: "done"}, Ended: t0}),
		PutToken(Token{ID: "t", Hash: "h", Scope: ScopeAdmin}),
		Audit(AuditEntry{Who: "t", Action: "put-room", Target: "r"}),
	} {
		if err := s.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := s.Freeze().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := New()
	observed := 0
	r.Observe(func(Command) { observed++ })
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if r.Hash() != s.Hash() || observed != 1 {
		t.Fatalf("restore: hash equal %v, observed %d", r.Hash() == s.Hash(), observed)
	}
	if err := r.Restore(bytes.NewBufferString("{")); !errors.Is(err, ErrBadSnapshot) {
		t.Fatal(err)
	}
	if s.Due(t0) {
		t.Fatal("nothing is due yet")
	}
	if !s.Due(t0.Add(time.Minute)) {
		t.Fatal("the binding is due")
	}
}

func TestTrunkKeySetOnceAndSnapshotted(t *testing.T) {
	s := New()
	first := []byte("0123456789abcdef0123456789abcdef")
	if err := s.Apply(SetTrunkKey(first)); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(SetTrunkKey([]byte("another-key-from-a-racing-node!!"))); err != nil {
		t.Fatal(err)
	}
	if string(s.TrunkKey()) != string(first) {
		t.Fatalf("trunk key replaced: %q", s.TrunkKey())
	}
	r := roundTrip(t, s)
	if string(r.TrunkKey()) != string(first) || r.Hash() != s.Hash() {
		t.Fatal("trunk key lost in the snapshot")
	}
}

func TestRealmSetOnceAndSnapshotted(t *testing.T) {
	s := New()
	if s.Realm() != "" {
		t.Fatalf("a new state has realm %q", s.Realm())
	}
	applyAll(t, s, SetRealm("k7dq2m9xw4ta"), SetRealm("racing-node"))
	if s.Realm() != "k7dq2m9xw4ta" {
		t.Fatalf("realm replaced: %q", s.Realm())
	}
	r := roundTrip(t, s)
	if r.Realm() != s.Realm() || r.Hash() != s.Hash() {
		t.Fatalf("realm lost in the snapshot: %q", r.Realm())
	}
	if CmdSetRealm&Ignorable == 0 {
		t.Fatal("set-realm must be ignorable: an older node in a rolling upgrade skips it")
	}
}

func TestRoomInCallIndex(t *testing.T) {
	s := New()
	apply := func(cs ...Command) { t.Helper(); applyAll(t, s, cs...) }
	check := func(room, except string, want bool) {
		t.Helper()
		if got := s.RoomInCall(room, except); got != want {
			t.Fatalf("RoomInCall(%q, except %q) = %v, want %v", room, except, got, want)
		}
	}
	apply(PutCall(Call{ID: "1", Room: "r", Node: "n1", State: CallRinging,
		A: Leg{Peer: "198.51.100.5:5060"}, B: Leg{Peer: "192.0.2.9:5062"}}))
	check("r", "", true)
	if s.CallsWith(netip.MustParseAddr("198.51.100.5")) != 1 || s.CallsWith(netip.MustParseAddr("192.0.2.9")) != 1 {
		t.Fatal("call peers not indexed")
	}
	check("r", "n1", false) // only our own node's call
	check("r", "n2", true)
	check("other", "", false)
	// A call re-put with another state or node moves in the index, it is not counted twice.
	apply(PutCall(Call{ID: "1", Room: "r", Node: "n2", State: CallAnswered}))
	check("r", "n1", true)
	check("r", "n2", false)
	apply(PutCall(Call{ID: "2", Room: "r", Node: "n2"}), EndCall(CallRecord{Call: Call{ID: "1"}}))
	check("r", "n1", true)
	apply(EndCall(CallRecord{Call: Call{ID: "2"}}), EndCall(CallRecord{Call: Call{ID: "never-put"}}))
	check("r", "", false)
	if len(s.callPeers) != 0 {
		t.Fatalf("call peers %v after every call ended", s.callPeers)
	}
	// The index is rebuilt from a snapshot.
	apply(PutCall(Call{ID: "3", Room: "r", Node: "n3"}))
	r := roundTrip(t, s)
	if !r.RoomInCall("r", "n1") || r.RoomInCall("r", "n3") {
		t.Fatal("index not restored from the snapshot")
	}
}

// TestRegisteredFlowIndex: the index of registered flows follows every way a binding comes and
// goes (put, re-put from another source, delete, the room's, the node's, expiry, deleting the
// room, a snapshot), counts a source shared by two bindings until both are gone, and matches
// IPv4-mapped sources.
func TestRegisteredFlowIndex(t *testing.T) {
	s := New()
	now := time.Now()
	apply := func(cs ...Command) { t.Helper(); applyAll(t, s, cs...) }
	check := func(src string, want bool) {
		t.Helper()
		if got := s.RegisteredFlow(netip.MustParseAddrPort(src)); got != want {
			t.Fatalf("RegisteredFlow(%s) = %v, want %v", src, got, want)
		}
	}
	bind := func(room, contact, src, node string, ttl time.Duration) Command {
		return PutBinding(Binding{Room: room, Contact: contact, Source: src, Node: node, Expires: now.Add(ttl)})
	}
	apply(PutRoom(Room{Name: "a"}), PutRoom(Room{Name: "b"}),
		bind("a", "sip:a@x", "192.0.2.1:5060", "n1", time.Hour),
		bind("b", "sip:b@x", "192.0.2.1:5060", "n1", time.Hour)) // two rooms behind one NAT flow
	check("192.0.2.1:5060", true)
	check("[::ffff:192.0.2.1]:5060", true)
	check("192.0.2.1:5061", false)
	if n := s.RegisteredBehind(netip.MustParseAddr("192.0.2.1")); n != 2 {
		t.Fatalf("RegisteredBehind = %d, want 2", n)
	}
	apply(DeleteBinding("a", "sip:a@x"))
	check("192.0.2.1:5060", true)                                  // b still
	apply(bind("b", "sip:b@x", "192.0.2.9:7000", "n1", time.Hour)) // NAT rebinding: the old flow goes
	check("192.0.2.1:5060", false)
	check("192.0.2.9:7000", true)
	apply(DeleteRoomBindings("b"))
	check("192.0.2.9:7000", false)

	apply(bind("a", "sip:a@x", "198.51.100.1:5060", "n1", time.Hour),
		bind("a", "sip:a2@x", "198.51.100.2:5060", "n2", time.Hour),
		bind("b", "sip:b@x", "198.51.100.3:5060", "n1", time.Second),
		bind("b", "sip:b2@x", "not an address", "n1", time.Hour))
	if got := s.TrunkAddrs(""); len(got) != 0 {
		t.Fatalf("trunk addresses %v from bindings without one", got)
	}
	apply(PutBinding(Binding{Room: "t", Contact: "sip:t@x", Source: "198.51.100.9:5060", Node: "n2", Local: "10.0.0.2:5060", Expires: now.Add(time.Hour)}))
	if got := s.TrunkAddrs("n1"); len(got) != 1 || got[0] != "10.0.0.2:5060" {
		t.Fatalf("trunk addresses %v", got)
	}
	if got := s.TrunkAddrs("n2"); len(got) != 0 {
		t.Fatalf("trunk addresses except n2: %v", got)
	}
	apply(DeleteNodeBindings("n2"))
	if got := s.TrunkAddrs(""); len(got) != 0 {
		t.Fatalf("trunk addresses %v after the node's bindings went", got)
	}
	check("198.51.100.1:5060", true)
	check("198.51.100.2:5060", false)
	apply(Expire(now.Add(time.Minute), 0, 0))
	check("198.51.100.3:5060", false)
	check("198.51.100.1:5060", true)

	r := roundTrip(t, s)
	if !r.RegisteredFlow(netip.MustParseAddrPort("198.51.100.1:5060")) || r.RegisteredFlow(netip.MustParseAddrPort("198.51.100.3:5060")) {
		t.Fatal("index not restored from the snapshot")
	}
	apply(DeleteRoom("a"))
	check("198.51.100.1:5060", false)
	if len(s.flows) != 0 || len(s.flowUnits) != 0 || len(s.trunks) != 0 {
		t.Fatalf("index holds %v %v %v after every binding went", s.flows, s.flowUnits, s.trunks)
	}
	// IPv6: the unit is the /64.
	apply(bind("a", "sip:a@x", "[2001:db8:1:2::10]:5060", "n1", time.Hour), bind("a", "sip:a2@x", "[2001:db8:1:2::11]:5062", "n1", time.Hour))
	if n := s.RegisteredBehind(netip.MustParseAddr("2001:db8:1:2:ffff::1")); n != 2 {
		t.Fatalf("RegisteredBehind(/64) = %d, want 2", n)
	}
	if n := s.RegisteredBehind(netip.MustParseAddr("2001:db8:1:3::10")); n != 0 {
		t.Fatalf("RegisteredBehind(another /64) = %d, want 0", n)
	}
}

// applyAll applies commands to s, failing the test on the first error.
func applyAll(t *testing.T, s *State, cs ...Command) {
	t.Helper()
	for _, c := range cs {
		if err := s.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
}

// roundTrip writes s as a snapshot and restores it into a new state.
func roundTrip(t *testing.T, s *State) *State {
	t.Helper()
	var buf bytes.Buffer
	if _, err := s.Freeze().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := New()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	return r
}
