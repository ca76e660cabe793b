package relay

import (
	"testing"
	"time"
)

// benchStream is a stream between two fresh pairs of a test pool, with a peer endpoint for
// each side (not signalled yet), closed when the benchmark ends.
func benchStream(b *testing.B, cfg StreamConfig) (*Stream, *endpoint, *endpoint) {
	b.Helper()
	p := newTestPool(b, 10*time.Millisecond)
	pa, pb := acquire(b, p), acquire(b, p)
	ea, eb := newEndpoint(b), newEndpoint(b)
	s := NewStream(pa, pb, cfg)
	b.Cleanup(s.Close)
	return s, ea, eb
}

// BenchmarkForward runs the real per-packet path (classify, latch check,
// stats, sequence/jitter, write to a real UDP socket) for a latched source.
func BenchmarkForward(b *testing.B) {
	s, ea, eb := benchStream(b, StreamConfig{})
	s.SetPeer(SideA, Peer{RTP: ea.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	s.SetPeer(SideB, Peer{RTP: eb.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	pkt := rtpPacket(96, 0, 0, 1234, string(make([]byte, 1000)))
	k := &s.legs[SideA].rtp
	s.forward(k, pkt, ea.addr(), mono()) // latch
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		pkt[2], pkt[3] = byte(i>>8), byte(i)
		s.forward(k, pkt, ea.addr(), mono())
	}
	b.StopTimer()
	if st := s.Stats(); st.AToB.Packets < uint64(b.N) {
		b.Fatalf("forwarded %d of %d", st.AToB.Packets, b.N)
	}
}

func TestForwardDoesNotAllocate(t *testing.T) {
	p := newTestPool(t, 10*time.Millisecond)
	pa, pb := acquire(t, p), acquire(t, p)
	ea, eb := newEndpoint(t), newEndpoint(t)
	s := NewStream(pa, pb, StreamConfig{})
	t.Cleanup(s.Close)
	s.SetPeer(SideA, Peer{RTP: ea.addr(), DefaultClock: 90000})
	s.SetPeer(SideB, Peer{RTP: eb.addr(), DefaultClock: 90000})
	pkt := rtpPacket(96, 0, 0, 1234, "payload")
	k := &s.legs[SideA].rtp
	s.forward(k, pkt, ea.addr(), mono())
	var i uint16
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		pkt[2], pkt[3] = byte(i>>8), byte(i)
		s.forward(k, pkt, ea.addr(), mono())
		s.forward(&s.legs[SideA].rtp, rtcpPacket(200), ea.addr(), mono())
	})
	if allocs != 0 {
		t.Fatalf("forward allocates %.1f times per packet", allocs)
	}
}

// BenchmarkRelaySockets measures the whole relay through real loopback
// sockets: an endpoint sends RTP to the relay port facing A, the reader
// goroutine receives it (recvmmsg on Linux) and forwards it to the endpoint
// on B, which reads it. Allocations are counted process-wide, so the
// reader goroutine's are included.
func BenchmarkRelaySockets(b *testing.B) {
	s, ea, eb := benchStream(b, StreamConfig{})
	s.SetPeer(SideA, Peer{RTP: ea.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	s.SetPeer(SideB, Peer{RTP: eb.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	pkt := rtpPacket(96, 0, 0, 1234, string(make([]byte, 1000)))
	to := local(s.legs[SideA].pair)
	buf := make([]byte, readBuffer)
	ea.send(to, pkt)
	eb.mustRecv()
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	for i := 1; b.Loop(); i++ {
		pkt[2], pkt[3] = byte(i>>8), byte(i)
		if _, err := ea.Conn.WriteToUDPAddrPort(pkt, to); err != nil {
			b.Fatal(err)
		}
		if _, _, err := eb.Conn.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelaySocketsBurst is BenchmarkRelaySockets with packets queued for
// one relay socket: the endpoint sends a burst of 8 before reading them back,
// as happens when the reader is late (a loaded host, many streams per core),
// so a reader finds more than one datagram per wake-up. One op is one packet.
func BenchmarkRelaySocketsBurst(b *testing.B) {
	const burst = 8
	s, ea, eb := benchStream(b, StreamConfig{})
	s.SetPeer(SideA, Peer{RTP: ea.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	s.SetPeer(SideB, Peer{RTP: eb.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	pkt := rtpPacket(96, 0, 0, 1234, string(make([]byte, 1000)))
	to := local(s.legs[SideA].pair)
	buf := make([]byte, readBuffer)
	ea.send(to, pkt)
	eb.mustRecv()
	_ = eb.Conn.SetReadDeadline(time.Time{}) // mustRecv's 2 s deadline would end a long run
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	seq := 1
	for b.Loop() {
		for range burst {
			pkt[2], pkt[3] = byte(seq>>8), byte(seq)
			seq++
			if _, err := ea.Conn.WriteToUDPAddrPort(pkt, to); err != nil {
				b.Fatal(err)
			}
		}
		for range burst {
			if _, _, err := eb.Conn.ReadFromUDPAddrPort(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/packet")
}

// BenchmarkHoldEarly is the path of a packet arriving before its leg's SDP: it is copied
// into the leg's hold (full after 16, then dropped and counted). The hold's buffer is
// allocated once per leg, never per packet.
func BenchmarkHoldEarly(b *testing.B) {
	s, ea, eb := benchStream(b, StreamConfig{})
	s.SetPeer(SideA, Peer{RTP: ea.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	pkt := rtpPacket(96, 0, 0, 1234, string(make([]byte, 1000)))
	k := &s.legs[SideB].rtp
	s.forward(k, pkt, eb.addr(), mono()) // allocates the hold
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		pkt[2], pkt[3] = byte(i>>8), byte(i)
		s.forward(k, pkt, eb.addr(), mono())
	}
}
