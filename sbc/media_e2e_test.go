package sbc

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/portcullis-sbc/portcullis/internal/testutil"
	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/media/sdp"
)

// endpoint is the media side of a test UA: one RTP socket per m-line.
type endpoint struct {
	socks []*net.UDPConn
	got   [][]atomic.Int64 // per m-line, packets received per SSRC slot (0: expected, 1: other)
	ssrc  []uint32         // the SSRC expected from the far side, per m-line
	mu    sync.Mutex
	peers []netip.AddrPort // where to send (relay ports from the SDP received), per m-line
	seq   []uint16
}

func newEndpoint(t *testing.T, streams int) *endpoint {
	e := &endpoint{got: make([][]atomic.Int64, streams), ssrc: make([]uint32, streams), peers: make([]netip.AddrPort, streams), seq: make([]uint16, streams)}
	for i := 0; i < streams; i++ {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		e.socks = append(e.socks, c)
		e.got[i] = make([]atomic.Int64, 2)
		go func(i int, c *net.UDPConn) {
			buf := make([]byte, 2048)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				var p rtp.Packet
				if p.Unmarshal(buf[:n]) != nil {
					continue
				}
				if p.SSRC == atomic.LoadUint32(&e.ssrc[i]) {
					e.got[i][0].Add(1)
				} else {
					e.got[i][1].Add(1)
				}
			}
		}(i, c)
	}
	return e
}

// sdp is an offer/answer for the endpoint's streams: audio, main video, content video.
func (e *endpoint) sdp(version int, dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=ep 7 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n", version)
	for i, c := range e.socks {
		port := c.LocalAddr().(*net.UDPAddr).Port
		if i == 0 {
			fmt.Fprintf(&b, "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=%s\r\n", port, dir)
			continue
		}
		content := "main"
		if i == 2 {
			content = "slides"
		}
		fmt.Fprintf(&b, "m=video %d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=content:%s\r\na=%s\r\n", port, content, dir)
	}
	return b.String()
}

// learn takes the relay addresses from the SDP the endpoint received.
func (e *endpoint) learn(t *testing.T, body []byte) {
	t.Helper()
	s, err := sdp.Parse(body)
	if err != nil {
		t.Fatalf("SDP: %v\n%s", err, body)
	}
	if len(s.Media) != len(e.socks) {
		t.Fatalf("SDP has %d m-lines, want %d:\n%s", len(s.Media), len(e.socks), body)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, m := range s.Media {
		e.peers[i] = m.RTPAddr()
	}
}

// relayAddrs returns the relay addresses the endpoint sends to.
func (e *endpoint) relayAddrs() []netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]netip.AddrPort{}, e.peers...)
}

// send sends n RTP packets on every stream with the given SSRC base.
func (e *endpoint) send(t *testing.T, n int, ssrc uint32) {
	t.Helper()
	peers := e.relayAddrs()
	for k := 0; k < n; k++ {
		for i, c := range e.socks {
			e.seq[i]++
			pt := uint8(96)
			if i == 0 {
				pt = 0
			}
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: e.seq[i], Timestamp: uint32(k) * 160, SSRC: ssrc + uint32(i)},
				Payload: make([]byte, 160)}
			raw, _ := p.Marshal()
			if _, err := c.WriteToUDPAddrPort(raw, peers[i]); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (e *endpoint) expect(ssrcBase uint32) {
	for i := range e.ssrc {
		atomic.StoreUint32(&e.ssrc[i], ssrcBase+uint32(i))
	}
}

func (e *endpoint) received(i int) int64 { return e.got[i][0].Load() }
func (e *endpoint) strays(i int) int64   { return e.got[i][1].Load() }

// TestMediaThroughRelay: a call with audio, main video and content video; RTP flows both ways
// through the relay ports of the rewritten SDP; a third party spraying the relay ports gets
// nothing through; hold and resume keep the media; after BYE nothing is relayed.
func TestMediaThroughRelay(t *testing.T) {
	n := startNode(t, callConfig(t))
	callerMedia, roomMedia := newEndpoint(t, 3), newEndpoint(t, 3)
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	room.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		roomMedia.learn(t, req.Body())
		dir := "sendrecv"
		if strings.Contains(string(req.Body()), "a=sendonly") {
			dir = "recvonly"
		}
		room.answer(req, tx, roomMedia.sdp(2, dir))
	})
	caller := newTestUA(t, "caller")
	call := caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", callerMedia.sdp(1, "sendrecv"), nil)
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call: %v", call.final)
	}
	call.ack(call.final)
	callerMedia.learn(t, call.final.Body())
	for i, p := range callerMedia.relayAddrs() {
		if p.Port() == uint16(roomMedia.socks[i].LocalAddr().(*net.UDPAddr).Port) {
			t.Fatal("the caller was given the room's own media port: media is not anchored")
		}
	}
	callerMedia.expect(2000) // the room sends SSRC 2000+i
	roomMedia.expect(1000)   // the caller sends SSRC 1000+i

	// the bleed attacker sprays the relay ports facing both sides, before and during the call
	// the attacker is another host (127.0.0.2): a source on the endpoint's own IP is the endpoint
	// itself after a NAT rebinding, which the relay is meant to follow once the old port went silent
	attacker, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	stop := make(chan struct{})
	sprayed := make(chan int)
	go func() {
		sent := 0
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 666}, Payload: make([]byte, 160)}
		for {
			select {
			case <-stop:
				sprayed <- sent
				return
			default:
			}
			p.SequenceNumber++
			raw, _ := p.Marshal()
			for _, a := range append(callerMedia.relayAddrs(), roomMedia.relayAddrs()...) {
				_, _ = attacker.WriteToUDPAddrPort(raw, a)
				sent++
			}
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	sent := make(chan struct{})
	go func() { roomMedia.send(t, 100, 2000); close(sent) }() // both ends talk at once, as in a call
	callerMedia.send(t, 100, 1000)
	<-sent
	testutil.Eventually(t, "100 packets each way on each stream", func() bool {
		for i := 0; i < 3; i++ {
			if roomMedia.received(i) < 100 || callerMedia.received(i) < 100 {
				return false
			}
		}
		return true
	})
	close(stop)
	spray := <-sprayed
	t.Logf("room got %d/%d/%d strays %d/%d/%d; caller got %d/%d/%d strays %d/%d/%d", roomMedia.received(0), roomMedia.received(1), roomMedia.received(2),
		roomMedia.strays(0), roomMedia.strays(1), roomMedia.strays(2), callerMedia.received(0), callerMedia.received(1), callerMedia.received(2),
		callerMedia.strays(0), callerMedia.strays(1), callerMedia.strays(2))
	for i := 0; i < 3; i++ {
		if s := roomMedia.strays(i) + callerMedia.strays(i); s != 0 {
			t.Fatalf("stream %d: %d packets of the attacker got through", i, s)
		}
	}
	var id string
	for _, c := range n.calls.Calls() {
		id = c.ID
	}
	v, _ := n.calls.MediaStats(id)
	streams := v.([]media.StreamStats)
	var dropped uint64
	for _, s := range streams {
		if s.AToB.Lost != 0 || s.BToA.Lost != 0 {
			t.Fatalf("loss on the legitimate stream under spraying: %+v", s.Stats)
		}
		dropped += s.AToB.Dropped + s.BToA.Dropped + s.AToB.Invalid + s.BToA.Invalid
	}
	if len(streams) != 3 || streams[2].Content != "slides" {
		t.Fatalf("streams: %+v", streams)
	}
	t.Logf("attacker sent %d packets, relay dropped %d, legitimate: 100/100 on each of 3 streams each way, 0 lost", spray, dropped)

	// hold and resume
	hold := call.do(sip.INVITE, callerMedia.sdp(2, "sendonly"), sip.NewHeader("Content-Type", "application/sdp"))
	if hold.StatusCode != 200 || !strings.Contains(string(hold.Body()), "a=recvonly") {
		t.Fatalf("hold: %d\n%s", hold.StatusCode, hold.Body())
	}
	resume := call.do(sip.INVITE, callerMedia.sdp(3, "sendrecv"), sip.NewHeader("Content-Type", "application/sdp"))
	if resume.StatusCode != 200 {
		t.Fatalf("resume: %d", resume.StatusCode)
	}
	callerMedia.learn(t, resume.Body())
	before := roomMedia.received(0)
	callerMedia.send(t, 50, 1000)
	waitFor(t, func() bool { return roomMedia.received(0) >= before+50 })

	// after BYE the relay ports relay nothing
	if res := call.do(sip.BYE, ""); res.StatusCode != 200 {
		t.Fatalf("BYE: %d", res.StatusCode)
	}
	waitFor(t, func() bool { return n.calls.Active() == 0 })
	after := roomMedia.received(0)
	callerMedia.send(t, 20, 1000)
	time.Sleep(200 * time.Millisecond)
	if got := roomMedia.received(0); got != after {
		t.Fatalf("%d packets relayed after BYE", got-after)
	}
}
