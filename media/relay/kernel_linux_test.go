package relay

import (
	"bytes"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/media/fastpath"
)

// openKernel attaches the fast path to lo, or skips loudly where the kernel
// refuses it (not root, no BPF); in CI (PORTCULLIS_CI set, run as root) a
// refusal fails.
func openKernel(t *testing.T) *fastpath.FastPath {
	t.Helper()
	f, err := fastpath.Open([]string{"lo"})
	if err != nil {
		if os.Getenv("PORTCULLIS_CI") != "" {
			t.Fatalf("kernel fast path refused in CI (runs as root): %v", err)
		}
		t.Skipf("SKIPPED LOUDLY: kernel fast path not available here (uid %d): %v", os.Getuid(), err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// TestStreamKernelPath: a real stream between two loopback peers hands its
// media to the kernel once both latches are final; a third source is still
// dropped; a re-INVITE and the BYE remove the entries; the stream's counters
// match what the peers sent whichever path carried each packet.
func TestStreamKernelPath(t *testing.T) {
	f := openKernel(t)
	r := newRig(t, StreamConfig{Kernel: f, LatchWindow: 100 * time.Millisecond}, false)
	const payload = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789" // 160 bytes
	sentA, sentB := 0, 0
	exchange := func(what string) {
		t.Helper()
		pa := rtpPacket(0, uint16(sentA), uint32(160*sentA), 1, payload)
		r.a.send(local(r.pa), pa)
		sentA++
		if got := r.b.mustRecv(); !bytes.Equal(got, pa) {
			t.Fatalf("%s: B got %d bytes, want A's packet %d", what, len(got), sentA)
		}
		pb := rtpPacket(96, uint16(sentB), uint32(160*sentB), 2, payload)
		r.b.send(local(r.pb), pb)
		sentB++
		if got := r.a.mustRecv(); !bytes.Equal(got, pb) {
			t.Fatalf("%s: A got %d bytes, want B's packet %d", what, len(got), sentB)
		}
	}
	installed := func() bool { return r.s.kernel.dirs[0].installed.Load() && r.s.kernel.dirs[1].installed.Load() }
	waitInstalled := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !installed() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: kernel entries not installed after %d packets each way", what, sentA)
			}
			exchange(what + " (userspace)")
		}
	}
	waitInstalled("first latch")
	if n := f.Entries(); n != 2 {
		t.Fatalf("%d kernel entries, want 2", n)
	}
	match := r.s.kernel.dirs[SideA].match
	if match.Src != r.a.addr() || match.Relay != local(r.pa) {
		t.Fatalf("A->B entry matches %+v, want src %s relay %s", match, r.a.addr(), local(r.pa))
	}
	// One direction may go in a packet before the other: count from here.
	before, err := f.Counters(match)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for range n {
		exchange("kernel")
	}
	if c, err := f.Counters(match); err != nil || c.Packets-before.Packets != n {
		t.Fatalf("kernel forwarded %+v (%v) since %+v, want %d more packets: media did not take the kernel path", c, err, before, n)
	}
	// A third source (another host, and the peer's own IP on another port) is
	// dropped by userspace and never reaches B.
	for _, ip := range []netip.Addr{netip.MustParseAddr("127.0.0.5"), loopback} {
		x := newEndpointOn(t, ip)
		x.send(local(r.pa), rtpPacket(0, 7, 7, 9, "bleed"))
	}
	testutil.Eventually(t, "both strangers dropped", func() bool { return r.s.Stats().AToB.Dropped == 2 })
	exchange("after strangers") // B's next packet is A's: nothing from the strangers came first

	// A re-INVITE (new SDP for B) takes both directions back to userspace.
	r.s.SetPeer(SideB, Peer{RTP: r.b.addr(), PayloadTypes: []uint8{0, 96}, DefaultClock: 8000})
	if installed() || f.Entries() != 0 {
		t.Fatalf("entries still installed after SetPeer: %d", f.Entries())
	}
	exchange("after re-INVITE")
	waitInstalled("relatch")
	for range n {
		exchange("kernel again")
	}
	st := r.s.Stats()
	size := uint64(len(rtpPacket(0, 0, 0, 0, payload)))
	if st.AToB.Packets != uint64(sentA) || st.BToA.Packets != uint64(sentB) ||
		st.AToB.Bytes != uint64(sentA)*size || st.BToA.Bytes != uint64(sentB)*size {
		t.Fatalf("stats %d/%d packets %d/%d bytes, peers sent %d/%d packets of %d bytes",
			st.AToB.Packets, st.BToA.Packets, st.AToB.Bytes, st.BToA.Bytes, sentA, sentB, size)
	}
	if st.AToB.Lost != 0 || st.BToA.Lost != 0 {
		t.Fatalf("loss counted across the kernel path: %d/%d", st.AToB.Lost, st.BToA.Lost)
	}
	if time.Since(r.s.LastRTP()) > 10*time.Second {
		t.Fatalf("LastRTP %v does not reflect kernel-forwarded media", r.s.LastRTP())
	}

	// BYE: the entries go with the stream; A's media no longer reaches B.
	r.s.Close()
	if f.Entries() != 0 {
		t.Fatalf("%d kernel entries left after Close", f.Entries())
	}
	r.a.send(local(r.pa), rtpPacket(0, 9999, 0, 1, "after-bye"))
	self := []byte("self-check")
	r.b.send(r.b.addr(), self)
	if got := r.b.mustRecv(); !bytes.Equal(got, self) {
		t.Fatalf("B received %q after BYE", got)
	}
}

// BenchmarkRelaySocketsKernel is BenchmarkRelaySockets with the stream's
// media in the kernel fast path: the relay's reader never wakes up.
func BenchmarkRelaySocketsKernel(b *testing.B) {
	f, err := fastpath.Open([]string{"lo"})
	if err != nil {
		b.Skipf("SKIPPED LOUDLY: kernel fast path not available: %v", err)
	}
	b.Cleanup(func() { _ = f.Close() })
	s, ea, eb := benchStream(b, StreamConfig{Kernel: f, LatchWindow: 50 * time.Millisecond})
	s.SetPeer(SideA, Peer{RTP: ea.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	s.SetPeer(SideB, Peer{RTP: eb.addr(), PayloadTypes: []uint8{96}, DefaultClock: 90000})
	pkt := rtpPacket(96, 0, 0, 1234, string(make([]byte, 1000)))
	deadline := time.Now().Add(20 * time.Second)
	for !s.kernel.dirs[SideA].installed.Load() || !s.kernel.dirs[SideB].installed.Load() {
		if time.Now().After(deadline) {
			b.Fatal("kernel entries not installed")
		}
		ea.send(local(s.legs[SideA].pair), pkt)
		eb.mustRecv()
		eb.send(local(s.legs[SideB].pair), pkt)
		ea.mustRecv()
	}
	to := local(s.legs[SideA].pair)
	buf := make([]byte, readBuffer)
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

// TestStreamKernelInsideWindow: peers that send from exactly the signalled
// addresses (a latch nothing can displace) reach the kernel inside their
// learning window, here one hour long, and the kernel then forwards.
func TestStreamKernelInsideWindow(t *testing.T) {
	f := openKernel(t)
	r := newRig(t, StreamConfig{Kernel: f, LatchWindow: time.Hour}, false)
	installed := func() bool { return r.s.kernel.dirs[0].installed.Load() && r.s.kernel.dirs[1].installed.Load() }
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; !installed(); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("kernel entries not installed inside the learning window after %d packets each way", i)
		}
		r.a.send(local(r.pa), rtpPacket(0, uint16(i), uint32(160*i), 1, "from-a"))
		r.b.mustRecv()
		r.b.send(local(r.pb), rtpPacket(0, uint16(i), uint32(160*i), 2, "from-b"))
		r.a.mustRecv()
	}
	match := r.s.kernel.dirs[SideA].match
	before, err := f.Counters(match)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		r.a.send(local(r.pa), rtpPacket(0, uint16(1000+i), 0, 1, "kernel"))
		if got := r.b.mustRecv(); !bytes.HasSuffix(got, []byte("kernel")) {
			t.Fatalf("B got %q", got)
		}
	}
	if after, _ := f.Counters(match); after.Packets-before.Packets != 10 {
		t.Fatalf("kernel forwarded %d of 10 packets", after.Packets-before.Packets)
	}
}
