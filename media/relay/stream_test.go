package relay

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// setup builds a stream between two loopback endpoints with signalled
// addresses equal to their real sockets.
type rig struct {
	pool   *Pool
	s      *Stream
	pa, pb *Pair
	a, b   *endpoint
}

func newRig(t *testing.T, cfg StreamConfig, mux bool) *rig {
	t.Helper()
	r := &rig{pool: newTestPool(t, 50*time.Millisecond)}
	r.pa, r.pb = acquire(t, r.pool), acquire(t, r.pool)
	r.a, r.b = newEndpoint(t), newEndpoint(t)
	r.s = NewStream(r.pa, r.pb, cfg)
	t.Cleanup(r.s.Close)
	r.s.SetPeer(SideA, Peer{RTP: r.a.addr(), PayloadTypes: []uint8{0, 96}, DefaultClock: 8000, RTCPMux: mux})
	r.s.SetPeer(SideB, Peer{RTP: r.b.addr(), PayloadTypes: []uint8{0, 96}, DefaultClock: 8000, RTCPMux: mux})
	return r
}

func TestStreamForwardsBothWays(t *testing.T) {
	testutil.CheckGoroutines(t)
	for _, mux := range []bool{false, true} {
		t.Run(fmt.Sprintf("rtcp-mux=%v", mux), func(t *testing.T) {
			r := newRig(t, StreamConfig{}, mux)
			for i := range 5 {
				r.a.send(local(r.pa), rtpPacket(0, uint16(i), uint32(160*i), 1, "from-a"))
				if got := r.b.mustRecv(); !bytes.HasSuffix(got, []byte("from-a")) {
					t.Fatalf("B got %q", got)
				}
				r.b.send(local(r.pb), rtpPacket(96, uint16(i), uint32(160*i), 2, "from-b"))
				if got := r.a.mustRecv(); !bytes.HasSuffix(got, []byte("from-b")) {
					t.Fatalf("A got %q", got)
				}
			}
			// RTCP: on the RTP port when muxed, on the odd port otherwise.
			// Feedback (PSFB 206, used for PLI/FIR) must pass too.
			for _, pt := range []uint8{200, 201, 202, 203, 204, 206} {
				to := localRTCP(r.pa)
				if mux {
					to = local(r.pa)
				}
				r.a.send(to, rtcpPacket(pt))
				if mux {
					if got := r.b.mustRecv(); got[1] != pt {
						t.Fatalf("B got RTCP type %d, want %d", got[1], pt)
					}
				}
			}
			testutil.Eventually(t, "RTCP to be counted", func() bool { return r.s.Stats().AToB.RTCPPackets == 6 })
			st := r.s.Stats()
			if st.AToB.Packets != 5 || st.BToA.Packets != 5 || st.AToB.Lost != 0 {
				t.Fatalf("stats %+v", st)
			}
			if st.LatchedA != r.a.addr() || st.LatchedB != r.b.addr() {
				t.Fatalf("latched %v %v, want %v %v", st.LatchedA, st.LatchedB, r.a.addr(), r.b.addr())
			}
		})
	}
}

func TestStreamRTCPToOddPort(t *testing.T) {
	r := newRig(t, StreamConfig{}, false)
	rtcpB := newEndpoint(t)
	r.s.SetPeer(SideB, Peer{RTP: r.b.addr(), RTCP: rtcpB.addr()})
	r.a.send(localRTCP(r.pa), rtcpPacket(200))
	if got := rtcpB.mustRecv(); got[1] != 200 {
		t.Fatalf("got %v", got)
	}
}

func TestStreamCloseStopsForwarding(t *testing.T) {
	testutil.CheckGoroutines(t)
	r := newRig(t, StreamConfig{}, false)
	r.a.send(local(r.pa), rtpPacket(0, 1, 0, 1, "x"))
	r.b.mustRecv()
	r.s.Close()
	r.a.send(local(r.pa), rtpPacket(0, 2, 0, 1, "x"))
	if _, _, ok := r.b.recv(200 * time.Millisecond); ok {
		t.Fatal("packet forwarded after Close")
	}
}

// TestStreamRTPBleed: a third socket sprays valid RTP at both relay ports
// during and after the learning window. It must receive nothing, the real
// stream must not be hijacked and its loss must stay zero.
func TestStreamRTPBleed(t *testing.T) {
	testutil.CheckGoroutines(t)
	r := newRig(t, StreamConfig{LatchWindow: 300 * time.Millisecond}, false)
	attacker := newEndpoint(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	r.a.send(local(r.pa), rtpPacket(0, 0, 0, 1, "legit"))
	r.b.send(local(r.pb), rtpPacket(0, 0, 0, 2, "legit"))
	go func() {
		defer close(done)
		seq := uint16(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			seq++
			_, _ = attacker.Conn.WriteToUDPAddrPort(rtpPacket(0, seq, 0, 666, "evil"), local(r.pa))
			_, _ = attacker.Conn.WriteToUDPAddrPort(rtpPacket(0, seq, 0, 666, "evil"), local(r.pb))
			time.Sleep(time.Millisecond)
		}
	}()
	deadline := time.Now().Add(700 * time.Millisecond) // spans the window and after
	var seq uint16 = 1
	for time.Now().Before(deadline) {
		r.a.send(local(r.pa), rtpPacket(0, seq, uint32(seq)*160, 1, "legit"))
		r.b.send(local(r.pb), rtpPacket(0, seq, uint32(seq)*160, 2, "legit"))
		seq++
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	<-done
	for _, e := range []*endpoint{r.a, r.b} {
		for {
			b, _, ok := e.recv(100 * time.Millisecond)
			if !ok {
				break
			}
			if !bytes.HasSuffix(b, []byte("legit")) {
				t.Fatalf("endpoint received injected packet %q", b)
			}
		}
	}
	if b, _, ok := attacker.recv(100 * time.Millisecond); ok {
		t.Fatalf("attacker received %q", b)
	}
	st := r.s.Stats()
	if st.LatchedA != r.a.addr() || st.LatchedB != r.b.addr() {
		t.Fatalf("hijacked: latched %v/%v", st.LatchedA, st.LatchedB)
	}
	if st.AToB.Lost != 0 || st.BToA.Lost != 0 {
		t.Fatalf("loss on legitimate stream: %+v", st)
	}
	if st.AToB.Dropped == 0 || st.BToA.Dropped == 0 {
		t.Fatalf("attack not counted as dropped: %+v", st)
	}
	if st.AToB.Packets != uint64(seq) {
		t.Fatalf("A->B packets %d, want %d", st.AToB.Packets, seq)
	}
}

// TestStreamNATRebinding: the room's source port changes mid-call. Packets
// from the new port are dropped until Relatch; then media flows again.
func TestStreamNATRebinding(t *testing.T) {
	testutil.CheckGoroutines(t)
	r := newRig(t, StreamConfig{LatchWindow: 50 * time.Millisecond, Alive: time.Minute}, false)
	r.a.send(local(r.pa), rtpPacket(0, 1, 0, 1, "old"))
	r.b.mustRecv()
	testutil.Eventually(t, "learning window to close", func() bool { return mono() > r.s.legs[0].rtp.latch.windowEnd.Load() })

	moved := newEndpoint(t) // the same room after its NAT mapping changed
	for i := range 3 {
		moved.send(local(r.pa), rtpPacket(0, uint16(2+i), 0, 1, "new"))
	}
	testutil.Eventually(t, "drops to be counted", func() bool { return r.s.Stats().AToB.Dropped == 3 })
	if b, _, ok := r.b.recv(100 * time.Millisecond); ok {
		t.Fatalf("forwarded before relatch: %q", b)
	}
	r.s.Relatch(SideA)
	moved.send(local(r.pa), rtpPacket(0, 5, 0, 1, "new"))
	if got := r.b.mustRecv(); !bytes.HasSuffix(got, []byte("new")) {
		t.Fatalf("got %q", got)
	}
	// And B's media now goes to the new address.
	r.b.send(local(r.pb), rtpPacket(0, 1, 0, 2, "to-new"))
	if got := moved.mustRecv(); !bytes.HasSuffix(got, []byte("to-new")) {
		t.Fatalf("got %q", got)
	}
	if got, _ := r.s.Latched(SideA); got != moved.addr() {
		t.Fatalf("latched %v want %v", got, moved.addr())
	}
}

// TestStreamSilentPeerRebindsOnSameIP: once the latched source has been
// silent for Alive, a source on the same IP may take over without Relatch.
func TestStreamSilentPeerRebindsOnSameIP(t *testing.T) {
	r := newRig(t, StreamConfig{LatchWindow: 20 * time.Millisecond, Alive: 100 * time.Millisecond}, false)
	r.a.send(local(r.pa), rtpPacket(0, 1, 0, 1, "old"))
	r.b.mustRecv()
	moved := newEndpoint(t)
	testutil.Eventually(t, "latched source to go stale", func() bool {
		return mono()-r.s.legs[0].rtp.latch.lastSeen.Load() > int64(100*time.Millisecond)
	})
	moved.send(local(r.pa), rtpPacket(0, 2, 0, 1, "new"))
	if got := r.b.mustRecv(); !bytes.HasSuffix(got, []byte("new")) {
		t.Fatalf("got %q", got)
	}
}

func TestStreamRejectsUnexpectedPayloadTypeForLatching(t *testing.T) {
	r := newRig(t, StreamConfig{}, false)
	r.a.send(local(r.pa), rtpPacket(8, 1, 0, 1, "pcma")) // PT 8 not in SDP
	r.a.send(local(r.pa), []byte("not rtp at all"))
	testutil.Eventually(t, "invalid to be counted", func() bool { return r.s.Stats().AToB.Invalid == 2 })
	if _, ok := r.s.Latched(SideA); ok {
		t.Fatal("latched on an unexpected payload type")
	}
}

func TestStreamPrefersSignalledSource(t *testing.T) {
	r := newRig(t, StreamConfig{LatchWindow: time.Minute}, false)
	early := newEndpoint(t) // not the signalled address: latches provisionally
	early.send(local(r.pa), rtpPacket(0, 1, 0, 9, "early"))
	r.b.mustRecv()
	r.a.send(local(r.pa), rtpPacket(0, 1, 0, 1, "signalled"))
	r.b.mustRecv()
	if got, _ := r.s.Latched(SideA); got != r.a.addr() {
		t.Fatalf("latched %v, want the signalled %v", got, r.a.addr())
	}
	early.send(local(r.pa), rtpPacket(0, 2, 0, 9, "early"))
	if b, _, ok := r.b.recv(100 * time.Millisecond); ok {
		t.Fatalf("lower-ranked source forwarded after signalled latch: %q", b)
	}
}

func TestStreamRawForwardsBFCP(t *testing.T) {
	r := &rig{pool: newTestPool(t, 50*time.Millisecond)}
	r.pa, r.pb = acquire(t, r.pool), acquire(t, r.pool)
	r.a, r.b = newEndpoint(t), newEndpoint(t)
	r.s = NewStream(r.pa, r.pb, StreamConfig{Raw: true})
	t.Cleanup(r.s.Close)
	r.s.SetPeer(SideA, Peer{RTP: r.a.addr()})
	r.s.SetPeer(SideB, Peer{RTP: r.b.addr()})
	bfcp := []byte{0x20, 0x04, 0x00, 0x00, 0, 0, 0, 1, 0, 1, 0, 1} // BFCP v1 Hello
	r.a.send(local(r.pa), bfcp)
	if got := r.b.mustRecv(); !bytes.Equal(got, bfcp) {
		t.Fatalf("got %x", got)
	}
	r.b.send(local(r.pb), bfcp)
	r.a.mustRecv()
}

// TestStreamSignallingAfterFirstPackets: the callee starts sending before its answer's SDP
// reaches the relay (no signalled address yet). Nothing latches or is relayed before
// signalling names the peer, or a stranger spraying a ringing call's ports would take it over
// (issue #14); the first packets are held instead of dropped (issue #16). Once the answer
// names that very source, it latches at once, the held packet is relayed first and the later
// ones follow: nothing is dropped.
func TestStreamSignallingAfterFirstPackets(t *testing.T) {
	r := &rig{pool: newTestPool(t, 50*time.Millisecond)}
	r.pa, r.pb = acquire(t, r.pool), acquire(t, r.pool)
	r.a, r.b = newEndpoint(t), newEndpoint(t)
	r.s = NewStream(r.pa, r.pb, StreamConfig{LatchWindow: time.Minute, Hold: time.Hour})
	t.Cleanup(r.s.Close)
	r.s.SetPeer(SideA, Peer{RTP: r.a.addr(), PayloadTypes: []uint8{0}, DefaultClock: 8000})
	r.b.send(local(r.pb), rtpPacket(0, 1, 0, 2, "early")) // B's peer is not signalled yet
	testutil.Eventually(t, "the early packet to be held", func() bool { return r.s.Stats().BToA.Held == 1 })
	if b, _, ok := r.a.recv(50 * time.Millisecond); ok {
		t.Fatalf("relayed before the answer: %q", b)
	}
	if l, ok := r.s.Latched(SideB); ok {
		t.Fatalf("latched %v before the answer", l)
	}
	r.s.SetPeer(SideB, Peer{RTP: r.b.addr(), PayloadTypes: []uint8{0}, DefaultClock: 8000})
	if got := r.a.mustRecv(); !bytes.HasSuffix(got, []byte("early")) {
		t.Fatalf("A got %q first, want the held packet", got)
	}
	for i := 2; i < 6; i++ {
		r.b.send(local(r.pb), rtpPacket(0, uint16(i), uint32(160*i), 2, "after-answer"))
		if got := r.a.mustRecv(); !bytes.HasSuffix(got, []byte("after-answer")) {
			t.Fatalf("A got %q", got)
		}
	}
	if st := r.s.Stats(); st.BToA.Dropped != 0 || st.BToA.Packets != 5 {
		t.Fatalf("dropped %d, relayed %d packets; want 0 and 5", st.BToA.Dropped, st.BToA.Packets)
	}
}

// A pool bound to the wildcard address gets dual-stack IPv6 sockets, which
// see IPv4 sources as ::ffff:a.b.c.d. Those must still match the IPv4
// address signalled in SDP: the source is the signalled one, latched at once
// and relayed from the first packet (not held back as an unknown source for
// the learning window).
func TestStreamWildcardBindMatchesSignalledIPv4(t *testing.T) {
	testutil.CheckGoroutines(t)
	base := testutil.PortWindow(t, netip.IPv4Unspecified(), 4)
	p, err := NewPool(PoolConfig{Bind: netip.IPv4Unspecified(), Min: base, Max: base + 3, Drain: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	pa, pb := acquire(t, p), acquire(t, p)
	a, b := newEndpoint(t), newEndpoint(t)
	s := NewStream(pa, pb, StreamConfig{LatchWindow: time.Minute})
	t.Cleanup(s.Close)
	s.SetPeer(SideA, Peer{RTP: a.addr(), DefaultClock: 8000})
	s.SetPeer(SideB, Peer{RTP: b.addr(), DefaultClock: 8000})
	a.send(local(pa), rtpPacket(0, 1, 160, 1, "first"))
	if got := b.mustRecv(); !bytes.HasSuffix(got, []byte("first")) {
		t.Fatalf("B got %q", got)
	}
	if la, _ := s.Latched(SideA); la != a.addr() {
		t.Fatalf("latched %v, want %v", la, a.addr())
	}
}
