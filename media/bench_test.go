package media

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
)

// BenchmarkReofferAnswer measures a re-INVITE round (offer from A, answer
// from B) on a session whose three streams already exist: parse, rewrite
// and version bookkeeping, no port allocation.
func BenchmarkReofferAnswer(b *testing.B) {
	m := newTestManager(b, nil)
	a, c := newRoom(b, "roomA"), newRoom(b, "roomB")
	s, err := m.NewSession("bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	offer, answer := a.sdp(1, "sendrecv"), c.sdp(1, "sendrecv")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Offer(LegA, offer, netip.AddrPort{}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Answer(LegB, answer, netip.AddrPort{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallMedia measures the media side of one signalling-only call as the SIPp runs
// make it (one audio m-line): a session, the offer from A, the answer from B (binding two
// port pairs), the close (the pairs drain, 1 ms here). The pool (1,000 pairs) is wide enough
// for the pairs still draining.
func BenchmarkCallMedia(b *testing.B) {
	m := newTestManager(b, func(c *Config) {
		c.PortMin = testutil.PortWindow(b, loopback, 2000)
		c.PortMax, c.Drain = c.PortMin+1999, time.Millisecond
	})
	a, c := newRoom(b, "roomA"), newRoom(b, "roomB")
	offer := []byte("v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(a.audio.port()) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
	answer := []byte("v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(c.audio.port()) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
	b.ReportAllocs()
	for b.Loop() {
		s, err := m.NewSession("bench", nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Offer(LegA, offer, netip.AddrPort{}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Answer(LegB, answer, netip.AddrPort{}); err != nil {
			b.Fatal(err)
		}
		s.Close()
		for m.pool.Free() < 4 { // wait for drained pairs (not expected with 1,000)
			time.Sleep(time.Millisecond)
		}
	}
}
