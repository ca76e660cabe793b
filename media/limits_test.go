package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// offerWith is an offer of n audio m-lines (port 0 for the rejected ones, after the first live).
func offerWith(live, rejected int) []byte {
	var b strings.Builder
	b.WriteString("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n")
	for i := range live {
		fmt.Fprintf(&b, "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", 40000+2*i)
	}
	for range rejected {
		b.WriteString("m=audio 0 RTP/AVP 0\r\n")
	}
	return []byte(b.String())
}

// TestOfferOverStreamCapRefused (issue #14 item 4): an offer with more relayed m-lines than
// MaxStreams, or more m-lines at all than 4x that, is refused before a single port is taken.
func TestOfferOverStreamCapRefused(t *testing.T) {
	m := newTestManager(t, func(c *Config) { c.MaxStreams = 4 })
	for _, tc := range []struct {
		name           string
		live, rejected int
		want           error
	}{
		{"1000 m-lines", 1000, 0, ErrTooManyStreams},
		{"one over the cap", 5, 0, ErrTooManyStreams},
		{"too many rejected m-lines", 1, 16, ErrTooManyStreams},
		{"at the cap", 4, 12, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := m.NewSession(tc.name, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			free := m.Pool().Free()
			_, err = s.Offer(LegA, offerWith(tc.live, tc.rejected), netip.MustParseAddrPort("127.0.0.9:5060"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != nil && m.Pool().Free() != free {
				t.Fatalf("refused offer took %d pairs", free-m.Pool().Free())
			}
			if tc.want == nil && free-m.Pool().Free() != 2*tc.live {
				t.Fatalf("accepted offer took %d pairs, want %d", free-m.Pool().Free(), 2*tc.live)
			}
		})
	}
}

// TestUnansweredPortsPerSource (issue #14 item 4): one source may hold at most
// MaxUnansweredPorts relay ports in calls not answered yet; past that its new calls are
// refused without touching the pool, other sources are unaffected, and an answer or a hang-up
// gives the source its budget back. Exempt sources (cluster peers) have no cap.
func TestUnansweredPortsPerSource(t *testing.T) {
	exempt := netip.MustParseAddr("127.0.0.10")
	m := newTestManager(t, func(c *Config) {
		c.MaxUnansweredPorts = 16 // four streams
		c.PortMax = c.PortMin + 119
		c.Exempt = func(a netip.Addr) bool { return a == exempt }
	})
	x := netip.MustParseAddrPort("127.0.0.8:5060")
	y := netip.MustParseAddrPort("127.0.0.9:5060")
	offer := func(id string, src netip.AddrPort, streams int) (*Session, error) {
		t.Helper()
		s, err := m.NewSession(id, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		_, err = s.Offer(LegA, offerWith(streams, 0), src)
		return s, err
	}
	s1, err := offer("x1", x, 3)
	if err != nil {
		t.Fatal(err)
	}
	free := m.Pool().Free()
	if _, err := offer("x2", x, 2); !errors.Is(err, ErrSourceBusy) {
		t.Fatalf("second call from x: err = %v, want ErrSourceBusy", err)
	}
	if m.Pool().Free() != free {
		t.Fatal("a refused call took ports")
	}
	if _, err := offer("y1", y, 3); err != nil {
		t.Fatalf("another source: %v", err)
	}
	for i := range 3 {
		if _, err := offer(fmt.Sprintf("exempt%d", i), netip.AddrPortFrom(exempt, 5060), 3); err != nil {
			t.Fatalf("exempt source: %v", err)
		}
	}
	if _, err := s1.Answer(LegB, offerWith(3, 0), netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	s3, err := offer("x3", x, 4)
	if err != nil {
		t.Fatalf("after the answer: %v", err)
	}
	s3.Close()
	if _, err := offer("x4", x, 4); err != nil {
		t.Fatalf("after the hang-up: %v", err)
	}
}

// TestDefaultPeersDenyLoopbackAndOwn (issue #14 item 9): with no AllowPeers the manager's
// filter refuses loopback, internal networks and the node's own addresses (bind, advertise,
// OwnAddrs) as media peers; a public address passes.
func TestDefaultPeersDenyLoopbackAndOwn(t *testing.T) {
	adv, own := netip.MustParseAddr("198.51.100.20"), netip.MustParseAddr("198.51.100.30")
	m, err := NewManager(Config{BindAddr: loopback, Advertise: adv, OwnAddrs: []netip.Addr{own}, PortMin: 41100, PortMax: 41103})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, tc := range []struct {
		ip   netip.Addr
		want bool
	}{
		{loopback, false}, {netip.MustParseAddr("127.0.0.53"), false}, {adv, false}, {own, false},
		{netip.MustParseAddr("10.0.0.1"), false}, {netip.MustParseAddr("169.254.169.254"), false},
		{netip.MustParseAddr("198.51.100.21"), true},
	} {
		if got := m.peers.Allowed(tc.ip); got != tc.want {
			t.Errorf("Allowed(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}
