package sbc

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"

	"github.com/portcullis-sbc/portcullis/media"
	"github.com/portcullis-sbc/portcullis/sbc/config"
	"github.com/portcullis-sbc/portcullis/sbc/guard"
)

// portSprayer is a stranger on another host sending valid RTP to every even port and RTCP to
// every odd port of a range, round after round, and counting whatever the relay sends it.
type portSprayer struct {
	conn     *net.UDPConn
	sent     atomic.Int64
	received atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
}

func sprayPorts(t *testing.T, from netip.Addr, to netip.Addr, lo, hi int) *portSprayer {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)))
	if err != nil {
		t.Fatal(err)
	}
	sp := &portSprayer{conn: c, stop: make(chan struct{})}
	sp.wg.Add(2)
	go func() {
		defer sp.wg.Done()
		buf := make([]byte, 2048)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			sp.received.Add(1)
		}
	}()
	go func() {
		defer sp.wg.Done()
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 666}, Payload: make([]byte, 160)}
		sr := []byte{0x80, 200, 0, 6, 0, 0, 2, 0x9a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		for {
			select {
			case <-sp.stop:
				return
			default:
			}
			p.SequenceNumber++
			p.Timestamp += 160
			raw, _ := p.Marshal()
			for port := lo; port <= hi; port++ {
				b := raw
				if port%2 == 1 {
					b = sr
				}
				if _, err := c.WriteToUDPAddrPort(b, netip.AddrPortFrom(to, uint16(port))); err == nil {
					sp.sent.Add(1)
				}
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()
	t.Cleanup(sp.close)
	return sp
}

func (sp *portSprayer) close() {
	select {
	case <-sp.stop:
		return
	default:
	}
	close(sp.stop)
	_ = sp.conn.Close()
	sp.wg.Wait()
}

// liveStreams returns the media streams of the node's only call (nil while there is none).
func liveStreams(n *Node) []media.StreamStats {
	for _, c := range n.calls.Calls() {
		if v, ok := n.calls.MediaStats(c.ID); ok {
			if st, ok := v.([]media.StreamStats); ok {
				return st
			}
		}
	}
	return nil
}

// takenIn counts every packet the relay's sockets of the live call took in, relayed or not.
func takenIn(n *Node) uint64 {
	var sum uint64
	for _, s := range liveStreams(n) {
		for _, d := range []struct{ a, b, c, e uint64 }{
			{s.AToB.Packets, s.AToB.RTCPPackets, s.AToB.Dropped, s.AToB.Invalid},
			{s.BToA.Packets, s.BToA.RTCPPackets, s.BToA.Dropped, s.BToA.Invalid},
		} {
			sum += d.a + d.b + d.c + d.e
		}
	}
	return sum
}

// TestMediaRingingTakeover (issue #14 item 1): while a room rings, a stranger on another host
// (127.0.0.77) sprays every port of the relay range, before either endpoint has sent: the
// ports facing the caller (whose SDP is known) and those facing the room (whose SDP is not).
// It keeps spraying through the answer and the call. It must receive nothing and inject
// nothing, and both endpoints must get all of each other's media.
func TestMediaRingingTakeover(t *testing.T) {
	cfg := callConfig(t)
	cfg.Calls.RingTimeout = config.Duration(30 * time.Second)
	cfg.Media.LatchWindow = config.Duration(200 * time.Millisecond)
	lo := 30000 + 2*rand.IntN(10000)
	hi := lo + 47 // 24 pairs: the whole range is sprayed every round
	cfg.Media.Ports = config.PortRange{Min: lo, Max: hi}
	n := startNode(t, cfg)
	callerMedia, roomMedia := newEndpoint(t, 3), newEndpoint(t, 3)
	room := newTestUA(t, "room")
	room.tag = "ringing-room"
	room.register(n, "boardroom", "s3cret-board")
	answer, ringing := make(chan struct{}), make(chan struct{})
	var once sync.Once
	room.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		roomMedia.learn(t, req.Body())
		res := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
		res.To().Params.Add("tag", room.tag)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: room.name, Host: "127.0.0.1", Port: room.port}})
		_ = tx.Respond(res)
		once.Do(func() { close(ringing) })
		select {
		case <-answer:
		case <-time.After(20 * time.Second):
		}
		room.answer(req, tx, roomMedia.sdp(2, "sendrecv"))
	})
	caller := newTestUA(t, "caller")
	called := make(chan *testCall, 1)
	go func() {
		called <- caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", callerMedia.sdp(1, "sendrecv"), nil)
	}()
	select {
	case <-ringing:
	case <-time.After(10 * time.Second):
		t.Fatal("the room never rang")
	}

	sp := sprayPorts(t, netip.MustParseAddr("127.0.0.77"), netip.MustParseAddr("127.0.0.1"), lo, hi)
	start := time.Now()
	waitUntil(t, 15*time.Second, "the spray to reach the ringing call's relay ports for 5 learning windows", func() bool {
		return takenIn(n) > 2000 && time.Since(start) > time.Second
	})
	if got := sp.received.Load(); got != 0 {
		t.Fatalf("while ringing, the stranger received %d packets from the relay", got)
	}

	close(answer)
	call := <-called
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call: %v", call.final)
	}
	call.ack(call.final)
	callerMedia.learn(t, call.final.Body())
	callerMedia.expect(2000)
	roomMedia.expect(1000)
	sent := make(chan struct{})
	go func() { roomMedia.send(t, 100, 2000); close(sent) }()
	callerMedia.send(t, 100, 1000)
	<-sent
	complete := func() bool {
		for i := range 3 {
			if roomMedia.received(i) < 100 || callerMedia.received(i) < 100 {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !complete() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	sp.close()
	t.Logf("stranger sent %d packets, received %d; room got %d/%d/%d (strays %d/%d/%d), caller got %d/%d/%d (strays %d/%d/%d)",
		sp.sent.Load(), sp.received.Load(),
		roomMedia.received(0), roomMedia.received(1), roomMedia.received(2), roomMedia.strays(0), roomMedia.strays(1), roomMedia.strays(2),
		callerMedia.received(0), callerMedia.received(1), callerMedia.received(2), callerMedia.strays(0), callerMedia.strays(1), callerMedia.strays(2))
	if got := sp.received.Load(); got != 0 {
		t.Fatalf("the stranger received %d packets of the call", got)
	}
	for i := range 3 {
		if s := roomMedia.strays(i) + callerMedia.strays(i); s != 0 {
			t.Fatalf("stream %d: %d packets of the stranger were injected", i, s)
		}
	}
	if !complete() {
		t.Fatal("the endpoints did not get all of each other's media")
	}
	for _, s := range liveStreams(n) {
		if s.LatchedA.Addr() != netip.MustParseAddr("127.0.0.1") || s.LatchedB.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("stream %d latched %v/%v", s.Index, s.LatchedA, s.LatchedB)
		}
	}
	call.do(sip.BYE, "")
}

// rawInvite is one INVITE written by hand, as an attacker's tool sends it.
func rawInvite(from netip.AddrPort, n *Node, room, callID, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INVITE sip:%s@%s SIP/2.0\r\n", room, n.cfg.SIP.Domain)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n", from, callID)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:visitor@outside.example>;tag=%s\r\n", callID)
	fmt.Fprintf(&b, "To: <sip:%s@%s>\r\n", room, n.cfg.SIP.Domain)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	b.WriteString("CSeq: 1 INVITE\r\n")
	fmt.Fprintf(&b, "Contact: <sip:visitor@%s>\r\n", from)
	b.WriteString("Content-Type: application/sdp\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// sdpWithStreams is an offer of n audio m-lines.
func sdpWithStreams(n int) string {
	var b strings.Builder
	b.WriteString("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n")
	for i := range n {
		fmt.Fprintf(&b, "m=audio %d RTP/AVP 0\r\n", 40000+2*(i%10000))
	}
	return b.String()
}

// sipPeer is a raw UDP SIP sender on its own address.
type sipPeer struct {
	conn *net.UDPConn
	n    *Node
	last string // the last final answer, whole
}

func newSIPPeer(t *testing.T, n *Node, ip string) *sipPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &sipPeer{conn: c, n: n}
}

func (p *sipPeer) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// invite sends an INVITE and returns the status line of its final answer ("" if none came
// within wait).
func (p *sipPeer) invite(t *testing.T, room, callID, body string, wait time.Duration) string {
	t.Helper()
	to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(p.n.addr(t, "udp")))
	if _, err := p.conn.WriteToUDP([]byte(rawInvite(p.addr(), p.n, room, callID, body)), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		_ = p.conn.SetReadDeadline(deadline)
		k, err := p.conn.Read(buf)
		if err != nil {
			return ""
		}
		line, _, _ := bufio.NewReader(strings.NewReader(string(buf[:k]))).ReadLine()
		if !strings.Contains(string(buf[:k]), callID) || strings.HasPrefix(string(line), "SIP/2.0 1") {
			continue
		}
		p.last = string(buf[:k])
		return string(line)
	}
}

// TestThousandMLineInviteRefused (issue #14 item 4): one unauthenticated INVITE with 1,000
// m-lines to an open room is answered 488 before the relay takes a single port (the pool's
// free count is unchanged), and the guard records it (rule media-ports).
func TestThousandMLineInviteRefused(t *testing.T) {
	n := startNode(t, callConfig(t))
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	free := n.media.Pool().Free()
	body := sdpWithStreams(1000)
	attacker := newSIPPeer(t, n, "127.0.0.66")
	status := attacker.invite(t, "boardroom", "mlines-1000", body, 10*time.Second)
	t.Logf("INVITE of %d bytes: %q; pool free %d -> %d", len(body), status, free, n.media.Pool().Free())
	if !strings.HasPrefix(status, "SIP/2.0 488") {
		t.Fatalf("answer %q, want 488", status)
	}
	if got := n.media.Pool().Free(); got != free {
		t.Fatalf("the refused INVITE took %d port pairs", free-got)
	}
	if ev := n.guard.Recent(guard.EventFilter{Rule: guard.RuleMediaPorts}, 0); len(ev) != 1 || ev[0].Code != 488 {
		t.Fatalf("guard events %+v, want one media-ports refusal", ev)
	}
	if strings.Contains(room.seen(), "mlines-1000") {
		t.Fatal("the room was rung")
	}
}

// TestUnansweredPortsPerSourceCap (issue #14 item 4): a source whose calls ring without
// answer holds at most media.max_unanswered_ports relay ports; its next calls get 503 (with
// Retry-After) and a guard event, the fifth such refusal bans it, and an ordinary caller on
// another address still gets through.
func TestUnansweredPortsPerSourceCap(t *testing.T) {
	cfg := callConfig(t)
	cfg.Calls.RingTimeout = config.Duration(30 * time.Second)
	cfg.Media.MaxUnansweredPorts = 24 // two 3-stream calls
	cfg.Rooms[0].DropIn = "allow"     // the room takes a second call while the first rings
	n := startNode(t, cfg)
	room := newTestUA(t, "room")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	room.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
		res.To().Params.Add("tag", sip.GenerateTagN(8))
		_ = tx.Respond(res)
		<-release // rings until the test ends
	})
	room.register(n, "boardroom", "s3cret-board")
	attacker := newSIPPeer(t, n, "127.0.0.66")
	for i := range 2 {
		if s := attacker.invite(t, "boardroom", fmt.Sprintf("ring-%d", i), sdpWithStreams(3), 300*time.Millisecond); s != "" {
			t.Fatalf("call %d under the cap: %q", i, s)
		}
	}
	waitUntil(t, 10*time.Second, "two ringing calls", func() bool { return len(n.calls.Calls()) == 2 })
	free := n.media.Pool().Free()
	for i := range guard.MediaStrikes {
		if s := attacker.invite(t, "boardroom", fmt.Sprintf("over-%d", i), sdpWithStreams(3), 10*time.Second); !strings.HasPrefix(s, "SIP/2.0 503") {
			t.Fatalf("call %d over the cap: %q, want 503", i, s)
		}
		if !strings.Contains(attacker.last, "Retry-After: 30") {
			t.Fatalf("503 without Retry-After:\n%s", attacker.last)
		}
	}
	if got := n.media.Pool().Free(); got != free {
		t.Fatalf("refused calls took %d port pairs", free-got)
	}
	if ev := n.guard.Recent(guard.EventFilter{Rule: guard.RuleMediaPorts}, 0); len(ev) != guard.MediaStrikes || ev[0].Code != 503 {
		t.Fatalf("guard events %+v, want %d media-ports refusals", ev, guard.MediaStrikes)
	}
	ban := netip.PrefixFrom(netip.MustParseAddr("127.0.0.66"), 32)
	waitUntil(t, 10*time.Second, "the source to be banned", func() bool {
		b, ok := n.store.State().Ban(ban)
		return ok && b.Until.After(time.Now()) && b.Rule == guard.RuleMediaPorts
	})

	// An ordinary call from another source to another room.
	other := newTestUA(t, "room2")
	other.register(n, "room2", "room2-pass")
	caller := newTestUA(t, "caller")
	call := caller.invite(n, roomURI(n, "room2"), "visitor", "outside.example", testSDP, nil)
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("ordinary call: %v", call.final)
	}
	call.ack(call.final)
	call.do(sip.BYE, "")
}

// TestMediaNotSentToLoopbackByDefault (issue #14 item 9): with the shipped peer deny list, a
// caller's SDP that points the call's media at 127.0.0.1 (a loopback service; also the node's
// own address here) gets nothing sent there, while the room's media reaches the relay. Only
// the room's media host, 127.0.0.2, is allowed, so that the room can take part at all.
func TestMediaNotSentToLoopbackByDefault(t *testing.T) {
	cfg := callConfig(t)
	cfg.Media.AllowPeers = config.PrefixList{netip.MustParsePrefix("127.0.0.2/32")}
	n := startNode(t, cfg)
	victim, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	var reached atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := victim.Read(buf); err != nil {
				return
			}
			reached.Add(1)
		}
	}()
	roomMedia, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer roomMedia.Close()
	roomPort := roomMedia.LocalAddr().(*net.UDPAddr).Port
	var relayForRoom netip.AddrPort
	var mu sync.Mutex
	room := newTestUA(t, "room")
	room.register(n, "boardroom", "s3cret-board")
	room.handleInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		mu.Lock()
		relayForRoom = audioRelay(t, req.Body())
		mu.Unlock()
		room.answer(req, tx, fmt.Sprintf("v=0\r\no=r 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", roomPort))
	})
	vport := victim.LocalAddr().(*net.UDPAddr).Port
	offer := fmt.Sprintf("v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", vport)
	caller := newTestUA(t, "caller")
	call := caller.invite(n, roomURI(n, "boardroom"), "visitor", "outside.example", offer, nil)
	if call.final == nil || call.final.StatusCode != 200 {
		t.Fatalf("call: %v", call.final)
	}
	call.ack(call.final)
	mu.Lock()
	to := relayForRoom
	mu.Unlock()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 7}, Payload: make([]byte, 160)}
	relayed := func() uint64 {
		var sum uint64
		for _, s := range liveStreams(n) {
			sum += s.BToA.Packets + s.BToA.RTCPPackets
		}
		return sum
	}
	for i := 0; relayed() < 200; i++ {
		if i > 5000 {
			t.Fatalf("the room's media did not reach the relay: %+v", liveStreams(n))
		}
		p.SequenceNumber++
		p.Timestamp += 160
		raw, _ := p.Marshal()
		if _, err := roomMedia.WriteToUDPAddrPort(raw, to); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("the room sent %d packets through the relay; %d reached 127.0.0.1:%d", relayed(), reached.Load(), vport)
	if got := reached.Load(); got != 0 {
		t.Fatalf("%d packets were relayed to 127.0.0.1:%d", got, vport)
	}
	call.do(sip.BYE, "")
}

// audioRelay is the RTP address of the first m-line of an SDP body.
func audioRelay(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	for _, l := range strings.Split(string(body), "\r\n") {
		if rest, ok := strings.CutPrefix(l, "m=audio "); ok {
			var port int
			fmt.Sscanf(rest, "%d", &port)
			return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		}
	}
	t.Errorf("no audio m-line in\n%s", body)
	return netip.AddrPort{}
}
