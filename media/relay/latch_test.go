package relay

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// stranger is 127.0.0.77: another host than the endpoints (127.0.0.1), as an attacker on the
// internet is.
var stranger = netip.MustParseAddr("127.0.0.77")

// sprayer sends valid RTP (even ports) and RTCP (odd ports) to every target in a loop from its
// own socket and counts what comes back to it.
type sprayer struct {
	e        *endpoint
	targets  []netip.AddrPort
	sent     atomic.Int64
	received atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
}

func newSprayer(t *testing.T, ip netip.Addr, targets ...netip.AddrPort) *sprayer {
	t.Helper()
	sp := &sprayer{e: newEndpointOn(t, ip), targets: targets, stop: make(chan struct{})}
	sp.wg.Add(2)
	go func() {
		defer sp.wg.Done()
		buf := make([]byte, 2048)
		for {
			if _, _, err := sp.e.Conn.ReadFromUDPAddrPort(buf); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					continue
				}
				return
			}
			sp.received.Add(1)
		}
	}()
	go func() {
		defer sp.wg.Done()
		var seq uint16
		for {
			select {
			case <-sp.stop:
				return
			default:
			}
			seq++
			for _, to := range sp.targets {
				b := rtpPacket(0, seq, uint32(seq)*160, 666, "evil")
				if to.Port()%2 == 1 {
					b = rtcpPacket(200)
				}
				if _, err := sp.e.Conn.WriteToUDPAddrPort(b, to); err == nil {
					sp.sent.Add(1)
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	t.Cleanup(sp.close)
	return sp
}

func (sp *sprayer) close() {
	select {
	case <-sp.stop:
		return
	default:
	}
	close(sp.stop)
	_ = sp.e.Conn.Close()
	sp.wg.Wait()
}

// collector counts what an endpoint receives, split into legitimate ("legit" suffix) and other.
type collector struct {
	legit, evil atomic.Int64
	done        chan struct{}
}

func collect(t *testing.T, e *endpoint) *collector {
	t.Helper()
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		buf := make([]byte, 2048)
		for {
			n, _, err := e.Conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if bytes.HasSuffix(buf[:n], []byte("legit")) {
				c.legit.Add(1)
			} else {
				c.evil.Add(1)
			}
		}
	}()
	t.Cleanup(func() { _ = e.Conn.Close(); <-c.done })
	return c
}

// seen counts every packet a leg's sockets took in, relayed or not.
func seen(d DirectionStats) uint64 { return d.Packets + d.RTCPPackets + d.Dropped + d.Invalid }

func allPorts(pairs ...*Pair) []netip.AddrPort {
	var out []netip.AddrPort
	for _, p := range pairs {
		out = append(out, local(p), localRTCP(p))
	}
	return out
}

// TestStreamNoLatchBeforeSDP (issue #14 item 1): while the room rings, leg B's SDP is not
// known. A stranger spraying the relay ports before either endpoint sends must not latch: it
// receives none of the caller's media, and after the answer the room's media reaches the
// caller and the caller's reaches the room, with nothing of the stranger's injected.
func TestStreamNoLatchBeforeSDP(t *testing.T) {
	testutil.CheckGoroutines(t)
	p := newTestPool(t, 50*time.Millisecond)
	pa, pb := acquire(t, p), acquire(t, p)
	a, b := newEndpoint(t), newEndpoint(t)
	s := NewStream(pa, pb, StreamConfig{LatchWindow: 50 * time.Millisecond})
	t.Cleanup(s.Close)
	s.SetPeer(SideA, Peer{RTP: a.addr(), PayloadTypes: []uint8{0}, DefaultClock: 8000}) // the INVITE's offer
	sp := newSprayer(t, stranger, allPorts(pa, pb)...)
	ca, cb := collect(t, a), collect(t, b)
	testutil.Eventually(t, "the spray to reach both legs", func() bool {
		st := s.Stats()
		return seen(st.AToB) > 20 && seen(st.BToA) > 20
	})
	// The caller talks while the room still rings (early media is common), then the answer.
	for i := range 20 {
		a.send(local(pa), rtpPacket(0, uint16(i), uint32(160*i), 1, "legit"))
		time.Sleep(time.Millisecond)
	}
	if l, ok := s.Latched(SideB); ok {
		t.Fatalf("leg B latched to %v before its SDP was known", l)
	}
	s.SetPeer(SideB, Peer{RTP: b.addr(), PayloadTypes: []uint8{0}, DefaultClock: 8000}) // the answer
	for i := 20; ca.legit.Load() < 20 || cb.legit.Load() < 20; i++ {
		if i > 5000 {
			t.Fatalf("legitimate media did not flow: A got %d, B got %d", ca.legit.Load(), cb.legit.Load())
		}
		a.send(local(pa), rtpPacket(0, uint16(i), uint32(160*i), 1, "legit"))
		b.send(local(pb), rtpPacket(0, uint16(i), uint32(160*i), 2, "legit"))
		time.Sleep(time.Millisecond)
	}
	sp.close()
	if got := sp.received.Load(); got != 0 {
		t.Fatalf("the stranger received %d packets of the call", got)
	}
	if ea, eb := ca.evil.Load(), cb.evil.Load(); ea+eb != 0 {
		t.Fatalf("the stranger injected %d packets into A and %d into B", ea, eb)
	}
	st := s.Stats()
	if st.LatchedA != a.addr() || st.LatchedB != b.addr() {
		t.Fatalf("latched %v/%v, want %v/%v", st.LatchedA, st.LatchedB, a.addr(), b.addr())
	}
	t.Logf("stranger sent %d packets, received 0; A got %d legit, B got %d legit", sp.sent.Load(), ca.legit.Load(), cb.legit.Load())
}

// TestStreamStrangerNeverLatches (issue #14 item 1): both legs' SDP is known but neither
// endpoint has sent yet; a stranger spraying from another address for longer than the
// learning window must never become the peer: the endpoints, starting later, get all of each
// other's media and none of the stranger's, and the stranger gets nothing.
func TestStreamStrangerNeverLatches(t *testing.T) {
	testutil.CheckGoroutines(t)
	const window = 50 * time.Millisecond
	r := newRig(t, StreamConfig{LatchWindow: window}, false)
	sp := newSprayer(t, stranger, allPorts(r.pa, r.pb)...)
	ca, cb := collect(t, r.a), collect(t, r.b)
	first := time.Now()
	testutil.Eventually(t, "the spray to outlast the learning window", func() bool {
		st := r.s.Stats()
		return st.AToB.Dropped > 20 && st.BToA.Dropped > 20 && time.Since(first) > 4*window
	})
	for i := 0; ca.legit.Load() < 50 || cb.legit.Load() < 50; i++ {
		if i > 5000 {
			t.Fatalf("legitimate media did not flow: A got %d, B got %d", ca.legit.Load(), cb.legit.Load())
		}
		r.a.send(local(r.pa), rtpPacket(0, uint16(i), uint32(160*i), 1, "legit"))
		r.b.send(local(r.pb), rtpPacket(0, uint16(i), uint32(160*i), 2, "legit"))
		time.Sleep(time.Millisecond)
	}
	sp.close()
	if got := sp.received.Load(); got != 0 {
		t.Fatalf("the stranger received %d packets of the call", got)
	}
	if ea, eb := ca.evil.Load(), cb.evil.Load(); ea+eb != 0 {
		t.Fatalf("the stranger injected %d packets into A and %d into B", ea, eb)
	}
	if st := r.s.Stats(); st.LatchedA != r.a.addr() || st.LatchedB != r.b.addr() {
		t.Fatalf("latched %v/%v", st.LatchedA, st.LatchedB)
	}
}

// TestStreamSignalledPeerDisplacesLatchedStranger (issue #14 item 1): a source that latched
// first (here another port on the signalled IP) and keeps sending after the learning window
// closed is displaced as soon as the exactly signalled address sends.
func TestStreamSignalledPeerDisplacesLatchedStranger(t *testing.T) {
	r := newRig(t, StreamConfig{LatchWindow: 20 * time.Millisecond, Alive: time.Minute}, false)
	early := newEndpoint(t)
	early.send(local(r.pa), rtpPacket(0, 1, 0, 9, "early"))
	r.b.mustRecv()
	testutil.Eventually(t, "the learning window to close", func() bool { return mono() > r.s.legs[0].rtp.latch.windowEnd.Load() })
	early.send(local(r.pa), rtpPacket(0, 2, 160, 9, "early")) // still alive
	r.b.mustRecv()
	r.a.send(local(r.pa), rtpPacket(0, 1, 0, 1, "signalled"))
	if got := r.b.mustRecv(); !bytes.HasSuffix(got, []byte("signalled")) {
		t.Fatalf("B got %q", got)
	}
	if got, _ := r.s.Latched(SideA); got != r.a.addr() {
		t.Fatalf("latched %v, want the signalled %v", got, r.a.addr())
	}
	r.b.send(local(r.pb), rtpPacket(0, 1, 0, 2, "to-a"))
	if got := r.a.mustRecv(); !bytes.HasSuffix(got, []byte("to-a")) {
		t.Fatalf("A got %q", got)
	}
	early.send(local(r.pa), rtpPacket(0, 3, 320, 9, "early"))
	if b, _, ok := r.b.recv(100 * time.Millisecond); ok {
		t.Fatalf("the displaced source is still relayed: %q", b)
	}
}

// TestStreamNewSDPRearmsLatch (issue #14 item 1): a new SDP for a leg (the answer, a
// re-INVITE) opens a new learning window even when the signalled address did not change: a
// better source (here the registered address) may then take over from the one latched before.
func TestStreamNewSDPRearmsLatch(t *testing.T) {
	r := newRig(t, StreamConfig{LatchWindow: 20 * time.Millisecond, Alive: time.Minute}, false)
	registered := netip.MustParseAddr("127.0.0.3")
	peer := Peer{RTP: r.a.addr(), Preferred: registered, PayloadTypes: []uint8{0}, DefaultClock: 8000}
	r.s.SetPeer(SideA, peer)
	early := newEndpoint(t) // the signalled IP, another port: latches first
	early.send(local(r.pa), rtpPacket(0, 1, 0, 9, "early"))
	r.b.mustRecv()
	testutil.Eventually(t, "the learning window to close", func() bool { return mono() > r.s.legs[0].rtp.latch.windowEnd.Load() })
	nat := newEndpointOn(t, registered)
	nat.send(local(r.pa), rtpPacket(0, 1, 0, 1, "nat"))
	if b, _, ok := r.b.recv(100 * time.Millisecond); ok {
		t.Fatalf("locked latch taken over without a new SDP: %q", b)
	}
	r.s.SetPeer(SideA, peer) // the same SDP again (re-INVITE, answer): re-arms
	nat.send(local(r.pa), rtpPacket(0, 2, 160, 1, "nat"))
	if got := r.b.mustRecv(); !bytes.HasSuffix(got, []byte("nat")) {
		t.Fatalf("B got %q", got)
	}
	if got, _ := r.s.Latched(SideA); got != nat.addr() {
		t.Fatalf("latched %v, want %v", got, nat.addr())
	}
}

// TestStreamRefusesDeniedPeers (issue #14 item 9): an SDP pointing a leg's media at a denied
// address (loopback, the node's own) gets nothing sent there, and a denied source cannot
// latch; the other leg's media still arrives at the relay.
func TestStreamRefusesDeniedPeers(t *testing.T) {
	r := &rig{pool: newTestPool(t, 50*time.Millisecond)}
	r.pa, r.pb = acquire(t, r.pool), acquire(t, r.pool)
	room := newEndpointOn(t, netip.MustParseAddr("127.0.0.2")) // allow-listed below
	victim := newEndpoint(t)                                   // a loopback service
	peers := NewPeerFilter([]netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, nil)
	r.s = NewStream(r.pa, r.pb, StreamConfig{Peers: peers})
	t.Cleanup(r.s.Close)
	r.s.SetPeer(SideA, Peer{RTP: victim.addr(), DefaultClock: 8000})
	r.s.SetPeer(SideB, Peer{RTP: room.addr(), DefaultClock: 8000})
	cv := collect(t, victim)
	for i := 0; r.s.Stats().BToA.Packets < 50; i++ {
		if i > 5000 {
			t.Fatalf("the room's media did not reach the relay: %+v", r.s.Stats())
		}
		room.send(local(r.pb), rtpPacket(0, uint16(i), uint32(160*i), 2, "media"))
		room.send(localRTCP(r.pb), rtcpPacket(200))
		time.Sleep(time.Millisecond)
	}
	victim.send(local(r.pa), rtpPacket(0, 1, 0, 1, "from-denied"))
	testutil.Eventually(t, "the denied source's packet to be dropped", func() bool { return r.s.Stats().AToB.Dropped == 1 })
	if _, ok := r.s.Latched(SideA); ok {
		t.Fatal("a denied source latched")
	}
	if got := cv.legit.Load() + cv.evil.Load(); got != 0 {
		t.Fatalf("%d packets were sent to the denied address", got)
	}
}

func TestPeerFilter(t *testing.T) {
	own := netip.MustParseAddr("203.0.113.7")
	f := NewPeerFilter([]netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}, []netip.Addr{own})
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"198.51.100.1", true}, {"203.0.113.7", false}, {"127.0.0.1", false}, {"::1", false},
		{"10.1.2.3", false}, {"10.20.3.4", true}, {"169.254.169.254", false}, {"::ffff:127.0.0.1", false},
		{"192.168.1.1", false}, {"224.0.0.1", false}, {"0.0.0.0", false}, {"2001:db8::1", true},
	} {
		if got := f.Allowed(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Allowed(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
	var none *PeerFilter
	if !none.Allowed(netip.MustParseAddr("127.0.0.1")) {
		t.Error("a nil filter must allow everything")
	}
}

// TestLatchFinal: a latch is final for the kernel path once its window is over,
// or inside it when it holds exactly the signalled address (nothing displaces
// it there); a lower rank inside the window, no latch, or a pending relearn is
// not final.
func TestLatchFinal(t *testing.T) {
	now := mono()
	src := netip.MustParseAddrPort("192.0.2.7:4000")
	for _, tc := range []struct {
		name    string
		latched bool
		rank    int32
		end     int64
		relearn bool
		want    bool
	}{
		{"signalled, inside the window", true, rankSignalled, now + int64(time.Hour), false, true},
		{"signalled IP, inside the window", true, rankSignalIP, now + int64(time.Hour), false, false},
		{"preferred IP, inside the window", true, rankPreferred, now + int64(time.Hour), false, false},
		{"signalled IP, window over", true, rankSignalIP, now - 1, false, true},
		{"signalled, relearn pending", true, rankSignalled, now - 1, true, false},
		{"nothing latched", false, rankSignalled, now - 1, false, false},
	} {
		var l latch
		if tc.latched {
			a := src
			l.addr.Store(&a)
		}
		l.rank.Store(tc.rank)
		l.windowEnd.Store(tc.end)
		l.relearn.Store(tc.relearn)
		if got := latchFinal(&l, now); got != tc.want {
			t.Errorf("%s: latchFinal = %v, want %v", tc.name, got, tc.want)
		}
	}
}
