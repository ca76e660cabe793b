package media

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/media/sdp"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func newTestManager(t testing.TB, mod func(*Config)) *Manager {
	t.Helper()
	base := testutil.PortWindow(t, loopback, 200) // free for the largest range a test widens it to
	// Everything runs on loopback, which the shipped peer deny list refuses.
	cfg := Config{BindAddr: loopback, PortMin: base, PortMax: base + 59, Drain: 100 * time.Millisecond, LatchWindow: 200 * time.Millisecond,
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	if mod != nil {
		mod(&cfg)
	}
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// endpoint is one media socket of a fake room system.
type endpoint struct{ *testutil.Endpoint }

func newEndpoint(t testing.TB) *endpoint {
	t.Helper()
	return &endpoint{testutil.NewEndpoint(t, loopback)}
}

func (e *endpoint) port() int { return e.Port() }

func rtp(pt uint8, seq uint16, payload string) []byte {
	return testutil.RTP(pt, seq, uint32(seq)*160, 0x1234, payload)
}

func (e *endpoint) send(to netip.AddrPort, b []byte) {
	e.T.Helper()
	e.Send(to, b)
}

func (e *endpoint) recv(d time.Duration) ([]byte, bool) {
	e.T.Helper()
	b, _, ok := e.Recv(d)
	return b, ok
}

// room is a fake room system with audio, main video and content video.
type room struct {
	name              string
	audio, main, cont *endpoint
}

func newRoom(t testing.TB, name string) *room {
	return &room{name: name, audio: newEndpoint(t), main: newEndpoint(t), cont: newEndpoint(t)}
}

func (r *room) eps() []*endpoint { return []*endpoint{r.audio, r.main, r.cont} }

// sdp returns a Polycom-style body; dir is the direction attribute.
func (r *room) sdp(version int, dir string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=%s 1000 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n", r.name, version)
	fmt.Fprintf(&b, "m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=%s\r\n", r.audio.port(), dir)
	fmt.Fprintf(&b, "m=video %d RTP/AVP 109\r\na=rtpmap:109 H264/90000\r\na=label:1\r\na=content:main\r\na=%s\r\n", r.main.port(), dir)
	fmt.Fprintf(&b, "m=video %d RTP/AVP 109\r\na=rtpmap:109 H264/90000\r\na=label:3\r\na=content:slides\r\na=%s\r\n", r.cont.port(), dir)
	fmt.Fprintf(&b, "m=application 5070 TCP/BFCP *\r\na=floorctrl:c-s\r\n")
	return []byte(b.String())
}

// relayAddrs returns the per-m-line RTP destinations found in a rewritten body.
func relayAddrs(t *testing.T, body []byte) []netip.AddrPort {
	t.Helper()
	s, err := sdp.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.AddrPort
	for _, m := range s.Media {
		out = append(out, m.RTPAddr())
	}
	return out
}

// exchange sends one packet per stream from a to b and back, and checks
// delivery. aDst/bDst are the relay addresses from the SDP each side got.
func exchange(t *testing.T, a, b *room, aDst, bDst []netip.AddrPort, seq uint16) {
	t.Helper()
	for i := range 3 {
		ea, eb := a.eps()[i], b.eps()[i]
		pt := uint8(0)
		if i > 0 {
			pt = 109
		}
		msg := fmt.Sprintf("%s->%s m%d #%d", a.name, b.name, i, seq)
		ea.send(aDst[i], rtp(pt, seq, msg))
		got, ok := eb.recv(2 * time.Second)
		if !ok || !bytes.HasSuffix(got, []byte(msg)) {
			t.Fatalf("m-line %d: %s got %q (ok=%v), want %q", i, b.name, got, ok, msg)
		}
		msg = fmt.Sprintf("%s->%s m%d #%d", b.name, a.name, i, seq)
		eb.send(bDst[i], rtp(pt, seq, msg))
		got, ok = ea.recv(2 * time.Second)
		if !ok || !bytes.HasSuffix(got, []byte(msg)) {
			t.Fatalf("m-line %d: %s got %q (ok=%v), want %q", i, a.name, got, ok, msg)
		}
	}
}
