package state

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// manyRooms returns a state with n rooms, each registered from its own flow.
func manyRooms(b *testing.B, n int) *State {
	s := New()
	exp := time.Now().Add(time.Hour)
	for i := range n {
		room := fmt.Sprintf("room%d", i)
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 5060)
		if err := s.Apply(PutBinding(Binding{Room: room, Contact: "sip:" + room + "@x", Source: src.String(), Node: "n1", Expires: exp})); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkReRegister is the apply of one room's refresh (same flow) with 10,000 rooms
// registered: the registered-flow index is updated in place.
func BenchmarkReRegister(b *testing.B) {
	s := manyRooms(b, 10_000)
	c := PutBinding(Binding{Room: "room7", Contact: "sip:room7@x", Source: "10.0.0.7:5060", Node: "n1", Expires: time.Now().Add(time.Hour)})
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Apply(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRegisteredFlow is the check every SIP request makes of its source, 10,000 rooms.
func BenchmarkRegisteredFlow(b *testing.B) {
	s := manyRooms(b, 10_000)
	src := netip.MustParseAddrPort("10.0.0.7:5060")
	b.ReportAllocs()
	for b.Loop() {
		if !s.RegisteredFlow(src) {
			b.Fatal("not registered")
		}
	}
}

// BenchmarkApply is the apply of one command of each kind that repeats cleanly (the state's
// size stays bounded), on a state with 10,000 rooms: the dispatch and the handler, per type.
func BenchmarkApply(b *testing.B) {
	now := time.Now()
	call := Call{ID: "c1", Room: "room7", Node: "n1", State: CallAnswered, Started: now}
	cmds := []struct {
		name string
		c    Command
	}{
		{"put-binding", PutBinding(Binding{Room: "room7", Contact: "sip:room7@x", Source: "10.0.0.7:5060", Node: "n1", Expires: now.Add(time.Hour)})},
		{"put-call", PutCall(call)},
		{"end-call", EndCall(CallRecord{Call: call, Ended: now, EndReason: "bye", Status: 200})},
		{"put-ban", PutBan(Ban{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Until: now.Add(time.Hour), Reason: "test"})},
		{"put-room", PutRoom(Room{Name: "room7"})},
		{"sink-cursor", SinkCursor("syslog", 1)},
	}
	for _, tc := range cmds {
		b.Run(tc.name, func(b *testing.B) {
			s := manyRooms(b, 10_000)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Apply(tc.c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
		})
	}
}
