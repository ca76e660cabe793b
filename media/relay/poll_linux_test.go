//go:build linux && (amd64 || arm64)

package relay

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestStreamSocketsServedByPollers: a stream's four sockets are served by one poller, outside
// the runtime's netpoller (their conns closed); Close hands the pairs new conns on the same
// ports, which the pool drains and frees.
func TestStreamSocketsServedByPollers(t *testing.T) {
	r := newRig(t, StreamConfig{}, false)
	old := r.pa.RTP
	w := r.s.legs[SideA].rtp.poll.w
	for i := range r.s.legs {
		for _, k := range []*sock{&r.s.legs[i].rtp, &r.s.legs[i].rtcp} {
			if k.poll.w == nil || k.poll.w != w || !k.out.raw {
				t.Fatalf("side %d rtcp=%v: not served by the stream's poller", i, k.isRTCP)
			}
		}
	}
	if err := old.SetReadDeadline(time.Now()); err == nil {
		t.Fatal("the conn of a polled socket is still open (in the runtime's netpoller)")
	}
	r.a.send(local(r.pa), rtpPacket(0, 1, 0, 1, "x"))
	r.b.mustRecv()
	r.b.send(local(r.pb), rtpPacket(0, 1, 0, 2, "y"))
	r.a.mustRecv()
	r.s.Close()
	if r.pa.RTP == old || r.pa.RTP.LocalAddr().String() != old.LocalAddr().String() {
		t.Fatalf("pair conn after Close: %v, want a new conn on %v", r.pa.RTP.LocalAddr(), old.LocalAddr())
	}
	testutil.Eventually(t, "the pairs to drain and free", func() bool { return r.pool.Stats().InUse+r.pool.Stats().Draining == 0 })
	if _, err := r.pool.AcquirePort(r.pa.Port()); err != nil {
		t.Fatalf("port %d not free again: %v", r.pa.Port(), err)
	}
}

// TestStreamPerSocketReaders: with the pollers off (epoll unavailable) each socket has its own
// reader goroutine on its conn, and the stream relays and closes as before.
func TestStreamPerSocketReaders(t *testing.T) {
	usePollers = false
	t.Cleanup(func() { usePollers = true })
	r := newRig(t, StreamConfig{}, false)
	if k := &r.s.legs[SideA].rtp; k.poll.w != nil || k.out.raw {
		t.Fatal("socket polled with the pollers off")
	}
	r.a.send(local(r.pa), rtpPacket(0, 1, 0, 1, "x"))
	r.b.mustRecv()
	r.b.send(local(r.pb), rtpPacket(0, 1, 0, 2, "y"))
	r.a.mustRecv()
	r.s.Close()
	r.a.send(local(r.pa), rtpPacket(0, 2, 0, 1, "x"))
	if _, _, ok := r.b.recv(200 * time.Millisecond); ok {
		t.Fatal("packet forwarded after Close")
	}
}

// TestPolledStreamsCloseUnderTraffic: streams closing while their ports are flooded (a poller
// may hold an event for a socket being unregistered, and slots are reused at once) neither
// race nor stop the poller: a stream started afterwards on the same pool still relays.
func TestPolledStreamsCloseUnderTraffic(t *testing.T) {
	p := newTestPool(t, 10*time.Millisecond)
	a, b := newEndpoint(t), newEndpoint(t)
	pkt := rtpPacket(0, 1, 0, 1, "flood")
	for range 20 {
		pa, pb := acquire(t, p), acquire(t, p)
		s := NewStream(pa, pb, StreamConfig{})
		s.SetPeer(SideA, Peer{RTP: a.addr()})
		s.SetPeer(SideB, Peer{RTP: b.addr()})
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for _, to := range []netip.AddrPort{local(pa), localRTCP(pa), local(pb)} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
				if err != nil {
					return
				}
				defer c.Close()
				for {
					select {
					case <-stop:
						return
					default:
						_, _ = c.Write(pkt)
					}
				}
			}()
		}
		time.Sleep(5 * time.Millisecond)
		s.Close()
		close(stop)
		wg.Wait()
	}
	testutil.Eventually(t, "the pairs to drain and free", func() bool { return p.Stats().InUse+p.Stats().Draining == 0 })
	// fresh endpoints: a and b's receive buffers may be full of relayed flood
	a, b = newEndpoint(t), newEndpoint(t)
	pa, pb := acquire(t, p), acquire(t, p)
	s := NewStream(pa, pb, StreamConfig{})
	t.Cleanup(s.Close)
	s.SetPeer(SideA, Peer{RTP: a.addr()})
	s.SetPeer(SideB, Peer{RTP: b.addr()})
	a.send(local(pa), rtpPacket(0, 1, 0, 1, "after"))
	if got := b.mustRecv(); string(got[12:]) != "after" {
		t.Fatalf("got %q", got[12:])
	}
}

// TestZonedSockaddr: a polled socket sends to a link-local IPv6 peer with its interface, given
// by index (as the reader decodes it) or by name.
func TestZonedSockaddr(t *testing.T) {
	var sa unix.RawSockaddrInet6
	if !zonedSockaddr(&sa, unix.AF_INET6, netip.MustParseAddrPort("[fe80::1%3]:5004")) || sa.Scope_id != 3 || ntohs(sa.Port) != 5004 {
		t.Fatalf("fe80::1%%3: %+v", sa)
	}
	lo, err := net.InterfaceByName("lo")
	if err == nil {
		if !zonedSockaddr(&sa, unix.AF_INET6, netip.MustParseAddrPort("[fe80::1%lo]:5004")) || sa.Scope_id != uint32(lo.Index) {
			t.Fatalf("fe80::1%%lo: %+v, want scope %d", sa, lo.Index)
		}
	}
	if zonedSockaddr(&sa, unix.AF_INET, netip.MustParseAddrPort("[fe80::1%3]:5004")) {
		t.Fatal("a zoned IPv6 destination encoded for an IPv4 socket")
	}
}
