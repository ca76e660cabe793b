package relay

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/media/fastpath"
)

// ringing is a stream whose leg A has its SDP (the INVITE's offer) and leg B not yet (the room
// rings; its 200 OK has not been read). Tests that do not test expiry hold for an hour: no
// wall-clock limit on a loaded machine.
func ringing(t *testing.T, cfg StreamConfig) *rig {
	t.Helper()
	r := &rig{pool: newTestPool(t, 50*time.Millisecond)}
	r.pa, r.pb = acquire(t, r.pool), acquire(t, r.pool)
	r.a, r.b = newEndpoint(t), newEndpoint(t)
	r.s = NewStream(r.pa, r.pb, cfg)
	t.Cleanup(r.s.Close)
	r.s.SetPeer(SideA, Peer{RTP: r.a.addr(), PayloadTypes: []uint8{0}, DefaultClock: 8000})
	return r
}

func (r *rig) answer() {
	r.s.SetPeer(SideB, Peer{RTP: r.b.addr(), PayloadTypes: []uint8{0}, DefaultClock: 8000})
}

// takenIn counts the packets side's sockets took in: relayed, dropped, invalid or held.
func takenIn(s *Stream, side Side) uint64 {
	st := s.Stats()
	d := st.AToB
	if side == SideB {
		d = st.BToA
	}
	return seen(d) + d.Held
}

// expectSeq reads the next datagram at e and checks it is RTP with sequence seq and payload p.
func expectSeq(t *testing.T, e *endpoint, seq uint16, p string) {
	t.Helper()
	got := e.mustRecv()
	if Classify(got) != KindRTP || rtpSeq(got) != seq || !bytes.HasSuffix(got, []byte(p)) {
		t.Fatalf("got %q, want RTP seq %d %q", got, seq, p)
	}
}

// TestStreamHoldsEarlyAnswerMedia (issue #16 "0 loss"): the callee sends its first RTP with
// its 200 OK, and it reaches the relay before the edge has read the answer's SDP. Those
// packets are held, and once the answer is applied all of them reach the caller, in order,
// before the ones sent after; the callee is latched and counted as for any packet.
// Before the hold they were dropped as from an unlatched source (seen failing: "no packet
// received").
func TestStreamHoldsEarlyAnswerMedia(t *testing.T) {
	testutil.CheckGoroutines(t)
	r := ringing(t, StreamConfig{Hold: time.Hour})
	const early = 10
	for i := range early {
		r.b.send(local(r.pb), rtpPacket(0, uint16(i), uint32(160*i), 2, "early"))
	}
	testutil.Eventually(t, "the relay to read the early packets", func() bool { return takenIn(r.s, SideB) >= early })
	r.answer()
	for i := range early {
		expectSeq(t, r.a, uint16(i), "early")
	}
	r.b.send(local(r.pb), rtpPacket(0, early, 160*early, 2, "late"))
	expectSeq(t, r.a, early, "late")
	st := r.s.Stats()
	if st.BToA.Packets != early+1 || st.BToA.Dropped != 0 || st.BToA.Held != 0 || st.BToA.Lost != 0 {
		t.Fatalf("B to A counters %+v, want %d packets, none dropped, held or lost", st.BToA, early+1)
	}
	if st.LatchedB != r.b.addr() {
		t.Fatalf("leg B latched %v, want %v", st.LatchedB, r.b.addr())
	}
}

// TestStreamHoldNeverForwardsStrangers (issue #14 item 1 with the hold): a stranger's packets
// that arrive before the answer are held with the callee's, then dropped and counted when the
// answer names the callee: the caller gets the callee's early packets and nothing else, and
// the stranger neither latches nor receives anything.
func TestStreamHoldNeverForwardsStrangers(t *testing.T) {
	r := ringing(t, StreamConfig{Hold: time.Hour})
	evil := newEndpointOn(t, stranger)
	for i := range 5 {
		evil.send(local(r.pb), rtpPacket(0, uint16(100+i), 0, 666, "evil"))
		r.b.send(local(r.pb), rtpPacket(0, uint16(i), uint32(160*i), 2, "early"))
	}
	testutil.Eventually(t, "the relay to read the early packets", func() bool { return takenIn(r.s, SideB) >= 10 })
	r.answer()
	for i := range 5 {
		expectSeq(t, r.a, uint16(i), "early")
	}
	r.b.send(local(r.pb), rtpPacket(0, 5, 800, 2, "late"))
	expectSeq(t, r.a, 5, "late") // nothing of the stranger's came in between
	r.a.send(local(r.pa), rtpPacket(0, 1, 0, 1, "to-room"))
	if got := r.b.mustRecv(); !bytes.HasSuffix(got, []byte("to-room")) {
		t.Fatalf("the callee got %q", got)
	}
	if st := r.s.Stats(); st.BToA.Dropped != 5 || st.LatchedB != r.b.addr() {
		t.Fatalf("dropped %d (want the stranger's 5), latched %v (want %v)", st.BToA.Dropped, st.LatchedB, r.b.addr())
	}
	if b, _, ok := evil.recv(50 * time.Millisecond); ok {
		t.Fatalf("the stranger received %q", b)
	}
}

// TestStreamHoldIsBounded: a sprayer cannot use the hold for memory: at most holdPackets are
// held per leg, the rest is dropped and counted at once, and the answer drops (and counts)
// the held ones and frees the hold's buffer.
func TestStreamHoldIsBounded(t *testing.T) {
	r := ringing(t, StreamConfig{Hold: time.Hour})
	evil := newEndpointOn(t, stranger)
	const sprayed = 3 * holdPackets
	for i := range sprayed {
		evil.send(local(r.pb), rtpPacket(0, uint16(i), 0, 666, "evil"))
		evil.send(localRTCP(r.pb), rtcpPacket(200))
	}
	testutil.Eventually(t, "the relay to read the spray", func() bool { return takenIn(r.s, SideB) >= 2*sprayed })
	st := r.s.Stats().BToA
	if st.Held != holdPackets || st.Dropped != 2*sprayed-holdPackets {
		t.Fatalf("held %d, dropped %d; want %d held, %d dropped", st.Held, st.Dropped, holdPackets, 2*sprayed-holdPackets)
	}
	r.answer()
	if st := r.s.Stats().BToA; st.Held != 0 || st.Dropped != 2*sprayed || st.Packets+st.RTCPPackets != 0 {
		t.Fatalf("after the answer: %+v, want all %d dropped", st, 2*sprayed)
	}
	h := &r.s.legs[SideB].hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.arena != nil {
		t.Fatal("the hold's buffer outlived the answer")
	}
}

// TestStreamHoldExpires: packets held longer than the hold time are dropped and counted when
// the answer comes, not forwarded late; what the callee sends after the answer flows.
func TestStreamHoldExpires(t *testing.T) {
	const hold = 20 * time.Millisecond
	r := ringing(t, StreamConfig{Hold: hold})
	for i := range 3 {
		r.b.send(local(r.pb), rtpPacket(0, uint16(i), uint32(160*i), 2, "stale"))
	}
	testutil.Eventually(t, "the relay to read the early packets", func() bool { return takenIn(r.s, SideB) >= 3 })
	sent := mono()
	testutil.Eventually(t, "the hold time to pass", func() bool { return mono()-sent > 2*int64(hold) })
	r.answer()
	if st := r.s.Stats().BToA; st.Dropped != 3 || st.Held != 0 {
		t.Fatalf("after the answer: dropped %d, held %d; want 3 and 0", st.Dropped, st.Held)
	}
	r.b.send(local(r.pb), rtpPacket(0, 3, 480, 2, "fresh"))
	expectSeq(t, r.a, 3, "fresh")
}

// TestHoldDoesNotAllocate: holding a packet allocates nothing once the leg's hold buffer
// exists (it is allocated once, on the first packet held).
func TestHoldDoesNotAllocate(t *testing.T) {
	r := ringing(t, StreamConfig{Hold: time.Hour})
	k := &r.s.legs[SideB].rtp
	pkt := rtpPacket(0, 1, 0, 2, "early")
	var i uint16
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		pkt[2], pkt[3] = byte(i>>8), byte(i)
		r.s.forward(k, pkt, r.b.addr(), mono())
	})
	if allocs != 0 {
		t.Fatalf("holding allocates %.1f times per packet", allocs)
	}
}

// fakeKernel records installs; it forwards nothing (the packets stay in userspace).
type fakeKernel struct {
	mu       sync.Mutex
	installs []fastpath.Entry
}

func (f *fakeKernel) Install(e fastpath.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.installs = append(f.installs, e)
	return nil
}

func (f *fakeKernel) Remove(fastpath.Match) (fastpath.Counters, error) {
	return fastpath.Counters{}, nil
}
func (f *fakeKernel) Counters(fastpath.Match) (fastpath.Counters, error) {
	return fastpath.Counters{}, nil
}

// TestStreamHeldPacketsInstallKernelPath: released held packets go through the path of any
// packet, kernel install included: with the caller already latched, the callee's held packets
// latch leg B and hand the B-to-A direction to the kernel at the answer.
func TestStreamHeldPacketsInstallKernelPath(t *testing.T) {
	fk := &fakeKernel{}
	r := ringing(t, StreamConfig{Kernel: fk, Hold: time.Hour})
	r.a.send(local(r.pa), rtpPacket(0, 1, 0, 1, "caller"))
	testutil.Eventually(t, "the caller to latch", func() bool { _, ok := r.s.Latched(SideA); return ok })
	for i := range 2 {
		r.b.send(local(r.pb), rtpPacket(0, uint16(i), uint32(160*i), 2, "early"))
	}
	testutil.Eventually(t, "the callee's packets to be held", func() bool { return r.s.Stats().BToA.Held == 2 })
	r.answer()
	for i := range 2 {
		expectSeq(t, r.a, uint16(i), "early")
	}
	if !r.s.kernel.dirs[SideB].installed.Load() {
		t.Fatal("the B-to-A direction was not handed to the kernel at the answer")
	}
	fk.mu.Lock()
	defer fk.mu.Unlock()
	if len(fk.installs) != 1 || fk.installs[0].Match.Src != r.b.addr() || fk.installs[0].Dst != r.a.addr() {
		t.Fatalf("installs %+v, want one from %v to %v", fk.installs, r.b.addr(), r.a.addr())
	}
}
