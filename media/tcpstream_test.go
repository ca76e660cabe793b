package media

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/media/sdp"
)

// bfcpBody is an offer or answer with audio and one BFCP m-line; setup ""
// leaves a=setup out.
func bfcpBody(proto string, port int, setup string) []byte {
	b := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 0\r\n" +
		fmt.Sprintf("m=application %d %s *\r\na=floorctrl:c-s\r\na=confid:1\r\na=userid:1\r\na=floorid:1 mstrm:3\r\n", port, proto)
	if setup != "" {
		b += "a=setup:" + setup + "\r\n"
	}
	return []byte(b + "a=connection:new\r\n")
}

// bfcpLine returns the BFCP m-line (index 1) of a rewritten body.
func bfcpLine(t *testing.T, body []byte) sdp.Media {
	t.Helper()
	s, err := sdp.Parse(body)
	if err != nil || len(s.Media) != 2 {
		t.Fatalf("%v\n%s", err, body)
	}
	return s.Media[1]
}

// TestTCPRoles: which a=setup roles the relay can serve while staying
// passive toward both legs, and what it writes. Offers of active, actpass
// or nothing are relayed with a=setup:passive both ways; an offer of passive
// or holdconn, an illegal answer, or an unknown value rejects the m-line
// (port 0 both ways) and holds no ports; the call itself goes on.
func TestTCPRoles(t *testing.T) {
	m := newTestManager(t, func(c *Config) { c.PortMax = c.PortMin + 199 }) // ten calls, their ports draining

	for _, tc := range []struct {
		name, proto, offer, answer string
		relayed                    bool
	}{
		{"actpass/active", "TCP/BFCP", "actpass", "active", true},
		{"active/absent", "TCP/BFCP", "active", "", true},
		{"absent/active", "TCP/BFCP", "", "active", true},
		{"TLS actpass/active", "TCP/TLS/BFCP", "actpass", "active", true},
		{"offer passive", "TCP/BFCP", "passive", "active", false},
		{"offer holdconn", "TCP/BFCP", "holdconn", "holdconn", false},
		{"offer unknown", "TCP/BFCP", "maybe", "active", false},
		{"answer passive", "TCP/BFCP", "actpass", "passive", false},
		{"answer actpass", "TCP/BFCP", "actpass", "actpass", false},
		{"MSRP", "TCP/MSRP", "actpass", "active", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := m.NewSession(tc.name, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			toB, err := s.Offer(LegA, bfcpBody(tc.proto, 5070, tc.offer), netip.AddrPort{})
			if err != nil {
				t.Fatal(err)
			}
			ob := bfcpLine(t, toB)
			toA, err := s.Answer(LegB, bfcpBody(tc.proto, 9, tc.answer), netip.AddrPort{})
			if err != nil {
				t.Fatal(err)
			}
			oa := bfcpLine(t, toA)
			if got := oa.Port != 0; got != tc.relayed {
				t.Fatalf("relayed=%v, want %v\n%s", got, tc.relayed, toA)
			}
			if len(s.Streams()) != map[bool]int{true: 2, false: 1}[tc.relayed] {
				t.Fatalf("streams %+v", s.Streams())
			}
			if !tc.relayed {
				return
			}
			if ob.Setup != "passive" || oa.Setup != "passive" || ob.Port == oa.Port || ob.Connection != "new" || oa.Connection != "new" {
				t.Fatalf("offer to B %+v, answer to A %+v", ob, oa)
			}
		})
	}
	testutil.Eventually(t, "no ports held", func() bool { st := m.Stats().Pool; return st.InUse == 0 && st.Draining == 0 })
}

// TestTCPSessionLifecycle: BFCP flows over the relay ports of a session,
// the ports stay across a re-INVITE from the other side (same connection),
// the bytes show in the session's and the manager's stats, TCP activity
// keeps the media timeout away, and an answer that drops the m-line
// closes the connections and frees the ports.
func TestTCPSessionLifecycle(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newTestManager(t, func(c *Config) { c.Timeout = 600 * time.Millisecond })
	timedOut := make(chan string, 1)
	s, err := m.NewSession("c", func(r string) { timedOut <- r })
	if err != nil {
		t.Fatal(err)
	}
	toB, _ := s.Offer(LegA, bfcpBody("TCP/BFCP", 5070, "actpass"), netip.MustParseAddrPort("127.0.0.1:5060"))
	toA, _ := s.Answer(LegB, bfcpBody("TCP/BFCP", 9, "active"), netip.AddrPort{})
	ob, oa := bfcpLine(t, toB), bfcpLine(t, toA)
	a, err := net.Dial("tcp", netip.AddrPortFrom(oa.Addr, uint16(oa.Port)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.Dial("tcp", netip.AddrPortFrom(ob.Addr, uint16(ob.Port)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	roundTrip := func(n int) {
		t.Helper()
		msg := []byte{0x20, 11, 0, 0, 0, 0, 0, 1, 0, byte(n), 0, 1} // BFCP Hello
		if _, err := a.Write(msg); err != nil {
			t.Fatal(err)
		}
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%v % x", err, got)
		}
	}
	// BFCP traffic every 100 ms keeps the 600 ms media timeout away for twice as long (no RTP at all).
	for n := range 12 {
		roundTrip(n)
		time.Sleep(100 * time.Millisecond)
		select {
		case r := <-timedOut:
			t.Fatalf("timed out with BFCP flowing: %s", r)
		default:
		}
	}
	// re-INVITE from B: same ports, the connection goes on
	toA2, _ := s.Offer(LegB, bfcpBody("TCP/BFCP", 9, "actpass"), netip.AddrPort{})
	toB2, _ := s.Answer(LegA, bfcpBody("TCP/BFCP", 9, "active"), netip.AddrPort{})
	if o := bfcpLine(t, toA2); o.Port != oa.Port || o.Setup != "passive" {
		t.Fatalf("re-offer to A %+v", o)
	}
	if o := bfcpLine(t, toB2); o.Port != ob.Port || o.Setup != "passive" {
		t.Fatalf("re-answer to B %+v", o)
	}
	roundTrip(12)
	st := s.Streams()
	if len(st) != 2 || st[1].Index != 1 || st[1].AToB.Bytes != 13*12 || st[1].PortA != oa.Port || st[1].PortB != ob.Port {
		t.Fatalf("streams %+v", st)
	}
	if ms := m.Stats(); ms.Streams != 2 || ms.Bytes != 13*12 {
		t.Fatalf("manager %+v", ms)
	}
	// an answer that rejects the m-line closes the connections and frees the ports
	_, _ = s.Offer(LegA, bfcpBody("TCP/BFCP", 5070, "actpass"), netip.AddrPort{})
	if out, _ := s.Answer(LegB, bfcpBody("TCP/BFCP", 0, "active"), netip.AddrPort{}); bfcpLine(t, out).Port != 0 {
		t.Fatalf("rejected m-line still has a port:\n%s", out)
	}
	_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.Read(make([]byte, 16)); err == nil {
		t.Fatal("A's connection survived the rejection")
	}
	if ms := m.Stats(); ms.Streams != 1 || ms.Bytes != 13*12 {
		t.Fatalf("closed stream not accounted: %+v", ms)
	}
	s.Close()
	testutil.Eventually(t, "ports free", func() bool { st := m.Stats().Pool; return st.InUse == 0 && st.Draining == 0 })
}
