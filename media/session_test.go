package media

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/media/sdp"
)

// call runs offer (A) and answer (B) and returns the relay addresses that
// A and B were given.
func call(t *testing.T, s *Session, a, b *room, version int, dirA, dirB string) (aDst, bDst []netip.AddrPort) {
	t.Helper()
	toB, err := s.Offer(LegA, a.sdp(version, dirA), netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	toA, err := s.Answer(LegB, b.sdp(version, dirB), netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	return relayAddrs(t, toA), relayAddrs(t, toB)
}

// TestEndToEnd: audio + main video + content video through offer/answer
// rewriting, real packets both ways, hold/resume, then Close stops media
// and the manager's Close leaves no goroutine behind.
func TestEndToEnd(t *testing.T) {
	testutil.CheckGoroutines(t)
	m := newTestManager(t, nil)
	a, b := newRoom(t, "roomA"), newRoom(t, "roomB")
	s, err := m.NewSession("call-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	aDst, bDst := call(t, s, a, b, 1, "sendrecv", "sendrecv")
	if aDst[3].Port() == 0 || bDst[3].Port() == 0 || aDst[3] == bDst[3] {
		t.Fatalf("TCP/BFCP m-line not relayed: %v %v", aDst[3], bDst[3])
	}
	for i := range 3 {
		if aDst[i].Addr() != loopback || aDst[i] == bDst[i] {
			t.Fatalf("m-line %d: A sends to %v, B to %v", i, aDst[i], bDst[i])
		}
	}
	for seq := range uint16(3) {
		exchange(t, a, b, aDst, bDst, seq)
	}
	st := s.Streams()
	if len(st) != 4 || st[2].Content != "slides" || st[3].Proto != "TCP/BFCP" || st[2].AToB.Packets != 3 || st[0].BToA.Lost != 0 {
		t.Fatalf("streams %+v", st)
	}

	// Hold (A sendonly, B recvonly), then resume: same relay ports, media flows.
	aHold, bHold := call(t, s, a, b, 2, "sendonly", "recvonly")
	if !onHold(s) {
		t.Fatal("session not on hold")
	}
	for i := range 3 {
		if aHold[i] != aDst[i] || bHold[i] != bDst[i] {
			t.Fatalf("re-INVITE moved m-line %d", i)
		}
	}
	call(t, s, a, b, 3, "sendrecv", "sendrecv")
	if onHold(s) {
		t.Fatal("session still on hold after resume")
	}
	exchange(t, a, b, aDst, bDst, 10)

	s.Close()
	a.audio.send(aDst[0], rtp(0, 11, "after close"))
	if got, ok := b.audio.recv(150 * time.Millisecond); ok {
		t.Fatalf("forwarded after Close: %q", got)
	}
	if ms := m.Stats(); ms.Sessions != 0 || ms.Packets < 24 || ms.SessionsTotal != 1 {
		t.Fatalf("manager stats %+v", ms)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReinviteAddsContent: a re-INVITE that adds the content m-line keeps
// the existing streams' ports and allocates only the new one.
func TestReinviteAddsContent(t *testing.T) {
	m := newTestManager(t, nil)
	a, b := newRoom(t, "roomA"), newRoom(t, "roomB")
	s, _ := m.NewSession("c", nil)
	twoLines := func(r *room) []byte { // audio + main video only
		body := string(r.sdp(1, "sendrecv"))
		return []byte(body[:strings.Index(body, "m=video "+strconv.Itoa(r.cont.port()))])
	}
	toB, err := s.Offer(LegA, twoLines(a), netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(LegB, twoLines(b), netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	before := relayAddrs(t, toB)
	if len(s.Streams()) != 2 {
		t.Fatalf("%d streams", len(s.Streams()))
	}
	aDst, bDst := call(t, s, a, b, 2, "sendrecv", "sendrecv")
	if bDst[0] != before[0] || bDst[1] != before[1] || len(s.Streams()) != 4 { // + content video and BFCP
		t.Fatalf("existing streams moved: %v -> %v", before, bDst)
	}
	exchange(t, a, b, aDst, bDst, 1)
}

func TestRTCPMuxNegotiation(t *testing.T) {
	m := newTestManager(t, nil)
	offer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp-mux\r\n"
	answerNoMux := "v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
	answerMux := answerNoMux + "a=rtcp-mux\r\n"
	for _, tc := range []struct {
		name, answer string
		wantMux      bool
	}{
		{"answerer declines", answerNoMux, false},
		{"both offer", answerMux, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := m.NewSession(tc.name, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			toB, err := s.Offer(LegA, []byte(offer), netip.AddrPort{})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(toB), "a=rtcp-mux") {
				t.Fatal("offer lost a=rtcp-mux")
			}
			toA, err := s.Answer(LegB, []byte(tc.answer), netip.AddrPort{})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(toA), "a=rtcp-mux"); got != tc.wantMux {
				t.Fatalf("answer to A has rtcp-mux = %v, want %v:\n%s", got, tc.wantMux, toA)
			}
		})
	}
}

// TestOriginVersion: each changed body toward a leg gets a higher o=
// version; an unchanged re-offer keeps it.
func TestOriginVersion(t *testing.T) {
	m := newTestManager(t, nil)
	a := newRoom(t, "roomA")
	s, _ := m.NewSession("v", nil)
	version := func(body []byte) string {
		t.Helper()
		for _, l := range strings.Split(string(body), "\r\n") {
			if strings.HasPrefix(l, "o=") {
				return strings.Fields(l)[2]
			}
		}
		t.Fatal("no o=")
		return ""
	}
	var got []string
	for _, dir := range []string{"sendrecv", "sendonly", "sendonly", "sendrecv"} {
		out, err := s.Offer(LegA, a.sdp(7, dir), netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, version(out))
	}
	if strings.Join(got, ",") != "1,2,2,3" {
		t.Fatalf("versions %v, want 1,2,2,3", got)
	}
}

func TestMediaTimeout(t *testing.T) {
	testutil.CheckGoroutines(t)
	for _, tc := range []struct {
		name      string
		dir       string
		wantFire  bool
		wantWords string
	}{
		{"active call without RTP", "sendrecv", true, "media timeout: no RTP for 200ms"},
		{"on hold uses the hold timeout", "sendonly", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestManager(t, func(c *Config) { c.Timeout = 200 * time.Millisecond; c.HoldTimeout = time.Hour })
			a, b := newRoom(t, "roomA"), newRoom(t, "roomB")
			var fired atomic.Int32
			reasons := make(chan string, 4)
			s, _ := m.NewSession("t", func(r string) { fired.Add(1); reasons <- r })
			call(t, s, a, b, 1, tc.dir, sdp.Direction(tc.dir).Reverse().String())
			if !tc.wantFire {
				select {
				case r := <-reasons:
					t.Fatalf("timeout fired on hold: %s", r)
				case <-time.After(600 * time.Millisecond):
				}
				return
			}
			select {
			case r := <-reasons:
				if r != tc.wantWords {
					t.Fatalf("reason %q, want %q", r, tc.wantWords)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("no timeout")
			}
			time.Sleep(300 * time.Millisecond) // more ticks must not fire again
			if n := fired.Load(); n != 1 {
				t.Fatalf("fired %d times", n)
			}
		})
	}
}

func TestMediaKeepsTimeoutAway(t *testing.T) {
	m := newTestManager(t, func(c *Config) { c.Timeout = 300 * time.Millisecond })
	a, b := newRoom(t, "roomA"), newRoom(t, "roomB")
	fired := make(chan string, 1)
	s, _ := m.NewSession("t", func(r string) { fired <- r })
	aDst, _ := call(t, s, a, b, 1, "sendrecv", "sendrecv")
	for i := range 40 { // 800 ms of one-way audio
		a.audio.send(aDst[0], rtp(0, uint16(i), "x"))
		select {
		case r := <-fired:
			t.Fatalf("timeout while media flows: %s", r)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestPoolExhaustion(t *testing.T) {
	m := newTestManager(t, func(c *Config) { c.PortMax = c.PortMin + 7 }) // 4 pairs: 2 streams
	a, b := newRoom(t, "roomA"), newRoom(t, "roomB")
	s, err := m.NewSession("big", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Offer(LegA, a.sdp(1, "sendrecv"), netip.AddrPort{}); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("3 streams on 4 pairs: err = %v, want ErrPoolExhausted", err)
	}
	if _, err := m.NewSession("next", nil); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("NewSession: err = %v, want ErrPoolExhausted", err)
	}
	s.Close()
	_ = b
}

func TestSessionErrors(t *testing.T) {
	m := newTestManager(t, nil)
	s, _ := m.NewSession("dup", nil)
	if _, err := m.NewSession("dup", nil); !errors.Is(err, ErrSessionExists) {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.Offer(LegA, []byte("not sdp"), netip.AddrPort{}); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("err = %v", err)
	}
	s.Close()
	if _, err := s.Offer(LegA, []byte("v=0\r\n"), netip.AddrPort{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewManager(Config{BindAddr: netip.IPv4Unspecified(), PortMin: 20000, PortMax: 20010}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("err = %v", err)
	}
}

// onHold reports whether the last offer/answer put the call on hold.
func onHold(s *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hold
}
