package media

import (
	"net/netip"
	"testing"
)

// BenchmarkReofferAnswer measures a re-INVITE round (offer from A, answer
// from B) on a session whose three streams already exist: parse, rewrite
// and version bookkeeping, no port allocation.
func BenchmarkReofferAnswer(b *testing.B) {
	m := newTestManager(b, nil)
	a, c := newRoom(b, "roomA"), newRoom(b, "roomB")
	s, err := m.NewSession("bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	offer, answer := a.sdp(1, "sendrecv"), c.sdp(1, "sendrecv")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Offer(LegA, offer, netip.AddrPort{}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Answer(LegB, answer, netip.AddrPort{}); err != nil {
			b.Fatal(err)
		}
	}
}
