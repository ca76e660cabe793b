//go:build linux && (amd64 || arm64)

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fillBatch puts datagrams from src into r as recvmmsg would have.
func fillBatch(r *batchReader, src *endpoint, pkts [][]byte) {
	for i, b := range pkts {
		copy(r.bufs[i][:], b)
		r.msgs[i].n = uint32(len(b))
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.names[i]))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: src.addr().Addr().As4(), Port: htons(src.addr().Port())}
	}
}

// latchedVideoStream relays PT 96 between ea (side A) and peer b (side B) and has latched A
// with one packet forwarded to b, which b still has to read. It returns the stream and side A's
// RTP socket.
func latchedVideoStream(t *testing.T, ea *endpoint, b Peer) (*Stream, *sock) {
	t.Helper()
	p := newTestPool(t, 10*time.Millisecond)
	pa, pb := acquire(t, p), acquire(t, p)
	s := NewStream(pa, pb, StreamConfig{})
	t.Cleanup(s.Close)
	s.SetPeer(SideA, Peer{RTP: ea.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	s.SetPeer(SideB, b)
	k := &s.legs[SideA].rtp
	s.forward(k, rtpPacket(96, 0, 0, 7, "latch"), ea.addr(), mono())
	return s, k
}

// TestForwardBatch: a receive batch mixing RTP and RTCP (rtcp-mux off on the
// other leg, so they leave from two sockets) reaches the other leg in order,
// every datagram intact, RTP and RTCP each to its own port; and the batched
// path allocates nothing.
func TestForwardBatch(t *testing.T) {
	ea, eb, ebc := newEndpoint(t), newEndpoint(t), newEndpoint(t)
	s, k := latchedVideoStream(t, ea, Peer{RTP: eb.addr(), RTCP: ebc.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	eb.mustRecv()

	var pkts [][]byte
	for i := range recvBatch {
		if i%3 == 2 {
			pkts = append(pkts, rtcpPacket(200))
			continue
		}
		pkts = append(pkts, rtpPacket(96, uint16(i+1), uint32(i), 7, string(make([]byte, 100+i))))
	}
	r := newBatchReader()
	fillBatch(r, ea, pkts)
	s.forwardBatch(k, r, len(pkts), mono())
	for i, want := range pkts {
		to := eb
		if Classify(want) == KindRTCP {
			to = ebc
		}
		got := to.mustRecv()
		if string(got) != string(want) {
			t.Fatalf("datagram %d: got %d bytes (seq %d), want %d bytes", i, len(got), binary.BigEndian.Uint16(got[2:]), len(want))
		}
	}
	if n := testing.AllocsPerRun(200, func() {
		fillBatch(r, ea, pkts)
		s.forwardBatch(k, r, len(pkts), mono())
	}); n != 0 {
		t.Fatalf("a batch allocates %.1f times", n)
	}
}

// TestForwardBatchGSO: a video frame's packets (same size, the last one shorter) received in
// one batch leave as one UDP GSO message, and the peer still receives every datagram, intact
// and in order; a batch whose sizes do not make one message (a shorter datagram in the middle)
// leaves with sendmmsg as before. Neither allocates.
func TestForwardBatchGSO(t *testing.T) {
	ea, eb := newEndpoint(t), newEndpoint(t)
	s, k := latchedVideoStream(t, ea, Peer{RTP: eb.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	eb.mustRecv()

	frame := func(mid int) [][]byte {
		var pkts [][]byte
		for i := range recvBatch {
			size := 1188 // 1200-byte RTP packets
			switch {
			case i == recvBatch-1:
				size = 300
			case i == mid:
				size = 500
			}
			pkts = append(pkts, rtpPacket(96, uint16(i+1), 3000, 7, string(make([]byte, size))))
		}
		return pkts
	}
	r := newBatchReader()
	for _, c := range []struct {
		name string
		pkts [][]byte
		gso  bool
	}{{"frame", frame(-1), true}, {"uneven", frame(3), false}} {
		m0, d0 := GSOStats()
		fillBatch(r, ea, c.pkts)
		s.forwardBatch(k, r, len(c.pkts), mono())
		for i, want := range c.pkts {
			if got := eb.mustRecv(); string(got) != string(want) {
				t.Fatalf("%s: datagram %d: got %d bytes (seq %d), want %d bytes", c.name, i, len(got), binary.BigEndian.Uint16(got[2:]), len(want))
			}
		}
		m1, d1 := GSOStats()
		if c.gso && m1 == m0 && gsoOff.Load() {
			t.Skip("SKIPPED LOUDLY: this kernel refuses UDP GSO; batches leave with sendmmsg (checked above)")
		}
		if gso := m1-m0 == 1 && d1-d0 == uint64(len(c.pkts)); gso != c.gso {
			t.Fatalf("%s: %d GSO messages carrying %d datagrams", c.name, m1-m0, d1-d0)
		}
	}
	// Last: the peer does not read what these send.
	for _, pkts := range [][][]byte{frame(-1), frame(3)} {
		if n := testing.AllocsPerRun(100, func() {
			fillBatch(r, ea, pkts)
			s.forwardBatch(k, r, len(pkts), mono())
		}); n != 0 {
			t.Fatalf("a batch allocates %.1f times", n)
		}
	}
}

// TestSockWrite: a single datagram leaves with a raw sendto from an IPv4 socket and from a
// dual-stack one (an IPv4 destination as ::ffff:a.b.c.d); a destination sendto cannot encode
// (a zoned IPv6 address on an IPv4 socket) goes to WriteToUDPAddrPort, which refuses it as
// before, without a panic; and a send allocates nothing.
func TestSockWrite(t *testing.T) {
	for _, network := range []string{"udp4", "udp"} {
		dst := newEndpoint(t)
		addr := "127.0.0.1:0"
		if network == "udp" {
			addr = "[::]:0"
		}
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Logf("%s: %v", network, err)
			continue
		}
		t.Cleanup(func() { _ = c.Close() })
		k := &sock{conn: c.(*net.UDPConn)}
		k.out.init(k.conn)
		if k.out.family == 0 {
			t.Fatalf("%s: no address family", network)
		}
		k.write([]byte("raw "+network), dst.addr())
		if got := dst.mustRecv(); string(got) != "raw "+network {
			t.Fatalf("%s: got %q", network, got)
		}
		k.write([]byte("zoned"), netip.MustParseAddrPort("[fe80::1%99]:5004")) // no route: dropped
		b := []byte("again")
		if n := testing.AllocsPerRun(100, func() { k.write(b, dst.addr()) }); n != 0 {
			t.Fatalf("%s: a send allocates %.1f times", network, n)
		}
	}
}
